package storage

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRecordDeliveries checks that deliveries are kept against their ledger record, that a report
// sent again (or an older one arriving late) counts nothing twice, that deliveries naming an unknown
// record or another agent's are skipped, and that callers per credential are bounded.
func TestRecordDeliveries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	const agent = "spiffe://example.org/agent" // issuance()'s agent
	if err := s.AppendLedger(ctx, []Issuance{issuance(1, "alice", "e1", time.Now()), issuance(2, "alice", "e1", time.Now())}); err != nil {
		t.Fatal(err)
	}
	rec1, rec2 := fmt.Sprintf("%032x", 1), fmt.Sprintf("%032x", 2)
	t0 := time.Unix(1_800_000_000, 0).UTC()
	caller := Caller{UID: 1000, GID: 1000, PID: 42, StartTime: 7, Path: "/usr/bin/web", SHA256: "abcdef0123456789"}
	d := Delivery{CredentialID: rec1, Agent: agent, Caller: caller, FirstAt: t0, LastAt: t0.Add(time.Second), Count: 3}
	record := func(want int, ds ...Delivery) {
		t.Helper()
		n, err := s.RecordDeliveries(ctx, ds)
		if err != nil || n != want {
			t.Fatalf("RecordDeliveries: %d kept, %v; want %d", n, err, want)
		}
	}
	record(1, d)
	record(1, d) // the same report again: nothing counted twice
	older := d
	older.Count, older.LastAt = 1, t0 // an earlier report arriving late
	record(1, older)
	later := d
	later.Count, later.LastAt = 5, t0.Add(time.Minute)
	unknown := d
	unknown.CredentialID = "ffff"
	other := d
	other.CredentialID, other.Agent = rec2, "spiffe://example.org/other-agent"
	record(1, later, unknown, other)

	got, err := s.Deliveries(rec1)
	if err != nil || len(got) != 1 {
		t.Fatalf("Deliveries(%s) = %+v, %v; want one caller", rec1, got, err)
	}
	if g := got[0]; g.Count != 5 || !g.FirstAt.Equal(t0) || !g.LastAt.Equal(t0.Add(time.Minute)) || g.Caller != caller || g.EntryID != "e1" || g.Agent != agent {
		t.Fatalf("stored delivery %+v; want count 5, first %s, last %s, caller %+v, entry e1", g, t0, t0.Add(time.Minute), caller)
	}
	if ds, _ := s.Deliveries(rec2); len(ds) != 0 {
		t.Fatalf("another agent's report was kept against %s: %+v", rec2, ds)
	}
	st, err := s.EntryDeliveries("e1")
	if err != nil || st.Count != 5 || !st.LastDeliveredAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("EntryDeliveries(e1) = %+v, %v; want 5, last %s", st, err, t0.Add(time.Minute))
	}

	// The ledger query filters on delivery.
	for _, tc := range []struct {
		f    DeliveryFilter
		want string
	}{{DeliveredOnly, rec1}, {UndeliveredOnly, rec2}} {
		page, err := s.QueryLedger(LedgerQuery{EntryID: "e1", Delivered: tc.f})
		if err != nil || len(page.Issuances) != 1 || page.Issuances[0].ID != tc.want {
			t.Fatalf("QueryLedger(Delivered %d) = %+v, %v; want only %s", tc.f, page.Issuances, err, tc.want)
		}
	}

	// Callers per credential are bounded.
	var many []Delivery
	for i := range MaxCallersPerCredential + 5 {
		c := caller
		c.PID = int32(1000 + i)
		many = append(many, Delivery{CredentialID: rec2, Agent: agent, Caller: c, FirstAt: t0, LastAt: t0, Count: 1})
	}
	record(MaxCallersPerCredential, many...)
	if ds, _ := s.Deliveries(rec2); len(ds) != MaxCallersPerCredential {
		t.Fatalf("%d callers kept for one credential, want the bound %d", len(ds), MaxCallersPerCredential)
	}

	// Pruning the records removes their deliveries; the entry's totals stay.
	if _, err := s.PruneLedger(ctx, time.Now().Add(time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	if ds, err := s.Deliveries(rec2); err != nil || len(ds) != 0 {
		t.Fatalf("after pruning, %d deliveries of %s remain (%v)", len(ds), rec2, err)
	}

	// Kept across a restart, and the log replayed on open does not count anything twice.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	if st, _ := s.EntryDeliveries("e1"); st.Count != 5+MaxCallersPerCredential {
		t.Fatalf("after a restart entry e1 has %d deliveries, want %d", st.Count, 5+MaxCallersPerCredential)
	}
}
