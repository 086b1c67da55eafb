package server

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/adminapi"
	"google.golang.org/grpc/codes"
)

// Entries cannot ask for SVIDs shorter than the minimum TTLs, whether created, imported or updated; the
// error names the field and the minimum.
func TestEntryTTLMinimums(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	admin := e.srv.Admin
	wantRefused := func(what string, err error, msg string) {
		t.Helper()
		wantStatus(t, what, err, codes.InvalidArgument, msg)
	}
	short := adminEntry("spiffe://example.org/short", agentA.String(), "alice")
	short.X509TtlSeconds = 1
	_, err := admin.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: short})
	wantRefused("create with x509_ttl 1s", err, "x509_ttl 1s: invalid argument: at least 1m0s")

	short.X509TtlSeconds, short.JwtTtlSeconds = 0, 10
	resp, err := admin.BatchCreateEntries(testCtx(t), &adminv1.BatchCreateEntriesRequest{Entries: []*adminv1.Entry{short}})
	if err != nil || len(resp.Results) != 1 || !strings.Contains(resp.Results[0].GetErrorMessage(), "jwt_ttl 10s: invalid argument: at least 30s") {
		t.Fatalf("import with jwt_ttl 10s: %v, %v; want it refused naming jwt_ttl and 30s", resp, err)
	}

	ok := adminEntry("spiffe://example.org/ok", agentA.String(), "alice")
	ok.X509TtlSeconds, ok.JwtTtlSeconds = int64(adminapi.MinX509SVIDTTL/time.Second), int64(adminapi.MinJWTSVIDTTL/time.Second)
	created, err := admin.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: ok})
	if err != nil {
		t.Fatalf("create with the minimum TTLs: %v", err)
	}
	_, err = admin.UpdateEntry(testCtx(t), &adminv1.UpdateEntryRequest{Entry: &adminv1.Entry{Id: created.Id, Revision: created.Revision,
		X509TtlSeconds: 30}, UpdateMask: []string{"x509_ttl_seconds"}, Reason: "shorter"})
	wantRefused("update to x509_ttl 30s", err, "x509_ttl 30s: invalid argument: at least 1m0s")
}

// Near its CA's expiry a server still mints its own TLS SVID and agent SVIDs, capped at the CA's
// NotAfter (it used to stop a minute short of the CA, and to fail once less than that was left).
func TestSystemSVIDsCappedNearCAExpiry(t *testing.T) {
	// A root created 1h - 90s ago with a 1h lifetime: 90 s left.
	created := time.Now().Add(-time.Hour + 90*time.Second)
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: t.TempDir(), TrustDomain: testTD, TTL: time.Hour, Clock: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	shortCA, err := ca.New(ca.Config{TrustDomain: testTD, X509: x, JWT: j})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, func(c *Config) { c.CA, c.AgentSVIDTTL = shortCA, 24*time.Hour }, nil)
	caNotAfter := shortCA.NotAfter()

	conf, err := e.srv.AgentTLSConfig(testCtx(t))
	if err != nil {
		t.Fatalf("ServerTLSConfig with 90 s of CA left: %v", err)
	}
	cert, err := conf.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Leaf.NotAfter.Equal(caNotAfter) {
		t.Errorf("server TLS SVID NotAfter %s, want the CA's %s", cert.Leaf.NotAfter, caNotAfter)
	}

	e.owner(t, "alice")
	_, tok := e.joinToken(t, "alice", "")
	att, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)})
	if err != nil {
		t.Fatalf("AttestAgent with 90 s of CA left: %v", err)
	}
	leaf, err := x509.ParseCertificate(att.SvidChain[0])
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.NotAfter.Equal(caNotAfter) {
		t.Errorf("agent SVID NotAfter %s, want the CA's %s", leaf.NotAfter, caNotAfter)
	}
}
