package storage

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func jwtAuthority(t *testing.T, id, node string, at time.Time) Authority {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return Authority{Kind: AuthorityJWT, ID: id, DER: der, NotAfter: at.Add(time.Hour), Node: node, AddedAt: at}
}

// TestRemoveAuthority: a node's pruned key leaves the bundle (a new sequence, an audit record, a wake-up
// of bundle watchers, kept across a restart); removing it again is a no-op; another node's key is refused
// and stays.
func TestRemoveAuthority(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	now := time.Now().UTC().Truncate(time.Second)
	for _, a := range []Authority{jwtAuthority(t, "k1", "n1", now), jwtAuthority(t, "k2", "n1", now.Add(time.Second)), jwtAuthority(t, "k3", "n2", now.Add(2*time.Second))} {
		if err := s.PutAuthority(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	seq := s.Bundle().Sequence
	ch := s.Changed()
	if err := s.RemoveAuthority(ctx, AuthorityJWT, "k1", "n1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by a removal from the bundle")
	}
	b := s.Bundle()
	if _, ok := b.JWTAuthorities["k1"]; ok || len(b.JWTAuthorities) != 2 || b.Sequence != seq+1 {
		t.Fatalf("bundle after removal: %d keys (k1 present: %v), sequence %d; want k2 and k3, sequence %d", len(b.JWTAuthorities), ok, b.Sequence, seq+1)
	}
	if err := s.RemoveAuthority(ctx, AuthorityJWT, "k1", "n1"); err != nil || s.Bundle().Sequence != seq+1 {
		t.Fatalf("second removal: %v, sequence %d; want a no-op", err, s.Bundle().Sequence)
	}
	if err := s.RemoveAuthority(ctx, AuthorityJWT, "k3", "n1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("removing another node's key: %v, want ErrInvalid", err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "bundle.remove-jwt", Limit: 10})
	if err != nil || len(recs) != 1 || recs[0].Object != "k1" {
		t.Fatalf("audit of the removal: %+v, %v; want one record of k1", recs, err)
	}
	s.Close()

	s = openTestStore(t, dir)
	defer s.Close()
	var ids []string
	for _, a := range s.Authorities() {
		ids = append(ids, a.ID+"@"+a.Node)
	}
	if len(ids) != 2 || ids[0] != "k2@n1" || ids[1] != "k3@n2" {
		t.Fatalf("authorities after restart: %v, want [k2@n1 k3@n2]", ids)
	}
}

// TestRequestRotation: a rotation request names a server of the cluster (others are refused), gets the
// next sequence number, is kept per node, audited, and wakes Changed.
func TestRequestRotation(t *testing.T) {
	ctx := WithActor(context.Background(), "alice")
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	if _, err := s.RequestRotation(ctx, "node-nobody", "drill"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a server of this cluster") {
		t.Fatalf("request for an unknown node: %v", err)
	}
	if _, err := s.RequestRotation(ctx, s.NodeID(), strings.Repeat("x", MaxRotationReason+1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("request with a long reason: %v", err)
	}
	if r, err := s.LatestRotationRequest(s.NodeID()); err != nil || r.Seq != 0 {
		t.Fatalf("latest request before any: %+v, %v", r, err)
	}
	ch := s.Changed()
	for i, reason := range []string{"drill", "again"} {
		r, err := s.RequestRotation(ctx, s.NodeID(), reason)
		if err != nil || r.Seq != uint64(i+1) || r.By != "alice" || r.Reason != reason {
			t.Fatalf("request %d: %+v, %v", i+1, r, err)
		}
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by a rotation request")
	}
	if r, err := s.LatestRotationRequest(s.NodeID()); err != nil || r.Seq != 2 || r.Reason != "again" {
		t.Fatalf("latest request: %+v, %v", r, err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "ca.rotate-request", Limit: 10})
	if err != nil || len(recs) != 2 || recs[0].Object != s.NodeID() || recs[0].Actor != "alice" {
		t.Fatalf("audit of the requests: %+v, %v", recs, err)
	}
}
