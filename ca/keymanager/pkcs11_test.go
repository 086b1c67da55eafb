package keymanager_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/internal/testkit"
)

// TestPKCS11 runs the CA on a real PKCS#11 module (SoftHSM2): both keys are generated in the token,
// SVIDs signed through it verify, no private key exists in the CA directory, and a restart finds the
// same keys in the token.
func TestPKCS11(t *testing.T) {
	newToken(t, "signet-ca")
	dir := filepath.Join(t.TempDir(), "ca")
	m := openPKCS11(t, "signet-ca")
	if got := m.KeyName(ca.X509KeyRole); got != "pkcs11 key "+keymanager.DefaultPKCS11X509Key {
		t.Errorf("KeyName = %q", got)
	}
	c := newCA(t, dir, m)
	checkSigns(t, c)

	if names := testkit.DirNames(t, dir); !slices.Equal(names, []string{ca.JWTKeyIDFile, ca.X509CertFile}) {
		t.Fatalf("CA directory holds %q, want only the certificate and the kid (no key file)", names)
	}
	x509Signer, err := m.LoadKey(ca.X509KeyRole)
	if err != nil {
		t.Fatal(err)
	}
	if _, inProcess := x509Signer.(*ecdsa.PrivateKey); inProcess {
		t.Fatal("the pkcs11 signer is an in-process key")
	}
	m.Close()

	// A restart: a new session on the token finds the keys the first one created.
	m2 := openPKCS11(t, "signet-ca")
	for _, role := range []ca.KeyRole{ca.X509KeyRole, ca.JWTKeyRole} {
		if _, err := m2.LoadKey(role); err != nil {
			t.Fatalf("LoadKey(%s) after reopening the token: %v", role, err)
		}
	}
	c2 := newCA(t, dir, m2)
	if !c2.X509Authority().Equal(c.X509Authority()) || c2.JWTKeyID() != c.JWTKeyID() {
		t.Fatal("after a restart the CA has another root or JWT key")
	}
	if !publicEqual(c2.JWTPublicKey(), c.JWTPublicKey()) {
		t.Fatal("after a restart the JWT key differs")
	}
	checkSigns(t, c2)
}

func publicEqual(a, b any) bool {
	ea, ok := a.(*ecdsa.PublicKey)
	return ok && ea.Equal(b)
}

// A wrong PIN is refused when the key manager opens, naming the key manager, never the PIN, and
// nothing is created: no CA directory, no key in the token.
func TestPKCS11WrongPIN(t *testing.T) {
	newToken(t, "signet-pin")
	const wrong = "not-the-pin-9876"
	_, err := keymanager.Open(context.Background(), keymanager.Config{Kind: keymanager.PKCS11, URI: pkcs11URI("signet-pin", pinFile(t, wrong))})
	wantErr(t, err, "key manager pkcs11", "PIN_INCORRECT")
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), testPIN) {
		t.Fatalf("error %q contains the PIN", err)
	}

	m := openPKCS11(t, "signet-pin")
	for _, role := range []ca.KeyRole{ca.X509KeyRole, ca.JWTKeyRole} {
		if _, err := m.LoadKey(role); !errors.Is(err, ca.ErrKeyNotFound) {
			t.Fatalf("LoadKey(%s) after the refused open: %v, want ca.ErrKeyNotFound (nothing created)", role, err)
		}
	}
}

// A certificate without its key in the token (the wrong token, a deleted key) is an error naming the
// key; no new key is created that would not match the certificate.
func TestPKCS11CertificateWithoutKey(t *testing.T) {
	newToken(t, "signet-a")
	newToken(t, "signet-b")
	dir := filepath.Join(t.TempDir(), "ca")
	newCA(t, dir, openPKCS11(t, "signet-a"))

	other := openPKCS11(t, "signet-b")
	_, _, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: dir, TrustDomain: td, Keys: other})
	wantErr(t, err, ca.X509CertFile, "pkcs11 key "+keymanager.DefaultPKCS11X509Key, "remove")
	if _, err := other.LoadKey(ca.X509KeyRole); !errors.Is(err, ca.ErrKeyNotFound) {
		t.Fatalf("LoadKey on the other token: %v, want ca.ErrKeyNotFound (no key created)", err)
	}
}

// A KMS URI that does not resolve to a token or a module is a clear error naming the key manager.
func TestPKCS11URIDoesNotResolve(t *testing.T) {
	newToken(t, "signet-exists")
	pin := pinFile(t, testPIN)
	for _, tc := range []struct {
		name string
		uri  string
		want []string
	}{
		{"no such token", pkcs11URI("no-such-token", pin), []string{"key manager pkcs11", softHSMModule, "token"}},
		{"no such module", "pkcs11:module-path=/nonexistent/libnothing.so;token=signet-exists?pin-source=" + pin,
			[]string{"key manager pkcs11", "/nonexistent/libnothing.so"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			m, err := keymanager.Open(context.Background(), keymanager.Config{Kind: keymanager.PKCS11, URI: tc.uri, Dir: dir})
			if err == nil {
				m.Close()
			}
			wantErr(t, err, tc.want...)
			if strings.Contains(err.Error(), testPIN) {
				t.Fatalf("error %q contains the PIN", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("CA directory after a refused open: %v, want none", err)
			}
		})
	}
}
