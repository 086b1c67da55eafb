package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// testNode is one server in this process: cluster port, store, CA, server components, cluster node.
type testNode struct {
	mux   *cluster.Mux
	st    *storage.Store
	node  *cluster.Node
	admin *cluster.AdminService
	ident *server.ClusterIdentity
}

func listen(t *testing.T) *cluster.Mux {
	m, err := cluster.Listen("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// writeSecret writes a new join secret file, as an operator would, and reads it back as the server does.
func writeSecret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "join.secret")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret, err := cluster.ReadJoinSecretFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// startNode starts a server on mux with the given cluster settings and join secret (nil: none), and
// stops it when the test ends.
func startNode(t *testing.T, mux *cluster.Mux, clusterID string, expect int, retryJoin []string, secret []byte) *testNode {
	t.Helper()
	return startNodeWith(t, mux, nodeOptions{clusterID: clusterID, expect: expect, retryJoin: retryJoin, secret: secret})
}

// startNodeWithCA is startNode whose server signs with authority.
func startNodeWithCA(t *testing.T, mux *cluster.Mux, clusterID string, expect int, retryJoin []string, secret []byte, authority *ca.CA) *testNode {
	t.Helper()
	return startNodeWith(t, mux, nodeOptions{clusterID: clusterID, expect: expect, retryJoin: retryJoin, secret: secret, authority: authority})
}

// nodeOptions are a test server's cluster settings (startNode's), the iss of its JWT-SVIDs and its log
// (nil: the test's).
type nodeOptions struct {
	clusterID string
	expect    int
	retryJoin []string
	secret    []byte
	jwtIssuer string
	// authority is the CA the server signs with (nil: a new self-signed one).
	authority *ca.CA
	log       *slog.Logger
}

func startNodeWith(t *testing.T, mux *cluster.Mux, o nodeOptions) *testNode {
	t.Helper()
	log := o.log
	if log == nil {
		log = testkit.Logger(t)
	}
	clusterID, expect, retryJoin, secret := o.clusterID, o.expect, o.retryJoin, o.secret
	authority := o.authority
	if authority == nil {
		authority = testkit.NewCA(t, td, 0)
	}
	st, err := storage.Open(storage.Config{Dir: filepath.Join(t.TempDir(), "server"), StreamLayer: mux.RaftLayer(), Logger: log,
		HeartbeatTimeout: time.Second, ElectionTimeout: time.Second}) // raft's defaults: a removed server stays a quiet follower for a while
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, CA: authority, TrustDomain: td, Selectors: testenv.Selectors(), JWTIssuer: o.jwtIssuer,
		AgentAuth: func(context.Context) (agentapi.Caller, error) { return agentapi.Caller{}, errors.New("no agents here") },
		AdminAuth: func(context.Context) (string, error) { return "test", nil }, DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ident, err := srv.ClusterIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.New(cluster.Config{Raft: st, Identity: ident, Registrar: ident, TrustDomain: td, ClusterID: clusterID,
		BootstrapExpect: expect, RetryJoin: retryJoin, RetryInterval: 50 * time.Millisecond, DialTimeout: 2 * time.Second, JoinSecret: secret, JWTIssuer: o.jwtIssuer, Mux: mux, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	st.SetForwarder(n)
	admin, err := cluster.NewAdminService(n, func(context.Context) (string, error) { return "test", nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { n.Serve(mux.APIListener()); done <- struct{}{} }()
	go func() { srv.Run(ctx); done <- struct{}{} }()
	go func() { n.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		n.Close()
		for range 3 {
			<-done
		}
		st.Close()
	})
	return &testNode{mux: mux, st: st, node: n, admin: admin, ident: ident}
}

func waitReady(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for i, n := range nodes {
		select {
		case <-n.node.Ready():
		case <-time.After(testkit.Deadline):
			t.Fatalf("node %d not registered in a cluster within %s", i, testkit.Deadline)
		}
	}
}

// startCluster starts three servers that form a cluster (bootstrap_expect 3, each other in retry_join,
// one join secret) and waits until all are registered; it returns them, their cluster addresses and one
// follower.
func startCluster(t *testing.T) (nodes []*testNode, addrs []string, follower *testNode) {
	t.Helper()
	return startClusterWith(t, func() *ca.CA { return testkit.NewCA(t, td, 0) })
}

// startClusterWith is startCluster whose servers sign with the CAs newCA makes.
func startClusterWith(t *testing.T, newCA func() *ca.CA) (nodes []*testNode, addrs []string, follower *testNode) {
	t.Helper()
	secret := writeSecret(t)
	muxes := []*cluster.Mux{listen(t), listen(t), listen(t)}
	for _, m := range muxes {
		addrs = append(addrs, m.Addr().String())
	}
	for _, m := range muxes {
		nodes = append(nodes, startNodeWithCA(t, m, "", 3, addrs, secret, newCA()))
	}
	waitReady(t, nodes...)
	for _, n := range nodes {
		if !n.st.IsLeader() {
			follower = n
		}
	}
	return nodes, addrs, follower
}

// TestFormForwardAndRefuse: three in-process servers form a cluster with bootstrap_expect and
// retry_join over real cluster ports; a write through a follower reaches all three; status shows three
// voters and one leader; a server of another cluster ID cannot join; removing an unknown server is
// refused.
func TestFormForwardAndRefuse(t *testing.T) {
	nodes, addrs, follower := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if _, err := follower.st.CreateOwner(ctx, storage.Owner{Name: "alice"}); err != nil {
		t.Fatalf("a write through a follower: %v", err)
	}
	for i, n := range nodes {
		if err := n.st.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := n.st.Owner("alice"); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if got := len(n.st.Bundle().X509Authorities); got != 3 {
			t.Fatalf("node %d: %d X.509 authorities in the bundle, want one per server", i, got)
		}
	}

	st, err := follower.admin.Status(ctx, &clusterv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, n := range st.GetNodes() {
		if !n.GetVoter() || n.GetState() == "unreachable" {
			t.Fatalf("status: %+v", st.GetNodes())
		}
		if n.GetState() == "Leader" {
			leaders++
		}
	}
	if len(st.GetNodes()) != 3 || leaders != 1 {
		t.Fatalf("status: %d servers, %d leaders: %+v", len(st.GetNodes()), leaders, st.GetNodes())
	}

	other := startNode(t, listen(t), "blue", 0, nil, writeSecret(t))
	if _, _, err := other.node.Join(ctx, addrs[0]); !errors.Is(err, cluster.ErrWrongCluster) {
		t.Fatalf("join of another cluster ID: %v, want ErrWrongCluster", err)
	}
	if _, err := follower.admin.Remove(ctx, &clusterv1.RemoveRequest{NodeId: "node-nope"}); err == nil {
		t.Fatal("removing an unknown server succeeded")
	}
	if m, err := follower.st.Members(); err != nil || len(m) != 3 {
		t.Fatalf("members after refused changes: %v, %v", m, err)
	}

	// A removed server, still running, can no longer write through the leader.
	if _, err := follower.admin.Remove(ctx, &clusterv1.RemoveRequest{NodeId: follower.st.NodeID()}); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := follower.st.CreateOwner(short, storage.Owner{Name: "mallory"}); err == nil || !strings.Contains(err.Error(), "not in this cluster") {
		t.Fatalf("a write through a removed server: %v", err)
	}
	for _, n := range nodes {
		if n != follower && n.st.ReadBarrier(ctx) == nil {
			if _, err := n.st.Owner("mallory"); err == nil {
				t.Fatal("a removed server's write was applied")
			}
		}
	}
}

// TestRegisterAgainWhenRefused: a follower whose server SVID the leader refuses (here one signed by a
// CA outside the bundle; in life, one that expired while the follower was cut off) registers again with
// a new one and its write goes through.
func TestRegisterAgainWhenRefused(t *testing.T) {
	_, _, follower := startCluster(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromSegments(td, "signet", "server", follower.st.NodeID())
	foreign, err := testkit.NewCA(t, td, 0).SignX509SVID(ca.X509SVIDParams{SPIFFEID: id, PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bad := &tls.Certificate{Certificate: [][]byte{foreign.Raw}, PrivateKey: key, Leaf: foreign}
	follower.ident.InstallCertificate(bad)

	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if _, err := follower.st.CreateOwner(ctx, storage.Owner{Name: "alice"}); err != nil {
		t.Fatalf("a write after the leader refused the follower's SVID: %v", err)
	}
	if cur := follower.ident.Certificate(); cur == bad || cur == nil {
		t.Fatal("the follower did not register again with a new server SVID")
	}
}

// dialCluster is a client of the cluster API at addr presenting cert and trusting anything (as an
// attacker would; a server's own client verifies the peer), closed when the test ends.
func dialCluster(t *testing.T, addr string, cert *tls.Certificate) clusterv1.ClusterClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, Certificates: []tls.Certificate{*cert}})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return clusterv1.NewClusterClient(cc)
}
