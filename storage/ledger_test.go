package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The issuance ledger: appending, querying and paging, batches and their wire form, the times records
// are stored at, and lookups. store_test.go holds the helpers the package's tests share (issuance,
// stepClock among them) and the tests of the registry and the store's life.

func TestLedgerAppendQueryAndPaging(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := openTestStoreClock(t, t.TempDir(), stepClock(base))
	defer s.Close()
	// One batch per record: record i is stamped base+i seconds.
	var recs []Issuance
	for i := range 50 {
		owner, entry := "alice", "e-a"
		if i%2 == 1 {
			owner, entry = "bob", "e-b"
		}
		rec := issuance(i, owner, entry, time.Time{})
		if err := s.AppendLedger(ctx, []Issuance{rec}); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	got, err := s.LookupIssuance(recs[7].ID)
	if err != nil || got.Owner != "bob" || !got.IssuedAt.Equal(base.Add(7*time.Second)) || got.Agent != recs[7].Agent {
		t.Fatalf("LookupIssuance = %+v, %v", got, err)
	}
	if _, err := s.LookupIssuance("nope"); !errors.Is(err, ErrIssuanceNotFound) {
		t.Fatalf("lookup unknown: %v", err)
	}

	tests := []struct {
		name string
		q    LedgerQuery
		want []int // indexes into recs, newest first
	}{
		{"owner", LedgerQuery{Owner: "alice", Limit: 3}, []int{48, 46, 44}},
		{"entry since", LedgerQuery{EntryID: "e-b", Since: base.Add(45 * time.Second)}, []int{49, 47, 45}},
		{"spiffe until", LedgerQuery{SPIFFEID: "spiffe://example.org/e-a", Until: base.Add(4 * time.Second)}, []int{2, 0}},
		{"all window", LedgerQuery{Since: base.Add(10 * time.Second), Until: base.Add(13 * time.Second)}, []int{12, 11, 10}},
		{"owner and entry disagree", LedgerQuery{Owner: "alice", EntryID: "e-b"}, nil},
		{"agent", LedgerQuery{Agent: "spiffe://example.org/agent", Limit: 1}, []int{49}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := s.QueryLedger(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Issuances) != len(tc.want) {
				t.Fatalf("got %d records, want %d", len(page.Issuances), len(tc.want))
			}
			for i, w := range tc.want {
				if page.Issuances[i].ID != recs[w].ID {
					t.Fatalf("record %d = %s, want %s", i, page.Issuances[i].ID, recs[w].ID)
				}
			}
		})
	}

	// Paging through alice's 25 records, 10 at a time, yields each exactly once.
	assertPaging(t, s, LedgerQuery{Owner: "alice", Limit: 10}, 25)
	if _, err := s.QueryLedger(LedgerQuery{Cursor: "zz"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := s.QueryLedger(LedgerQuery{Limit: MaxLedgerLimit + 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad limit: %v", err)
	}
}

// assertPaging pages through q and checks that want distinct records come back, each once, newest first.
func assertPaging(t *testing.T, s *Store, q LedgerQuery, want int) {
	t.Helper()
	seen := map[string]bool{}
	var prev time.Time
	for pages := 0; ; pages++ {
		if pages > want {
			t.Fatal("paging does not terminate")
		}
		page, err := s.QueryLedger(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Issuances {
			if seen[r.ID] {
				t.Fatalf("record %s returned twice", r.ID)
			}
			if !prev.IsZero() && r.IssuedAt.After(prev) {
				t.Fatalf("record %s (%s) after a newer one (%s): not newest first", r.ID, r.IssuedAt, prev)
			}
			seen[r.ID], prev = true, r.IssuedAt
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if len(seen) != want {
		t.Fatalf("paged %d records, want %d", len(seen), want)
	}
}

// TestLedgerBatchesGroupIndexes appends mixed batches (several owners and entries per batch) and checks
// that every index finds exactly its records, including across page boundaries inside one batch.
func TestLedgerBatchesGroupIndexes(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	owners := []string{"alice", "bob", "carol"}
	count := map[string]int{}
	n := 0
	for batch := range 7 {
		var recs []Issuance
		for i := range 40 + batch {
			o := owners[(i*7+batch)%3]
			recs = append(recs, issuance(n, o, "e-"+o, time.Time{}))
			count[o]++
			n++
		}
		if err := s.AppendLedger(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range owners {
		t.Run(o, func(t *testing.T) {
			assertPaging(t, s, LedgerQuery{Owner: o, Limit: 17}, count[o])
			assertPaging(t, s, LedgerQuery{EntryID: "e-" + o, Limit: 50}, count[o])
		})
	}
	assertPaging(t, s, LedgerQuery{Limit: 33}, n)
	for i := range n {
		if _, err := s.LookupIssuance(fmt.Sprintf("%032x", i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

func TestLedgerTimesIncrease(t *testing.T) {
	ctx := context.Background()
	// A clock stuck in the past must not make later batches sort before earlier ones.
	stuck := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	s := openTestStoreClock(t, t.TempDir(), func() time.Time { return stuck })
	defer s.Close()
	for i := range 5 {
		if err := s.AppendLedger(ctx, []Issuance{issuance(i, "alice", "e", time.Time{})}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.QueryLedger(LedgerQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(page.Issuances); i++ {
		if !page.Issuances[i-1].IssuedAt.After(page.Issuances[i].IssuedAt) {
			t.Fatalf("issued_at not strictly decreasing newest first: %v", page.Issuances)
		}
	}
}

func TestLedgerEmptyProposal(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	tests := []struct {
		name string
		recs []Issuance
	}{
		{"nil", nil},
		{"empty", []Issuance{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AppendLedger(ctx, tc.recs); err != nil {
				t.Fatalf("AppendLedger(%v): %v, want nil", tc.recs, err)
			}
			if err := s.ProposeLedger(tc.recs).Wait(ctx); err != nil {
				t.Fatalf("ProposeLedger(%v).Wait: %v, want nil", tc.recs, err)
			}
		})
	}
	page, err := s.QueryLedger(LedgerQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Issuances) != 0 {
		t.Fatalf("empty proposals stored records: %v", page.Issuances)
	}
}

func TestLookupOfADamagedRecordNamesIt(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	if err := s.AppendLedger(ctx, []Issuance{issuance(7, "alice", "e1", time.Time{})}); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%032x", 7)
	// Damage the record's bytes in place (its batch keeps its layout).
	err := s.stateDB().Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLedger)
		k, v := b.Cursor().First()
		v = bytes.Clone(v)
		for i := 4 + 4*2; i < len(v); i++ {
			v[i] = 0xff
		}
		return b.Put(bytes.Clone(k), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.LookupIssuance(id)
	if err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("lookup of a damaged record: %v, want an error naming %s", err, id)
	}
}

func TestLedgerBatchWireForm(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 7, time.UTC)
	// issuance sets ExpiresAt an hour after its time argument; IssuedAt is overwritten by the stamp.
	full := issuance(1, "alice", "e1", at)
	full.Kind, full.Audience, full.NodeAttestation = KindJWTSVID, []string{"a", "b"}, "join_token"
	tests := []struct {
		name string
		recs []Issuance
	}{
		{"one record", []Issuance{issuance(0, "alice", "e1", at)}},
		{"every field", []Issuance{full}},
		{"only an ID and expiry", []Issuance{{ID: "x", ExpiresAt: at}}},
		{"several", []Issuance{issuance(2, "alice", "e1", at), full, issuance(3, "bob", "e2", at)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := encodeUnstampedBatch(tc.recs)
			payload := u.appendStamped([]byte{byte(cmdLedgerAppend)}, at)
			if payload[0] != byte(cmdLedgerAppend) {
				t.Fatalf("prefix lost: %x", payload[:1])
			}
			raws, err := splitLedgerBatch(payload[1:])
			if err != nil || len(raws) != len(tc.recs) {
				t.Fatalf("split: %d records, %v; want %d", len(raws), err, len(tc.recs))
			}
			for i, raw := range raws {
				got, err := decodeIssuance(raw)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.recs[i]
				want.IssuedAt = at
				if g, w := mustJSON(&got), mustJSON(&want); !bytes.Equal(g, w) {
					t.Fatalf("record %d:\n got %s\nwant %s", i, g, w)
				}
				f, err := scanIndexed(raw)
				if err != nil || f.issuedAt != uint64(at.UnixNano()) || string(f.id) != want.ID {
					t.Fatalf("record %d indexed fields: %+v %v", i, f, err)
				}
			}
		})
	}
}

// Concurrent proposals enter the log in the order of their stamps: the FSM never has to move a batch's
// time (it would if a later stamp reached the log first), so each record keeps the time it was given.
func TestConcurrentLedgerProposalsKeepTheirTimes(t *testing.T) {
	ctx := context.Background()
	stuck := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	s := openTestStoreClock(t, t.TempDir(), func() time.Time { return stuck })
	defer s.Close()
	const writers, each = 8, 20
	recs := make([][]Issuance, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				recs[n] = []Issuance{issuance(n, "alice", "e", time.Time{})}
				if err := s.AppendLedger(ctx, recs[n]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	seen := map[time.Time]bool{}
	for n, batch := range recs {
		got, err := s.LookupIssuance(batch[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.IssuedAt.Equal(batch[0].IssuedAt) || seen[got.IssuedAt] {
			t.Fatalf("record %d: stored at %s, stamped %s (or a time used twice)", n, got.IssuedAt, batch[0].IssuedAt)
		}
		seen[got.IssuedAt] = true
	}
}

func TestAppendLedgerHonoursContext(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.AppendLedger(ctx, []Issuance{issuance(1, "alice", "e", time.Time{})}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendLedger with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.LookupIssuance(fmt.Sprintf("%032x", 1)); !errors.Is(err, ErrIssuanceNotFound) {
		t.Fatalf("a proposal with a cancelled context was committed: %v", err)
	}
}
