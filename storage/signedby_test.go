package storage

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
)

// The ledger-append-signed encoding is pinned, and is raftv1.LedgerBatch of raftv1.Issuance records with
// signed_by (decoded strictly); only the types of command version 4 may carry the field.
func TestLedgerAppendSignedGolden(t *testing.T) {
	rec := Issuance{ID: "0a1b", Kind: KindJWTSVID, SPIFFEID: "spiffe://example.org/api", EntryID: "e1", Owner: "payments",
		Audience: []string{"aud-1"}, ExpiresAt: t2, Node: "node-1", Agent: "spiffe://example.org/agent/n1", SignedBy: "kid-1"}
	u := encodeUnstampedBatch([]Issuance{rec})
	got := u.appendStamped([]byte{byte(cmdLedgerAppendSigned)}, t1)
	if want := golden(t, "ledger-append-signed", got); !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
	}
	var batch raftv1.LedgerBatch
	if err := decodeWire(got[1:], &batch); err != nil {
		t.Fatal(err)
	}
	var m raftv1.Issuance
	if err := decodeWire(batch.GetRecords()[0], &m); err != nil {
		t.Fatal(err)
	}
	if m.GetSignedBy() != "kid-1" {
		t.Fatalf("record decodes with signed_by %q, want kid-1", m.GetSignedBy())
	}
	if err := checkRecordFields(batch.GetRecords()[0], true); err != nil {
		t.Fatal(err)
	}
	if err := checkRecordFields(batch.GetRecords()[0], false); !errors.Is(err, errBadRecord) {
		t.Fatalf("signed_by checked as a type that predates it: %v, want errBadRecord", err)
	}
	back, err := decodeIssuance(batch.GetRecords()[0])
	if err != nil || back.SignedBy != "kid-1" {
		t.Fatalf("decodeIssuance: %+v %v", back, err)
	}
}

// The older ledger-append type is replayed exactly as before: its golden bytes still apply, and a record
// carrying signed_by in it stops the node; the new type stores and indexes the signer.
func TestLedgerTypesAndTheSigner(t *testing.T) {
	db := openBareState(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "commands", "ledger-append.hex"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := applyOn(t, db, 1, old); err != nil {
		t.Fatalf("the committed ledger-append bytes: %v", err)
	}
	if v := schemaVersion(t, db); v != uint64(commandVersionJSON) {
		t.Fatalf("schema version %d after ledger-append, want %d", v, commandVersionJSON)
	}
	signed := encodeUnstampedBatch([]Issuance{{ID: "c1", Kind: KindX509SVID, ExpiresAt: t2, SignedBy: "aa01"}})
	if _, err := applyOn(t, db, 2, signed.appendStamped([]byte{byte(cmdLedgerAppend)}, t1)); !errors.Is(err, errBadCommand) {
		t.Fatalf("ledger-append carrying signed_by: %v, want errBadCommand (the node stops)", err)
	}
	if _, err := applyOn(t, db, 3, signed.appendStamped([]byte{byte(cmdLedgerAppendSigned)}, t1)); err != nil {
		t.Fatalf("ledger-append-signed: %v", err)
	}
	if v := schemaVersion(t, db); v != uint64(commandVersionSignedBy) {
		t.Fatalf("schema version %d after ledger-append-signed, want %d", v, commandVersionSignedBy)
	}
	err = db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketLedgerBySigner).Cursor().First()
		if !bytes.HasPrefix(k, []byte("aa01\x00")) {
			return fmt.Errorf("signed-by index key %q, want one for aa01", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Records carry their signing key, and a query by key lists the live credentials it signed.
func TestQueryLedgerBySigningKey(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	now := time.Now().UTC()
	rec := func(i int, owner, key string, kind IssuanceKind, expires time.Time) Issuance {
		r := issuance(i, owner, "e-"+owner, now)
		r.Kind, r.SignedBy, r.ExpiresAt = kind, key, expires
		return r
	}
	batches := [][]Issuance{
		{rec(1, "alice", "aa01", KindX509SVID, now.Add(-time.Minute))}, // expired by now
		{rec(2, "alice", "aa01", KindX509SVID, now.Add(time.Hour)), rec(3, "bob", "aa01", KindX509SVID, now.Add(time.Hour)),
			rec(4, "bob", "kid-1", KindJWTSVID, now.Add(time.Hour))},
		{rec(5, "carol", "bb02", KindX509SVID, now.Add(time.Hour))},
	}
	for _, b := range batches {
		if err := s.AppendLedger(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(t *testing.T, q LedgerQuery) []string {
		t.Helper()
		page, err := s.QueryLedger(q)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, r := range page.Issuances {
			out = append(out, r.ID[len(r.ID)-1:]+"/"+r.Owner)
		}
		return out
	}
	tests := []struct {
		name string
		q    LedgerQuery
		want []string
	}{
		{"every credential of the key", LedgerQuery{SignedBy: "aa01"}, []string{"3/bob", "2/alice", "1/alice"}},
		{"the live ones", LedgerQuery{SignedBy: "aa01", ValidAt: s.cfg.Clock()}, []string{"3/bob", "2/alice"}},
		{"with an owner", LedgerQuery{SignedBy: "aa01", Owner: "bob"}, []string{"3/bob"}},
		{"a JWT key", LedgerQuery{SignedBy: "kid-1", ValidAt: s.cfg.Clock()}, []string{"4/bob"}},
		{"an unknown key", LedgerQuery{SignedBy: "ffff"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(t, tc.q); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("%v, want %v", got, tc.want)
			}
		})
	}
	if r, err := s.LookupIssuance(fmt.Sprintf("%032x", 4)); err != nil || r.SignedBy != "kid-1" {
		t.Fatalf("lookup: %+v %v; want signed by kid-1", r, err)
	}
	// One index key per (key, batch).
	err := s.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketLedgerBySigner).Stats().KeyN; n != 4 {
			return fmt.Errorf("signed-by index: %d keys, want 4", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// While a server of the cluster does not understand command version 4, ledger records go on being
// committed, without their signer, in the types that predate it (proposed here, forwarded to this leader,
// or forwarded by this node); once every server does, they carry it.
func TestLedgerSignerWaitsForEveryServer(t *testing.T) {
	ctx := context.Background()
	s, _ := storeWithOldNode(t)
	report := func(v uint32) {
		t.Helper()
		if _, err := s.propose(ctx, cmdNodeVersion, nodeVersionCmd{NodeID: "old-node", Version: v}.wire()); err != nil {
			t.Fatal(err)
		}
	}
	report(commandVersionPolicy)
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	// commit records an issuance signed by key in each of the four ways (appended, forwarded to this
	// leader, with an agent's attestation and renewal) and returns what the ledger holds of each, and
	// whether a forwarded proposal from this node would carry the signer.
	commit := func(key string) (signers []string, forwardCarries bool) {
		t.Helper()
		n++
		r := issuance(n, "alice", "e1", time.Now())
		r.SignedBy = key
		if err := s.AppendLedger(ctx, []Issuance{r}); err != nil {
			t.Fatalf("AppendLedger: %v", err)
		}
		n++
		f := issuance(n, "alice", "e1", time.Now())
		f.SignedBy = key
		fu := encodeUnstampedBatch([]Issuance{f})
		out := s.ApplyProposal(ctx, Proposal{Ledger: fu.wire()})
		if out.Code != codeOK {
			t.Fatalf("a forwarded batch: %s", out.Message)
		}
		n++
		tok := fmt.Sprintf("t%d", n)
		newToken(t, s, tok, time.Now().Add(time.Hour))
		a := testAgent("spiffe://example.org/signet/agent/join_token/"+tok, fmt.Sprintf("%032x", n))
		ar := agentSVIDRecord(a.ID, a.Serial)
		ar.SignedBy = key
		if _, err := s.AttestAgent(ctx, tok, a, time.Now(), ar); err != nil {
			t.Fatalf("AttestAgent: %v", err)
		}
		n++
		rr := agentSVIDRecord(a.ID, fmt.Sprintf("%032x", n))
		rr.SignedBy = key
		if _, err := s.RenewAgent(ctx, a.ID, a.Serial, rr.ID, rr.ExpiresAt, time.Now(), rr); err != nil {
			t.Fatalf("RenewAgent: %v", err)
		}
		for _, id := range []string{r.ID, f.ID, ar.ID, rr.ID} {
			got, err := s.LookupIssuance(id)
			if err != nil {
				t.Fatal(err)
			}
			signers = append(signers, got.SignedBy)
		}
		p, _, err := s.forwardedLedger(encodeUnstampedBatch([]Issuance{r}), nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := decodeUnstampedWire(p.Ledger)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeIssuance(u.bodies)
		if err != nil {
			t.Fatal(err)
		}
		return signers, back.SignedBy == key
	}
	signers, fwd := commit("aa01")
	if fmt.Sprint(signers) != "[   ]" || fwd {
		t.Fatalf("during the upgrade: signers %q, forwarded records carry the signer: %v; want none", signers, fwd)
	}
	var sv uint64
	if err := s.view(func(tx *bolt.Tx) error { sv = getUint64(tx.Bucket(bucketMeta), keySchemaVersion); return nil }); err != nil {
		t.Fatal(err)
	}
	if sv >= uint64(commandVersionSignedBy) {
		t.Fatalf("schema version %d during the upgrade: a type of version 4 was proposed", sv)
	}
	report(commandVersionSignedBy)
	signers, fwd = commit("aa01")
	if fmt.Sprint(signers) != "[aa01 aa01 aa01 aa01]" || !fwd {
		t.Fatalf("after the upgrade: signers %q, forwarded records carry the signer: %v; want aa01 everywhere", signers, fwd)
	}
	page, err := s.QueryLedger(LedgerQuery{SignedBy: "aa01"})
	if err != nil || len(page.Issuances) != 4 {
		t.Fatalf("query by signer: %d records, %v; want the 4 committed after the upgrade", len(page.Issuances), err)
	}
}
