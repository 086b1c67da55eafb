package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The reliability tests run three real servers and an agent per server under a load of JWT-SVID
// issuances (distinct audiences, so every fetch is a new credential and a new ledger record), inject
// faults (SIGKILL, snapshots, rolling restarts, partitions), and check what every caller was told
// against every server's ledger.

// loadServerLimits and loadAgentLimits lift the issuance limits of the servers and of the agents (JWT
// mints per uid) far above what the load generator reaches, so a refusal can only come from the fault.
const (
	loadServerLimits = "issuance_limits:\n  agent_rate: 100000\n  agent_burst: 1000000\n  entry_rate: 100000\n  entry_burst: 1000000\n"
	loadAgentLimits  = "jwt_mint_rate: 10000\njwt_mint_burst: 100000\n"
	// frequentSnapshots makes every server snapshot (and compact its log) after a few dozen entries, so
	// snapshots run all through the load, and a server that was down catches up by receiving one.
	frequentSnapshots = "  snapshot_threshold: 16\n  snapshot_interval: 100ms\n  trailing_logs: 16\n"
)

// loadCluster is a three-server cluster with one agent per server, each with one entry for this test's
// uid. An agent is configured with every server (its own first), or, pinned, with its own only.
type loadCluster struct {
	*testCluster
	agents []*testAgent
}

// newLoadCluster starts the three servers of tc (raftExtra appended to their raft sections) and three
// agents.
func newLoadCluster(t *testing.T, tc *testCluster, raftExtra string, pinned bool) *loadCluster {
	c := &loadCluster{testCluster: tc}
	for _, s := range c.servers {
		writeFile(t, s.config, string(mustRead(t, s.config))+raftExtra+loadServerLimits)
	}
	c.startAll()
	c.servers[0].mustCLI("owner", "add", "alice")
	for i, s := range c.servers {
		addrs := []string{s.address}
		for j, o := range c.servers {
			if j != i {
				addrs = append(addrs, o.address)
			}
		}
		a := s.newAgent(t, loadAgentLimits)
		if !pinned {
			a.useServers(t, addrs)
		}
		a.start(t, s.token("alice"))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent %d stderr:\n%s", i, a.stderr.String())
			}
		})
		s.mustCLI("entry", "create", "--spiffe-id", loadSPIFFEID(i), "--selector", myUID, "--owner", "alice",
			"--purpose", "load", "--parent-id", a.id)
		c.agents = append(c.agents, a)
	}
	for i, a := range c.agents {
		waitForIDs(t, a.socket, loadSPIFFEID(i))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, s := range c.servers {
				t.Logf("server %d stderr:\n%s", i, s.stderr.String())
			}
		}
	})
	return c
}

func loadSPIFFEID(i int) string { return fmt.Sprintf("spiffe://example.org/load/%d", i) }

// load is the running load generator: per agent, one workload fetching new JWT-SVIDs and one fetching
// its cached X.509-SVID.
type load struct {
	t      testing.TB
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	acked       map[string]string // JWT ID → SPIFFE ID, of every JWT-SVID a caller received
	refused     int               // JWT-SVID fetches that failed (allowed while a fault lasts)
	lastRefusal error
	cachedFails []error // failed fetches of a cached X.509-SVID (never allowed)
	cachedOK    int
}

// startLoad starts the load generator; stop ends it. Each agent's workload fetches a new JWT-SVID at
// most every pace (0: one right after the other).
func (c *loadCluster) startLoad(pace time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{t: c.t, cancel: cancel, acked: map[string]string{}}
	for i, a := range c.agents {
		client := newClient(c.t, ctx, a.socket)
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			var paced <-chan time.Time // nil: back to back
			if pace > 0 {
				tick := time.NewTicker(pace)
				defer tick.Stop()
				paced = tick.C
			}
			for n := 0; ctx.Err() == nil; n++ {
				l.issue(ctx, client, fmt.Sprintf("load-%d-%d", i, n))
				if paced != nil {
					select {
					case <-ctx.Done():
					case <-paced:
					}
				}
			}
		}()
		go func() {
			defer l.wg.Done()
			often := time.NewTicker(20 * time.Millisecond) // a workload reading its SVID often, not a sync
			defer often.Stop()
			for ctx.Err() == nil {
				l.fetchCached(ctx, client, loadSPIFFEID(i))
				select {
				case <-ctx.Done():
				case <-often.C:
				}
			}
		}()
	}
	c.t.Cleanup(l.stop) // before the clients close (cleanups run last first)
	return l
}

func (l *load) issue(ctx context.Context, client *workloadapi.Client, audience string) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svid, err := client.FetchJWTSVID(fctx, jwtsvid.Params{Audience: audience})
	if ctx.Err() != nil {
		return // stopped: neither an issuance nor a refusal
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.refused++
		l.lastRefusal = err
		return
	}
	jti, _ := svid.Claims["jti"].(string)
	if jti == "" {
		l.t.Errorf("a JWT-SVID without a jti: %v", svid.Claims)
		return
	}
	if _, dup := l.acked[jti]; dup {
		l.t.Errorf("JWT ID %s handed out twice", jti)
	}
	l.acked[jti] = svid.ID.String()
}

func (l *load) fetchCached(ctx context.Context, client *workloadapi.Client, want string) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	svid, err := client.FetchX509SVID(fctx)
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.cachedFails = append(l.cachedFails, err)
	case svid.ID.String() != want:
		l.cachedFails = append(l.cachedFails, fmt.Errorf("got %s, want %s", svid.ID, want))
	default:
		l.cachedOK++
	}
}

// issued is how many JWT-SVIDs callers have received so far.
func (l *load) issued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// more waits until callers have received n more JWT-SVIDs: issuance goes on (or has resumed).
func (l *load) more(n int, what string) {
	l.t.Helper()
	target := l.issued() + n
	eventually(l.t, 90*time.Second, fmt.Sprintf("%d more issuances %s", n, what), func() bool { return l.issued() >= target })
}

// stop ends the load and waits for its workloads; it is safe to call more than once.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// snapshot returns a copy of the acknowledged issuances and fails the test on any failed cached fetch.
func (l *load) snapshot() map[string]string {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.cachedFails) > 0 {
		l.t.Fatalf("%d of %d fetches of a cached X.509-SVID failed, first: %v", len(l.cachedFails), len(l.cachedFails)+l.cachedOK, l.cachedFails[0])
	}
	acked := make(map[string]string, len(l.acked))
	for k, v := range l.acked {
		acked[k] = v
	}
	l.t.Logf("%d JWT-SVIDs issued, %d fetches refused (last: %v), %d cached fetches served", len(l.acked), l.refused, l.lastRefusal, l.cachedOK)
	return acked
}

// noRefusals fails the test if any JWT-SVID fetch failed.
func (l *load) noRefusals() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refused > 0 {
		l.t.Fatalf("%d JWT-SVID fetches failed, the last: %v", l.refused, l.lastRefusal)
	}
}

// ledgerJWTs returns, per JWT ID, how many ledger records server s holds of the load's JWT-SVIDs.
func ledgerJWTs(t testing.TB, s *testServer) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i := range 3 {
		for _, r := range decodeJSON[[]issuanceView](t, s.mustCLI("ledger", "query", "--spiffe-id", loadSPIFFEID(i), "--limit", "10000000", "-o", "json")) {
			if r.Kind == "jwt-svid" {
				counts[r.ID]++
			}
		}
	}
	return counts
}

// checkLedgers waits until every server in live holds one ledger record of every acknowledged issuance,
// and fails on any record held twice. Once converged, every server holds the same records.
func (c *loadCluster) checkLedgers(acked map[string]string, live ...int) {
	c.t.Helper()
	var first map[string]int
	for _, i := range live {
		eventually(c.t, 60*time.Second, fmt.Sprintf("server %d's ledger to hold all %d acknowledged issuances", i, len(acked)), func() bool {
			counts := ledgerJWTs(c.t, c.servers[i])
			for jti, n := range counts {
				if n > 1 {
					c.t.Fatalf("server %d's ledger holds %d records of JWT ID %s", i, n, jti)
				}
			}
			for jti := range acked {
				if counts[jti] == 0 {
					return false
				}
			}
			if first == nil {
				first = counts
				return true
			}
			// The servers converge: each holds the records the first one held (more may have been
			// committed since, by issuances still in flight when the load stopped; none is lost).
			for jti := range first {
				if counts[jti] == 0 {
					return false
				}
			}
			return true
		})
	}
}

// killDuringSnapshot SIGKILLs server i while it writes a Raft snapshot: the moment its snapshot store
// holds a snapshot still being written (raft's "<id>.tmp" directory).
func (c *loadCluster) killDuringSnapshot(i int) {
	c.t.Helper()
	dir := filepath.Join(c.servers[i].dir, "data", "server", "snapshots")
	eventually(c.t, 60*time.Second, fmt.Sprintf("server %d to be writing a snapshot", i), func() bool {
		// Look a thousand times per check, back to back: a snapshot of this state is written in
		// milliseconds, less than Condition's interval.
		for range 1000 {
			entries, _ := os.ReadDir(dir)
			if slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasSuffix(e.Name(), ".tmp") }) {
				c.servers[i].kill9()
				return true
			}
		}
		return false
	})
}

// TestReliabilityKills: under load through all three servers, the leader is SIGKILLed, then a follower,
// then each again while it writes a snapshot (snapshots are taken every few dozen entries throughout).
// Each time a new leader serves (if needed), issuance resumes, cached SVIDs never fail, the killed server
// restarts and catches up (the others compacted their logs meanwhile, so from a snapshot), and every
// issuance a caller received is in every server's ledger exactly once.
func TestReliabilityKills(t *testing.T) {
	c := newLoadCluster(t, newTestCluster(t, 3), frequentSnapshots, false)
	l := c.startLoad(0) // back to back: a fault finds calls in flight
	l.more(30, "before any fault")

	for _, fault := range []struct {
		name   string
		leader bool // kill the leader, or a follower
		kill   func(int)
	}{
		{"leader SIGKILL", true, func(i int) { c.servers[i].kill9() }},
		{"follower SIGKILL", false, func(i int) { c.servers[i].kill9() }},
		{"leader SIGKILL during a snapshot", true, c.killDuringSnapshot},
		{"follower SIGKILL during a snapshot", false, c.killDuringSnapshot},
	} {
		victim := c.leaderIndex(0, 1, 2)
		if !fault.leader {
			victim = (victim + 1) % 3
		}
		var live []int
		for i := range 3 {
			if i != victim {
				live = append(live, i)
			}
		}
		fault.kill(victim)
		if got := c.leaderIndex(live...); got == victim {
			t.Fatalf("%s: the killed server %d is still the leader", fault.name, got)
		}
		l.more(30, "after the "+fault.name)
		c.checkLedgers(l.snapshot(), live...)

		c.servers[victim].start(t)
		l.more(30, "after the restart that followed the "+fault.name)
		c.checkLedgers(l.snapshot(), 0, 1, 2)
	}
	l.stop()
	c.checkLedgers(l.snapshot(), 0, 1, 2)
}

// TestReliabilityRollingRestart: under load, each server in turn is stopped (SIGINT: a leader hands
// over first), issuance goes on without it, and it restarts and catches up before the next one goes;
// no fetch fails at any point, neither of a cached X.509-SVID nor of a new JWT-SVID (a stopping server
// answers what it was asked, and a write it cannot take any more is sent to the new leader), and no
// acknowledged issuance is lost.
func TestReliabilityRollingRestart(t *testing.T) {
	c := newLoadCluster(t, newTestCluster(t, 3), "", false)
	l := c.startLoad(0) // back to back: a fault finds calls in flight
	l.more(30, "before the restarts")
	for i, s := range c.servers {
		s.stop()
		l.more(30, fmt.Sprintf("while server %d is stopped", i))
		s.start(t)
		c.checkLedgers(l.snapshot(), 0, 1, 2) // caught up before the next server goes
	}
	l.stop()
	c.checkLedgers(l.snapshot(), 0, 1, 2)
	l.noRefusals()
}

// newPartitionableCluster writes the configs of three servers that reach each other's cluster ports
// only through a faultNet: each advertises its proxy's address.
func newPartitionableCluster(t *testing.T) (*testCluster, *faultNet) {
	var binds []string
	for range 3 {
		binds = append(binds, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	fn := newFaultNet(t, binds)
	c := &testCluster{t: t, addrs: fn.addrs}
	secret := newJoinSecret(t)
	for i := range 3 {
		s := newTestServer(t)
		s.writeConfig(t, "example.org", fmt.Sprintf("  bind_address: %s\n  advertise_address: %s\n  bootstrap_expect: 3\n  retry_join: [%s]\n%s",
			binds[i], fn.addrs[i], strings.Join(fn.addrs, ", "), secret))
		c.servers = append(c.servers, s)
	}
	return c, fn
}

// TestReliabilityPartition: the leader, then a follower, is cut off from the other two servers (at the
// transport, by the test's proxies). The agent of the server cut off (each agent is pinned to its own
// server here) keeps serving cached SVIDs, and a new issuance through it is refused, before the
// workload's deadline, with an error saying the server cannot reach a quorum (so is an admin write); the
// majority elects a leader if it needs one and keeps issuing. Once the partition heals, the server
// rejoins and converges: every acknowledged issuance is in every ledger exactly once, and the refused
// write is nowhere.
func TestReliabilityPartition(t *testing.T) {
	tc, fn := newPartitionableCluster(t)
	c := newLoadCluster(t, tc, "", true)
	for i, s := range c.servers {
		fn.setPID(i, s.cmd.Process.Pid)
	}
	// Paced: the partitions last tens of seconds, and unpaced the agents would add thousands of records
	// to every ledger the test then reads.
	l := c.startLoad(20 * time.Millisecond)
	l.more(30, "before the partitions")
	for _, cutLeader := range []bool{true, false} {
		minority := c.leaderIndex(0, 1, 2)
		if !cutLeader {
			minority = (minority + 1) % 3
		}
		c.partition(fn, l, minority)
	}
	l.stop()
	c.checkLedgers(l.snapshot(), 0, 1, 2)
}

// partition cuts server minority off from the other two, checks that it refuses writes saying it cannot
// reach a quorum while the majority issues, heals the partition and waits until the minority issues
// again and every server holds every acknowledged issuance.
func (c *loadCluster) partition(fn *faultNet, l *load, minority int) {
	t := c.t
	t.Helper()
	majority := []int{(minority + 1) % 3, (minority + 2) % 3}
	fn.cut(minority)
	if got := c.leaderIndex(majority...); got == minority {
		t.Fatal("the cut-off server leads the majority")
	}
	l.more(30, "by the majority during the partition")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := newClient(t, ctx, c.agents[minority].socket)
	// An admin write through the cut-off server is refused the same way, meanwhile.
	type cliResult struct {
		stderr string
		code   int
	}
	owner := fmt.Sprintf("partitioned-%d", minority)
	adminWrite := make(chan cliResult, 1)
	go func() {
		_, stderr, code := c.servers[minority].cli("owner", "add", owner)
		adminWrite <- cliResult{stderr, code}
	}()
	fetchCtx, cancelFetch := context.WithTimeout(ctx, 40*time.Second)
	_, err := client.FetchJWTSVID(fetchCtx, jwtsvid.Params{Audience: owner})
	cancelFetch()
	if r := <-adminWrite; r.code == 0 || !strings.Contains(r.stderr, "cannot reach a majority (quorum)") {
		t.Fatalf("owner add through the cut-off server %d: exit %d, %q; want a refusal naming the quorum", minority, r.code, r.stderr)
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "cannot reach a majority (quorum) of the cluster's servers") {
		t.Fatalf("a JWT-SVID through the cut-off server %d: %v; want Unavailable saying it cannot reach a quorum", minority, err)
	}
	c.checkLedgers(l.snapshot(), majority...)

	fn.heal()
	n := 0
	eventually(t, 60*time.Second, fmt.Sprintf("an issuance through the healed server %d", minority), func() bool {
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		n++
		_, err := client.FetchJWTSVID(fctx, jwtsvid.Params{Audience: fmt.Sprintf("healed-%d-%d", minority, n)})
		return err == nil
	})
	l.more(30, "after the partition healed")
	c.checkLedgers(l.snapshot(), 0, 1, 2)
	for i, s := range c.servers {
		if hasOwner(s, owner) {
			t.Fatalf("server %d has the owner whose creation the cut-off server %d refused", i, minority)
		}
	}
}
