package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAuditChainAndTamperDetection(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	ctx := WithActor(context.Background(), "uid:1000(alice)")
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/a", "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetEntryState(WithActor(ctx, "uid:0(root)"), "e1", EntryDisable, "incident 42"); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, AuditRecord{Time: time.Now(), Actor: "uid:1001(mallory)", Action: "entry.create", Object: "spiffe://example.org/x", Outcome: AuditDenied, Reason: "policy rule \"ttl\""}); err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.AuditLog(AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("got %d audit records, want 4: %+v", len(recs), recs)
	}
	dis := recs[2]
	if dis.Action != "entry.disable" || dis.Actor != "uid:0(root)" || dis.Reason != "incident 42" || len(dis.Before) == 0 || len(dis.After) == 0 {
		t.Fatalf("disable record: %+v", dis)
	}
	var before, after Entry
	json.Unmarshal(dis.Before, &before)
	json.Unmarshal(dis.After, &after)
	if before.Disabled || !after.Disabled {
		t.Fatalf("before/after do not show the change: %+v / %+v", before, after)
	}
	if recs[3].Outcome != AuditDenied || recs[3].PrevHash != recs[2].Hash {
		t.Fatalf("denied record not chained: %+v", recs[3])
	}
	if v, err := s.VerifyAudit(); err != nil || v.BrokenAt != 0 || v.Records != 4 {
		t.Fatalf("verify intact log: %+v %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Edit the stored record 2 (the entry creation) as an attacker with file access would.
	db, err := bolt.Open(filepath.Join(dir, stateFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var r AuditRecord
		json.Unmarshal(b.Get(auditKey(2)), &r)
		r.Actor = "uid:0(root)"
		return b.Put(auditKey(2), mustJSON(&r))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	v, err := s.VerifyAudit()
	if err != nil || v.BrokenAt != 2 {
		t.Fatalf("verify after tampering: %+v %v, want broken at 2", v, err)
	}
}

func TestOffboard(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	for _, o := range []string{"alice", "payments", "bob"} {
		if _, err := s.CreateOwner(ctx, Owner{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range []string{"alice", "alice", "bob"} {
		if _, err := s.CreateEntry(ctx, testEntry(t, fmt.Sprintf("e%d", i), fmt.Sprintf("spiffe://example.org/%d", i), o)); err != nil {
			t.Fatal(err)
		}
	}
	newToken(t, s, "t1", time.Now().Add(time.Hour))
	plan, err := s.PlanOffboard(ctx, "alice", OffboardReassign, "payments", "")
	if err != nil || len(plan.Entries) != 2 || len(plan.Tokens) != 1 {
		t.Fatalf("plan: %+v %v", plan, err)
	}
	if e, _ := s.Entry("e0"); e.Owner != "alice" {
		t.Fatal("the plan changed something")
	}
	if _, err := s.OffboardOwner(ctx, "alice", OffboardReassign, "alice", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reassign to itself: %v", err)
	}
	if _, err := s.OffboardOwner(ctx, "alice", OffboardReassign, "nobody", ""); !errors.Is(err, ErrOwnerNotFound) {
		t.Fatalf("reassign to unknown: %v", err)
	}
	res, err := s.OffboardOwner(ctx, "alice", OffboardReassign, "payments", "left the company")
	if err != nil || len(res.Entries) != 2 || !res.Owner.Offboarded {
		t.Fatalf("offboard: %+v %v", res, err)
	}
	for _, id := range []string{"e0", "e1"} {
		if e, _ := s.Entry(id); e.Owner != "payments" {
			t.Fatalf("entry %s owner %q after reassign", id, e.Owner)
		}
	}
	if tok, _ := s.JoinToken("t1"); tok.Owner != "payments" {
		t.Fatalf("token owner %q", tok.Owner)
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e9", "spiffe://example.org/9", "alice")); !errors.Is(err, ErrOwnerOffboarded) {
		t.Fatalf("entry for an offboarded owner: %v", err)
	}
	// Disable mode: bob's entry stops being active; his unused token is revoked.
	if _, err := s.CreateJoinToken(ctx, JoinToken{ID: "t2", Owner: "bob", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OffboardOwner(ctx, "bob", OffboardDisable, "", ""); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Entry("e2"); !e.Disabled || e.Active(time.Now()) {
		t.Fatalf("bob's entry after disable: %+v", e)
	}
	if _, err := s.AttestAgent(ctx, "t2", testAgent("spiffe://example.org/signet/agent/x", "s1"), time.Now(), agentSVIDRecord("spiffe://example.org/signet/agent/x", "s1")); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := s.SetEntryState(ctx, "e2", EntryEnable, ""); !errors.Is(err, ErrOwnerOffboarded) {
		t.Fatalf("enable an offboarded owner's entry: %v", err)
	}
}

func TestApprovalNeedsAnotherAdmin(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	alice := WithActor(context.Background(), "uid:1000(alice)")
	if _, err := s.CreateOwner(alice, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	e := testEntry(t, "e1", "spiffe://example.org/prod/a", "alice")
	e.Pending, e.CreatedBy = true, "uid:1000(alice)"
	if _, err := s.CreateEntry(alice, e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetEntryState(alice, "e1", EntryApprove, ""); !errors.Is(err, ErrSameApprover) {
		t.Fatalf("self-approval: %v", err)
	}
	got, err := s.SetEntryState(WithActor(context.Background(), "uid:1001(bob)"), "e1", EntryApprove, "")
	if err != nil || got.Pending || got.ApprovedBy != "uid:1001(bob)" {
		t.Fatalf("approval by bob: %+v %v", got, err)
	}
	if _, err := s.SetEntryState(WithActor(context.Background(), "uid:1001(bob)"), "e1", EntryApprove, ""); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: %v", err)
	}
}

func TestEntryUpdateConflictAndStats(t *testing.T) {
	ctx := context.Background()
	s, e := openStoreWithEntry(t)
	upd := e
	upd.Purpose = "changed"
	if _, err := s.UpdateEntry(ctx, upd, e.Revision+5, "stale"); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	got, err := s.UpdateEntry(ctx, upd, e.Revision, "why not")
	if err != nil || got.Purpose != "changed" || got.Revision <= e.Revision {
		t.Fatalf("update: %+v %v", got, err)
	}
	// Stats from the ledger.
	var recs []Issuance
	for i := range 5 {
		r := issuance(i, "alice", "e1", time.Time{})
		r.Agent = fmt.Sprintf("spiffe://example.org/signet/agent/%d", i%2)
		recs = append(recs, r)
	}
	if err := s.AppendLedger(ctx, recs); err != nil {
		t.Fatal(err)
	}
	st, err := s.EntryStats("e1")
	if err != nil || st.Count != 5 || st.LastIssuedAt.IsZero() || len(st.Agents) != 2 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	activity, err := s.Activity(time.Now())
	if err != nil || activity["e1"] == nil {
		t.Fatalf("activity: %v %v", activity, err)
	}
	if days := activity["e1"].Daily; days[len(days)-1] != 5 {
		t.Fatalf("daily counts: %v", days)
	}
}

func TestLedgerPrune(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := openTestStoreClock(t, t.TempDir(), stepClock(base))
	defer s.Close()
	for i := range 10 {
		if err := s.AppendLedger(ctx, []Issuance{issuance(i, "alice", "e", time.Time{})}); err != nil {
			t.Fatal(err)
		}
	}
	// Records 0..5 were stamped before base+6s.
	n, err := s.PruneLedger(ctx, base.Add(6*time.Second), 4)
	if err != nil || n != 4 {
		t.Fatalf("first prune: %d %v", n, err)
	}
	if n, err = s.PruneLedger(ctx, base.Add(6*time.Second), 4); err != nil || n != 2 {
		t.Fatalf("second prune: %d %v", n, err)
	}
	for i := range 10 {
		_, err := s.LookupIssuance(fmt.Sprintf("%032x", i))
		if pruned := i < 6; pruned != errors.Is(err, ErrIssuanceNotFound) {
			t.Fatalf("record %d after prune: %v", i, err)
		}
	}
	page, err := s.QueryLedger(LedgerQuery{Owner: "alice"})
	if err != nil || len(page.Issuances) != 4 {
		t.Fatalf("owner index after prune: %d %v", len(page.Issuances), err)
	}
}

func TestAuditNeverCarriesTokenSecretHash(t *testing.T) {
	sum := sha256.Sum256([]byte("the join token secret"))
	hash := sum[:]
	encoded := base64.StdEncoding.EncodeToString(hash) // how encoding/json writes a []byte
	tests := []struct {
		name, mode, to string
	}{
		{"reassign", OffboardReassign, "payments"},
		{"disable", OffboardDisable, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := WithActor(context.Background(), "uid:0(root)")
			s := storeWithOwners(t, ctx, "alice", "payments")
			if _, err := s.CreateJoinToken(ctx, JoinToken{ID: "t1", SecretHash: hash, Owner: "alice",
				ExpiresAt: time.Now().Add(time.Hour), CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			res, err := s.OffboardOwner(ctx, "alice", tc.mode, tc.to, "left")
			if err != nil || len(res.Tokens) != 1 {
				t.Fatalf("offboard: %+v %v", res, err)
			}
			if tok, _ := s.JoinToken("t1"); !bytes.Equal(tok.SecretHash, hash) {
				t.Fatalf("stored token lost its hash: %x", tok.SecretHash)
			}
			recs, _, err := s.AuditLog(AuditQuery{Limit: MaxLedgerLimit})
			if err != nil {
				t.Fatal(err)
			}
			tokenRecords := 0
			for _, r := range recs {
				if r.Object == "t1" {
					tokenRecords++
				}
				for _, part := range [][]byte{r.Before, r.After} {
					if bytes.Contains(part, []byte(encoded)) || bytes.Contains(part, []byte("secret_hash\":\"")) {
						t.Errorf("audit record %d (%s %s) carries the secret hash: %s", r.Seq, r.Action, r.Object, part)
					}
				}
			}
			if tokenRecords != 2 { // token.create, token.offboard-<mode>
				t.Fatalf("audit records of the token: %d, want 2", tokenRecords)
			}
		})
	}
}

func TestLedgerPruneIsBoundedByRecords(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cutoff := base.Add(6 * time.Second) // batches 0..5 are before it, 6..7 after
	tests := []struct {
		name                     string
		maxBatches, maxRecords   int
		wantBatches, wantRecords int
		wantBounded              bool
	}{
		{"record bound stops between batches", 100, 10, 2, 8, true},
		{"record bound on a batch boundary", 100, 8, 2, 8, true},
		{"a batch larger than the bound still goes", 100, 3, 1, 4, true},
		{"batch bound first", 1, 10, 1, 4, false},
		{"no record bound", 100, 0, 6, 24, false},
		{"everything before the cutoff fits", 100, 1000, 6, 24, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStoreClock(t, t.TempDir(), stepClock(base))
			defer s.Close()
			appendBatches(t, s, 8, 4)
			resp, err := s.propose(ctx, cmdLedgerPrune, ledgerPruneCmd{Before: cutoff, MaxBatches: tc.maxBatches, MaxRecords: tc.maxRecords}.wire())
			if err != nil {
				t.Fatal(err)
			}
			want := pruneResult{Batches: tc.wantBatches, Records: tc.wantRecords, Bounded: tc.wantBounded}
			if got := resp.(pruneResult); got != want {
				t.Fatalf("prune command: %+v, want %+v", got, want)
			}
			assertPruned(t, s, 8, 4, tc.wantBatches)
		})
	}

	t.Run("pruneLedger issues bounded commands until maxBatches", func(t *testing.T) {
		s := openTestStoreClock(t, t.TempDir(), stepClock(base))
		defer s.Close()
		appendBatches(t, s, 8, 4)
		n, err := s.pruneLedger(ctx, cutoff, 5, 10) // 2 + 2 + 1 batches, three commands
		if err != nil || n != 5 {
			t.Fatalf("pruneLedger: %d %v, want 5", n, err)
		}
		assertPruned(t, s, 8, 4, 5)
		if n, err = s.pruneLedger(ctx, cutoff, 5, 10); err != nil || n != 1 {
			t.Fatalf("second pruneLedger: %d %v, want 1", n, err)
		}
		assertPruned(t, s, 8, 4, 6)
		if n, err = s.pruneLedger(ctx, cutoff, 5, 10); err != nil || n != 0 {
			t.Fatalf("third pruneLedger: %d %v, want 0", n, err)
		}
	})
}

// appendBatches commits batches ledger batches of size records each; record i of batch b has ID
// b*size+i, and the batch's entry, SPIFFE ID, agent and signing key are shared by its records.
func appendBatches(t *testing.T, s *Store, batches, size int) {
	t.Helper()
	for b := range batches {
		recs := make([]Issuance, size)
		for i := range recs {
			recs[i] = issuance(b*size+i, "alice", fmt.Sprintf("e%d", b), time.Time{})
			recs[i].SignedBy = fmt.Sprintf("key-%d", b)
		}
		if err := s.AppendLedger(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
}

// assertPruned checks that exactly the first pruned batches of appendBatches are gone, records and
// index keys alike.
func assertPruned(t *testing.T, s *Store, batches, size, pruned int) {
	t.Helper()
	for b := range batches {
		for i := range size {
			_, err := s.LookupIssuance(fmt.Sprintf("%032x", b*size+i))
			if gone := b < pruned; gone != errors.Is(err, ErrIssuanceNotFound) {
				t.Fatalf("record %d of batch %d (pruned %d batches): %v", i, b, pruned, err)
			}
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLedger, bucketLedgerByOwner, bucketLedgerByEntry, bucketLedgerBySPIFFE, bucketLedgerByAgent, bucketLedgerBySigner} {
			if n := tx.Bucket(name).Stats().KeyN; n != batches-pruned {
				t.Errorf("bucket %s: %d keys, want %d (one per remaining batch)", name, n, batches-pruned)
			}
		}
		if n := tx.Bucket(bucketLedgerByID).Stats().KeyN; n != (batches-pruned)*size {
			t.Errorf("ID index: %d keys, want %d", n, (batches-pruned)*size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The dry run is the same code as the write: it refuses what the write refuses, and otherwise plans
// exactly what the write then does.
func TestPlanOffboardMatchesOffboard(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	for _, o := range []string{"alice", "bob", "carol", "gone"} {
		if _, err := s.CreateOwner(ctx, Owner{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range []string{"alice", "bob", "alice", "carol"} {
		if _, err := s.CreateEntry(ctx, testEntry(t, fmt.Sprintf("e%d", i), fmt.Sprintf("spiffe://example.org/%d", i), o)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []JoinToken{{ID: "t1", Owner: "alice"}, {ID: "t2", Owner: "bob"}, {ID: "t3", Owner: "alice"}} {
		tok.ExpiresAt = time.Now().Add(time.Hour)
		if _, err := s.CreateJoinToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetEntryState(ctx, "e1", EntryDisable, "already off"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OffboardOwner(ctx, "gone", OffboardDisable, "", ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, owner, mode, to string
		want                  error // nil: both succeed
	}{
		{"unknown owner", "nobody", OffboardDisable, "", ErrOwnerNotFound},
		{"already offboarded", "gone", OffboardDisable, "", ErrOwnerOffboarded},
		{"reassign to itself", "alice", OffboardReassign, "alice", ErrInvalid},
		{"reassign to an unknown owner", "alice", OffboardReassign, "nobody", ErrOwnerNotFound},
		{"reassign to an offboarded owner", "alice", OffboardReassign, "gone", ErrOwnerOffboarded},
		{"unknown mode", "alice", "archive", "", ErrInvalid},
		{"empty mode", "alice", "", "", ErrInvalid},
		{"reassign", "alice", OffboardReassign, "carol", nil},
		{"disable, one entry already disabled", "bob", OffboardDisable, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev := s.Revision()
			plan, planErr := s.PlanOffboard(ctx, tc.owner, tc.mode, tc.to, "why")
			if s.Revision() != rev {
				t.Fatal("the dry run changed the registry")
			}
			res, err := s.OffboardOwner(ctx, tc.owner, tc.mode, tc.to, "why")
			if tc.want != nil {
				if !errors.Is(planErr, tc.want) || !errors.Is(err, tc.want) {
					t.Fatalf("dry run: %v; offboard: %v; want both %v", planErr, err, tc.want)
				}
				return
			}
			if planErr != nil || err != nil {
				t.Fatalf("dry run: %v; offboard: %v; want both to succeed", planErr, err)
			}
			if len(res.Entries) == 0 || len(res.Tokens) == 0 {
				t.Fatalf("offboarding %s changed nothing: %+v", tc.owner, res)
			}
			// The plan was made a moment earlier: only the proposers' times differ.
			clearTimes := func(r *OffboardResult) {
				r.Owner.OffboardedAt = time.Time{}
				for i := range r.Entries {
					r.Entries[i].UpdatedAt = time.Time{}
					if r.Entries[i].DisabledBy == "uid:0(root)" && strings.Contains(r.Entries[i].DisabledReason, "offboarded") {
						r.Entries[i].DisabledAt = time.Time{}
					}
				}
			}
			clearTimes(&plan)
			clearTimes(&res)
			if pj, rj := mustJSON(&plan), mustJSON(&res); !bytes.Equal(pj, rj) {
				t.Fatalf("dry run planned\n%s\nthe write did\n%s", pj, rj)
			}
		})
	}
}

// rewriteAudit replaces the stored audit log with edit(records), renumbered and re-hashed as an
// attacker with write access to state.db would, so that every link of the new chain holds.
func rewriteAudit(t *testing.T, dir string, edit func([]AuditRecord) []AuditRecord) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, stateFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		var recs []AuditRecord
		b := tx.Bucket(bucketAudit)
		if err := b.ForEach(func(k, v []byte) error {
			var r AuditRecord
			recs = append(recs, r)
			return json.Unmarshal(v, &recs[len(recs)-1])
		}); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketAudit); err != nil {
			return err
		}
		if b, err = tx.CreateBucket(bucketAudit); err != nil {
			return err
		}
		prev := ""
		recs = edit(recs)
		for i := range recs {
			recs[i].Seq, recs[i].PrevHash = uint64(i+1), prev
			recs[i].Hash = auditHash(recs[i])
			prev = recs[i].Hash
			if err := b.Put(auditKey(recs[i].Seq), mustJSON(&recs[i])); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := putUint64(meta, keyAuditSeq, uint64(len(recs))); err != nil {
			return err
		}
		return meta.Put(keyAuditHead, []byte(prev))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditAnchorCatchesRehashedChain: removing or altering a record and re-hashing the rest passes the
// chain check, but not a check against the head recorded before (an anchor), which names the anchored
// record; records appended after the anchor do not matter.
func TestAuditAnchorCatchesRehashedChain(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	for _, tc := range []struct {
		name    string
		edit    func([]AuditRecord) []AuditRecord
		later   bool // a real write after the tampering
		problem string
	}{
		{"record removed", func(r []AuditRecord) []AuditRecord { return append(r[:1], r[2:]...) }, false, "chain ends at record 3"},
		{"record removed, written after", func(r []AuditRecord) []AuditRecord { return append(r[:1], r[2:]...) }, true, "is not the checkpoint's"},
		{"record altered", func(r []AuditRecord) []AuditRecord { r[1].Reason = "nothing to see"; return r }, true, "is not the checkpoint's"},
		{"record removed, one forged after", func(r []AuditRecord) []AuditRecord {
			return append(append(r[:1], r[2:]...), AuditRecord{Actor: "signet", Action: "owner.create", Object: "x", Outcome: AuditOK})
		}, false, "is not the checkpoint's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir)
			for _, o := range []string{"alice", "bob", "carol", "dave"} {
				if _, err := s.CreateOwner(ctx, Owner{Name: o}); err != nil {
					t.Fatal(err)
				}
			}
			anchor, err := s.AuditHead()
			if err != nil || anchor.Seq != 4 || len(anchor.Hash) != 64 {
				t.Fatalf("audit head: %+v %v", anchor, err)
			}
			if v, err := s.VerifyAuditAgainst(anchor); err != nil || v.BrokenAt != 0 {
				t.Fatalf("verify against the head: %+v %v", v, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rewriteAudit(t, dir, tc.edit)
			s = openTestStore(t, dir)
			defer s.Close()
			if tc.later {
				if _, err := s.CreateOwner(ctx, Owner{Name: "erin"}); err != nil {
					t.Fatal(err)
				}
			}
			if v, err := s.VerifyAudit(); err != nil || v.BrokenAt != 0 {
				t.Fatalf("the re-hashed chain should pass the chain check alone: %+v %v", v, err)
			}
			v, err := s.VerifyAuditAgainst(anchor)
			if err != nil || v.BrokenAt != 4 || !strings.Contains(v.Problem, tc.problem) {
				t.Fatalf("verify against the anchor: %+v %v, want broken at 4 with %q", v, err, tc.problem)
			}
		})
	}
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	if _, err := s.VerifyAuditAgainst(AuditAnchor{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty anchor: %v", err)
	}
}

// TestOffboardChecked: an offboarding proposed with the entries checked against the policy is refused,
// changing nothing, when the owner's entries changed since the check; with the current ones it applies.
func TestOffboardChecked(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	s := storeWithOwners(t, ctx, "alice", "payments")
	if _, err := s.CreateEntry(ctx, testEntry(t, "e0", "spiffe://example.org/0", "alice")); err != nil {
		t.Fatal(err)
	}
	plan, err := s.PlanOffboard(ctx, "alice", OffboardReassign, "payments", "")
	if err != nil || len(plan.Revisions) != 1 || plan.Revisions["e0"] == 0 {
		t.Fatalf("plan: %+v %v", plan, err)
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/1", "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OffboardOwnerChecked(ctx, "alice", OffboardReassign, "payments", "", plan.Revisions); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "checked") {
		t.Fatalf("offboard with an entry added after the check: %v", err)
	}
	if o, _ := s.Owner("alice"); o.Offboarded {
		t.Fatal("the refused offboarding changed the owner")
	}
	if _, err := s.SetEntryState(ctx, "e1", EntryDisable, "x"); err != nil {
		t.Fatal(err)
	}
	plan, _ = s.PlanOffboard(ctx, "alice", OffboardReassign, "payments", "")
	if _, err := s.SetEntryState(ctx, "e1", EntryEnable, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OffboardOwnerChecked(ctx, "alice", OffboardReassign, "payments", "", plan.Revisions); !errors.Is(err, ErrConflict) {
		t.Fatalf("offboard with an entry changed after the check: %v", err)
	}
	plan, _ = s.PlanOffboard(ctx, "alice", OffboardReassign, "payments", "")
	res, err := s.OffboardOwnerChecked(ctx, "alice", OffboardReassign, "payments", "", plan.Revisions)
	if err != nil || len(res.Entries) != 2 || !res.Owner.Offboarded {
		t.Fatalf("offboard with the current check: %+v %v", res, err)
	}
}

// storeWithOwners opens a test store, closed when the test ends, holding the named owners.
func storeWithOwners(t *testing.T, ctx context.Context, names ...string) *Store {
	t.Helper()
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	for _, o := range names {
		if _, err := s.CreateOwner(ctx, Owner{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}
