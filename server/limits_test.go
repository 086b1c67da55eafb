package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// agentAPI serves the server's own agent service over a real (in-memory) gRPC connection.
func (e *env) agentAPI(tb testing.TB) agentv1.AgentClient {
	tb.Helper()
	return agentv1.NewAgentClient(serveBufconn(tb, func(g *grpc.Server) { agentv1.RegisterAgentServer(g, e.srv.Agent) }))
}

// wantStatus fails the test unless err has code and its message contains msg.
func wantStatus(tb testing.TB, what string, err error, code codes.Code, msg string) {
	tb.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), msg) {
		tb.Fatalf("%s: %v; want %s saying %q", what, err, code, msg)
	}
}

func wantExhausted(tb testing.TB, what string, err error, msg string) {
	tb.Helper()
	wantStatus(tb, what, err, codes.ResourceExhausted, msg)
}

func jwtRequest(entryID string) *agentv1.SignJWTSVIDRequest {
	return &agentv1.SignJWTSVIDRequest{EntryId: entryID, Audience: []string{"db"}}
}

// A batch of N requests costs the agent N tokens, whatever the requests ask for; an agent that spent
// its burst is refused with ResourceExhausted naming the limit until its bucket refills, by the server's
// clock.
func TestIssuanceRateLimitPerAgent(t *testing.T) {
	clock := newManualClock()
	e := newEnvConfig(t, func(c *Config) {
		c.Clock = clock.now
		c.IssuanceLimits = issuer.IssuanceLimits{AgentRate: 1, AgentBurst: issuer.MaxCSRBatch}
	}, nil)
	e.owner(t, "alice")
	ent := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	client := e.agentAPI(t)

	batch := make([]*agentv1.X509SVIDRequest, issuer.MaxCSRBatch)
	for i := range batch {
		batch[i] = &agentv1.X509SVIDRequest{EntryId: "not-an-entry", Csr: []byte{1}}
	}
	resp, err := client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: batch})
	if err != nil || len(resp.Results) != issuer.MaxCSRBatch {
		t.Fatalf("a batch of the burst's size: %v", err)
	}
	one := &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: ent.ID, Csr: csrFor(t, newP256(t), nil)}}}
	_, err = client.SignX509SVIDs(testCtx(t), one)
	wantExhausted(t, "X.509 after the burst", err, "issuance rate limit per agent reached (1 SVIDs/s, burst 1000: issuance_limits.agent_rate, agent_burst; 1 asked)")
	_, err = client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID))
	wantExhausted(t, "JWT after the burst", err, "issuance rate limit per agent")

	// Another agent has its own bucket.
	theirs := e.entry(t, "spiffe://example.org/b", agentB, "alice", nil)
	clientB := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentB, NodeAttestation: "test"}))
	if _, err := clientB.SignJWTSVID(testCtx(t), jwtRequest(theirs.ID)); err != nil {
		t.Fatalf("agent B while agent A is limited: %v", err)
	}

	clock.advance(time.Second)
	resp, err = client.SignX509SVIDs(testCtx(t), one)
	if err != nil || resp.Results[0].ErrorCode != 0 {
		t.Fatalf("after a second's refill: %v %v", err, resp)
	}
	if n := ledgerCount(t, e.st, storage.LedgerQuery{Agent: agentA.String()}); n != 1 {
		t.Fatalf("ledger holds %d records of agent A, want 1 (refusals record nothing)", n)
	}
}

// Each entry has a bucket per agent: an entry minted too often is refused (in a batch, only its own
// results are), while the agent's other entries go on.
func TestIssuanceRateLimitPerEntry(t *testing.T) {
	clock := newManualClock()
	e := newEnvConfig(t, func(c *Config) {
		c.Clock = clock.now
		c.IssuanceLimits = issuer.IssuanceLimits{EntryRate: 1, EntryBurst: 2}
	}, nil)
	e.owner(t, "alice")
	busy := e.entry(t, "spiffe://example.org/busy", agentA, "alice", nil)
	calm := e.entry(t, "spiffe://example.org/calm", agentA, "alice", nil)
	client := e.agentAPI(t)

	for range 2 {
		if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(busy.ID)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := client.SignJWTSVID(testCtx(t), jwtRequest(busy.ID))
	wantExhausted(t, "third JWT of a burst of 2", err, "issuance rate limit per entry and agent reached (1 SVIDs/s, burst 2: issuance_limits.entry_rate, entry_burst)")

	resp, err := client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{
		{EntryId: calm.ID, Csr: csrFor(t, newP256(t), nil)},
		{EntryId: busy.ID, Csr: csrFor(t, newP256(t), nil)},
		{EntryId: calm.ID, Csr: csrFor(t, newP256(t), nil)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []codes.Code{codes.OK, codes.ResourceExhausted, codes.OK} {
		if got := codes.Code(resp.Results[i].ErrorCode); got != want {
			t.Fatalf("result %d: %s (%s), want %s", i, got, resp.Results[i].ErrorMessage, want)
		}
	}
	if !strings.Contains(resp.Results[1].ErrorMessage, "per entry") {
		t.Fatalf("refused result says %q, want it to name the per-entry limit", resp.Results[1].ErrorMessage)
	}
	clock.advance(time.Second)
	if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(busy.ID)); err != nil {
		t.Fatalf("after a second's refill: %v", err)
	}
}

// Below min_free_disk free under the data directory, the server refuses every issuance (workload and
// agent SVIDs) with ResourceExhausted, and resumes once space is back. As root (CI) this runs against a
// real 16 MiB tmpfs that the test fills; not as root no file system can be mounted, and the free space
// is simulated through the injectable FreeDisk function instead.
func TestDiskNearlyFullRefusesIssuance(t *testing.T) {
	dir := t.TempDir()
	free := issuer.StatfsFree
	var fill, unfill func()
	if os.Geteuid() == 0 {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
		big := filepath.Join(dir, "filler")
		fill = func() {
			if err := os.WriteFile(big, make([]byte, 14<<20), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		unfill = func() {
			if err := os.Remove(big); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		var full atomic.Bool
		free = func(string) (uint64, error) {
			if full.Load() {
				return 2 << 20, nil
			}
			return 16 << 20, nil
		}
		fill, unfill = func() { full.Store(true) }, func() { full.Store(false) }
	}
	clock := newManualClock()
	e := newEnvConfig(t, func(c *Config) {
		c.Clock, c.DataDir, c.MinFreeDisk, c.FreeDisk = clock.now, dir, 4<<20, free
	}, nil)
	e.owner(t, "alice")
	ent := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	client := e.agentAPI(t)
	if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID)); err != nil {
		t.Fatalf("with room on disk: %v", err)
	}
	fill()
	clock.advance(issuer.DiskCheckEvery)
	_, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID))
	wantExhausted(t, "JWT on a nearly full disk", err, "server disk nearly full: 2 MiB free under data_dir "+dir+", below min_free_disk (4 MiB)")
	_, err = client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: ent.ID, Csr: csrFor(t, newP256(t), nil)}}})
	wantExhausted(t, "X.509 on a nearly full disk", err, "server disk nearly full")
	_, tok := e.joinToken(t, "alice", "")
	_, err = client.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)})
	wantExhausted(t, "agent attestation on a nearly full disk", err, "server disk nearly full")

	unfill()
	clock.advance(issuer.DiskCheckEvery)
	if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID)); err != nil {
		t.Fatalf("with room on disk again: %v", err)
	}
	if _, err := client.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)}); err != nil {
		t.Fatalf("attestation with room on disk again (the refused one must not consume the token): %v", err)
	}
}

// The free space is read at most once per issuer.DiskCheckEvery, not per request.
func TestDiskCheckIsCached(t *testing.T) {
	var reads atomic.Int32
	clock := newManualClock()
	e := newEnvConfig(t, func(c *Config) {
		c.Clock, c.DataDir = clock.now, t.TempDir()
		c.FreeDisk = func(dir string) (uint64, error) { reads.Add(1); return issuer.StatfsFree(dir) }
	}, nil)
	e.owner(t, "alice")
	ent := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	client := e.agentAPI(t)
	for range 10 {
		if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID)); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(issuer.DiskCheckEvery)
	if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID)); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("free space read %d times for 11 requests over two intervals, want 2", n)
	}
}

// On a nearly full disk a new agent is refused, but a running agent still renews its SVID: refused
// until its SVID expired, it would need a new join token.
func TestAgentRenewalOnNearlyFullDisk(t *testing.T) {
	var full atomic.Bool
	e := newTLSEnvWith(t, func(c *Config) {
		c.DataDir, c.MinFreeDisk = t.TempDir(), 4<<20
		c.FreeDisk = func(string) (uint64, error) {
			if full.Load() {
				return 2 << 20, nil
			}
			return 16 << 20, nil
		}
	})
	e.owner(t, "alice")
	svid := e.attest(t)
	full.Store(true)
	e.clock.advance(issuer.DiskCheckEvery)
	_, tok := e.joinToken(t, "alice", "")
	_, err := e.dial(t, nil).AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)})
	wantExhausted(t, "a new agent on a nearly full disk", err, "server disk nearly full")
	resp, err := e.dial(t, svid).RenewAgent(testCtx(t), &agentv1.RenewAgentRequest{Csr: csrFor(t, newP256(t), nil)})
	if err != nil || len(resp.SvidChain) == 0 {
		t.Fatalf("renewal on a nearly full disk: %v; want a new agent SVID", err)
	}
}

// Requests refused by a limit of the server are logged on the server too (operators must see which
// agent and entry hit which limit), a bounded number of lines however many there are.
func TestIssuanceLimitRefusalsLogged(t *testing.T) {
	var logs testkit.SyncBuffer
	e := newEnvConfig(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.IssuanceLimits = issuer.IssuanceLimits{EntryRate: 0.001, EntryBurst: 1}
	}, nil)
	e.owner(t, "alice")
	ent := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	client := e.agentAPI(t)
	if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID)); err != nil {
		t.Fatalf("within the burst: %v", err)
	}
	for range 500 {
		_, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID))
		wantExhausted(t, "past the entry's burst", err, "issuance rate limit per entry")
	}
	out := logs.String()
	lines := strings.Count(out, "SVID request refused by a server limit")
	if lines == 0 || !strings.Contains(out, agentA.String()) || !strings.Contains(out, ent.ID) || !strings.Contains(out, "entry_rate") {
		t.Fatalf("no log line naming the agent, the entry and the limit:\n%s", out)
	}
	if lines > apierr.RefusalLogBurst {
		t.Fatalf("500 refusals logged %d lines, want at most %d", lines, apierr.RefusalLogBurst)
	}
}

// A node below min_free_disk is not healthy: its health check says the disk is nearly full (issuance
// is refused), and is healthy again once there is room.
func TestHealthReportsDiskNearlyFull(t *testing.T) {
	var full atomic.Bool
	clock := newManualClock()
	e := newEnvConfig(t, func(c *Config) {
		c.Clock, c.DataDir, c.MinFreeDisk = clock.now, t.TempDir(), 4<<20
		c.FreeDisk = func(string) (uint64, error) {
			if full.Load() {
				return 2 << 20, nil
			}
			return 16 << 20, nil
		}
	}, nil)
	statuses := health.NewServer()
	client := healthpb.NewHealthClient(serveBufconn(t, func(g *grpc.Server) {
		healthpb.RegisterHealthServer(g, NewHealthService(statuses, e.srv))
	}))
	check := func() error {
		_, err := client.Check(testCtx(t), &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("with room on disk: %v", err)
	}
	full.Store(true)
	clock.advance(issuer.DiskCheckEvery)
	wantExhausted(t, "health below min_free_disk", check(), "server disk nearly full")
	full.Store(false)
	clock.advance(issuer.DiskCheckEvery)
	if err := check(); err != nil {
		t.Fatalf("with room on disk again: %v", err)
	}
}
