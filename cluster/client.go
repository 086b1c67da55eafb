package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// clients holds one connection per other server, authenticated both ways with server SVIDs.
type clients struct {
	td      spiffeid.TrustDomain
	id      Identity
	timeout time.Duration

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newClients(td spiffeid.TrustDomain, id Identity, timeout time.Duration) *clients {
	return &clients{td: td, id: id, timeout: timeout, conns: map[string]*grpc.ClientConn{}}
}

// Keepalive of the connections between servers: a ping after keepaliveTime idle, the connection closed
// if unanswered within keepaliveTimeout. The cluster API permits pings this often.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// reregisterEvery bounds how often a node registers again because the leader refused its server SVID
// (each registration records a new one).
const reregisterEvery = 10 * time.Second

// serverIDPrefix is the path of every server SVID: spiffe://<td>/signet/server/<node>.
const serverIDPrefix = "/signet/server/"

// verifyServerSVID checks that chain is a server SVID of td that verifies against the authorities, and
// returns the node it names.
func verifyServerSVID(td spiffeid.TrustDomain, chain []*x509.Certificate, authorities []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", fmt.Errorf("no certificate: servers present their server SVID")
	}
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, authorities))
	if err != nil {
		return "", fmt.Errorf("certificate does not verify against the trust bundle: %w", err)
	}
	node, ok := nodeOf(td, id)
	if !ok {
		return "", fmt.Errorf("%s is not a server SVID of %s (want spiffe://%s%s<node>)", id, td.Name(), td.Name(), serverIDPrefix)
	}
	return node, nil
}

func nodeOf(td spiffeid.TrustDomain, id spiffeid.ID) (string, bool) {
	p := id.Path()
	if id.TrustDomain() != td || len(p) <= len(serverIDPrefix) || p[:len(serverIDPrefix)] != serverIDPrefix {
		return "", false
	}
	return p[len(serverIDPrefix):], true
}

// mutualTLS is the client side of a connection to an established server: this node presents its
// current server SVID, the peer's must verify against the bundle.
func (c *clients) mutualTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified by VerifyConnection against the trust bundle, as SPIFFE IDs
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert := c.id.Certificate(); cert != nil {
				return cert, nil
			}
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyServerSVID(c.td, cs.PeerCertificates, c.id.X509Authorities())
			return err
		},
	}
}

// firstContactTLS is the client side of a connection to a server this node cannot verify yet (it has
// no bundle before it joins): encrypted, and presenting cert if given (Join), but trusting the network
// like Raft's own transport does (see docs/architecture.md).
func firstContactTLS(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // first contact: nothing to verify against yet; see firstContactTLS
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert != nil {
				return cert, nil
			}
			return &tls.Certificate{}, nil
		},
	}
}

// conn returns the mutually authenticated connection to addr.
func (c *clients) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(c.mutualTLS())),
		// Notice a leader cut off by the network within seconds, not at TCP's timeout.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		// A forwarded batch's result (say, of a large entry import) may exceed gRPC's 4 MiB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// oneShot opens a connection for one first-contact call; the caller closes it.
func (c *clients) oneShot(addr string, cert *tls.Certificate) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(firstContactTLS(cert))))
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", addr, err)
	}
	return cc, nil
}

// drop closes the connection to addr; the next call opens a new one.
func (c *clients) drop(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		cc.Close()
		delete(c.conns, addr)
	}
}

func (c *clients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, cc := range c.conns {
		cc.Close()
		delete(c.conns, addr)
	}
}

// peerInfo asks the server at addr who it is, and checks that it is of this trust domain and cluster.
func (n *Node) peerInfo(ctx context.Context, addr string) (*clusterv1.NodeInfo, error) {
	cc, err := n.clients.oneShot(addr, nil)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	info, err := clusterv1.NewClusterClient(cc).Info(ctx, &clusterv1.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, fmt.Errorf("cluster: server at %s is %w: %v (check that it runs and that %s is its raft.advertise_address)", addr, ErrUnreachable, err, addr)
	}
	if info.GetTrustDomain() != n.cfg.TrustDomain.Name() {
		return nil, fmt.Errorf("cluster: server %s at %s is %w: trust domain %q, this node's is %q", info.GetNodeId(), addr, ErrWrongCluster, info.GetTrustDomain(), n.cfg.TrustDomain.Name())
	}
	if info.GetClusterId() != n.cfg.ClusterID {
		return nil, fmt.Errorf("cluster: server %s at %s is %w: raft.cluster_id %q, this node's is %q", info.GetNodeId(), addr, ErrWrongCluster, info.GetClusterId(), n.cfg.ClusterID)
	}
	return info, nil
}

// register sends Join to the leader at addr with a new server SVID, which the leader records; this node
// then waits until it has applied the change and makes the SVID current.
func (n *Node) register(ctx context.Context, leaderAddr string) error {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	if n.isReady() {
		return nil // registered meanwhile (Run and 'signet cluster join' raced)
	}
	return n.registerLocked(ctx, leaderAddr)
}

// registerAgain registers this node with a new server SVID after the leader refused the current one
// (it expired while this node was cut off, say), unless another call did so since refused was presented.
func (n *Node) registerAgain(ctx context.Context, leaderAddr string, refused *tls.Certificate) error {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	if cur := n.cfg.Identity.Certificate(); cur != nil && cur != refused {
		return nil
	}
	if since := time.Since(n.lastRegister); since < reregisterEvery {
		return fmt.Errorf("cluster: the leader refuses this node's server SVID %s after it registered again; see the leader's log", since.Round(time.Millisecond))
	}
	n.lastRegister = time.Now()
	n.log.Warn("the leader refused this node's server SVID; registering again with a new one", "leader", leaderAddr)
	return n.registerLocked(ctx, leaderAddr)
}

func (n *Node) registerLocked(ctx context.Context, leaderAddr string) error {
	cert, err := n.cfg.Identity.NewCertificate()
	if err != nil {
		return fmt.Errorf("cluster: server SVID: %w", err)
	}
	if len(cert.Certificate) == 0 {
		return errors.New("cluster: server SVID: no certificate")
	}
	pub, err := certPublicKey(cert.Certificate[0])
	if err != nil {
		return err
	}
	var proof []byte
	if n.cfg.JoinSecret != nil {
		proof = joinProof(n.cfg.JoinSecret, n.cfg.Raft.NodeID(), pub, n.cfg.TrustDomain.Name(), n.cfg.ClusterID)
	}
	root, jwtKey, kid := n.cfg.Identity.Authorities()
	cc, err := n.clients.oneShot(leaderAddr, cert)
	if err != nil {
		return err
	}
	defer cc.Close()
	rctx, cancel := context.WithTimeout(ctx, 4*n.cfg.DialTimeout)
	defer cancel()
	resp, err := clusterv1.NewClusterClient(cc).Join(rctx, &clusterv1.JoinRequest{NodeId: n.cfg.Raft.NodeID(), Address: n.cfg.Raft.Address(),
		TrustDomain: n.cfg.TrustDomain.Name(), ClusterId: n.cfg.ClusterID, X509Authority: root, JwtAuthority: jwtKey, JwtKeyId: kid,
		CommandVersion: storage.CommandVersion, JoinProof: proof, JwtIssuer: n.cfg.JWTIssuer}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("cluster: join through the leader at %s: %w: %s", leaderAddr, ErrPeerRefused, statusMessage(err))
	}
	n.warnIssuer(resp.GetJwtIssuer(), "the leader at "+leaderAddr)
	if err := n.cfg.Raft.WaitApplied(ctx, resp.GetIndex()); err != nil {
		return fmt.Errorf("cluster: joined, but catching up with the leader failed: %w", err)
	}
	n.cfg.Identity.InstallCertificate(cert)
	return nil
}

// leaderConn returns the connection to the leader for a forwarded call, or, when nothing can be sent
// now, the outcome to answer instead: no leader, this node not registered, or the leader unreachable.
func (n *Node) leaderConn(ctx context.Context) (*grpc.ClientConn, storage.RaftStatus, *storage.Outcome, error) {
	st := n.cfg.Raft.Status()
	if st.LeaderAddress == "" {
		out := storage.NoLeaderOutcome()
		return nil, st, &out, nil
	}
	if n.cfg.Identity.Certificate() == nil {
		// Not registered yet (its join records this node's command version): the leader could not
		// authenticate it, and a refused handshake would hold the connection in backoff.
		return nil, st, &storage.Outcome{Code: storage.ErrorCodeOf(storage.ErrNotLeader),
			Message: fmt.Sprintf("cluster: node %s is not registered in the cluster yet: it takes writes once it is (see 'signet cluster status')", n.cfg.Raft.NodeID())}, nil
	}
	cc, err := n.clients.conn(st.LeaderAddress)
	if err != nil {
		return nil, st, nil, err
	}
	if !n.connected(ctx, cc) {
		// Nothing was sent: the leader this node knows is unreachable (dead, and the cluster about to
		// elect another). The call is retried, against whichever leader there is then.
		out := storage.NoLeaderOutcome()
		return nil, st, &out, nil
	}
	return cc, st, nil, nil
}

// Forward sends p to the leader (storage.Forwarder).
func (n *Node) Forward(ctx context.Context, p storage.Proposal) (storage.Outcome, error) {
	cc, st, instead, err := n.leaderConn(ctx)
	if err != nil || instead != nil {
		return deref(instead), err
	}
	presented := n.cfg.Identity.Certificate()
	var sentTo peer.Peer // set once the call has a connection to go out on
	resp, err := clusterv1.NewClusterClient(cc).Forward(ctx, &clusterv1.ForwardRequest{Command: p.Command, Ledger: p.Ledger}, grpc.Peer(&sentTo))
	if status.Code(err) == codes.Unauthenticated {
		// Refused before anything was applied: register again, then send on a new connection (the
		// old one keeps the certificate it was opened with).
		if rerr := n.registerAgain(ctx, st.LeaderAddress, presented); rerr != nil {
			return storage.Outcome{}, fmt.Errorf("cluster: forward to the leader %s: %w: %w", st.LeaderID, storage.ErrNotLeader, rerr)
		}
		n.clients.drop(st.LeaderAddress)
		return storage.NoLeaderOutcome(), nil // sent again by the caller's retry loop
	}
	if err != nil && sentTo.Addr == nil && ctx.Err() == nil {
		// The connection broke before the call went out on it (the leader stopped since connected
		// said it was ready): nothing was sent, so it is sent again, to whichever server leads then.
		return storage.NoLeaderOutcome(), nil
	}
	if err != nil {
		return storage.Outcome{}, fmt.Errorf("cluster: forward to the leader %s at %s: %w: %s", st.LeaderID, st.LeaderAddress, storage.ErrNotLeader, statusMessage(err))
	}
	out := storage.Outcome{Index: resp.GetIndex(), Result: resp.GetResult(), Code: storage.ErrorCode(resp.GetErrorCode()), Message: resp.GetErrorMessage()}
	if ns := resp.GetIssuedAtUnixNano(); ns != 0 {
		out.IssuedAt = time.Unix(0, ns).UTC()
	}
	return out, nil
}

// connected reports whether cc is ready, connecting it if needed and waiting up to DialTimeout; false
// as soon as the connection fails.
func (n *Node) connected(ctx context.Context, cc *grpc.ClientConn) bool {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	cc.Connect()
	for {
		switch s := cc.GetState(); s {
		case connectivity.Ready:
			return true
		case connectivity.TransientFailure, connectivity.Shutdown:
			return false
		default:
			if !cc.WaitForStateChange(ctx, s) {
				return false
			}
		}
	}
}

// deref is *o, or the zero Outcome for nil.
func deref(o *storage.Outcome) storage.Outcome {
	if o == nil {
		return storage.Outcome{}
	}
	return *o
}
