package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	client := agentv1.NewAgentClient(nil)
	for _, tc := range []struct {
		name string
		cfg  agent.Config
		want string
	}{
		{"no client", agent.Config{TrustDomain: testTD}, "Client is required"},
		{"no trust domain", agent.Config{Client: client}, "TrustDomain is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := agent.New(tc.cfg)
			if err == nil || a != nil {
				t.Fatalf("New(%+v) = %v, %v; want an error", tc.cfg, a, err)
			}
			if !containsAll(err.Error(), tc.want) {
				t.Fatalf("New error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestSyncAndMint checks that the entries parented to the agent, and only those, are served with
// SVIDs that verify against the bundle served alongside them, minted when first asked for.
func TestSyncAndMint(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	web := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/db", x509TTL: 2 * time.Hour})
	// Another agent's entries, one with the same selectors, one with its own.
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/other-node", parent: agentB})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/other-uid", parent: agentB, selectors: []string{"unix:uid:2000"}})

	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)

	// Nothing was minted ahead: the first fetch waits for its SVIDs.
	if first, _ := a.Identities(uid1000(t)); !first.Pending || len(first.SVIDs) != 0 {
		t.Fatalf("first fetch: %d SVIDs, pending %v; want none yet, pending", len(first.SVIDs), first.Pending)
	}
	ids := waitIdentities(t, a, uid1000(t), testDeadline, "both SVIDs", func(ids workloadapi.Identities) bool { return !ids.Pending })
	if ids.TrustDomain != testTD {
		t.Fatalf("TrustDomain %v, want %v", ids.TrustDomain, testTD)
	}
	if got, want := svidIDs(ids), map[string]bool{"spiffe://example.org/web": true, "spiffe://example.org/db": true}; !mapsEqual(got, want) {
		t.Fatalf("SVIDs for %v, want %v", got, want)
	}
	// Stable order: by SPIFFE ID.
	if ids.SVIDs[0].SPIFFEID != "spiffe://example.org/db" {
		t.Fatalf("SVIDs not sorted by SPIFFE ID: %s first", ids.SVIDs[0].SPIFFEID)
	}
	for _, s := range ids.SVIDs {
		leaf := checkSVID(t, ids, s)
		// The leaf's lifetime is the entry's TTL (plus the CA's backdating).
		wantTTL := time.Hour
		if s.SPIFFEID == "spiffe://example.org/db" {
			wantTTL = 2 * time.Hour
		}
		if got := leaf.NotAfter.Sub(time.Now()); got > wantTTL || got < wantTTL-time.Minute {
			t.Fatalf("SVID %s expires in %s, want about %s", s.SPIFFEID, got, wantTTL)
		}
	}
	// The served bundle is the store's.
	wantRoots := e.roots()
	gotRoots, err := x509.ParseCertificates(ids.X509Bundle)
	if err != nil || len(gotRoots) != len(wantRoots) || !gotRoots[0].Equal(wantRoots[0]) {
		t.Fatalf("X509Bundle: %d roots (%v), want the store's %d", len(gotRoots), err, len(wantRoots))
	}
	if _, ok := ids.JWTAuthorities.FindJWTAuthority(e.ca.JWTKeyID()); !ok {
		t.Fatalf("JWTAuthorities %v lacks the CA's key %s", ids.JWTAuthorities.JWTAuthorities(), e.ca.JWTKeyID())
	}
	jb, err := jwtbundle.Parse(testTD, ids.JWTBundle)
	if err != nil || !jb.HasJWTAuthority(e.ca.JWTKeyID()) {
		t.Fatalf("JWTBundle does not carry the CA's key: %v", err)
	}
	if ids.BundleSequence != e.st.Bundle().Sequence {
		t.Fatalf("BundleSequence %d, store's %d", ids.BundleSequence, e.st.Bundle().Sequence)
	}

	// A caller matching only agent B's selectors sees nothing, and nothing is pending for it.
	other, _ := a.Identities(sels(t, "unix:uid:2000"))
	if len(other.SVIDs) != 0 || other.Pending {
		t.Fatalf("caller with agent B's selectors got %v (pending %v)", svidIDs(other), other.Pending)
	}

	// Every SVID the agent holds was recorded in the ledger as issued through agent A.
	page, err := e.st.QueryLedger(storage.LedgerQuery{EntryID: web})
	if err != nil || len(page.Issuances) == 0 {
		t.Fatalf("ledger for entry %s: %d records, %v", web, len(page.Issuances), err)
	}
	if s, _ := findSVID(ids, "spiffe://example.org/web"); !slices.ContainsFunc(page.Issuances, func(r storage.Issuance) bool {
		return r.ID == s.Serial && r.Agent == agentA.String()
	}) {
		t.Fatalf("serial %s of the served SVID is not in the ledger as issued through %s", s.Serial, agentA)
	}
}

// TestSelectorSubset checks that an entry matches a caller whose selectors include all of the
// entry's, whatever the order or duplicates, and no other caller.
func TestSelectorSubset(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	const both, uidOnly = "spiffe://example.org/both", "spiffe://example.org/uid-only"
	e.entry(t, entrySpec{spiffeID: both, selectors: []string{"unix:uid:1", "unix:gid:2"}, prefetch: true})
	e.entry(t, entrySpec{spiffeID: uidOnly, selectors: []string{"unix:uid:1"}, prefetch: true})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)

	for _, tc := range []struct {
		name   string
		caller []string
		want   []string
	}{
		{"superset", []string{"unix:uid:1", "unix:gid:2", "unix:user:x"}, []string{both, uidOnly}},
		{"exact", []string{"unix:uid:1", "unix:gid:2"}, []string{both, uidOnly}},
		{"unsorted superset", []string{"unix:user:x", "unix:gid:2", "unix:uid:1"}, []string{both, uidOnly}},
		{"duplicates", []string{"unix:gid:2", "unix:uid:1", "unix:uid:1", "unix:gid:2"}, []string{both, uidOnly}},
		{"uid only", []string{"unix:uid:1"}, []string{uidOnly}},
		{"uid and user", []string{"unix:uid:1", "unix:user:x"}, []string{uidOnly}},
		{"gid only", []string{"unix:gid:2"}, nil},
		{"other gid", []string{"unix:uid:10", "unix:gid:2"}, nil},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, _ := a.Identities(sels(t, tc.caller...))
			if ids.Pending {
				t.Fatal("Pending after WaitReady")
			}
			var got []string
			for _, s := range ids.SVIDs {
				got = append(got, s.SPIFFEID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("caller %v gets %v, want %v", tc.caller, got, tc.want)
			}
		})
	}
}

// TestUsesSelector: the agent tells whether any of its entries uses a selector key (the attestor
// hashes executables only while some entry has a unix:sha256 selector), following entries as they
// are created and deleted.
func TestUsesSelector(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/by-uid"})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	if a.UsesSelector("unix", "sha256") || !a.UsesSelector("unix", "uid") {
		t.Fatalf("with one unix:uid entry: uses sha256 %v, uid %v; want false, true", a.UsesSelector("unix", "sha256"), a.UsesSelector("unix", "uid"))
	}
	digest := "unix:sha256:" + strings.Repeat("ab", 32)
	id := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/by-digest", selectors: []string{"unix:uid:1000", digest}})
	withDigest := sels(t, "unix:uid:1000", digest)
	waitIdentities(t, a, withDigest, testDeadline, "the sha256 entry", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 2 })
	if !a.UsesSelector("unix", "sha256") {
		t.Fatal("an entry has a unix:sha256 selector, UsesSelector says none does")
	}
	e.deleteEntry(t, id)
	waitIdentities(t, a, withDigest, testDeadline, "the sha256 entry to go", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 1 })
	if a.UsesSelector("unix", "sha256") {
		t.Fatal("the only unix:sha256 entry was deleted, UsesSelector still says one uses it")
	}
}

// TestPendingUntilMinted holds the server's signing back to observe the agent before its SVIDs exist.
func TestPendingUntilMinted(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	release := make(chan struct{})
	var signCalls atomic.Int64
	e.setHook(func(ctx context.Context, method string) error {
		if method == methodSign {
			signCalls.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web", prefetch: true}) // WaitReady waits for it
	a, _ := startAgent(t, e.client(), nil)

	ids := waitIdentities(t, a, uid1000(t), testDeadline, "the entry to be synced", func(ids workloadapi.Identities) bool { return ids.Pending })
	if len(ids.SVIDs) != 0 {
		t.Fatalf("%d SVIDs before the server signed anything", len(ids.SVIDs))
	}
	// The bundle is served even before any SVID.
	if len(ids.X509Bundle) == 0 {
		t.Fatal("no X.509 bundle while SVIDs are pending")
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.WaitReady(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady while signing is held: %v, want DeadlineExceeded", err)
	}
	// Unrelated callers are not told to wait.
	if other, _ := a.Identities(sels(t, "unix:uid:5")); other.Pending {
		t.Fatal("a caller matching no entry is Pending")
	}

	close(release)
	waitReady(t, a)
	ids, _ = a.Identities(uid1000(t))
	if ids.Pending || len(ids.SVIDs) != 1 {
		t.Fatalf("after signing: %d SVIDs, pending %v; want 1, false", len(ids.SVIDs), ids.Pending)
	}
	checkSVID(t, ids, ids.SVIDs[0])
	if signCalls.Load() == 0 {
		t.Fatal("the hook never saw a SignX509SVIDs call")
	}
}

// TestEntryChangesArriveLive checks that created and deleted entries reach a running agent.
func TestEntryChangesArriveLive(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	first := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/first"})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	before := waitIdentities(t, a, uid1000(t), testDeadline, "the first SVID", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 1 })
	firstSVID, _ := findSVID(before, "spiffe://example.org/first")

	second := e.entry(t, entrySpec{spiffeID: "spiffe://example.org/second"})
	ids := waitIdentities(t, a, uid1000(t), testDeadline, "the new entry's SVID", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, "spiffe://example.org/second")
		return ok
	})
	s, _ := findSVID(ids, "spiffe://example.org/second")
	checkSVID(t, ids, s)
	// The existing SVID is kept, not re-minted, when another entry arrives.
	if got, _ := findSVID(ids, "spiffe://example.org/first"); got.Serial != firstSVID.Serial {
		t.Fatalf("first entry's SVID was replaced (%s -> %s) by an unrelated change", firstSVID.Serial, got.Serial)
	}
	// An entry of another agent created meanwhile never shows up.
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/not-mine", parent: agentB})

	e.deleteEntry(t, first)
	ids = waitIdentities(t, a, uid1000(t), testDeadline, "the deleted entry to disappear", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, "spiffe://example.org/first")
		return !ok
	})
	if got := svidIDs(ids); !mapsEqual(got, map[string]bool{"spiffe://example.org/second": true}) || ids.Pending {
		t.Fatalf("after delete: %v (pending %v), want only second", got, ids.Pending)
	}
	e.deleteEntry(t, second)
	ids = waitIdentities(t, a, uid1000(t), testDeadline, "every entry to disappear", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 0 })
	if ids.Pending {
		t.Fatal("Pending with no entries")
	}
}

// TestManyEntries checks paged full listings and paged deltas, minted in several batches.
func TestManyEntries(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	want := e.bulkEntries(t, 2500, "full", false) // 3 pages of the initial listing
	var signCalls atomic.Int64
	e.setHook(func(_ context.Context, method string) error {
		if method == methodSign {
			signCalls.Add(1)
		}
		return nil
	})
	a, _ := startAgent(t, e.client(), nil) // MintBatch: the default (500)
	waitReady(t, a)
	// One caller matching all of them: the first fetch has them minted, in batches.
	ids := waitIdentities(t, a, uid1000(t), testDeadline, "every SVID", func(ids workloadapi.Identities) bool { return !ids.Pending })
	if len(ids.SVIDs) != len(want) {
		t.Fatalf("after the first fetch: %d SVIDs, want %d", len(ids.SVIDs), len(want))
	}
	if got := svidIDs(ids); !mapsEqual(got, want) {
		t.Fatalf("SVIDs for %d distinct IDs, want the %d bulk entries", len(got), len(want))
	}
	serials := map[string]bool{}
	for i, s := range ids.SVIDs {
		serials[s.Serial] = true
		if i%250 == 0 {
			checkSVID(t, ids, s)
		}
	}
	if len(serials) != len(want) {
		t.Fatalf("%d distinct serials for %d SVIDs", len(serials), len(want))
	}
	if n := signCalls.Load(); n < 5 {
		t.Fatalf("2500 SVIDs minted in %d signing calls; batches of 500 need at least 5", n)
	}

	// A delta larger than one page (1,500 entries committed at once) arrives complete.
	more := e.bulkEntries(t, 1500, "delta", false)
	ids = waitIdentities(t, a, uid1000(t), testDeadline, "4000 SVIDs", func(ids workloadapi.Identities) bool {
		return len(ids.SVIDs) == len(want)+len(more) && !ids.Pending
	})
	got := svidIDs(ids)
	for id := range more {
		if !got[id] {
			t.Fatalf("delta entry %s has no SVID", id)
		}
	}
}

// TestWaitingWorkloadFirst checks that an entry a workload is waiting for is minted in the next
// batch, ahead of the agent's other pending entries.
func TestWaitingWorkloadFirst(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	e.bulkEntries(t, 1000, "backlog", true) // minted ahead: the queue the waiter jumps
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/waited-for", selectors: []string{"unix:uid:7"}})
	// The first signing call is held until the workload has asked; calls after the second are held
	// until the end of the test, so only two batches can ever be signed.
	var calls atomic.Int64
	firstHeld := make(chan struct{})
	release := make(chan struct{})
	e.setHook(func(ctx context.Context, method string) error {
		if method != methodSign {
			return nil
		}
		var gate <-chan struct{}
		switch n := calls.Add(1); {
		case n == 1:
			close(firstHeld)
			gate = release
		case n > 2:
			gate = ctx.Done()
		}
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	a, _ := startAgent(t, e.client(), func(c *agent.Config) { c.MintBatch = 8 })
	select {
	case <-firstHeld:
	case <-time.After(testDeadline):
		t.Fatal("the agent never asked for SVIDs")
	}
	waiter := sels(t, "unix:uid:7")
	if ids, _ := a.Identities(waiter); !ids.Pending {
		t.Fatal("the waited-for entry is not pending")
	}
	close(release)
	ids := waitIdentities(t, a, waiter, testDeadline, "the waited-for SVID within two batches of 8 (of 1,001 entries)",
		func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 1 })
	checkSVID(t, ids, ids.SVIDs[0])
}

// TestRevocation checks that a PermissionDenied from the server drops every SVID and is reported once,
// whichever call the server refuses.
func TestRevocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		deny func(method string) bool
	}{
		{"every call", func(string) bool { return true }},
		{"entry sync", func(m string) bool { return m == methodSync }},
		{"signing", func(m string) bool { return m == methodSign }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newBufconnEnv(t)
			var denied atomic.Bool
			var denials atomic.Int64
			e.setHook(func(_ context.Context, method string) error {
				if denied.Load() && tc.deny(method) {
					denials.Add(1)
					return fmt.Errorf("agent %s: %w: evicted", agentA, apierr.ErrPermissionDenied)
				}
				return nil
			})
			e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
			var mu sync.Mutex
			var reports []error
			revoked := make(chan struct{}, 10)
			a, stop := startAgent(t, e.client(), func(c *agent.Config) {
				c.OnRevoked = func(err error) {
					mu.Lock()
					reports = append(reports, err)
					mu.Unlock()
					revoked <- struct{}{}
				}
			})
			waitReady(t, a)
			fetchSVIDs(t, a, uid1000(t), 1)

			denied.Store(true)
			// A change wakes the sync stream (which authenticates again) and brings a new entry to mint
			// (a prefetch one: minted without a workload asking).
			e.entry(t, entrySpec{spiffeID: "spiffe://example.org/new", prefetch: true})
			select {
			case <-revoked:
			case <-time.After(testDeadline):
				t.Fatal("OnRevoked was not called")
			}
			ids, _ := a.Identities(uid1000(t))
			if len(ids.SVIDs) != 0 || ids.Pending {
				t.Fatalf("after revocation: %v (pending %v); want no SVIDs, not pending", svidIDs(ids), ids.Pending)
			}
			// More refusals (another change, another signing attempt) are not reported again.
			n := denials.Load()
			e.entry(t, entrySpec{spiffeID: "spiffe://example.org/newer", prefetch: true})
			if tc.name == "signing" {
				// The sync stream is still allowed here, so the agent tries to mint again and is refused.
				waitCount(t, &denials, n+1, testDeadline, "a further refused signing attempt after revocation")
			}
			stop()
			mu.Lock()
			defer mu.Unlock()
			if len(reports) != 1 {
				t.Fatalf("OnRevoked called %d times, want once", len(reports))
			}
			if status.Code(reports[0]) != codes.PermissionDenied {
				t.Fatalf("OnRevoked got %v, want the PermissionDenied refusal", reports[0])
			}
			if !containsAll(reports[0].Error(), "evicted") {
				t.Fatalf("OnRevoked error %q does not carry the server's reason", reports[0])
			}
		})
	}
}

// TestTransientErrorIsNotRevocation checks that errors other than PermissionDenied are retried, not
// treated as an eviction.
func TestTransientErrorIsNotRevocation(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	var failing atomic.Bool
	var refusals atomic.Int64
	e.setHook(func(_ context.Context, method string) error {
		if failing.Load() {
			refusals.Add(1)
			return status.Error(codes.Unavailable, "server busy")
		}
		return nil
	})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
	var revoked atomic.Int64
	a, _ := startAgent(t, e.client(), func(c *agent.Config) { c.OnRevoked = func(error) { revoked.Add(1) } })
	waitReady(t, a)
	waitIdentities(t, a, uid1000(t), testDeadline, "the first SVID", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 1 })
	failing.Store(true)
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/second"})
	waitCount(t, &refusals, 3, testDeadline, "the agent to retry after Unavailable refusals")
	if ids, _ := a.Identities(uid1000(t)); len(ids.SVIDs) != 1 || revoked.Load() != 0 {
		t.Fatalf("after Unavailable: %d SVIDs, OnRevoked %d times; want the SVID kept and no revocation", len(ids.SVIDs), revoked.Load())
	}
	failing.Store(false)
	waitIdentities(t, a, uid1000(t), testDeadline, "the second entry once the server recovers", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, "spiffe://example.org/second")
		return ok
	})
}

// TestBundlePush checks that new authorities reach a running agent and its OnBundle hook.
func TestBundlePush(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	var mu sync.Mutex
	var pushes [][]*x509.Certificate
	pushed := make(chan []*x509.Certificate, 100)
	a, _ := startAgent(t, e.client(), func(c *agent.Config) {
		c.OnBundle = func(roots []*x509.Certificate, _ []string) {
			mu.Lock()
			pushes = append(pushes, roots)
			mu.Unlock()
			pushed <- roots
		}
	})
	first := waitIdentities(t, a, nil, testDeadline, "the first bundle", func(ids workloadapi.Identities) bool { return len(ids.X509Bundle) > 0 })
	// waitPush waits for an OnBundle call whose roots satisfy cond.
	waitPush := func(what string, cond func([]*x509.Certificate) bool) {
		t.Helper()
		timeout := time.After(testDeadline)
		for {
			select {
			case roots := <-pushed:
				if cond(roots) {
					return
				}
			case <-timeout:
				t.Fatalf("OnBundle was not called with %s", what)
			}
		}
	}
	waitPush("the first bundle", func(roots []*x509.Certificate) bool {
		return len(roots) == 1 && roots[0].Equal(e.ca.X509Authority())
	})

	// A new JWT key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	const kid = "rotated-jwt-key"
	now := time.Now().UTC()
	if err := e.st.PutAuthority(testCtx(t, testDeadline), storage.Authority{Kind: storage.AuthorityJWT, ID: kid, DER: der,
		NotAfter: now.Add(time.Hour), Node: "other-node", AddedAt: now}); err != nil {
		t.Fatalf("PutAuthority: %v", err)
	}
	ids := waitIdentities(t, a, nil, testDeadline, "the new JWT key", func(ids workloadapi.Identities) bool {
		if ids.JWTAuthorities == nil {
			return false
		}
		_, ok := ids.JWTAuthorities.FindJWTAuthority(kid)
		return ok
	})
	got, _ := ids.JWTAuthorities.FindJWTAuthority(kid)
	if pub, ok := got.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		t.Fatalf("JWT authority %s is %T, not the published key", kid, got)
	}
	if _, ok := ids.JWTAuthorities.FindJWTAuthority(e.ca.JWTKeyID()); !ok {
		t.Fatal("the original JWT key was dropped")
	}
	if jb, err := jwtbundle.Parse(testTD, ids.JWTBundle); err != nil || !jb.HasJWTAuthority(kid) {
		t.Fatalf("JWTBundle (JWKS) lacks %s: %v", kid, err)
	}
	if ids.BundleSequence <= first.BundleSequence {
		t.Fatalf("BundleSequence %d after a change, was %d", ids.BundleSequence, first.BundleSequence)
	}

	// A new X.509 root (another server node's CA).
	other := testkit.NewCA(t, testTD, 0).X509Authority()
	sum := fmt.Sprintf("%x", other.Signature[:16])
	if err := e.st.PutAuthority(testCtx(t, testDeadline), storage.Authority{Kind: storage.AuthorityX509, ID: sum, DER: other.Raw,
		NotAfter: other.NotAfter, Node: "other-node", AddedAt: time.Now().UTC()}); err != nil {
		t.Fatalf("PutAuthority: %v", err)
	}
	ids = waitIdentities(t, a, nil, testDeadline, "the new X.509 root", func(ids workloadapi.Identities) bool {
		b, err := x509bundle.ParseRaw(testTD, ids.X509Bundle)
		return err == nil && b.HasX509Authority(other)
	})
	if b, _ := x509bundle.ParseRaw(testTD, ids.X509Bundle); !b.HasX509Authority(e.ca.X509Authority()) {
		t.Fatal("the original root was dropped")
	}
	waitPush("both roots", func(roots []*x509.Certificate) bool {
		return len(roots) == 2 && slices.ContainsFunc(roots, other.Equal) && slices.ContainsFunc(roots, e.ca.X509Authority().Equal)
	})
	mu.Lock()
	defer mu.Unlock()
	// One call per bundle the server sent: the first, the JWT key, the root (no spurious calls).
	if len(pushes) != 3 {
		t.Fatalf("OnBundle called %d times for 3 bundles", len(pushes))
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// waitCount waits until counter reaches at least n, failing the test (naming what) after d.
func waitCount(tb testing.TB, counter *atomic.Int64, n int64, d time.Duration, what string) {
	tb.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for counter.Load() < n {
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("waited %s for %s: %d, want at least %d", d, what, counter.Load(), n)
		}
	}
}
