package cluster_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// dialLayer is a raft.StreamLayer that only dials, the way the test's client reaches a node.
type dialLayer struct {
	dial      func(address string, timeout time.Duration) (net.Conn, error)
	done      chan struct{}
	closeOnce sync.Once
}

func newDialLayer(dial func(string, time.Duration) (net.Conn, error)) *dialLayer {
	return &dialLayer{dial: dial, done: make(chan struct{})}
}

func (l *dialLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.dial(string(a), timeout)
}
func (l *dialLayer) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l *dialLayer) Close() error              { l.closeOnce.Do(func() { close(l.done) }); return nil }
func (l *dialLayer) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// tlsRaftDialer speaks the cluster port's Raft framing with cert and no join secret (a zero proof).
func tlsRaftDialer(cert *tls.Certificate) func(string, time.Duration) (net.Conn, error) {
	return func(address string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", address, timeout)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write([]byte{cluster.RaftHeader}); err != nil {
			c.Close()
			return nil, err
		}
		tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*cert}})
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := tc.Write(make([]byte, cluster.RaftProofBytes)); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := io.ReadFull(tc, make([]byte, cluster.RaftProofBytes)); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
}

// requestVote sends one RequestVote RPC through a raft transport over layer to address.
func requestVote(t *testing.T, layer raft.StreamLayer, address string, term uint64) (*raft.RequestVoteResponse, error) {
	t.Helper()
	trans := raft.NewNetworkTransport(layer, 1, 5*time.Second, io.Discard)
	defer trans.Close()
	req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("intruder")},
		Term: term, LastLogIndex: term, LastLogTerm: term}
	var resp raft.RequestVoteResponse
	err := trans.RequestVote("target", raft.ServerAddress(address), req, &resp)
	return &resp, err
}

// TestRaftPortRefusesUnauthenticated: Raft on the cluster port is mutual TLS. A plain TCP client
// speaking Raft's own stream and a TLS client presenting a valid server SVID of another trust domain
// (without the join secret) get no Raft RPC processed; the same client presenting a server SVID that
// verifies against the cluster's bundle gets its answer.
func TestRaftPortRefusesUnauthenticated(t *testing.T) {
	nodes, _, follower := startCluster(t)
	addr := follower.mux.Addr().String()
	term := follower.st.Status().Term
	plain := newDialLayer(func(a string, timeout time.Duration) (net.Conn, error) { return net.DialTimeout("tcp", a, timeout) })
	if resp, err := requestVote(t, plain, addr, term+100); err == nil {
		t.Fatalf("a plain Raft RequestVote was answered: %+v", resp)
	}

	other := spiffeid.RequireTrustDomainFromString("other.example")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := testkit.NewCA(t, other, 0).SignX509SVID(ca.X509SVIDParams{
		SPIFFEID: spiffeid.RequireFromSegments(other, "signet", "server", "intruder"), PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	foreignCert := &tls.Certificate{Certificate: [][]byte{foreign.Raw}, PrivateKey: key, Leaf: foreign}
	if resp, err := requestVote(t, newDialLayer(tlsRaftDialer(foreignCert)), addr, term+100); err == nil {
		t.Fatalf("a Raft RequestVote over TLS with another trust domain's SVID was answered: %+v", resp)
	}

	// The control: another server's SVID of this cluster, no join secret either, is accepted. A stale
	// term changes nothing in the cluster.
	var peer *testNode
	for _, n := range nodes {
		if n != follower {
			peer = n
		}
	}
	svid, err := peer.ident.NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := requestVote(t, newDialLayer(tlsRaftDialer(svid)), addr, 0)
	if err != nil {
		t.Fatalf("a Raft RequestVote with a server SVID of the cluster: %v", err)
	}
	if resp.Granted || resp.Term < term {
		t.Fatalf("answer to a stale RequestVote: %+v (term %d)", resp, term)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if err := follower.st.ReadBarrier(ctx); err != nil {
		t.Fatalf("the cluster after the refused connections: %v", err)
	}
}

// TestRaftDialChecksTheNode: a node dialing a Raft peer refuses a server SVID that verifies against the
// bundle but names another node than the one the Raft configuration lists at that address.
func TestRaftDialChecksTheNode(t *testing.T) {
	nodes, _, follower := startCluster(t)
	var leader, other *testNode
	for _, n := range nodes {
		switch {
		case n.st.IsLeader():
			leader = n
		case n != follower:
			other = n
		}
	}
	if leader == nil || other == nil {
		t.Fatal("no leader")
	}
	// An impostor at an address the configuration gives to node-fake, presenting another node's SVID.
	svid, err := other.ident.NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					return
				}
				tc := tls.Server(c, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*svid}, ClientAuth: tls.RequireAnyClientCert})
				if tc.Handshake() != nil {
					return
				}
				tc.Write(make([]byte, cluster.RaftProofBytes))
				io.Copy(io.Discard, tc)
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	fake := lis.Addr().String()
	if err := leader.st.AddVoter(ctx, "node-fake", fake); err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, testkit.Deadline, "node-fake in the follower's configuration", func() bool {
		members, err := follower.st.Members()
		return err == nil && len(members) == 4
	})
	c, err := follower.mux.RaftLayer().Dial(raft.ServerAddress(fake), 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("a Raft connection to an impostor presenting another node's SVID was accepted")
	}
	if want := "lists node-fake at " + fake; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), other.st.NodeID()) {
		t.Fatalf("dial refusal %q does not name the SVID's node and say %q", err, want)
	}
}

// wireRecorder is a TCP proxy to target that keeps every byte it carries, both ways, and the first
// byte of each connection.
type wireRecorder struct {
	lis    net.Listener
	mu     sync.Mutex
	bytes  []byte
	firsts []byte
}

// recordWire opens the proxy's listener; carry starts it.
func recordWire(t *testing.T) *wireRecorder {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	return &wireRecorder{lis: lis}
}

// carryTo proxies every connection to target, until the listener closes.
func (w *wireRecorder) carryTo(target string) {
	go func() {
		for {
			in, err := w.lis.Accept()
			if err != nil {
				return
			}
			go w.carry(in, target)
		}
	}()
}

func (w *wireRecorder) carry(in net.Conn, target string) {
	defer in.Close()
	out, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer out.Close()
	go func() { _, _ = io.Copy(in, w.tee(out, false)); in.Close() }()
	_, _ = io.Copy(out, w.tee(in, true)) // the dialer's side: its first byte sorts the connection
}

// tee records what is read from r; with first, its first byte also goes to firsts.
func (w *wireRecorder) tee(r io.Reader, first bool) io.Reader {
	return readFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		w.mu.Lock()
		if first && n > 0 {
			w.firsts = append(w.firsts, p[0])
			first = false
		}
		w.bytes = append(w.bytes, p[:n]...)
		w.mu.Unlock()
		return n, err
	})
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func (w *wireRecorder) seen() (all, firsts []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.bytes...), append([]byte(nil), w.firsts...)
}

// TestRaftWireIsEncrypted: three servers whose cluster addresses are recording proxies form a cluster
// and replicate a write (each applies the owner created through a follower), yet the owner's name never
// crosses the wire in the clear, and every Raft connection starts with the TLS framing.
func TestRaftWireIsEncrypted(t *testing.T) {
	secret := writeSecret(t)
	var muxes []*cluster.Mux
	var recs []*wireRecorder
	var addrs []string
	for range 3 {
		rec := recordWire(t)
		m, err := cluster.Listen("127.0.0.1:0", rec.lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		rec.carryTo(m.BoundAddr().String())
		muxes, recs, addrs = append(muxes, m), append(recs, rec), append(addrs, m.Addr().String())
	}
	var nodes []*testNode
	for _, m := range muxes {
		nodes = append(nodes, startNode(t, m, "", 3, addrs, secret))
	}
	waitReady(t, nodes...)
	const name = "owner-in-the-clear-7f3a9c"
	var writer *testNode
	for _, n := range nodes {
		if !n.st.IsLeader() {
			writer = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if _, err := writer.st.CreateOwner(ctx, storage.Owner{Name: name}); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if err := n.st.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := n.st.Owner(name); err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
	}
	raftConns := 0
	for _, rec := range recs {
		all, firsts := rec.seen()
		if bytes.Contains(all, []byte(name)) {
			t.Fatalf("the owner's name crossed a cluster port in the clear")
		}
		for _, b := range firsts {
			switch b {
			case cluster.RaftHeader:
				raftConns++
			case 0x16: // the cluster API's TLS
			default:
				t.Fatalf("a connection to a cluster port started with byte %#x", b)
			}
		}
	}
	if raftConns == 0 {
		t.Fatal("no Raft connection went through the proxies: the test proves nothing")
	}
}
