package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestFederation: a relationship is created once (with or without a bundle), bounded in number, its
// bundle stored only when it changed (a new revision, an audit record, a wake-up of Changed), deleted,
// and kept across a restart.
func TestFederation(t *testing.T) {
	ctx := WithActor(context.Background(), "alice")
	dir := t.TempDir()
	s := openTestStore(t, dir)
	f := Federation{TrustDomain: "other.org", BundleEndpointURL: "https://other.org:8443/", Profile: "https_web"}
	got, err := s.CreateFederation(ctx, f, "partner")
	if err != nil || got.CreatedBy != "alice" || got.BundleRevision != 0 || got.CreatedAt.IsZero() {
		t.Fatalf("create: %+v, %v", got, err)
	}
	if _, err := s.CreateFederation(ctx, f, ""); !errors.Is(err, ErrFederationExists) {
		t.Fatalf("second create: %v, want ErrFederationExists", err)
	}
	with := Federation{TrustDomain: "third.org", BundleEndpointURL: "https://third.org/", Profile: "https_spiffe",
		EndpointSPIFFEID: "spiffe://third.org/x", Bundle: []byte(`{"keys":[1]}`)}
	if got, err := s.CreateFederation(ctx, with, ""); err != nil || got.BundleRevision != 1 || string(got.Bundle) != `{"keys":[1]}` {
		t.Fatalf("create with a bundle: %+v, %v", got, err)
	}
	if _, err := s.CreateFederation(ctx, Federation{TrustDomain: "big.org", Bundle: make([]byte, MaxFederatedBundleBytes+1)}, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("create with an oversized bundle: %v, want ErrInvalid", err)
	}
	ch := s.Changed()
	got, err = s.SetFederatedBundle(ctx, "other.org", []byte(`{"keys":[2]}`))
	if err != nil || got.BundleRevision != 1 || got.BundleUpdatedAt.IsZero() {
		t.Fatalf("set bundle: %+v, %v", got, err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by a bundle change")
	}
	if got, err = s.SetFederatedBundle(ctx, "other.org", []byte(`{"keys":[2]}`)); err != nil || got.BundleRevision != 1 {
		t.Fatalf("the same bundle again: %+v, %v; want no change", got, err)
	}
	if got, err = s.SetFederatedBundle(ctx, "other.org", []byte(`{"keys":[3]}`)); err != nil || got.BundleRevision != 2 {
		t.Fatalf("a new bundle: %+v, %v; want revision 2", got, err)
	}
	if _, err := s.SetFederatedBundle(ctx, "nobody.org", []byte(`{}`)); !errors.Is(err, ErrFederationNotFound) {
		t.Fatalf("bundle of an unknown trust domain: %v", err)
	}
	if _, err := s.SetFederatedBundle(ctx, "other.org", make([]byte, MaxFederatedBundleBytes+1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized bundle: %v", err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "federation.bundle-update", Limit: 10})
	if err != nil || len(recs) != 2 || recs[0].Object != "other.org" {
		t.Fatalf("audit of the bundle updates: %+v, %v; want two", recs, err)
	}
	// The audit log holds the bundle's digest, not the document.
	if after := string(recs[1].After); strings.Contains(after, `keys`) || !strings.Contains(after, `"bundle_sha256"`) {
		t.Fatalf("audited bundle update: %s; want the digest, not the document", after)
	}
	if _, err := s.DeleteFederation(ctx, "third.org", "ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteFederation(ctx, "third.org", ""); !errors.Is(err, ErrFederationNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	for _, action := range []string{"federation.create", "federation.delete"} {
		if recs, _, err := s.AuditLog(AuditQuery{Action: action, Limit: 10}); err != nil || len(recs) == 0 || recs[0].Actor != "alice" {
			t.Fatalf("audit %s: %+v, %v", action, recs, err)
		}
	}
	s.Close()

	s = openTestStore(t, dir)
	defer s.Close()
	all, err := s.Federations()
	if err != nil || len(all) != 1 || all[0].TrustDomain != "other.org" || string(all[0].Bundle) != `{"keys":[3]}` {
		t.Fatalf("after restart: %+v, %v", all, err)
	}
	for i := len(all); i < MaxFederations; i++ {
		if _, err := s.CreateFederation(ctx, Federation{TrustDomain: fmt.Sprintf("td%d.org", i), Profile: "https_web"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateFederation(ctx, Federation{TrustDomain: "one-too-many.org"}, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("create past MaxFederations: %v, want ErrInvalid", err)
	}
}

// An entry's federates_with is replicated by the entry types of command version 10, proposed only for
// entries that have it; an older entry type carrying it stops the node (an older replica would drop it).
func TestEntryFederatesWith(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateOwner(ctx, Owner{Name: "payments"}); err != nil {
		t.Fatal(err)
	}
	e := Entry{ID: "e1", SPIFFEID: "spiffe://example.org/api", ParentID: "spiffe://example.org/agent", Owner: "payments",
		X509TTL: time.Hour, JWTTTL: time.Hour, FederatesWith: []string{"other.org"}}
	for _, tc := range []struct {
		e    Entry
		want commandType
	}{{e, cmdEntryCreateFederated}, {Entry{ID: "e2"}, cmdEntryCreate}} {
		if got := federatedType(cmdEntryCreate, tc.e); got != tc.want {
			t.Errorf("federatedType(entry-create, %v) = %s, want %s", tc.e.FederatesWith, got, tc.want)
		}
	}
	got, err := s.CreateEntry(ctx, e)
	if err != nil || len(got.FederatesWith) != 1 {
		t.Fatalf("create: %+v, %v", got, err)
	}
	got.FederatesWith = []string{"other.org", "third.org"}
	if got, err = s.UpdateEntry(ctx, got, got.Revision, "federate more"); err != nil || len(got.FederatesWith) != 2 {
		t.Fatalf("update: %+v, %v", got, err)
	}
	e2 := e
	e2.ID, e2.SPIFFEID = "e3", "spiffe://example.org/batch"
	if res, err := s.CreateEntries(ctx, []Entry{e2}); err != nil || res[0].Err != nil || len(res[0].Entry.FederatesWith) != 1 {
		t.Fatalf("batch: %+v, %v", res, err)
	}
	s.Close()
	s = openTestStore(t, dir)
	defer s.Close()
	if got, err := s.Entry("e1"); err != nil || len(got.FederatesWith) != 2 {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	// The old type with the field is an entry this node cannot apply.
	old, err := encodeCommand(cmdEntryCreate, entryCreateCmd{Entry: e, Meta: auditMeta{Actor: "x"}}.wire())
	if err != nil {
		t.Fatal(err)
	}
	err = s.view(func(tx *bolt.Tx) error {
		_, err := applyCommand(tx, 99, old)
		return err
	})
	if !errors.Is(err, errBadCommand) {
		t.Fatalf("entry-create carrying federates_with: %v, want errBadCommand", err)
	}
}
