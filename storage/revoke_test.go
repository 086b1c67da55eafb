package storage

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

func x509Authority(t *testing.T, node string, at time.Time) Authority {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: at, NotAfter: at.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{0xab, 0xcd, 0x01}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return Authority{Kind: AuthorityX509, ID: hex.EncodeToString(sum[:]), DER: der, NotAfter: at.Add(time.Hour), Node: node, AddedAt: at}
}

// TestRevokeKey: a revoked key leaves the bundle at once (a new sequence, Changed wakes), is recorded
// with the ID the ledger knows it by (the root's SKI), audited with actor and reason, and can never be
// published again (kept across a restart); an unknown key, an empty reason and a second revocation are
// refused.
func TestRevokeKey(t *testing.T) {
	ctx := WithActor(context.Background(), "alice")
	dir := t.TempDir()
	s := openTestStore(t, dir)
	now := time.Now().UTC().Truncate(time.Second)
	root, jwt := x509Authority(t, "n1", now), jwtAuthority(t, "k1", "n1", now.Add(time.Second))
	for _, a := range []Authority{root, jwt} {
		if err := s.PutAuthority(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RevokeKey(ctx, AuthorityX509, "nosuchkey", "leaked", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not in the bundle") {
		t.Fatalf("revoking an unknown key: %v", err)
	}
	if _, err := s.RevokeKey(ctx, AuthorityX509, root.ID, "", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("revoking without a reason: %v", err)
	}
	seq, ch := s.Bundle().Sequence, s.Changed()
	res, err := s.RevokeKey(ctx, AuthorityX509, root.ID, "key file copied off the host", nil)
	if err != nil || res.Revoked == nil || res.Pending != nil {
		t.Fatalf("revoke: %+v, %v", res, err)
	}
	if r := res.Revoked; r.SignerID != "abcd01" || r.Node != "n1" || r.By != "alice" || r.Reason != "key file copied off the host" || !r.NotAfter.Equal(root.NotAfter) {
		t.Fatalf("revoked key: %+v", r)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by a revocation")
	}
	if b := s.Bundle(); len(b.X509Authorities) != 0 || len(b.JWTAuthorities) != 1 || b.Sequence != seq+1 {
		t.Fatalf("bundle after revocation: %d roots, %d JWT keys, sequence %d (was %d)", len(b.X509Authorities), len(b.JWTAuthorities), b.Sequence, seq)
	}
	if _, err := s.RevokeKey(ctx, AuthorityX509, root.ID, "again", nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "already revoked by alice") {
		t.Fatalf("revoking it again: %v", err)
	}
	if err := s.PutAuthority(ctx, root); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("publishing the revoked key again: %v", err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "ca.revoke-key", Limit: 10})
	if err != nil || len(recs) != 1 || recs[0].Actor != "alice" || recs[0].Reason != "key file copied off the host" || !strings.Contains(recs[0].Object, root.ID) {
		t.Fatalf("audit of the revocation: %+v, %v", recs, err)
	}
	s.Close()

	s = openTestStore(t, dir)
	defer s.Close()
	keys, err := s.RevokedKeys()
	if err != nil || len(keys) != 1 || keys[0].ID != root.ID {
		t.Fatalf("revoked keys after restart: %+v, %v", keys, err)
	}
	if err := s.PutAuthority(ctx, root); !errors.Is(err, ErrInvalid) {
		t.Fatalf("publishing the revoked key after a restart: %v", err)
	}
	if len(s.Bundle().X509Authorities) != 0 {
		t.Fatal("the revoked key is back in the bundle after a restart")
	}
}

// TestRevokeKeyApproval: a revocation the policy holds for a second admin waits (the key stays in the
// bundle); its requester cannot approve it, another admin can, and only a pending one.
func TestRevokeKeyApproval(t *testing.T) {
	alice, bob := WithActor(context.Background(), "alice"), WithActor(context.Background(), "bob")
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	jwt := jwtAuthority(t, "k1", "n1", time.Now().UTC().Truncate(time.Second))
	if err := s.PutAuthority(alice, jwt); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApproveKeyRevocation(bob, AuthorityJWT, "k1"); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approving with nothing pending: %v", err)
	}
	res, err := s.RevokeKey(alice, AuthorityJWT, "k1", "leaked", []string{"two-person"})
	if err != nil || res.Pending == nil || res.Revoked != nil || res.Pending.By != "alice" {
		t.Fatalf("pending revocation: %+v, %v", res, err)
	}
	if _, ok := s.Bundle().JWTAuthorities["k1"]; !ok {
		t.Fatal("a pending revocation took the key out of the bundle")
	}
	if _, err := s.RevokeKey(alice, AuthorityJWT, "k1", "leaked", []string{"two-person"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "waits for approval") {
		t.Fatalf("a second pending request: %v", err)
	}
	if _, err := s.ApproveKeyRevocation(alice, AuthorityJWT, "k1"); !errors.Is(err, ErrSameApprover) {
		t.Fatalf("self-approval: %v", err)
	}
	res, err = s.ApproveKeyRevocation(bob, AuthorityJWT, "k1")
	if err != nil || res.Revoked == nil || res.Revoked.By != "bob" || res.Revoked.RequestedBy != "alice" || res.Revoked.Reason != "leaked" {
		t.Fatalf("approval: %+v, %v", res, err)
	}
	if _, ok := s.Bundle().JWTAuthorities["k1"]; ok {
		t.Fatal("the approved revocation left the key in the bundle")
	}
	if p, err := s.PendingRevocations(); err != nil || len(p) != 0 {
		t.Fatalf("pending after approval: %+v, %v", p, err)
	}
}

// TestRevokeIntermediate: an upstream intermediate (in no bundle) is revoked by its key ID and node: the
// bundle keeps its roots but moves to a new sequence listing it in RevokedSigners (Changed wakes), the
// revocation is recorded and audited, kept across a restart, and refused a second time; a malformed ID,
// a missing node, or an intermediate sent as key-revoke (and a bundle key as key-revoke-intermediate) are
// refused. A cluster with a server below command version 11 is not asked.
func TestRevokeIntermediate(t *testing.T) {
	ctx := WithActor(context.Background(), "alice")
	dir := t.TempDir()
	s := openTestStore(t, dir)
	now := time.Now().UTC().Truncate(time.Second)
	root := x509Authority(t, "n1", now)
	if err := s.PutAuthority(ctx, root); err != nil {
		t.Fatal(err)
	}
	in := Intermediate{ID: "0a1b2c", Node: "n1", NotAfter: now.Add(time.Hour)}
	for _, tc := range []struct {
		in   Intermediate
		want string
	}{
		{Intermediate{ID: "0A1B", Node: "n1"}, "lowercase hex"},
		{Intermediate{ID: strings.Repeat("a", maxKeyIDLen+1), Node: "n1"}, "lowercase hex"},
		{Intermediate{ID: "0a1b"}, "node of 0 bytes"},
	} {
		if _, err := s.RevokeIntermediate(ctx, tc.in, "leak", nil, false); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RevokeIntermediate(%+v): %v; want ErrInvalid naming %q", tc.in, err, tc.want)
		}
	}
	for _, tc := range []struct {
		t    commandType
		c    keyRevokeCmd
		want string
	}{
		{cmdKeyRevoke, keyRevokeCmd{Kind: AuthorityX509Intermediate, ID: "0a1b", Meta: s.newMeta(ctx, "leak")}, "want x509 or jwt"},
		{cmdKeyRevoke, keyRevokeCmd{Kind: AuthorityX509, ID: root.ID, Node: "n1", Meta: s.newMeta(ctx, "leak")}, "upstream intermediate only"},
		{cmdKeyRevokeIntermediate, keyRevokeCmd{Kind: AuthorityX509, ID: root.ID, Node: "n1", Meta: s.newMeta(ctx, "leak")}, "want x509-intermediate"},
	} {
		if _, err := s.propose(ctx, tc.t, tc.c.wire()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s of %+v: %v; want ErrInvalid naming %q", tc.t, tc.c, err, tc.want)
		}
	}
	seq, ch := s.Bundle().Sequence, s.Changed()
	res, err := s.RevokeIntermediate(ctx, in, "intermediate key copied off the host", nil, false)
	if err != nil || res.Revoked == nil {
		t.Fatalf("revoke: %+v, %v", res, err)
	}
	if r := res.Revoked; r.Kind != AuthorityX509Intermediate || r.ID != in.ID || r.SignerID != in.ID || r.Node != "n1" || !r.NotAfter.Equal(in.NotAfter) || r.By != "alice" {
		t.Fatalf("revoked intermediate: %+v", r)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by the revocation of an intermediate")
	}
	if b := s.Bundle(); len(b.X509Authorities) != 1 || b.Sequence != seq+1 || len(b.RevokedSigners) != 1 || b.RevokedSigners[0] != in.ID {
		t.Fatalf("bundle after the revocation: %d roots, sequence %d (was %d), revoked signers %v", len(b.X509Authorities), b.Sequence, seq, b.RevokedSigners)
	}
	if _, err := s.RevokeIntermediate(ctx, in, "again", nil, false); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "already revoked by alice") {
		t.Fatalf("revoking it again: %v", err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "ca.revoke-key", Limit: 10})
	if err != nil || len(recs) != 1 || recs[0].Object != "x509-intermediate key "+in.ID || recs[0].Reason != "intermediate key copied off the host" {
		t.Fatalf("audit of the revocation: %+v, %v", recs, err)
	}
	s.Close()

	s = openTestStore(t, dir)
	defer s.Close()
	if b := s.Bundle(); len(b.RevokedSigners) != 1 || b.RevokedSigners[0] != in.ID {
		t.Fatalf("revoked signers after a restart: %v", b.RevokedSigners)
	}

	old := storeWithOldVoter(t, commandVersionFederation)
	if _, err := old.RevokeIntermediate(ctx, in, "leak", nil, false); !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), fmt.Sprintf("needs version %d", commandVersionRevokeIntermediate)) {
		t.Fatalf("RevokeIntermediate with a server of version 10: %v; want ErrUpgradeInProgress", err)
	}
}

// TestRevokedSignersBounded: the bundle lists the most recent MaxRevokedSigners revoked intermediates.
func TestRevokedSignersBounded(t *testing.T) {
	ctx := WithActor(context.Background(), "alice")
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	for i := range MaxRevokedSigners + 2 {
		if _, err := s.RevokeIntermediate(ctx, Intermediate{ID: fmt.Sprintf("%04x", i), Node: "n1"}, "drill", nil, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Bundle().RevokedSigners; len(got) != MaxRevokedSigners || got[0] != "0002" || got[len(got)-1] != fmt.Sprintf("%04x", MaxRevokedSigners+1) {
		t.Fatalf("revoked signers: %d, from %v", len(got), got[:1])
	}
}

// TestRevokeIntermediateApproval: a revocation of an intermediate the policy holds for a second admin
// waits (nothing listed for agents); its requester cannot approve it, another admin can.
func TestRevokeIntermediateApproval(t *testing.T) {
	alice, bob := WithActor(context.Background(), "alice"), WithActor(context.Background(), "bob")
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	in := Intermediate{ID: "beef", Node: "n1"}
	pol, err := s.SetPolicy(alice, []PolicyRule{{Name: "two", ApprovalWhen: "true"}}, PolicyLimits{}, 0, "drill")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RevokeIntermediate(WithPolicyRevision(alice, pol.Revision), in, "leak", []string{"two"}, false)
	if err != nil || res.Pending == nil || res.Pending.Kind != AuthorityX509Intermediate {
		t.Fatalf("pending revocation: %+v, %v", res, err)
	}
	if b := s.Bundle(); len(b.RevokedSigners) != 0 {
		t.Fatalf("a pending revocation listed the intermediate: %v", b.RevokedSigners)
	}
	if _, err := s.RevokeIntermediate(alice, in, "", nil, true); !errors.Is(err, ErrSameApprover) {
		t.Fatalf("self-approval: %v", err)
	}
	res, err = s.RevokeIntermediate(bob, in, "", nil, true)
	if err != nil || res.Revoked == nil || res.Revoked.RequestedBy != "alice" || res.Revoked.By != "bob" || res.Revoked.Reason != "leak" {
		t.Fatalf("approval: %+v, %v", res, err)
	}
	if b := s.Bundle(); len(b.RevokedSigners) != 1 || b.RevokedSigners[0] != "beef" {
		t.Fatalf("revoked signers after the approval: %v", b.RevokedSigners)
	}
}
