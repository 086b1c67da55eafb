package server

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The admin API's ledger query by signing key: the X.509 key lists X.509-SVIDs, the JWT kid JWT-SVIDs;
// a key outside the bundle gets an empty answer with a note naming the bundle's keys; a malformed key
// is InvalidArgument naming signed_by.
func TestAdminQueryLedgerBySigningKey(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	en := e.entry(t, "spiffe://example.org/alice/web", agentA, "alice", nil)
	caller := agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}
	res, err := e.srv.Issuer.SignX509SVIDs(testCtx(t), caller, []issuer.X509Request{{EntryID: en.ID, CSR: csrFor(t, newP256(t), nil)}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("SignX509SVIDs: %v %v", err, res)
	}
	jwt, err := e.srv.Issuer.SignJWTSVID(testCtx(t), caller, en.ID, []string{"db"})
	if err != nil {
		t.Fatal(err)
	}
	c := unixAdmin(t, e, "")
	query := func(key string) *adminv1.QueryLedgerResponse {
		t.Helper()
		resp, err := c.QueryLedger(testCtx(t), &adminv1.QueryLedgerRequest{SignedBy: key, EntryId: en.ID})
		if err != nil {
			t.Fatalf("QueryLedger signed_by %q: %v", key, err)
		}
		return resp
	}
	x := query(e.ca.X509KeyID())
	if len(x.Issuances) != 1 || x.Issuances[0].Id != res[0].Chain[0].SerialNumber.Text(16) || x.Issuances[0].SignedBy != e.ca.X509KeyID() || x.Note != "" {
		t.Fatalf("signed by the X.509 key: %v", x)
	}
	j := query(e.ca.JWTKeyID())
	if len(j.Issuances) != 1 || j.Issuances[0].Id != jwt.ID || j.Issuances[0].SignedBy != e.ca.JWTKeyID() {
		t.Fatalf("signed by the JWT key: %v", j)
	}
	u := query("0a0b")
	if len(u.Issuances) != 0 || !strings.Contains(u.Note, `key "0a0b" is not in the trust bundle`) ||
		!strings.Contains(u.Note, "x509 "+e.ca.X509KeyID()) || !strings.Contains(u.Note, "jwt "+e.ca.JWTKeyID()) {
		t.Fatalf("an unknown key: %v", u)
	}
	for _, bad := range []string{"a/b", strings.Repeat("a", 129)} {
		_, err := c.QueryLedger(testCtx(t), &adminv1.QueryLedgerRequest{SignedBy: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "signed_by") {
			t.Fatalf("signed_by %q: %v, want InvalidArgument naming signed_by", bad, err)
		}
	}
}
