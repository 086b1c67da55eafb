package oidc_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/server/oidc"
	"github.com/signet-id/signet/storage"
)

// putJWTKey publishes a new P-256 JWT key of node into the store's bundle.
func putJWTKey(t *testing.T, st *storage.Store, kid, node string) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(testkit.P256(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if err := st.PutAuthority(ctx, storage.Authority{Kind: storage.AuthorityJWT, ID: kid, DER: der, NotAfter: time.Now().Add(time.Hour),
		Node: node, AddedAt: time.Now().UTC()}); err != nil {
		t.Fatalf("PutAuthority %s: %v", kid, err)
	}
}

// startProvider runs a provider for issuer on a real store over plain HTTP on a loopback listener
// and returns its base URL.
func startProvider(t *testing.T, st *storage.Store, issuer string, maxAge time.Duration) string {
	t.Helper()
	return startProviderWith(t, oidc.Config{Issuer: issuer, AllowHTTP: true, Bundle: st, MaxAge: maxAge, Logger: testkit.Logger(t)})
}

// startProviderWith is startProvider with the whole configuration.
func startProviderWith(t *testing.T, cfg oidc.Config) string {
	t.Helper()
	p, err := oidc.New(cfg)
	if err != nil {
		t.Fatalf("oidc.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go p.Run(ctx)
	go func() { served <- p.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

type httpResult struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, header ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// keySet fetches and parses the JWK Set with go-jose.
func keySet(t *testing.T, url string) (jose.JSONWebKeySet, httpResult) {
	t.Helper()
	r := do(t, http.MethodGet, url)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.body), &set); err != nil {
		t.Fatalf("JWK Set %s: %v", r.body, err)
	}
	return set, r
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// TestDiscoveryDocument: the discovery document's fields, exactly, at the issuer URL's path and (for a
// proxy that strips it) at the root; cached for the configured max-age.
func TestDiscoveryDocument(t *testing.T) {
	st := testkit.OpenStore(t, nil)
	putJWTKey(t, st, "k1", "n1")
	// The issuer names where the provider is, with a path: listen first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + "/tenant-a"
	p, err := oidc.New(oidc.Config{Issuer: issuer, AllowHTTP: true, Bundle: st, MaxAge: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ln, nil) }()
	defer func() { cancel(); <-served }()

	want := `{"issuer":"` + issuer + `","jwks_uri":"` + issuer + `/keys","authorization_endpoint":"",` +
		`"response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["ES256"]}`
	for _, path := range []string{"/tenant-a/.well-known/openid-configuration", "/.well-known/openid-configuration"} {
		r := do(t, http.MethodGet, "http://"+ln.Addr().String()+path)
		if r.status != http.StatusOK || r.body != want {
			t.Errorf("GET %s = %d %s\nwant 200 %s", path, r.status, r.body, want)
		}
		if got := r.header.Get("Cache-Control"); got != "public, max-age=90" {
			t.Errorf("GET %s: Cache-Control %q, want public, max-age=90", path, got)
		}
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, got)
		}
	}
	// The JWK Set is where jwks_uri says.
	if set, _ := keySet(t, issuer+"/keys"); !slices.Equal(kids(set), []string{"k1"}) {
		t.Errorf("jwks_uri keys = %q, want k1", kids(set))
	}
}

// TestKeysFollowBundle: the JWK Set is every JWT key of the bundle, of every node, with use sig and
// alg; a key published later (a prepared successor) appears without a restart and a removed (pruned)
// key leaves; the ETag changes with the set.
func TestKeysFollowBundle(t *testing.T) {
	st := testkit.OpenStore(t, nil)
	putJWTKey(t, st, "node1-active", "n1")
	putJWTKey(t, st, "node2-active", "n2")
	base := startProvider(t, st, "http://issuer.test", 0)

	set, r1 := keySet(t, base+oidc.KeysPath)
	if !slices.Equal(kids(set), []string{"node1-active", "node2-active"}) {
		t.Fatalf("keys %q, want node1-active, node2-active", kids(set))
	}
	for _, k := range set.Keys {
		if k.Use != "sig" || k.Algorithm != "ES256" || !k.Valid() || !k.IsPublic() {
			t.Errorf("key %q: use %q alg %q (valid %v, public %v), want a public sig ES256 key", k.KeyID, k.Use, k.Algorithm, k.Valid(), k.IsPublic())
		}
	}
	if r1.header.Get("Cache-Control") != "public, max-age=300" || r1.header.Get("ETag") == "" {
		t.Errorf("headers %v, want Cache-Control public, max-age=300 and an ETag", r1.header)
	}

	putJWTKey(t, st, "node1-prepared", "n1")
	waitfor.Condition(t, testkit.Deadline, "the prepared key in the JWK Set", func() bool {
		set, _ := keySet(t, base+oidc.KeysPath)
		return slices.Contains(kids(set), "node1-prepared")
	})
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if err := st.RemoveAuthority(ctx, storage.AuthorityJWT, "node1-active", "n1"); err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, testkit.Deadline, "the pruned key out of the JWK Set", func() bool {
		set, _ := keySet(t, base+oidc.KeysPath)
		return slices.Equal(kids(set), []string{"node1-prepared", "node2-active"})
	})
	if _, r2 := keySet(t, base+oidc.KeysPath); r2.header.Get("ETag") == r1.header.Get("ETag") {
		t.Errorf("ETag %s did not change with the keys", r2.header.Get("ETag"))
	}
}

// TestConditionalRequests: If-None-Match with the current ETag is 304 without a body; a stale one
// gets the document; HEAD gets the headers alone.
func TestConditionalRequests(t *testing.T) {
	st := testkit.OpenStore(t, nil)
	putJWTKey(t, st, "k1", "n1")
	base := startProvider(t, st, "http://issuer.test", 0)
	for _, path := range []string{oidc.KeysPath, oidc.DiscoveryPath} {
		first := do(t, http.MethodGet, base+path)
		etag := first.header.Get("ETag")
		if first.status != http.StatusOK || !strings.HasPrefix(etag, `"`) {
			t.Fatalf("GET %s: %d, ETag %q", path, first.status, etag)
		}
		for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
			if r := do(t, http.MethodGet, base+path, "If-None-Match", inm); r.status != http.StatusNotModified || r.body != "" {
				t.Errorf("GET %s If-None-Match %s: %d %q, want 304 and no body", path, inm, r.status, r.body)
			}
		}
		if r := do(t, http.MethodGet, base+path, "If-None-Match", `"stale"`); r.status != http.StatusOK || r.body != first.body {
			t.Errorf("GET %s with a stale ETag: %d %q, want 200 and the document", path, r.status, r.body)
		}
		if r := do(t, http.MethodHead, base+path); r.status != http.StatusOK || r.body != "" || r.header.Get("ETag") != etag {
			t.Errorf("HEAD %s: %d %q ETag %q", path, r.status, r.body, r.header.Get("ETag"))
		}
	}
}

// TestMethodsAndPaths: only GET and HEAD (405 naming them otherwise), only the two documents (404 for
// anything else, no listing).
func TestMethodsAndPaths(t *testing.T) {
	st := testkit.OpenStore(t, nil)
	base := startProvider(t, st, "http://issuer.test", 0)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch} {
		r := do(t, m, base+oidc.KeysPath)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow GET, HEAD", m, oidc.KeysPath, r.status, r.header.Get("Allow"))
		}
	}
	for _, p := range []string{"/", "/.well-known/", "/keys/", "/keys/x", "/.well-known/openid-configuration/x", "/../keys"} {
		if r := do(t, http.MethodGet, base+p); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.status)
		}
	}
	// With no key in the bundle yet, the JWK Set is empty, not an error.
	if set, _ := keySet(t, base+oidc.KeysPath); len(set.Keys) != 0 {
		t.Errorf("keys %q, want none", kids(set))
	}
}

// TestConfigRefused: bad issuer URLs and cache ages are refused, saying what to write.
func TestConfigRefused(t *testing.T) {
	st := testkit.OpenStore(t, nil)
	for _, tc := range []struct {
		issuer    string
		allowHTTP bool
		maxAge    time.Duration
		want      string
	}{
		{"", false, 0, "empty"},
		{"http://oidc.example.org", false, 0, "want https"},
		{"ftp://oidc.example.org", true, 0, "want an https URL"},
		{"oidc.example.org", false, 0, "want an https URL"},
		{"https://", false, 0, "no host"},
		{"https://user@oidc.example.org", false, 0, "no user info"},
		{"https://oidc.example.org?x=1", false, 0, "no query"},
		{"https://oidc.example.org?", false, 0, "no query"},
		{"https://oidc.example.org#f", false, 0, "no fragment"},
		{"https://oidc.example.org/", false, 0, `no trailing slash (the iss of tokens must match it exactly): write "https://oidc.example.org"`},
		{"HTTPS://oidc.example.org", false, 0, `not in canonical form (write "https://oidc.example.org")`},
		{"https://" + strings.Repeat("a", oidc.MaxIssuerLen) + ".org", false, 0, "at most"},
		{"https://oidc.example.org", false, 5 * time.Second, "MaxAge 5s: want between 10s and 1h0m0s"},
		{"https://oidc.example.org", false, 2 * time.Hour, "MaxAge 2h0m0s"},
	} {
		_, err := oidc.New(oidc.Config{Issuer: tc.issuer, AllowHTTP: tc.allowHTTP, Bundle: st, MaxAge: tc.maxAge})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, http %v, max age %s) = %v, want an error containing %q", tc.issuer, tc.allowHTTP, tc.maxAge, err, tc.want)
		}
		if tc.maxAge == 0 && !errors.Is(err, oidc.ErrInvalidIssuer) {
			t.Errorf("New(%q): %v does not wrap ErrInvalidIssuer", tc.issuer, err)
		}
	}
	if _, err := oidc.New(oidc.Config{Issuer: "https://oidc.example.org"}); err == nil || !strings.Contains(err.Error(), "Bundle is required") {
		t.Errorf("New without a bundle: %v", err)
	}
	for _, ok := range []string{"https://oidc.example.org", "https://oidc.example.org:8443/signet/prod", "https://[::1]:8443"} {
		if _, err := oidc.ParseIssuer(ok, false); err != nil {
			t.Errorf("ParseIssuer(%q): %v", ok, err)
		}
	}
}

// TestUnusableKeyKeepsLastSet: a JWT key the JWK Set cannot hold (Ed25519, which no node publishes) in
// the bundle leaves the previous set served and is logged once, not at every later change of the
// store; once it is gone the set follows the bundle again.
func TestUnusableKeyKeepsLastSet(t *testing.T) {
	st := testkit.OpenStore(t, nil)
	putJWTKey(t, st, "good", "n1")
	logged := &testkit.SyncBuffer{}
	base := startProviderWith(t, oidc.Config{Issuer: "http://issuer.test", AllowHTTP: true, Bundle: st, Logger: testkit.LoggerTo(t, logged)})

	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer wcancel()
	if err := st.PutAuthority(wctx, storage.Authority{Kind: storage.AuthorityJWT, ID: "ed25519", DER: der, NotAfter: time.Now().Add(time.Hour),
		Node: "n2", AddedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	const msg = "OIDC provider: JWK Set not rebuilt; serving the previous one"
	waitfor.Condition(t, testkit.Deadline, "the unusable key logged", func() bool { return strings.Contains(logged.String(), msg) })
	for i := range 5 {
		if _, err := st.CreateOwner(wctx, storage.Owner{Name: fmt.Sprintf("owner-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	putJWTKey(t, st, "later", "n1") // changes the bundle sequence: tried (and logged) once more
	waitfor.Condition(t, testkit.Deadline, "the next bundle logged", func() bool { return strings.Count(logged.String(), msg) == 2 })
	if set, _ := keySet(t, base+oidc.KeysPath); !slices.Equal(kids(set), []string{"good"}) {
		t.Errorf("keys %q while the bundle holds an unusable key, want the last good set (good)", kids(set))
	}
	if err := st.RemoveAuthority(wctx, storage.AuthorityJWT, "ed25519", "n2"); err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, testkit.Deadline, "the JWK Set to follow the bundle again", func() bool {
		set, _ := keySet(t, base+oidc.KeysPath)
		return slices.Equal(kids(set), []string{"good", "later"})
	})
	if n := strings.Count(logged.String(), msg); n != 2 {
		t.Errorf("logged %d times, want 2 (once per bundle that could not be served)", n)
	}
}
