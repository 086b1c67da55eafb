package keymanager_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const softHSMModule = testkit.SoftHSMModule

const testPIN = "4711-signet"

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	webID = spiffeid.RequireFromPath(td, "/web")
)

// softHSMConf is the SOFTHSM2_CONF every test of this binary uses. It is set once in TestMain
// because the module reads it when it is first initialised in the process.
var softHSMConf string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "signet-softhsm-")
	if err == nil {
		softHSMConf, err = testkit.WriteSoftHSMConf(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SOFTHSM2_CONF", softHSMConf)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newToken initialises a fresh SoftHSM2 token with label and testPIN.
func newToken(tb testing.TB, label string) { testkit.NewSoftHSMToken(tb, softHSMConf, label, testPIN) }

// pinFile writes pin to a 0600 file and returns its path.
func pinFile(tb testing.TB, pin string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "hsm.pin")
	if err := os.WriteFile(path, []byte(pin+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// pkcs11URI is the kms_uri of token label in SoftHSM2 with the PIN in pinPath.
func pkcs11URI(label, pinPath string) string {
	return "pkcs11:module-path=" + softHSMModule + ";token=" + label + "?pin-source=" + pinPath
}

// openPKCS11 opens a pkcs11 Manager on token label with the right PIN; it is closed with the test.
func openPKCS11(tb testing.TB, label string) *keymanager.Manager {
	tb.Helper()
	m, err := keymanager.Open(context.Background(), keymanager.Config{Kind: keymanager.PKCS11, URI: pkcs11URI(label, pinFile(tb, testPIN))})
	if err != nil {
		tb.Fatalf("Open pkcs11: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// newCA loads or creates the CA in dir with keys from m (nil: key files in dir).
func newCA(tb testing.TB, dir string, m ca.KeyManager) *ca.CA {
	tb.Helper()
	return testkit.NewCAIn(tb, dir, td, time.Hour, m)
}

// checkSigns signs an X.509-SVID and a JWT-SVID with c and verifies both as a relying party would:
// crypto/x509 and go-spiffe against the root, go-spiffe against the JWT key.
func checkSigns(t *testing.T, c *ca.CA) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: key.Public(), TTL: 10 * time.Minute})
	if err != nil {
		t.Fatalf("SignX509SVID: %v", err)
	}
	if err := cert.CheckSignatureFrom(c.X509Authority()); err != nil {
		t.Errorf("CheckSignatureFrom(root): %v", err)
	}
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{c.X509Authority()})
	if id, _, err := x509svid.Verify([]*x509.Certificate{cert}, bundle); err != nil || id != webID {
		t.Errorf("x509svid.Verify = %s, %v; want %s", id, err, webID)
	}
	svid, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"reports"}, TTL: 5 * time.Minute})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	jb := jwtbundle.New(td)
	if err := jb.AddJWTAuthority(c.JWTKeyID(), c.JWTPublicKey()); err != nil {
		t.Fatal(err)
	}
	if got, err := jwtsvid.ParseAndValidate(svid.Token, jb, []string{"reports"}); err != nil || got.ID != webID {
		t.Errorf("jwtsvid.ParseAndValidate = %v, %v", got, err)
	}
}

// wantErr fails unless err is non-nil and contains every one of parts.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	t.Logf("error: %v", err)
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
