package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/examples/jwt-api/jwtapi"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

var oidcLineRE = regexp.MustCompile(`(?m)^OIDC discovery: (\S+)/\.well-known/openid-configuration \(JWT-SVIDs carry iss (\S+)\)$`)

// startDevOIDC starts 'signet dev' with the OIDC provider on a free loopback port and returns it and
// the issuer URL it printed.
func startDevOIDC(t *testing.T, extra ...string) (*devProc, string) {
	t.Helper()
	p := startDev(t, newDevDirs(t), append([]string{"--oidc-listen", "127.0.0.1:0"}, extra...)...)
	var issuer string
	waitfor.Condition(t, testkit.Deadline, "dev to print the OIDC discovery URL", func() bool {
		m := oidcLineRE.FindStringSubmatch(p.stdout.String())
		if m != nil && m[1] == m[2] {
			issuer = m[1]
		}
		return issuer != ""
	})
	return p, issuer
}

// httpGetJSON fetches url and decodes its JSON body into out.
func httpGetJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s (%v)", url, resp.StatusCode, b, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// bundleJWTKeyIDs are the JWT key IDs of the trust bundle, as 'signet bundle show --format jwks' prints it.
func bundleJWTKeyIDs(t *testing.T, p *devProc) []string {
	t.Helper()
	return jwtKeyIDsOf(t, p.mustCLI("bundle", "show", "--format", "jwks"))
}

// serverBundleJWTKeyIDs is bundleJWTKeyIDs of a 'signet server'.
func serverBundleJWTKeyIDs(t *testing.T, s *testServer) []string {
	t.Helper()
	return jwtKeyIDsOf(t, s.mustCLI("bundle", "show", "--format", "jwks"))
}

// jwtKeyIDsOf are the JWT-SVID key IDs of a SPIFFE bundle document, sorted.
func jwtKeyIDsOf(t *testing.T, bundleDoc string) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			Use string `json:"use"`
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(bundleDoc), &doc); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range doc.Keys {
		if k.Use == "jwt-svid" {
			kids = append(kids, k.Kid)
		}
	}
	slices.Sort(kids)
	return kids
}

func jwksKeyIDs(t *testing.T, issuer string) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	httpGetJSON(t, issuer+"/keys", &set)
	var kids []string
	for _, k := range set.Keys {
		if k.Use != "sig" || k.Algorithm != "ES256" {
			t.Errorf("JWK %q: use %q alg %q, want sig ES256", k.KeyID, k.Use, k.Algorithm)
		}
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

// TestOIDCDevRotation: signet dev --oidc-listen serves the discovery document and the trust domain's
// JWT keys; JWT-SVIDs carry the issuer as iss, and the Workload API still validates them; after
// 'signet ca rotate' the JWK Set holds the new key and the old one (tokens it signed are still valid),
// and a relying party that fetched the keys before validates new tokens once it fetched them again.
func TestOIDCDevRotation(t *testing.T) {
	t.Parallel()
	p, issuer := startDevOIDC(t)
	var disc map[string]any
	httpGetJSON(t, issuer+"/.well-known/openid-configuration", &disc)
	if disc["issuer"] != issuer || disc["jwks_uri"] != issuer+"/keys" {
		t.Fatalf("discovery document %v, want issuer %s and jwks_uri %s/keys", disc, issuer, issuer)
	}
	before := jwksKeyIDs(t, issuer)
	if want := bundleJWTKeyIDs(t, p); len(before) != 1 || !slices.Equal(before, want) {
		t.Fatalf("JWK Set %q, want the bundle's JWT keys %q (one)", before, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	token, err := jwtapi.FetchToken(ctx, "unix://"+p.socket, "orders-api")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil || claims.Issuer != issuer || tok.Headers[0].KeyID != before[0] {
		t.Fatalf("JWT-SVID iss %q kid %q (%v), want iss %s kid %s", claims.Issuer, tok.Headers[0].KeyID, err, issuer, before[0])
	}

	// The Workload API's ValidateJWTSVID (go-spiffe's validation) accepts a token with iss.
	validated, err := workloadapi.ValidateJWTSVID(ctx, token, "orders-api", workloadapi.WithAddr("unix://"+p.socket))
	if err != nil {
		t.Fatalf("ValidateJWTSVID of a token with iss: %v", err)
	}
	if validated.Claims["iss"] != issuer {
		t.Fatalf("ValidateJWTSVID claims %v, want iss %s", validated.Claims, issuer)
	}

	// A relying party (the example's verifier) that fetched the keys before the rotation.
	clock := testkit.NewManualClock()
	v, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: issuer, Audience: "reports-api", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	early, err := jwtapi.FetchToken(ctx, "unix://"+p.socket, "reports-api")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, early); err != nil {
		t.Fatalf("a JWT-SVID before the rotation: %v", err)
	}

	p.mustCLI("ca", "rotate", "--reason", "oidc test")
	var after []string
	waitfor.Condition(t, testkit.Deadline, "the rotated key in the JWK Set", func() bool {
		after = jwksKeyIDs(t, issuer)
		return len(after) == 2
	})
	if want := bundleJWTKeyIDs(t, p); !slices.Equal(after, want) || !slices.Contains(after, before[0]) {
		t.Fatalf("JWK Set after rotation %q, want the bundle's %q, the old key %s among them", after, want, before[0])
	}
	// A token minted now (another audience list: the first is cached) is signed by the new key. The
	// relying party does not know it yet: it fetches the JWK Set again for the unknown kid (at most every
	// jwtapi.MinRefreshInterval) and finds it there. The token minted before the rotation stays valid.
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "reports-api", ExtraAudiences: []string{"after-rotation"}},
		workloadapi.WithAddr("unix://"+p.socket))
	if err != nil {
		t.Fatal(err)
	}
	fresh := svid.Marshal()
	if tok, _ := jwt.ParseSigned(fresh, []jose.SignatureAlgorithm{jose.ES256}); tok == nil || tok.Headers[0].KeyID == before[0] {
		t.Fatalf("the token minted after rotation is signed by the old key %s", before[0])
	}
	if _, err := v.Verify(ctx, fresh); err == nil || !strings.Contains(err.Error(), "is not published") {
		t.Fatalf("a new key's token within MinRefreshInterval of the last fetch: %v, want refused as not published yet", err)
	}
	clock.Advance(jwtapi.MinRefreshInterval)
	if _, err := v.Verify(ctx, fresh); err != nil {
		t.Fatalf("a JWT-SVID signed after the rotation does not validate against the JWK Set fetched again: %v", err)
	}
	if _, err := v.Verify(ctx, early); err != nil {
		t.Fatalf("the JWT-SVID signed by the old key before the rotation: %v", err)
	}
}

// TestDevOIDCFlags: dev serves plain HTTP, so only on a loopback address; --oidc-issuer needs
// --oidc-listen; a bad issuer, or a port that is taken, is refused naming the flag.
func TestDevOIDCFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--oidc-listen", "0.0.0.0:8090"}, "only on a loopback address"},
		{[]string{"--oidc-issuer", "https://oidc.example.org"}, "--oidc-issuer needs --oidc-listen"},
		{[]string{"--oidc-listen", "127.0.0.1:0", "--oidc-issuer", "https://oidc.example.org/"}, "--oidc-issuer: invalid OIDC issuer URL"},
	} {
		d := newDevDirs(t)
		_, stderr, code := runCLI(t, nil, append([]string{"dev", "--data-dir", d.dataDir, "--socket", d.socket, "--admin-socket", d.adminSocket}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("signet dev %q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// A port that is taken fails the start, naming the flag.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	d := newDevDirs(t)
	_, stderr, code := runCLI(t, nil, "dev", "--data-dir", d.dataDir, "--socket", d.socket, "--admin-socket", d.adminSocket, "--oidc-listen", taken.Addr().String())
	if want := fmt.Sprintf("--oidc-listen %q", taken.Addr().String()); code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "address already in use") {
		t.Errorf("signet dev with a taken --oidc-listen: exit %d, stderr %q; want exit 1 naming %s", code, stderr, want)
	}
}

// TestExampleJWTAPI runs examples/jwt-api against a real signet dev with the OIDC provider on: the
// API (in this process, on a real socket) validates with go-jose against the provider's keys; the
// client's token from the Workload API is accepted; the old static API key, the same token once
// expired (the API's clock moved past exp) and a token for another audience are refused with 401.
func TestExampleJWTAPI(t *testing.T) {
	t.Parallel()
	p, issuer := startDevOIDC(t)
	clock := testkit.NewManualClock()
	v, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: issuer, Audience: "orders-api", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	api := startJWTAPI(t, v)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	client := &http.Client{Timeout: testkit.Deadline}
	id, _ := devIdentity(t)

	good, err := jwtapi.FetchToken(ctx, "unix://"+p.socket, "orders-api")
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := jwtapi.Call(ctx, client, api, good); err != nil || code != http.StatusOK || body != "orders for "+id+"\n" {
		t.Fatalf("good token: %d %q (%v), want 200 orders for %s", code, body, err, id)
	}
	other, err := jwtapi.FetchToken(ctx, "unix://"+p.socket, "billing-api")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, token string }{
		{"the old static API key", "orders-api-static-key-8f3a9c"},
		{"no token", ""},
		{"a token for another audience", other},
	} {
		if code, body, err := jwtapi.Call(ctx, client, api, tc.token); err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s: %d %q (%v), want 401", tc.name, code, body, err)
		}
	}
	var claims jwt.Claims
	tok, err := jwt.ParseSigned(good, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || tok.UnsafeClaimsWithoutVerification(&claims) != nil {
		t.Fatal(err)
	}
	clock.Advance(claims.Expiry.Time().Add(jwtapi.Leeway + time.Second).Sub(clock.Now()))
	if code, body, err := jwtapi.Call(ctx, client, api, good); err != nil || code != http.StatusUnauthorized {
		t.Errorf("expired token: %d %q (%v), want 401", code, body, err)
	}
}

// startJWTAPI serves the example API with v on a loopback port until the test ends and returns the
// URL of its /orders.
func startJWTAPI(t *testing.T, v *jwtapi.Verifier) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: jwtapi.NewAPI(v), ReadHeaderTimeout: testkit.Deadline}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "http://" + ln.Addr().String() + "/orders"
}

// TestOIDCServerHTTPS: 'signet server' with oidc.tls serves the discovery document and the JWK Set
// over HTTPS with the configured certificate, the issuer from the configuration.
func TestOIDCServerHTTPS(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	certDir := filepath.Join(s.dir, "oidc")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cert := testkit.WriteTLSCert(t, certDir, "oidc", 0o600)
	issuer := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	s.appendConfig(t, fmt.Sprintf("oidc:\n  issuer: %s\n  listen_address: %s\n  tls:\n    cert_file: %s\n    key_file: %s\n",
		issuer, strings.TrimPrefix(issuer, "https://"), filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")))
	s.start(t)

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Timeout: testkit.Deadline, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	v, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: issuer, Audience: "unused", HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	// A token naming no published key is refused only after the verifier fetched the discovery
	// document (its issuer checked) and the JWK Set over HTTPS.
	if _, err := v.Verify(context.Background(), "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vbmUifQ.e30.AAAA"); err == nil ||
		!strings.Contains(err.Error(), `key "none" is not published by `+issuer) {
		t.Fatalf("Verify against the HTTPS provider: %v, want the key refused as unpublished", err)
	}
	resp, err := client.Get(issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	if want := serverBundleJWTKeyIDs(t, s); !slices.Equal(kids, want) || len(kids) != 1 {
		t.Errorf("JWK Set over HTTPS %q, want the bundle's JWT key %q", kids, want)
	}
}
