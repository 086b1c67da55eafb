package server

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// adminCtxKey carries, in a test's context, the admin the admin API sees (revokeEnv).
type adminCtxKey struct{}

func asAdmin(ctx context.Context, admin string) context.Context {
	return context.WithValue(ctx, adminCtxKey{}, admin)
}

// revokeEnv is a node with rotating keys whose admin API sees the admin asAdmin put in the context.
func revokeEnv(t *testing.T) (*env, *rotation.Manager) {
	t.Helper()
	return newRotatingEnv(t, newManualClock(), func(c *Config) {
		c.AdminAuth = func(ctx context.Context) (string, error) {
			if a, ok := ctx.Value(adminCtxKey{}).(string); ok {
				return a, nil
			}
			return "test-admin", nil
		}
	})
}

func inBundle(st *storage.Store, id string) bool {
	for _, a := range st.Authorities() {
		if a.ID == id {
			return true
		}
	}
	return false
}

// TestRevokeKeyRefusesBadInput: no key ID, an unknown key, no reason, a reason with an approval, and a
// key revoked already are refused with the code and a message naming the field or the key; the key
// can be named by its SHA-256 ID (ca status) as well as its SKI.
func TestRevokeKeyRefusesBadInput(t *testing.T) {
	e, keys := revokeEnv(t)
	first := keys.Slots()[0]
	tests := []struct {
		name string
		req  *adminv1.RevokeKeyRequest
		code codes.Code
		want string
	}{
		{"no key", &adminv1.RevokeKeyRequest{Reason: "leak"}, codes.InvalidArgument, "key_id is required"},
		{"unknown key", &adminv1.RevokeKeyRequest{KeyId: "0123abcd", Reason: "leak"}, codes.NotFound, "key 0123abcd"},
		{"no reason", &adminv1.RevokeKeyRequest{KeyId: first.X509ID}, codes.InvalidArgument, "reason is required"},
		{"blank reason", &adminv1.RevokeKeyRequest{KeyId: first.X509ID, Reason: "  "}, codes.InvalidArgument, "reason is required"},
		{"approval with a reason", &adminv1.RevokeKeyRequest{KeyId: first.X509ID, Reason: "leak", Approve: true}, codes.InvalidArgument, "reason"},
		{"approval of nothing pending", &adminv1.RevokeKeyRequest{KeyId: first.X509ID, Approve: true}, codes.FailedPrecondition, "waits for approval"},
	}
	for _, tc := range tests {
		if _, err := e.srv.Admin.RevokeKey(testCtx(t), tc.req); status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %s naming %q", tc.name, err, tc.code, tc.want)
		}
	}
	if !inBundle(e.st, first.X509ID) || keys.Active() != first.CA {
		t.Fatal("a refused revocation changed the keys")
	}
	if _, err := e.srv.Admin.RevokeKey(testCtx(t), &adminv1.RevokeKeyRequest{KeyId: first.X509ID, Reason: "leak"}); err != nil {
		t.Fatalf("revoke by the SHA-256 ID: %v", err)
	}
	for _, id := range []string{first.X509ID, first.CA.X509KeyID()} {
		if _, err := e.srv.Admin.RevokeKey(testCtx(t), &adminv1.RevokeKeyRequest{KeyId: id, Reason: "again"}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "revoked") || !strings.Contains(err.Error(), "test-admin") {
			t.Errorf("revoking %s again: %v; want FailedPrecondition, revoked by test-admin", id, err)
		}
	}
}

// TestRevokeOnlyKey: the node's active key is the trust domain's only one: a successor is active and in
// the bundle before the revoked key leaves it, the revoked slot is pruned, and an SVID signed now
// verifies against the bundle of the moment.
func TestRevokeOnlyKey(t *testing.T) {
	e, keys := revokeEnv(t)
	first := keys.Slots()[0]
	if n := len(e.st.Bundle().X509Authorities); n != 1 {
		t.Fatalf("%d X.509 authorities, want the node's one", n)
	}
	if cert, err := e.srv.Issuer.ServerCertificate(testCtx(t)); err != nil || hex.EncodeToString(cert.Leaf.AuthorityKeyId) != first.CA.X509KeyID() {
		t.Fatalf("server SVID before the revocation: %v", err)
	}
	resp, err := e.srv.Admin.RevokeKey(testCtx(t), &adminv1.RevokeKeyRequest{KeyId: first.CA.X509KeyID(), Reason: "compromised"})
	if err != nil {
		t.Fatal(err)
	}
	next := resp.GetActivated()
	if next == nil || next.X509Id == first.X509ID || !inBundle(e.st, next.X509Id) || inBundle(e.st, first.X509ID) {
		t.Fatalf("after revoking the only key: activated %+v; bundle %v", next, e.st.Authorities())
	}
	if keys.Active().X509KeyID() == first.CA.X509KeyID() || keys.Slots()[0].State != rotation.Pruned || !keys.Slots()[0].Revoked {
		t.Fatalf("slots after the revocation: %+v", keys.Slots())
	}
	// The server SVID was renewed with the new key (agents verify it against the bundle).
	cert, err := e.srv.Issuer.ServerCertificate(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(cert.Leaf.AuthorityKeyId); got != keys.Active().X509KeyID() {
		t.Fatalf("server SVID signed by %s after the revocation, want the new key %s", got, keys.Active().X509KeyID())
	}
	// The JWT key of the revoked slot stays (nothing signs with it any more, and its tokens still verify).
	if !inBundle(e.st, first.JWTKeyID) {
		t.Fatal("revoking the X.509 key took the slot's JWT key out of the bundle too")
	}
	st, err := e.srv.Admin.CAStatus(testCtx(t), &adminv1.CAStatusRequest{})
	if err != nil || st.Keys[0].State != "revoked" || st.Keys[0].InBundle {
		t.Fatalf("ca status after the revocation: %+v, %v; want slot 1 revoked, out of the bundle", st.GetKeys(), err)
	}
	recs, _, err := e.st.AuditLog(storage.AuditQuery{Action: "ca.rotate", Limit: 10})
	if err != nil || len(recs) == 0 || !strings.Contains(recs[len(recs)-1].Reason, "revoked by test-admin") {
		t.Fatalf("audit of the retirement: %+v, %v", recs, err)
	}
}

// TestRevokeKeyTwoPerson: with a policy asking a second admin for key revocations, alice's revocation
// waits (the key stays in the bundle and signs), her own approval is refused, bob's carries it out.
func TestRevokeKeyTwoPerson(t *testing.T) {
	e, keys := revokeEnv(t)
	first := keys.Slots()[0]
	if _, err := e.st.SetPolicy(storage.WithActor(testCtx(t), "carol"), []storage.PolicyRule{
		{Name: "two-person-revoke", ApprovalWhen: `action == "ca.revoke-key"`},
		{Name: "team-paths", DenyUnless: `entry.path.startsWith("/team/")`}, // an entry rule: no say in revocations
	}, storage.PolicyLimits{}, 0, "incident drill"); err != nil {
		t.Fatal(err)
	}
	alice, bob := asAdmin(testCtx(t), "alice"), asAdmin(testCtx(t), "bob")
	resp, err := e.srv.Admin.RevokeKey(alice, &adminv1.RevokeKeyRequest{KeyId: first.JWTKeyID, Reason: "kid leaked"})
	if err != nil || resp.Revoked != nil || strings.Join(resp.PendingRules, ",") != "two-person-revoke" {
		t.Fatalf("alice's revocation: %+v, %v; want pending on two-person-revoke", resp, err)
	}
	if !inBundle(e.st, first.JWTKeyID) || keys.Active() != first.CA {
		t.Fatal("a pending revocation changed the keys")
	}
	if _, err := e.srv.Admin.RevokeKey(alice, &adminv1.RevokeKeyRequest{KeyId: first.JWTKeyID, Approve: true}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice approving her own revocation: %v, want PermissionDenied", err)
	}
	resp, err = e.srv.Admin.RevokeKey(bob, &adminv1.RevokeKeyRequest{KeyId: first.JWTKeyID, Approve: true})
	if err != nil || resp.Revoked.GetRevokedBy() != "bob" || resp.Revoked.GetRequestedBy() != "alice" || resp.Revoked.GetReason() != "kid leaked" || resp.Activated == nil {
		t.Fatalf("bob's approval: %+v, %v", resp, err)
	}
	if inBundle(e.st, first.JWTKeyID) || keys.Active().JWTKeyID() == first.JWTKeyID {
		t.Fatal("the approved revocation left the key in the bundle or signing")
	}
}
