package jwtapi_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/examples/jwt-api/jwtapi"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/oidc"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// provider serves a real OIDC provider (server/oidc) for a store whose bundle holds c's JWT key, and
// returns its issuer URL.
func provider(t *testing.T, c *ca.CA) string {
	t.Helper()
	st := testkit.OpenStore(t, nil)
	der, err := x509.MarshalPKIXPublicKey(c.JWTPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if err := st.PutAuthority(ctx, storage.Authority{Kind: storage.AuthorityJWT, ID: c.JWTKeyID(), DER: der, NotAfter: c.NotAfter(),
		Node: st.NodeID(), AddedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	p, err := oidc.New(oidc.Config{Issuer: issuer, AllowHTTP: true, Bundle: st, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Serve(sctx, ln, nil) }()
	t.Cleanup(func() { stop(); <-done })
	return issuer
}

// TestVerify: the verifier accepts a JWT-SVID of the issuer for its audience, and refuses (wrapping
// ErrUnauthorized) what a relying party must refuse: another or no iss, another audience, past exp, a
// key the issuer does not publish, an unsigned or oversized token. An issuer whose discovery document
// cannot be read is not the caller's fault: that error does not wrap ErrUnauthorized.
func TestVerify(t *testing.T) {
	c := testkit.NewCA(t, td, 0)
	issuer := provider(t, c)
	clock := testkit.NewManualClock()
	v, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: issuer, Audience: "orders-api", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromPath(td, "/orders-client")
	sign := func(iss string, aud ...string) string {
		t.Helper()
		svid, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: id, Audience: aud, TTL: time.Minute, Issuer: iss})
		if err != nil {
			t.Fatal(err)
		}
		return svid.Token
	}
	ctx := context.Background()
	good := sign(issuer, "orders-api")
	claims, err := v.Verify(ctx, good)
	if err != nil || claims.Subject != id {
		t.Fatalf("Verify(good) = %+v, %v; want %s", claims, err, id)
	}
	other := testkit.NewCA(t, td, 0)
	otherSVID, err := other.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: id, Audience: []string{"orders-api"}, TTL: time.Minute, Issuer: issuer})
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct{ name, token, want string }{
		{"another issuer", sign("https://other.example.org", "orders-api"), "issuer"},
		{"no issuer", sign("", "orders-api"), "issuer"},
		{"another audience", sign(issuer, "billing-api"), "audience"},
		{"a key the issuer does not publish", otherSVID.Token, "is not published"},
		{"unsigned (alg none)", b64([]byte(`{"alg":"none","kid":"`+c.JWTKeyID()+`"}`)) + "." + b64([]byte(`{"sub":"`+id.String()+`"}`)) + ".", "not a signed JWT"},
		{"a static API key", "orders-api-static-key-8f3a9c", "not a signed JWT"},
		{"oversized", strings.Repeat("a", jwtapi.MaxTokenSize+1), "larger than"},
	} {
		if _, err := v.Verify(ctx, tc.token); !errors.Is(err, jwtapi.ErrUnauthorized) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Verify(%s) = %v, want ErrUnauthorized mentioning %q", tc.name, err, tc.want)
		}
	}
	clock.Advance(time.Minute + jwtapi.Leeway + time.Second)
	if _, err := v.Verify(ctx, good); !errors.Is(err, jwtapi.ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Verify(expired) = %v, want ErrUnauthorized (expired)", err)
	}

	// The discovery document is not where the configured issuer says: the verifier cannot validate.
	lost, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: issuer + "/elsewhere", Audience: "orders-api"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lost.Verify(ctx, good); err == nil || errors.Is(err, jwtapi.ErrUnauthorized) || !strings.Contains(err.Error(), "404") {
		t.Errorf("Verify against a missing discovery document = %v, want a 404 error that is not ErrUnauthorized", err)
	}
}
