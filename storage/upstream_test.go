package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRetainAuthority: retaining raises an authority's NotAfter (audited, kept across a restart, the
// bundle's sequence unchanged), never lowers it, and leaves a missing authority missing; a zero NotAfter
// is refused.
func TestRetainAuthority(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	now := time.Now().UTC().Truncate(time.Second)
	a := jwtAuthority(t, "root", "n1", now) // NotAfter now+1h
	if err := s.PutAuthority(ctx, a); err != nil {
		t.Fatal(err)
	}
	seq := s.Bundle().Sequence
	notAfter := func() time.Time {
		for _, got := range s.Authorities() {
			if got.ID == "root" {
				return got.NotAfter
			}
		}
		t.Fatal("the authority left the bundle")
		return time.Time{}
	}
	later := now.Add(3 * time.Hour)
	if err := s.RetainAuthority(ctx, AuthorityJWT, "root", later); err != nil {
		t.Fatal(err)
	}
	if got := notAfter(); !got.Equal(later) || s.Bundle().Sequence != seq || s.Authorities()[0].Node != "n1" {
		t.Fatalf("after retaining until %s: NotAfter %s, sequence %d (want %d), node %s", later, got, s.Bundle().Sequence, seq, s.Authorities()[0].Node)
	}
	if err := s.RetainAuthority(ctx, AuthorityJWT, "root", now.Add(2*time.Hour)); err != nil || !notAfter().Equal(later) {
		t.Fatalf("retaining until an earlier time: %v, NotAfter %s; want it unchanged at %s", err, notAfter(), later)
	}
	if err := s.RetainAuthority(ctx, AuthorityJWT, "missing", later); err != nil || len(s.Authorities()) != 1 {
		t.Fatalf("retaining a missing authority: %v, %d authorities; want a no-op", err, len(s.Authorities()))
	}
	if err := s.RetainAuthority(ctx, AuthorityJWT, "root", time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("retaining without a time: %v, want ErrInvalid", err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "bundle.retain-jwt", Limit: 10})
	if err != nil || len(recs) != 1 || recs[0].Object != "root" {
		t.Fatalf("audit of the retention: %+v, %v; want one record", recs, err)
	}
	s.Close()

	s = openTestStore(t, dir)
	defer s.Close()
	if got := notAfter(); !got.Equal(later) {
		t.Fatalf("NotAfter after restart %s, want %s", got, later)
	}
}
