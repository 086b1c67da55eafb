package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestLedgerQuerySignedBy, with real server and agent processes: "a CA key leaked: what did it sign that
// is still valid?". The X.509 key ID (read from the published bundle) lists the fetched X.509-SVIDs with
// their owners, the agent's SVID and the server's own; the JWT kid lists the JWT-SVID; lookup names the
// signer; an unknown key is an empty answer with a note; a malformed one a clear error.
func TestLedgerQuerySignedBy(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	s.mustCLI("owner", "add", "bob")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	const web, db = "spiffe://example.org/web", "spiffe://example.org/db"
	s.mustCLI("entry", "create", "--spiffe-id", web, "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	s.mustCLI("entry", "create", "--spiffe-id", db, "--selector", myUID, "--owner", "bob", "--purpose", "db", "--parent-id", a.id)
	waitForIDs(t, a.socket, web, db)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+a.socket))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	svids, err := c.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{} // serial -> owner, of the fetched X.509-SVIDs
	for _, sv := range svids {
		owners[sv.Certificates[0].SerialNumber.Text(16)] = map[string]string{web: "alice", db: "bob"}[sv.ID.String()]
	}
	jwt, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "aud", Subject: svids[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	jti, _ := jwt.Claims["jti"].(string)

	// The node's keys, as the bundle publishes them.
	block, _ := pem.Decode(mustRead(t, s.bundlePath))
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	x509Key := ca.X509KeyID(root)
	var jwks struct {
		Keys []struct {
			Use string `json:"use"`
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(s.mustCLI("bundle", "show", "--format", "jwks")), &jwks); err != nil {
		t.Fatal(err)
	}
	var kid string
	for _, k := range jwks.Keys {
		if k.Use == "jwt-svid" {
			kid = k.Kid
		}
	}

	keys := s.mustCLI("bundle", "show", "--format", "keys")
	var listed []string
	for _, line := range strings.Split(keys, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			listed = append(listed, f[0]+" "+f[1])
		}
	}
	if !slices.Contains(listed, "x509 "+x509Key) || !slices.Contains(listed, "jwt "+kid) {
		t.Fatalf("bundle show --format keys does not list %s and %s:\n%s", x509Key, kid, keys)
	}
	query := func(args ...string) []issuanceView {
		t.Helper()
		return decodeJSON[[]issuanceView](t, s.mustCLI(append([]string{"ledger", "query", "--valid-at", "now", "-o", "json"}, args...)...))
	}
	got := map[string]issuanceView{}
	for _, r := range query("--signed-by", x509Key) {
		got[r.ID] = r
		if r.SignedBy != x509Key || r.Kind != "x509-svid" {
			t.Fatalf("--signed-by the X.509 key lists %+v", r)
		}
	}
	for serial, owner := range owners {
		if r, ok := got[serial]; !ok || r.Owner != owner || r.EntryID == "" || r.ExpiresAt == "" {
			t.Fatalf("--signed-by the X.509 key: fetched SVID %s (owner %s) is %+v in %d records", serial, owner, r, len(got))
		}
	}
	agentSVID := slices.ContainsFunc(slices.Collect(maps.Values(got)), func(r issuanceView) bool { return r.SPIFFEID == a.id && r.Owner == "alice" })
	serverSVID := slices.ContainsFunc(slices.Collect(maps.Values(got)), func(r issuanceView) bool {
		return strings.HasPrefix(r.SPIFFEID, "spiffe://example.org/signet/server/") && r.Owner == "signet"
	})
	if !agentSVID || !serverSVID {
		t.Fatalf("--signed-by the X.509 key: agent SVID listed %v, server SVID listed %v; want both", agentSVID, serverSVID)
	}
	// openssl's form of the key ID (upper case, colons) names the same key.
	var colons []string
	for i := 0; i < len(x509Key); i += 2 {
		colons = append(colons, strings.ToUpper(x509Key[i:i+2]))
	}
	if n := len(query("--signed-by", strings.Join(colons, ":"))); n != len(got) {
		t.Fatalf("--signed-by %s: %d records, want the %d of %s", strings.Join(colons, ":"), n, len(got), x509Key)
	}
	if table := s.mustCLI("ledger", "query", "--signed-by", x509Key, "--valid-at", "now"); !strings.Contains(table, "OWNER") ||
		!strings.Contains(table, "bob") || !strings.Contains(table, web) {
		t.Fatalf("ledger query table does not show owners and SPIFFE IDs:\n%s", table)
	}

	jwts := query("--signed-by", kid)
	if len(jwts) != 1 || jwts[0].ID != jti || jwts[0].Kind != "jwt-svid" || jwts[0].Owner != owners[svids[0].Certificates[0].SerialNumber.Text(16)] {
		t.Fatalf("--signed-by the JWT kid %s: %+v; want the JWT-SVID %s", kid, jwts, jti)
	}

	// lookup names the signer.
	certPEM, _, err := svids[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "svid.pem")
	writeFile(t, certFile, string(certPEM))
	if out := s.mustCLI("ledger", "lookup", certFile); !strings.Contains(out, "Signed by") || !strings.Contains(out, x509Key) {
		t.Fatalf("ledger lookup does not name the signing key %s:\n%s", x509Key, out)
	}

	// An unknown key: nothing, and a note listing the bundle's keys; not an error.
	out, errOut, code := s.cli("ledger", "query", "--signed-by", "00ff", "--valid-at", "now", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" || !strings.Contains(errOut, `key "00ff" is not in the trust bundle`) ||
		!strings.Contains(errOut, "x509 "+x509Key) || !strings.Contains(errOut, "jwt "+kid) {
		t.Fatalf("unknown key: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// A malformed key: a clear error naming the flag.
	for _, bad := range []string{"a b", "ZZ:01", strings.Repeat("a", 129)} {
		out, errOut, code := s.cli("ledger", "query", "--signed-by", bad)
		if code == 0 || !strings.Contains(errOut, "--signed-by") {
			t.Fatalf("--signed-by %q: exit %d\nstdout: %s\nstderr: %s", bad, code, out, errOut)
		}
	}
	if _, errOut, code := s.cli("ledger", "query", "--valid-at", "yesterday"); code == 0 || !strings.Contains(errOut, `not "now" or an RFC 3339 time`) {
		t.Fatalf("--valid-at yesterday: exit %d, %s", code, errOut)
	}
}
