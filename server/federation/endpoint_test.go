package federation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/federation"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// serveEndpoint serves e on a real TCP port until the test ends and returns its URL.
func serveEndpoint(t *testing.T, e *federation.Endpoint) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := testkit.Run(t, testkit.Deadline, func(ctx context.Context) {
		if err := e.Serve(ctx, lis); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(stop)
	return "https://" + lis.Addr().String() + "/"
}

func serverID(t *testing.T, env *testenv.Env) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromSegments(testenv.TrustDomain, "signet", "server", env.Store.NodeID())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The https_spiffe endpoint serves the store's bundle with its sequence and the refresh hint, and
// go-spiffe's own client fetches it authenticating the node's server SVID against the bundle.
func TestEndpointHTTPSSPIFFE(t *testing.T) {
	env := testenv.New(t)
	e, err := federation.NewEndpoint(federation.EndpointConfig{TrustDomain: testenv.TrustDomain, Bundles: env.Store,
		ServerCert: env.Server.Issuer, RefreshHint: 42 * time.Second, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	url := serveEndpoint(t, e)
	want := env.Store.Bundle()
	known := x509bundle.FromX509Authorities(testenv.TrustDomain, want.X509Authorities)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	got, err := gofed.FetchBundle(ctx, testenv.TrustDomain, url, gofed.WithSPIFFEAuth(known, serverID(t, env)))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(federation.BundleOf(testenv.TrustDomain, want, 42*time.Second)) {
		t.Fatalf("served bundle differs from the store's")
	}
	if seq, ok := got.SequenceNumber(); !ok || seq != want.Sequence || seq == 0 {
		t.Fatalf("spiffe_sequence = %d (%v), want %d", seq, ok, want.Sequence)
	}
	if hint, ok := got.RefreshHint(); !ok || hint != 42*time.Second {
		t.Fatalf("spiffe_refresh_hint = %s (%v), want 42s", hint, ok)
	}
	if len(got.X509Authorities()) == 0 || len(got.JWTAuthorities()) == 0 {
		t.Fatalf("bundle has %d X.509 and %d JWT authorities, want both", len(got.X509Authorities()), len(got.JWTAuthorities()))
	}
	// Our own fetch agrees; the wrong endpoint SPIFFE ID is refused.
	r := federation.Remote{TrustDomain: testenv.TrustDomain, URL: url, Profile: federation.ProfileHTTPSSPIFFE, EndpointID: serverID(t, env)}
	if b, err := federation.Fetch(ctx, r, federation.FetchOptions{Known: known}); err != nil || !b.Equal(got) {
		t.Fatalf("Fetch: %v", err)
	}
	r.EndpointID = spiffeid.RequireFromPath(testenv.TrustDomain, "/signet/server/other")
	if _, err := federation.Fetch(ctx, r, federation.FetchOptions{Known: known}); err == nil {
		t.Fatal("Fetch accepted an endpoint presenting another SPIFFE ID")
	}
	// Without a known bundle https_spiffe cannot authenticate anything.
	if _, err := federation.Fetch(ctx, r, federation.FetchOptions{}); err == nil || !strings.Contains(err.Error(), "needs a bundle") {
		t.Fatalf("Fetch without a known bundle: %v", err)
	}
}

// webCert writes a self-signed certificate for 127.0.0.1 and its key (mode keyMode) and returns the
// files and the certificate.
func webCert(t *testing.T, keyMode os.FileMode) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bundle.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), keyMode); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestEndpointHTTPSWeb(t *testing.T) {
	env := testenv.New(t)
	certFile, keyFile, cert := webCert(t, 0o600)
	e, err := federation.NewEndpoint(federation.EndpointConfig{TrustDomain: testenv.TrustDomain, Bundles: env.Store,
		Profile: federation.ProfileHTTPSWeb, CertFile: certFile, KeyFile: keyFile, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	url := serveEndpoint(t, e)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	got, err := gofed.FetchBundle(ctx, testenv.TrustDomain, url, gofed.WithWebPKIRoots(roots))
	if err != nil {
		t.Fatal(err)
	}
	if hint, ok := got.RefreshHint(); !ok || hint != federation.DefaultRefreshHint {
		t.Fatalf("spiffe_refresh_hint = %s (%v), want the default %s", hint, ok, federation.DefaultRefreshHint)
	}
	r := federation.Remote{TrustDomain: testenv.TrustDomain, URL: url, Profile: federation.ProfileHTTPSWeb}
	if _, err := federation.Fetch(ctx, r, federation.FetchOptions{WebRoots: roots}); err != nil {
		t.Fatal(err)
	}
	// Not trusted by the system roots.
	if _, err := federation.Fetch(ctx, r, federation.FetchOptions{}); err == nil {
		t.Fatal("Fetch trusted a self-signed endpoint certificate without being given it")
	}
}

func TestEndpointConfigRefused(t *testing.T) {
	env := testenv.New(t)
	certFile, keyFile, _ := webCert(t, 0o644)
	for name, c := range map[string]struct {
		cfg  federation.EndpointConfig
		want string
	}{
		"key readable by others": {federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb, CertFile: certFile, KeyFile: keyFile}, "chmod 600"},
		"no key":                 {federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb, CertFile: certFile}, "key file are required"},
		"spiffe without SVID":    {federation.EndpointConfig{Profile: federation.ProfileHTTPSSPIFFE}, "server SVID"},
		"unknown profile":        {federation.EndpointConfig{Profile: "http"}, `profile "http"`},
		"refresh hint too short": {federation.EndpointConfig{ServerCert: env.Server.Issuer, RefreshHint: time.Second}, "out of range"},
		"refresh hint too long":  {federation.EndpointConfig{ServerCert: env.Server.Issuer, RefreshHint: 48 * time.Hour}, "out of range"},
	} {
		c.cfg.TrustDomain, c.cfg.Bundles = testenv.TrustDomain, env.Store
		if _, err := federation.NewEndpoint(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: NewEndpoint: %v, want an error containing %q", name, err, c.want)
		}
	}
}

// A bundle that is too large, has too many authorities or authorities of another trust domain is
// refused by Fetch.
func TestFetchRefusesBadBundles(t *testing.T) {
	env := testenv.New(t)
	td := testenv.TrustDomain
	good := federation.BundleOf(td, env.Store.Bundle(), time.Minute)
	goodDoc, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tooMany := good.Clone()
	for i := range federation.MaxBundleAuthorities {
		if err := tooMany.AddJWTAuthority(fmt.Sprintf("k%d", i), &testkit.P256(t).PublicKey); err != nil {
			t.Fatal(err)
		}
	}
	tooManyDoc, err := tooMany.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	noX509Doc, err := spiffebundle.FromJWTAuthorities(td, env.Store.Bundle().JWTAuthorities).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{
		"/good":      goodDoc,
		"/huge":      append(goodDoc[:len(goodDoc)-1:len(goodDoc)-1], []byte(`,"pad":"`+strings.Repeat("x", federation.MaxBundleBytes)+`"}`)...),
		"/too-many":  tooManyDoc,
		"/no-x509":   noX509Doc,
		"/not-json":  []byte("<html>"),
		"/redirect":  nil,
		"/not-found": nil,
	}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch doc := docs[r.URL.Path]; {
		case r.URL.Path == "/redirect":
			http.Redirect(w, r, "/good", http.StatusFound)
		case doc == nil:
			http.NotFound(w, r)
		default:
			_, _ = w.Write(doc)
		}
	}))
	t.Cleanup(ts.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	fetch := func(td spiffeid.TrustDomain, path string) error {
		_, err := federation.Fetch(ctx, federation.Remote{TrustDomain: td, URL: ts.URL + path, Profile: federation.ProfileHTTPSWeb},
			federation.FetchOptions{WebRoots: roots})
		return err
	}
	if err := fetch(td, "/good"); err != nil {
		t.Fatalf("good bundle: %v", err)
	}
	other := spiffeid.RequireTrustDomainFromString("other.org")
	for name, c := range map[string]struct {
		td      spiffeid.TrustDomain
		path    string
		badDoc  bool
		message string
	}{
		"wrong trust domain":   {other, "/good", true, "another trust domain"},
		"oversized document":   {td, "/huge", true, "larger than"},
		"too many authorities": {td, "/too-many", true, "at most"},
		"no X.509 authority":   {td, "/no-x509", true, "no X.509 authority"},
		"not a bundle":         {td, "/not-json", true, "unable to parse"},
		"redirect":             {td, "/redirect", false, "302"},
		"not found":            {td, "/not-found", false, "404"},
	} {
		err := fetch(c.td, c.path)
		if err == nil || errors.Is(err, federation.ErrBadBundle) != c.badDoc || !strings.Contains(err.Error(), c.message) {
			t.Errorf("%s: Fetch: %v, want an error containing %q (bad bundle: %v)", name, err, c.message, c.badDoc)
		}
	}
}
