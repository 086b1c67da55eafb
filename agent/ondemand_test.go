package agent_test

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/proto/agentv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// waitHeld polls the agent's cache until cond holds, failing the test (naming what) after d.
func waitHeld(tb testing.TB, a *agent.Agent, d time.Duration, what string, cond func([]agent.HeldSVID) bool) []agent.HeldSVID {
	tb.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		held := a.Held()
		if cond(held) {
			return held
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("waited %s for %s; the agent holds %v", d, what, held)
			return held
		}
	}
}

// shortLivedOnDemand starts a server with one on-demand entry for uid 1000 whose SVIDs live 4s, and
// a synced agent for it.
func shortLivedOnDemand(t *testing.T, spiffeID string) (e *env, a *agent.Agent, entryID string) {
	t.Helper()
	e = newBufconnEnv(t)
	entryID = e.storeEntry(t, entrySpec{spiffeID: spiffeID, x509TTL: 4 * time.Second}) // below the admin API's minimum
	a, _ = startAgent(t, e.client(), nil)
	waitReady(t, a)
	return e, a, entryID
}

// TestMintOnDemand checks that an entry no workload asks for is never minted (not even by the
// bundle streams of a caller it matches), that a fetch mints it, and that a prefetch entry is minted
// before anyone asks.
func TestMintOnDemand(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	unused := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/unused", selectors: []string{"unix:uid:2000"}})
	used := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/used"})
	ahead := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/ahead", selectors: []string{"unix:uid:3000"}, prefetch: true})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	if held := a.Held(); len(held) != 1 || held[0].EntryID != ahead || !held[0].Prefetch {
		t.Fatalf("after start the agent holds %v, want only the prefetch entry", held)
	}
	// A bundle stream of a matching caller mints nothing.
	if b, _ := a.Bundles(sels(t, "unix:uid:2000")); !b.Entitled || len(b.X509Bundle) == 0 || len(b.SVIDs) != 0 {
		t.Fatalf("Bundles for the unused entry's caller: entitled %v, %d bundle bytes, %d SVIDs", b.Entitled, len(b.X509Bundle), len(b.SVIDs))
	}
	if b, _ := a.Bundles(sels(t, "unix:uid:9")); b.Entitled {
		t.Fatal("Bundles: a caller matching no entry is entitled")
	}
	fetchSVIDs(t, a, uid1000(t), 1)
	if n := ledgerCount(t, e.st, used); n != 1 {
		t.Fatalf("the fetched entry has %d ledger records, want 1", n)
	}
	if n := ledgerCount(t, e.st, unused); n != 0 {
		t.Fatalf("the entry nobody asked for has %d ledger records, want 0", n)
	}
}

// TestConcurrentFirstFetchesShareOneMint checks that workloads asking at once for an identity not
// minted yet all wait for, and get, the same single SVID.
func TestConcurrentFirstFetchesShareOneMint(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	id := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	const callers = 8
	serials := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { serials[i] = fetchSVIDs(t, a, uid1000(t), 1).SVIDs[0].Serial })
	}
	wg.Wait()
	for i, s := range serials {
		if s != serials[0] {
			t.Fatalf("caller %d got serial %s, caller 0 %s: want one shared SVID", i, s, serials[0])
		}
	}
	if n := ledgerCount(t, e.st, id); n != 1 {
		t.Fatalf("%d concurrent first fetches wrote %d ledger records, want 1", callers, n)
	}
}

// TestOpenStreamKeepsRotating checks that an open X.509 stream keeps its identity rotated at half
// life past the SVID lifetime without fetching again, and that once it closes the identity is
// dropped within a lifetime and renewals stop.
func TestOpenStreamKeepsRotating(t *testing.T) {
	t.Parallel()
	e, a, id := shortLivedOnDemand(t, "spiffe://example.org/short")
	release := a.KeepX509(uid1000(t))
	first := fetchSVIDs(t, a, uid1000(t), 1).SVIDs[0].Serial // the stream's first answer; no fetch after it
	seen := map[string]bool{first: true}
	// Three rotations take one and a half lifetimes: past what the one fetch keeps in use.
	waitHeld(t, a, testDeadline, "three rotations while the stream is open", func(held []agent.HeldSVID) bool {
		if len(held) == 1 {
			seen[held[0].Serial] = true
		}
		return len(seen) >= 4
	})
	release()
	waitHeld(t, a, testDeadline, "the unused identity to be dropped", func(held []agent.HeldSVID) bool { return len(held) == 0 })
	// Renewals stopped: at most one more SVID was minted after the last rotation seen.
	if n := ledgerCount(t, e.st, id); n > len(seen)+1 {
		t.Fatalf("%d ledger records for %d SVIDs seen: renewals went on after the stream closed", n, len(seen))
	}
	// A fetch brings it back.
	if s := fetchSVIDs(t, a, uid1000(t), 1).SVIDs[0].Serial; seen[s] {
		t.Fatalf("after the drop a fetch got serial %s again, want a new SVID", s)
	}
}

// TestFetchedOnceDroppedAfterLifetime checks that an identity fetched once, with no stream open, is
// renewed at most once and dropped from the cache once a lifetime has passed without a fetch.
func TestFetchedOnceDroppedAfterLifetime(t *testing.T) {
	t.Parallel()
	e, a, id := shortLivedOnDemand(t, "spiffe://example.org/once")
	fetchSVIDs(t, a, uid1000(t), 1)
	waitHeld(t, a, testDeadline, "the identity to be dropped", func(held []agent.HeldSVID) bool { return len(held) == 0 })
	if n := ledgerCount(t, e.st, id); n > 2 {
		t.Fatalf("one fetch led to %d SVIDs, want at most 2 (the first and one renewal)", n)
	}
}

// TestStatusService: the status lists the SVIDs the agent holds with their outage budget (time until
// expiry) and the minimum, over a real Unix socket, and refuses a uid the service does not admit.
func TestStatusService(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/long", x509TTL: 2 * time.Hour})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/short", x509TTL: 30 * time.Minute})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/unused", selectors: []string{"unix:uid:2000"}})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	fetchSVIDs(t, a, uid1000(t), 2)
	var admit atomic.Bool
	admit.Store(true)
	client := statusClient(t, agent.NewStatusService(a, func(uint32) bool { return admit.Load() }))
	r, err := client.Status(testCtx(t, testDeadline), &agentv1.AgentStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Svids) != 2 || r.Svids[0].SpiffeId != "spiffe://example.org/long" || r.Svids[1].SpiffeId != "spiffe://example.org/short" {
		t.Fatalf("status lists %v, want the two SVIDs in use", r.Svids)
	}
	long, short := r.Svids[0].OutageBudgetSeconds, r.Svids[1].OutageBudgetSeconds
	if long < 3600 || long > 7300 || short < 1500 || short > 1900 || r.MinOutageBudgetSeconds != short {
		t.Fatalf("outage budgets %ds and %ds, minimum %ds; want about 2h and 30m, minimum the 30m one", long, short, r.MinOutageBudgetSeconds)
	}
	admit.Store(false)
	if _, err := client.Status(testCtx(t, testDeadline), &agentv1.AgentStatusRequest{}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "uid") {
		t.Fatalf("status for a uid not admitted: %v, want PermissionDenied naming the uid", err)
	}
}

// statusClient serves svc on a Unix socket with peer credentials, as the agent's Workload API socket is.
func statusClient(t *testing.T, svc agentv1.AgentStatusServer) agentv1.AgentStatusClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(peercred.Credentials()))
	agentv1.RegisterAgentStatusServer(g, svc)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentv1.NewAgentStatusClient(conn)
}
