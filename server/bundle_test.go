package server

import (
	"bytes"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
)

// Both APIs send the bundle alike: X.509 authorities oldest first, JWT keys sorted by key ID, every time.
func TestBundleSentAlikeAndSorted(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	for _, kid := range []string{"zz-key", "aa-key", "mm-key", "bb-key"} {
		der, err := x509.MarshalPKIXPublicKey(newP256(t).Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.st.PutAuthority(testCtx(t), storage.Authority{Kind: storage.AuthorityJWT, ID: kid, DER: der,
			NotAfter: time.Now().Add(time.Hour), Node: "other", AddedAt: time.Now().UTC()}); err != nil {
			t.Fatalf("PutAuthority %s: %v", kid, err)
		}
	}
	wantIDs := slices.Sorted(slices.Values([]string{"zz-key", "aa-key", "mm-key", "bb-key", e.ca.JWTKeyID()}))

	admin, err := e.srv.Admin.GetBundle(testCtx(t), &adminv1.GetBundleRequest{})
	if err != nil {
		t.Fatalf("GetBundle: %v", err)
	}
	var adminIDs []string
	for _, k := range admin.JwtAuthorities {
		adminIDs = append(adminIDs, k.KeyId)
	}
	if !slices.Equal(adminIDs, wantIDs) {
		t.Fatalf("admin bundle JWT keys %v, want %v", adminIDs, wantIDs)
	}
	// The agent API's bundle, through attestation and sync, is the admin's key for key, byte for byte.
	sameAsAdmin := func(what string, b *agentv1.Bundle) {
		t.Helper()
		if b == nil || b.Sequence != admin.Sequence || !slices.EqualFunc(b.X509Authorities, admin.X509Authorities, bytes.Equal) ||
			!slices.EqualFunc(b.JwtAuthorities, admin.JwtAuthorities, func(a *agentv1.JWTKey, d *adminv1.JWTKey) bool {
				return a.KeyId == d.KeyId && bytes.Equal(a.PublicKey, d.PublicKey)
			}) {
			t.Fatalf("%s bundle %v differs from the admin API's %v", what, b, admin)
		}
	}
	_, tok := e.joinToken(t, "alice", "")
	att, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)})
	if err != nil {
		t.Fatalf("AttestAgent: %v", err)
	}
	sameAsAdmin("attestation", att.Bundle)
	for range 5 { // map order would differ from one conversion to the next
		msgs := recvUpdate(t, syncStream(t, agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA})), 0))
		sameAsAdmin("sync", msgs[0].Bundle)
		again, err := e.srv.Admin.GetBundle(testCtx(t), &adminv1.GetBundleRequest{})
		if err != nil || !slices.EqualFunc(again.JwtAuthorities, admin.JwtAuthorities, func(a, d *adminv1.JWTKey) bool { return a.KeyId == d.KeyId }) {
			t.Fatalf("GetBundle again: %v, %v", again, err)
		}
	}
}
