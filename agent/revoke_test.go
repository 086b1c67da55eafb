package agent_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tokenKid returns the kid of a JWT-SVID's header.
func tokenKid(t *testing.T, token string) string {
	t.Helper()
	h, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	var hdr struct{ Kid string }
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	return hdr.Kid
}

// TestRevokedKeyReminted: the server's active X.509 key, the trust domain's only one, is revoked through
// the admin API while a workload holds an SVID it signed: the server activates a successor first, the
// agent drops the SVID at the bundle update and mints it again at once (long before its half life),
// and what the workload is served verifies against a bundle without the revoked key. Revoking the JWT
// key too drops the JWT-SVID the agent cached; the next one is signed by the successor's kid.
func TestRevokedKeyReminted(t *testing.T) {
	keys, err := rotation.Open(rotation.Config{Dir: t.TempDir(), New: rotation.DiskFactory(testTD, rotation.DefaultTTL, nil), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e := newBufconnEnvWith(t, func(c *server.Config) { c.CA, c.Keys = nil, keys })
	const id = "spiffe://example.org/web"
	e.entry(t, entrySpec{spiffeID: id})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	old := keys.Slots()[0]
	oldSKI := old.CA.X509KeyID()
	before, _ := findSVID(fetchSVIDs(t, a, uid1000(t), 1), id)
	if got := hex.EncodeToString(leafOf(t, before).AuthorityKeyId); got != oldSKI {
		t.Fatalf("SVID signed by %s, want the active key %s", got, oldSKI)
	}
	ctx := testCtx(t, testDeadline)
	cached, err := a.FetchJWTSVIDs(ctx, workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"db"}})
	if err != nil || len(cached) != 1 || tokenKid(t, cached[0].Token) != old.JWTKeyID {
		t.Fatalf("JWT-SVID before the revocation: %v, %v; want one signed by %s", cached, err, old.JWTKeyID)
	}

	resp, err := e.srv.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: oldSKI, Reason: "root key copied off the host"})
	if err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if resp.Activated == nil || resp.Revoked.GetSignerId() != oldSKI || resp.Revoked.GetId() != old.X509ID || resp.Revoked.GetRevokedBy() != "test-admin" {
		t.Fatalf("RevokeKey response: %+v", resp)
	}
	hasOld := func(ids workloadapi.Identities) bool {
		b, err := x509bundle.ParseRaw(testTD, ids.X509Bundle)
		if err != nil {
			t.Fatalf("bundle: %v", err)
		}
		for _, r := range b.X509Authorities() {
			if hex.EncodeToString(r.SubjectKeyId) == oldSKI {
				return true
			}
		}
		return false
	}
	ids := waitIdentities(t, a, uid1000(t), testDeadline, "an SVID of the new key and a bundle without the revoked one", func(ids workloadapi.Identities) bool {
		s, ok := findSVID(ids, id)
		return ok && !hasOld(ids) && hex.EncodeToString(leafOf(t, s).AuthorityKeyId) == keys.Active().X509KeyID()
	})
	after, _ := findSVID(ids, id)
	leaf := checkSVID(t, ids, after) // verifies against the bundle the workload is served
	if after.Serial == before.Serial || hex.EncodeToString(leaf.AuthorityKeyId) == oldSKI {
		t.Fatalf("after the revocation the workload is served %s signed by %x", after.Serial, leaf.AuthorityKeyId)
	}

	// The JWT key of the revoked slot stays in the bundle (its tokens still verify) until it is revoked too.
	if _, err := e.srv.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: old.JWTKeyID, Reason: "the JWT key sat next to it"}); err != nil {
		t.Fatalf("RevokeKey of the JWT key: %v", err)
	}
	waitIdentities(t, a, uid1000(t), testDeadline, "a JWT bundle without the revoked kid", func(ids workloadapi.Identities) bool {
		return !strings.Contains(string(ids.JWTBundle), old.JWTKeyID)
	})
	got, err := a.FetchJWTSVIDs(ctx, workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"db"}})
	if err != nil || len(got) != 1 {
		t.Fatalf("JWT-SVID after the revocation: %v, %v", got, err)
	}
	if got[0].Token == cached[0].Token || tokenKid(t, got[0].Token) != keys.Active().JWTKeyID() {
		t.Fatalf("JWT-SVID after the revocation is signed by %s (cached token served again: %v), want %s", tokenKid(t, got[0].Token), got[0].Token == cached[0].Token, keys.Active().JWTKeyID())
	}
}

// TestSVIDOfRevokedKeyNotInstalled: a server whose keys do not rotate (a key manager's) has its key
// revoked: it leaves the bundle, and the server goes on signing with it. The agent drops the SVID it
// held, does not install the ones the server returns signed by the removed key (the workload waits,
// served nothing that does not verify), and refuses to hand out a JWT-SVID of the removed kid.
func TestSVIDOfRevokedKeyNotInstalled(t *testing.T) {
	e := newBufconnEnv(t)
	const id = "spiffe://example.org/web"
	e.entry(t, entrySpec{spiffeID: id})
	log, refused := newLogCounter(t, "signed by a key no longer in the bundle; asking again")
	a, _ := startAgent(t, e.client(), func(c *agent.Config) { c.Logger = log })
	waitReady(t, a)
	fetchSVIDs(t, a, uid1000(t), 1)
	ctx := testCtx(t, testDeadline)
	resp, err := e.srv.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: e.ca.X509KeyID(), Reason: "HSM key exported"})
	if err != nil || !strings.Contains(resp.Note, "do not rotate") {
		t.Fatalf("RevokeKey: %+v, %v; want a note that this server's keys do not rotate", resp, err)
	}
	if _, err := e.srv.Admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{KeyId: e.ca.JWTKeyID(), Reason: "HSM key exported"}); err != nil {
		t.Fatal(err)
	}
	waitIdentities(t, a, uid1000(t), testDeadline, "a re-minted SVID of the removed key refused", func(ids workloadapi.Identities) bool {
		return refused.count() > 0 && len(ids.SVIDs) == 0 && ids.Pending
	})
	if _, err := a.FetchJWTSVIDs(ctx, workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"db"}}); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no longer in the bundle") {
		t.Fatalf("JWT-SVID signed by the revoked kid: %v; want Unavailable", err)
	}
}
