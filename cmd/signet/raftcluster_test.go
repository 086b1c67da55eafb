package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/clusterv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// testCluster is n 'signet server' processes on 127.0.0.1 configured to form one cluster.
type testCluster struct {
	t       testing.TB
	servers []*testServer
	addrs   []string // cluster addresses
}

// newJoinSecret writes a new cluster join secret file, as docs/configuration.md says to, and returns
// the raft.join_secret_file line naming it.
func newJoinSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "join.secret")
	writeFile(t, path, base64.StdEncoding.EncodeToString(b)+"\n")
	return "  join_secret_file: " + path + "\n"
}

// newTestCluster writes the configs of n servers with raft.bootstrap_expect n, each other's cluster
// addresses in raft.retry_join and one join secret (without starting them).
func newTestCluster(t testing.TB, n int) *testCluster {
	c := &testCluster{t: t}
	for range n {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	secret := newJoinSecret(t)
	for i := range n {
		s := newTestServer(t)
		s.writeConfig(t, "example.org", fmt.Sprintf("  bind_address: %s\n  bootstrap_expect: %d\n  retry_join: [%s]\n%s",
			c.addrs[i], n, strings.Join(c.addrs, ", "), secret))
		c.servers = append(c.servers, s)
	}
	return c
}

// startAll starts every server at once (each waits for the others) and waits until all serve.
func (c *testCluster) startAll() {
	for _, s := range c.servers {
		s.proc = startProc(c.t, "server", "server", "--config", s.config)
	}
	for _, s := range c.servers {
		s.waitLine("Agent API:", 60*time.Second)
		writeFile(c.t, s.bundlePath, s.mustCLI("bundle", "show"))
	}
}

type clusterStatus []clusterNodeView

func (c *testCluster) status(s *testServer) clusterStatus {
	return decodeJSON[clusterStatus](c.t, s.mustCLI("cluster", "status", "-o", "json"))
}

// leaderIndex waits until the servers in live agree on one leader among them, and returns its index.
func (c *testCluster) leaderIndex(live ...int) int {
	c.t.Helper()
	leader := -1
	eventually(c.t, 30*time.Second, "one leader that every live server knows", func() bool {
		ids := map[string]bool{}
		for _, i := range live {
			out, _, code := c.servers[i].cli("cluster", "status", "-o", "json")
			if code != 0 {
				return false
			}
			for _, n := range decodeJSON[clusterStatus](c.t, out) {
				if n.State == "Leader" {
					ids[n.NodeID] = true
				}
			}
		}
		if len(ids) != 1 {
			return false
		}
		for _, i := range live {
			for id := range ids {
				if c.nodeID(i) == id {
					leader = i
				}
			}
		}
		return leader >= 0
	})
	return leader
}

func (c *testCluster) nodeID(i int) string {
	out := c.servers[i].mustCLI("cluster", "status", "-o", "json")
	for _, n := range decodeJSON[clusterStatus](c.t, out) {
		if n.Address == c.addrs[i] {
			return n.NodeID
		}
	}
	c.t.Fatalf("server %d (%s) is not in its own cluster status", i, c.addrs[i])
	return ""
}

// hasOwner reports whether server i lists owner.
func hasOwner(s *testServer, owner string) bool {
	out, _, code := s.cli("owner", "list")
	return code == 0 && strings.Contains(out, owner)
}

// TestThreeServerCluster: three servers form a cluster with bootstrap_expect and retry_join; status shows
// three voters and one leader; writes through a follower reach every server; an agent attested through
// a follower gets SVIDs; the leader is SIGKILLed, a new one takes over, writes through the survivors
// work, the killed server restarts and catches up; a dead server is removed; bad requests are refused.
func TestThreeServerCluster(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startAll()

	st := c.status(c.servers[0])
	leaders := 0
	for _, n := range st {
		if !n.Voter {
			t.Fatalf("%s is not a voter: %+v", n.NodeID, st)
		}
		if n.State == "Leader" {
			leaders++
		}
	}
	if len(st) != 3 || leaders != 1 {
		t.Fatalf("cluster status: want 3 voters, 1 leader: %+v", st)
	}
	leader := c.leaderIndex(0, 1, 2)
	f1, f2 := (leader+1)%3, (leader+2)%3
	follower := c.servers[f1]

	// An entry created through a follower's admin socket is visible on all three.
	follower.mustCLI("owner", "add", "alice")
	token := follower.token("alice")
	a := follower.newAgent(t, "").start(t, token) // attested through the follower
	follower.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice",
		"--purpose", "web", "--parent-id", a.id)
	for i, s := range c.servers {
		eventually(t, 15*time.Second, fmt.Sprintf("the entry on server %d", i), func() bool {
			out, _, code := s.cli("entry", "list")
			return code == 0 && strings.Contains(out, "spiffe://example.org/web")
		})
	}
	waitForIDs(t, a.socket, "spiffe://example.org/web")
	// The ledger lookup through another server sees the agent's issuance at once (a read-index read).
	recs := decodeJSON[[]issuanceView](t, c.servers[f2].mustCLI("ledger", "query", "--agent", a.id, "-o", "json"))
	if len(recs) == 0 {
		t.Fatalf("ledger on server %d lacks the agent's issuances", f2)
	}
	// Records signed on a follower and committed through the leader name the follower's CA key: the
	// agent SVID's record names the key its certificate says signed it.
	block, _ := pem.Decode(mustRead(t, filepath.Join(a.dir, "data", "agent_svid.pem")))
	agentCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer := ca.SignerKeyID(agentCert)
	bySigner := decodeJSON[[]issuanceView](t, c.servers[f2].mustCLI("ledger", "query", "--signed-by", signer, "--valid-at", "now", "-o", "json"))
	if !slices.ContainsFunc(bySigner, func(r issuanceView) bool { return r.ID == agentCert.SerialNumber.Text(16) }) ||
		slices.ContainsFunc(recs, func(r issuanceView) bool { return r.SignedBy == "" }) {
		t.Fatalf("ledger query --signed-by %s (the agent SVID's signer): %+v; want the agent SVID (and every record of the agent, %+v, signed)", signer, bySigner, recs)
	}

	// A large write through a follower: 10,000 entries with long purposes in one import, whose result
	// (the 10,000 stored entries, JSON) is over gRPC's default 4 MiB message size.
	var b strings.Builder
	purpose := strings.Repeat("p", 200)
	for i := range 10000 {
		fmt.Fprintf(&b, "- spiffe_id: spiffe://example.org/bench/%d\n  selectors: [%s]\n  owner: alice\n  purpose: %s\n  parent_id: spiffe://example.org/nobody\n", i, myUID, purpose)
	}
	importFile := filepath.Join(t.TempDir(), "entries.yaml")
	writeFile(t, importFile, b.String())
	follower.mustCLI("entry", "import", importFile)
	eventually(t, 30*time.Second, "the imported entries on another server", func() bool {
		out, _, code := c.servers[f2].cli("entry", "list", "--parent-id", "spiffe://example.org/nobody", "-o", "json")
		return code == 0 && strings.Count(out, "spiffe://example.org/bench/") == 10000
	})

	// Bad input, each refused with a clear error and nothing changed.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"remove unknown", []string{"cluster", "remove", "node-nope"}, "no such server"},
		{"join while a member", []string{"cluster", "join", c.addrs[leader]}, "already part of a cluster"},
	} {
		if _, stderr, code := follower.cli(tc.args...); code == 0 || !strings.Contains(stderr, tc.want) {
			t.Fatalf("%s: exit %d, %q does not say %q", tc.name, code, stderr, tc.want)
		}
	}

	// The leader dies: writes through the survivors, made at once, wait out the election instead of
	// failing; a new leader takes over.
	c.servers[leader].kill9()
	c.servers[f1].mustCLI("owner", "add", "bob")
	c.servers[f2].mustCLI("owner", "add", "carol")
	if newLeader := c.leaderIndex(f1, f2); newLeader == leader {
		t.Fatal("the killed server is still the leader")
	}
	// The killed server restarts and catches up.
	c.servers[leader].start(t)
	eventually(t, 30*time.Second, "the restarted server has caught up", func() bool {
		return hasOwner(c.servers[leader], "bob") && hasOwner(c.servers[leader], "carol")
	})

	// Removing a dead server: stop one, remove it; the other two go on.
	gone := c.servers[f2]
	goneID := c.nodeID(f2)
	gone.stop()
	c.servers[f1].mustCLI("cluster", "remove", goneID)
	eventually(t, 15*time.Second, "two servers left", func() bool {
		return len(c.status(c.servers[f1])) == 2
	})
	c.servers[leader].mustCLI("owner", "add", "dave")
	eventually(t, 15*time.Second, "a write after the removal on both servers", func() bool {
		return hasOwner(c.servers[f1], "dave") && hasOwner(c.servers[leader], "dave")
	})
}

// newLoneServer writes the config of a server that starts in no cluster (raft.bootstrap: false, no
// retry_join): it waits for 'signet cluster join'. extra is appended to its raft section.
func newLoneServer(t *testing.T, td, extra string) *testServer {
	s := newTestServer(t)
	s.writeConfig(t, td, fmt.Sprintf("  bind_address: 127.0.0.1:%d\n  bootstrap: false\n%s", freePort(t), extra))
	s.proc = startProc(t, "server", "server", "--config", s.config)
	s.waitLine("Signet server", 30*time.Second)
	return s
}

// TestClusterJoinAndBadInput: a server started alone joins a one-server cluster with 'cluster join' and
// serves; joining a server of another trust domain or cluster ID, with a node ID that is taken, through
// an unreachable address, with another join secret or none is refused with a clear error and changes
// nothing (neither the members nor the bundle's X.509 authorities); removing the last voter is refused.
func TestClusterJoinAndBadInput(t *testing.T) {
	secret := newJoinSecret(t)
	first := newTestServer(t)
	first.writeConfig(t, "example.org", fmt.Sprintf("  bind_address: 127.0.0.1:%d\n%s", freePort(t), secret))
	first.start(t)
	firstAddr := decodeJSON[clusterStatus](t, first.mustCLI("cluster", "status", "-o", "json"))[0]
	if firstAddr.State != "Leader" {
		t.Fatalf("a single server is not its own leader: %+v", firstAddr)
	}
	members := func() int { return len(decodeJSON[clusterStatus](t, first.mustCLI("cluster", "status", "-o", "json"))) }
	authorities := func() int { return strings.Count(first.mustCLI("bundle", "show"), "BEGIN CERTIFICATE") }
	authoritiesBefore := authorities()

	if _, stderr, code := first.cli("cluster", "remove", firstAddr.NodeID); code == 0 || !strings.Contains(stderr, "last voter") {
		t.Fatalf("remove the last voter: exit %d, %s", code, stderr)
	}
	tests := []struct {
		name, td, extra, addr, want string
	}{
		{"other trust domain", "other.org", secret, firstAddr.Address, `trust domain "example.org", this node's is "other.org"`},
		{"other cluster ID", "example.org", secret + "  cluster_id: blue\n", firstAddr.Address, `raft.cluster_id "signet", this node's is "blue"`},
		{"node ID taken", "example.org", secret + "  node_id: " + firstAddr.NodeID + "\n", firstAddr.Address, "node ID " + firstAddr.NodeID + " is taken"},
		{"unreachable", "example.org", secret, fmt.Sprintf("127.0.0.1:%d", freePort(t)), "unreachable"},
		{"other join secret", "example.org", newJoinSecret(t), firstAddr.Address, "join secret does not match raft.join_secret_file of the cluster"},
		{"no join secret", "example.org", "", firstAddr.Address, "this server has no raft.join_secret_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lone := newLoneServer(t, tc.td, tc.extra)
			if _, stderr, code := lone.cli("cluster", "join", tc.addr); code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, %q does not say %q", code, stderr, tc.want)
			}
			if n, a := members(), authorities(); n != 1 || a != authoritiesBefore {
				t.Fatalf("a refused join changed the cluster: %d servers, %d X.509 authorities (%d before)", n, a, authoritiesBefore)
			}
		})
	}

	// The cluster port refuses a write from a caller without a server SVID of the trust domain.
	cc, err := grpc.NewClient(firstAddr.Address, grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = clusterv1.NewClusterClient(cc).Forward(ctx, &clusterv1.ForwardRequest{Command: []byte{1, '{', '}'}})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "server SVID") {
		t.Fatalf("forward without a server SVID: %v, want Unauthenticated", err)
	}

	// A good join: the new server becomes a voter, gets the state and serves agents.
	first.mustCLI("owner", "add", "alice")
	second := newLoneServer(t, "example.org", secret)
	if out, _, code := second.cli("healthcheck", "--timeout", "200ms"); code == 0 {
		t.Fatalf("a server in no cluster reports healthy: %s", out)
	}
	if out := second.mustCLI("cluster", "join", firstAddr.Address); !strings.Contains(out, "Joined the cluster") {
		t.Fatalf("cluster join: %s", out)
	}
	if out := second.mustCLI("healthcheck"); !strings.Contains(out, "SERVING") {
		t.Fatalf("healthcheck after the join: %s", out)
	}
	second.waitLine("Agent API:", 30*time.Second)
	if members() != 2 || !hasOwner(second, "alice") {
		t.Fatalf("after the join: %d servers; alice on the new server: %v", members(), hasOwner(second, "alice"))
	}
	writeFile(t, second.bundlePath, second.mustCLI("bundle", "show"))
	a := second.newAgent(t, "").start(t, second.token("alice"))
	second.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice",
		"--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")
}

// TestAgentFailsOver: an agent configured with every server's address connects to one; when that server
// is SIGKILLed the agent keeps serving its cached SVIDs, moves to another server, and receives entries
// created after the kill.
func TestAgentFailsOver(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startAll()
	s0 := c.servers[0]
	s0.mustCLI("owner", "add", "alice")
	a := s0.newAgent(t, "")
	var addrs []string
	for _, s := range c.servers {
		addrs = append(addrs, s.address)
	}
	a.useServers(t, addrs)
	a.start(t, s0.token("alice"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})
	s0.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice",
		"--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	// The server the agent talks to is the one that signed its workload SVID.
	recs := decodeJSON[[]issuanceView](t, s0.mustCLI("ledger", "query", "--spiffe-id", "spiffe://example.org/web", "-o", "json"))
	if len(recs) == 0 {
		t.Fatal("no ledger record of the workload SVID")
	}
	victim := -1
	for i := range c.servers {
		if c.nodeID(i) == recs[0].Node {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("the SVID was signed by %q, no server of the cluster", recs[0].Node)
	}
	c.servers[victim].kill9()
	waitForIDs(t, a.socket, "spiffe://example.org/web") // the cache serves meanwhile

	other := c.servers[(victim+1)%3]
	other.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/api", "--selector", myUID, "--owner", "alice",
		"--purpose", "api", "--parent-id", a.id)
	eventually(t, 60*time.Second, "the new entry's SVID through another server", func() bool {
		ids, err := spiffeIDs(t, a.socket)
		return err == nil && len(ids) == 2
	})
}
