package agent_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// offsetClock is a clock running offset ahead of the real one.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) set(d time.Duration) { c.offset.Store(int64(d)) }
func (c *offsetClock) config() func(*agent.Config) {
	return func(cfg *agent.Config) { cfg.Clock = c.now }
}

// ledgerCount returns how many issuance records the ledger holds for an entry.
func ledgerCount(tb testing.TB, st *storage.Store, entryID string) int {
	tb.Helper()
	n := 0
	q := storage.LedgerQuery{EntryID: entryID, Limit: 1000}
	for {
		page, err := st.QueryLedger(q)
		if err != nil {
			tb.Fatalf("QueryLedger: %v", err)
		}
		n += len(page.Issuances)
		if page.Next == "" {
			return n
		}
		q.Cursor = page.Next
	}
}

// TestRotation checks that a short-lived SVID is replaced at half its TTL, before it expires, without
// callers ever seeing a gap or an expired SVID, and without re-minting in a loop.
func TestRotation(t *testing.T) {
	t.Parallel()
	const ttl = 4 * time.Second
	const id = "spiffe://example.org/short"
	e := newBufconnEnv(t)
	entryID := e.storeEntry(t, entrySpec{spiffeID: id, x509TTL: ttl}) // below the admin API's minimum
	a, stop := startAgent(t, e.client(), nil)
	waitReady(t, a)
	start := time.Now()

	// Fetching every 50 ms below keeps the identity in use, so it is rotated.
	waitIdentities(t, a, uid1000(t), testDeadline, "the first SVID", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 1 })
	ids, changed := a.Identities(uid1000(t))
	cur := ids.SVIDs[0]
	curLeaf := checkSVID(t, ids, cur)
	if got := curLeaf.NotAfter.Sub(curLeaf.NotBefore); got < ttl {
		t.Fatalf("SVID lifetime %s, want at least the entry's %s", got, ttl)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(testDeadline)
	rotations := 0
	for rotations < 2 {
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d rotations in %s", rotations, testDeadline)
		}
		ids, changed = a.Identities(uid1000(t))
		now := time.Now()
		if ids.Pending || len(ids.SVIDs) != 1 {
			t.Fatalf("at %s: %d SVIDs, pending %v; rotation must not leave a gap", now.Sub(start), len(ids.SVIDs), ids.Pending)
		}
		s := ids.SVIDs[0]
		leaf := checkSVID(t, ids, s) // fails if the SVID has expired
		if s.Serial == cur.Serial {
			continue
		}
		// A new SVID: minted at half of the old one's TTL (not earlier), before the old one expired.
		rotateAt := curLeaf.NotAfter.Add(-ttl / 2)
		if now.Before(rotateAt) {
			t.Fatalf("rotated at %s, before half of the TTL (%s)", now.Format(time.StampMilli), rotateAt.Format(time.StampMilli))
		}
		if !now.Before(curLeaf.NotAfter) {
			t.Fatalf("rotated at %s, after the old SVID expired at %s", now.Format(time.StampMilli), curLeaf.NotAfter.Format(time.StampMilli))
		}
		if !leaf.NotAfter.After(curLeaf.NotAfter) {
			t.Fatalf("new SVID expires at %s, the old one at %s", leaf.NotAfter, curLeaf.NotAfter)
		}
		cur, curLeaf = s, leaf
		rotations++
	}
	stop()
	// Two rotations take about two half-lives: a handful of SVIDs, not a minting loop.
	elapsed := time.Since(start)
	if n, most := ledgerCount(t, e.st, entryID), 2+int(elapsed/(ttl/2))+1; n > most {
		t.Fatalf("%d SVIDs minted in %s for a %s TTL; want at most %d", n, elapsed.Round(time.Millisecond), ttl, most)
	}
}

// TestIdentitiesNeverServesExpired checks that Identities filters expired SVIDs by itself, whether or
// not the minter has caught up.
func TestIdentitiesNeverServesExpired(t *testing.T) {
	t.Parallel()

	t.Run("clock past expiry", func(t *testing.T) {
		t.Parallel()
		e := newBufconnEnv(t)
		e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web", prefetch: true}) // minted before the stop
		clock := &offsetClock{}
		a, stop := startAgent(t, e.client(), clock.config())
		waitReady(t, a)
		// Stop minting: what follows is Identities' own check.
		stop()
		ids, _ := a.Identities(uid1000(t))
		leaf := checkSVID(t, ids, ids.SVIDs[0])

		clock.set(time.Until(leaf.NotAfter) - time.Second)
		if ids, _ := a.Identities(uid1000(t)); len(ids.SVIDs) != 1 || ids.Pending {
			t.Fatalf("a second before expiry: %d SVIDs, pending %v; want the SVID", len(ids.SVIDs), ids.Pending)
		}
		for _, past := range []time.Duration{0, time.Second, time.Hour} {
			clock.set(time.Until(leaf.NotAfter) + past)
			ids, _ := a.Identities(uid1000(t))
			if len(ids.SVIDs) != 0 {
				t.Fatalf("%s after expiry: served %d SVIDs", past, len(ids.SVIDs))
			}
			if !ids.Pending {
				t.Fatalf("%s after expiry: not Pending although the entry still matches", past)
			}
		}
	})

	t.Run("entry expired", func(t *testing.T) {
		t.Parallel()
		e := newBufconnEnv(t)
		expiresAt := time.Now().Add(30 * time.Minute).Truncate(time.Second)
		e.entry(t, entrySpec{spiffeID: "spiffe://example.org/temp", expiresAt: expiresAt, prefetch: true})
		e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web", prefetch: true}) // minted before the stop
		clock := &offsetClock{}
		a, stop := startAgent(t, e.client(), clock.config())
		waitReady(t, a)
		stop()
		clock.set(time.Until(expiresAt) - 2*time.Second)
		if ids, _ := a.Identities(uid1000(t)); len(ids.SVIDs) != 2 {
			t.Fatalf("before the entry expired: %v, want both", svidIDs(ids))
		}
		clock.set(time.Until(expiresAt))
		ids, _ := a.Identities(uid1000(t))
		if got := svidIDs(ids); len(got) != 1 || !got["spiffe://example.org/web"] || ids.Pending {
			t.Fatalf("after the entry expired: %v, pending %v; want only web, not pending", got, ids.Pending)
		}
	})

	t.Run("rotation refused", func(t *testing.T) {
		t.Parallel()
		const ttl = 3 * time.Second
		e := newBufconnEnv(t)
		var refuse atomic.Bool
		var refusals atomic.Int64
		e.setHook(func(_ context.Context, method string) error {
			if method == methodSign && refuse.Load() {
				refusals.Add(1)
				return status.Error(codes.Unavailable, "signing unavailable")
			}
			return nil
		})
		e.storeEntry(t, entrySpec{spiffeID: "spiffe://example.org/short", x509TTL: ttl}) // below the admin API's minimum
		a, _ := startAgent(t, e.client(), nil)
		waitReady(t, a)
		fetchSVIDs(t, a, uid1000(t), 1) // and the fetches below keep it in use
		refuse.Store(true)
		ids, changed := a.Identities(uid1000(t))
		leaf := checkSVID(t, ids, ids.SVIDs[0])
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(testDeadline)
		for {
			select {
			case <-changed:
			case <-tick.C:
			case <-deadline:
				t.Fatal("the SVID was never dropped")
			}
			asked := time.Now()
			ids, changed = a.Identities(uid1000(t))
			now := time.Now()
			if len(ids.SVIDs) == 0 {
				if now.Before(leaf.NotAfter) {
					t.Fatalf("SVID dropped at %s, before it expired at %s", now.Format(time.StampMilli), leaf.NotAfter.Format(time.StampMilli))
				}
				if !ids.Pending {
					t.Fatal("no SVID and not Pending while the entry matches")
				}
				break
			}
			// Never expired when served: judged at the time of asking, since verifying it a moment later
			// may cross its expiry.
			if served := leafOf(t, ids.SVIDs[0]); !asked.Before(served.NotAfter) {
				t.Fatalf("asked at %s, served an SVID that expired at %s", asked.Format(time.StampMilli), served.NotAfter.Format(time.StampMilli))
			}
			if leafOf(t, ids.SVIDs[0]).SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Fatal("a new SVID appeared although the server refuses to sign")
			}
		}
		if refusals.Load() == 0 {
			t.Fatal("the agent never tried to rotate")
		}
		// Once the server signs again, a fresh SVID is served.
		refuse.Store(false)
		ids = waitIdentities(t, a, uid1000(t), testDeadline, "a fresh SVID", func(ids workloadapi.Identities) bool { return len(ids.SVIDs) == 1 })
		checkSVID(t, ids, ids.SVIDs[0])
	})
}

// TestRefusedEntryRetried checks that an entry the server refused to sign is tried again after a
// while, including when a workload is waiting for it (a Workload API stream asks once, then waits for
// the change channel).
func TestRefusedEntryRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ask  bool // a workload asks for the SVID while the entry is in its retry delay
	}{
		{"nobody waiting", false},
		{"workload waiting", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.ask {
			}
			e := newBufconnEnv(t)
			// Prefetch: the agent asks for it at start, before any workload does.
			e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web", expiresAt: time.Now().Add(time.Hour), prefetch: true})
			// The server's clock runs past the entry's expiry: it refuses this entry (and only it).
			e.clock.set(2 * time.Hour)
			log, refusals := newLogCounter(t, "server refused an X.509-SVID")
			a, _ := startAgent(t, e.client(), func(c *agent.Config) { c.Logger = log })
			deadline := time.After(testDeadline)
			for refusals.count() == 0 {
				select {
				case <-time.After(10 * time.Millisecond):
				case <-deadline:
					t.Fatal("the server never refused the entry")
				}
			}
			refusedAt := time.Now()
			e.clock.set(0)
			sels := uid1000(t)
			// The change channel, with or without asking for the SVID (a pending caller is a waiting one).
			ids, changed := a.Identities(nil)
			if tc.ask {
				ids, changed = a.Identities(sels)
				if !ids.Pending {
					t.Fatal("not Pending after the refusal")
				}
			}
			timeout := time.After(15 * time.Second)
			for {
				select {
				case <-changed:
				case <-timeout:
					t.Fatalf("no SVID %s after the server refused once and then would sign", time.Since(refusedAt).Round(time.Millisecond))
				}
				ids, changed = a.Identities(sels)
				if len(ids.SVIDs) == 1 {
					break
				}
			}
			// Not before the retry delay: the refusal is not retried in a loop.
			if waited := time.Since(refusedAt); waited < 4*time.Second {
				t.Fatalf("retried %s after the refusal, before the retry delay", waited)
			}
			checkSVID(t, ids, ids.SVIDs[0])
		})
	}
}
