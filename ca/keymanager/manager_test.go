package keymanager_test

import (
	"context"
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/internal/testkit"
)

// Every bad setting is refused before a module is loaded or a file written, naming the key manager
// and the field, with the fix.
func TestOpenRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	pin := pinFile(t, testPIN)
	openPIN := filepath.Join(dir, "open.pin")
	if err := os.WriteFile(openPIN, []byte(testPIN), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyPIN := pinFile(t, "")
	mod := "pkcs11:module-path=" + softHSMModule + ";token=t"
	for _, tc := range []struct {
		name string
		cfg  keymanager.Config
		want []string
	}{
		{"unknown kind", keymanager.Config{Kind: "vault"}, []string{`key manager "vault" is not known`, "pkcs11"}},
		{"disk needs no manager", keymanager.Config{Kind: keymanager.Disk}, []string{"key manager disk", "own key files"}},
		{"pkcs11 without URI", keymanager.Config{Kind: keymanager.PKCS11}, []string{"key manager pkcs11", "kms_uri is required"}},
		{"pkcs11 other scheme", keymanager.Config{Kind: keymanager.PKCS11, URI: "awskms:region=x"}, []string{"key manager pkcs11", "kms_uri: not a pkcs11: URI"}},
		{"pkcs11 PIN in the URI", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-value=" + testPIN}, []string{"key manager pkcs11", "pin-value", "pin-source"}},
		{"pkcs11 PIN prompt", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-prompt"}, []string{"key manager pkcs11", "pin-prompt"}},
		{"pkcs11 without module", keymanager.Config{Kind: keymanager.PKCS11, URI: "pkcs11:token=t?pin-source=" + pin}, []string{"key manager pkcs11", "module-path is required"}},
		{"pkcs11 PIN file others can read", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-source=" + openPIN}, []string{"key manager pkcs11", "pin-source", "chmod 600 " + openPIN}},
		{"pkcs11 PIN file missing", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-source=" + filepath.Join(dir, "none")}, []string{"key manager pkcs11", "pin-source", "none"}},
		{"pkcs11 PIN file empty", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-source=" + emptyPIN}, []string{"key manager pkcs11", "is empty"}},
		{"pkcs11 key without id", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-source=" + pin, X509Key: "pkcs11:object=ca"}, []string{"key manager pkcs11", "x509_key", "id and object"}},
		{"pkcs11 same key twice", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + "?pin-source=" + pin, X509Key: "pkcs11:id=01;object=k", JWTKey: "pkcs11:id=01;object=k"}, []string{"key manager pkcs11", "must be two keys"}},
		{"URI too long", keymanager.Config{Kind: keymanager.PKCS11, URI: mod + ";x=" + strings.Repeat("a", keymanager.MaxURILength)}, []string{"key manager pkcs11", "at most 2048"}},
		{"softkms with a URI", keymanager.Config{Kind: keymanager.SoftKMS, URI: "softkms:", Dir: dir}, []string{"key manager softkms", "kms_uri"}},
		{"softkms relative key", keymanager.Config{Kind: keymanager.SoftKMS, Dir: dir, X509Key: "ca.key"}, []string{"key manager softkms", "absolute"}},
		{"awskms without keys", keymanager.Config{Kind: keymanager.AWSKMS, URI: "awskms:region=eu-west-1"}, []string{"key manager awskms", "x509_key and jwt_key are required"}},
		{"awskms not built in", keymanager.Config{Kind: keymanager.AWSKMS, X509Key: "awskms:key-id=a", JWTKey: "awskms:key-id=b"}, []string{"key manager awskms", "-tags awskms"}},
		{"cloudkms not built in", keymanager.Config{Kind: keymanager.CloudKMS, X509Key: "cloudkms:a", JWTKey: "cloudkms:b"}, []string{"key manager cloudkms", "-tags cloudkms"}},
		{"azurekms not built in", keymanager.Config{Kind: keymanager.AzureKMS, X509Key: "azurekms:a", JWTKey: "azurekms:b"}, []string{"key manager azurekms", "-tags azurekms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := keymanager.Open(context.Background(), tc.cfg)
			if err == nil {
				m.Close()
			}
			wantErr(t, err, tc.want...)
			if strings.Contains(err.Error(), testPIN) {
				t.Fatalf("error %q contains the PIN", err)
			}
		})
	}
}

// softkms keeps the keys as PEM files (0600) read through the KMS API; the key is in-process, so the
// CA signs on its fast path, and a restart loads the same keys.
func TestSoftKMS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	jwtPath := filepath.Join(t.TempDir(), "jwt-signing.pem")
	open := func() *keymanager.Manager {
		m, err := keymanager.Open(context.Background(), keymanager.Config{Kind: keymanager.SoftKMS, Dir: dir, JWTKey: "softkms:path=" + jwtPath})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	c := newCA(t, dir, m)
	checkSigns(t, c)
	if names := testkit.DirNames(t, dir); !slices.Equal(names, []string{ca.JWTKeyIDFile, ca.X509CertFile, ca.X509KeyFile}) {
		t.Fatalf("CA directory holds %q", names)
	}
	for _, p := range []string{filepath.Join(dir, ca.X509KeyFile), jwtPath} {
		info, err := os.Stat(p)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("key file %s: %v, mode %v; want 0600", p, err, info.Mode())
		}
	}
	signer, err := m.LoadKey(ca.X509KeyRole)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := signer.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("softkms signer is %T, want an in-process *ecdsa.PrivateKey (the CA's fast path)", signer)
	}
	c2 := newCA(t, dir, open())
	if !c2.X509Authority().Equal(c.X509Authority()) || !publicEqual(c2.JWTPublicKey(), c.JWTPublicKey()) {
		t.Fatal("after a restart softkms loaded other keys")
	}
}
