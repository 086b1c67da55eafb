package keymanager_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
)

// opaqueSigner hides the concrete key type, so the CA signs through the generic crypto.Signer path
// (x509.CreateCertificate) as it does for any HSM or KMS.
type opaqueSigner struct{ crypto.Signer }

// BenchmarkSignX509SVIDKeyManagers: one X.509-SVID (P-256 root and workload key) with the root key on
// disk (the CA's hand-encoded fast path), in softkms (also in-process, so also the fast path), a
// softkms key behind an opaque crypto.Signer (the generic CreateCertificate path, without any module
// cost), and in a SoftHSM2 token through PKCS#11. Serial and on every core.
func BenchmarkSignX509SVIDKeyManagers(b *testing.B) {
	newToken(b, "signet-bench")
	pkcs11 := openPKCS11(b, "signet-bench")
	soft, err := keymanager.Open(context.Background(), keymanager.Config{Kind: keymanager.SoftKMS, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}

	diskCA := newCA(b, filepath.Join(b.TempDir(), "ca"), nil)
	softCA := newCA(b, filepath.Join(b.TempDir(), "ca"), soft)
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: filepath.Join(b.TempDir(), "ca"), TrustDomain: td, TTL: time.Hour, Keys: soft})
	if err != nil {
		b.Fatal(err)
	}
	x.Signer = opaqueSigner{x.Signer}
	genericCA, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j})
	if err != nil {
		b.Fatal(err)
	}
	pkcs11CA := newCA(b, filepath.Join(b.TempDir(), "ca"), pkcs11)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	params := ca.X509SVIDParams{SPIFFEID: webID, PublicKey: key.Public(), TTL: time.Hour}
	for _, bc := range []struct {
		name string
		ca   *ca.CA
	}{{"disk-fast-path", diskCA}, {"softkms-fast-path", softCA}, {"softkms-crypto.Signer", genericCA}, {"pkcs11-softhsm2", pkcs11CA}} {
		b.Run(bc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.ca.SignX509SVID(params); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bc.ca.SignX509SVID(params); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
