package ca_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/ca"
)

func benchCA(b *testing.B) *ca.CA {
	b.Helper()
	return newCA(b, testNow(), 24*time.Hour, nil)
}

// BenchmarkSignX509SVID measures the whole of SignX509SVID with the CA LoadOrCreate makes (ECDSA
// P-256 root in process, so the hand-encoded path) and a P-256 workload key.
func BenchmarkSignX509SVID(b *testing.B) {
	c := benchCA(b)
	if !ca.UsesX509TBSPath(c) {
		b.Fatal("CA does not use the hand-encoded X.509 path")
	}
	p := ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(b).Public(), TTL: time.Hour}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SignX509SVID(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignX509SVIDParallel(b *testing.B) {
	c := benchCA(b)
	p := ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(b).Public(), TTL: time.Hour}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.SignX509SVID(p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSignX509SVIDCreateCertificate is BenchmarkSignX509SVID through x509.CreateCertificate,
// the path taken by signers other than an in-process ECDSA key, for comparison.
func BenchmarkSignX509SVIDCreateCertificate(b *testing.B) {
	c := ca.WithCreateCertificate(benchCA(b))
	p := ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(b).Public(), TTL: time.Hour}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SignX509SVID(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignX509SVIDCreateCertificateParallel(b *testing.B) {
	c := ca.WithCreateCertificate(benchCA(b))
	p := ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(b).Public(), TTL: time.Hour}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.SignX509SVID(p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSignJWTSVID(b *testing.B) {
	c := benchCA(b)
	p := ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"reports"}, TTL: 5 * time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SignJWTSVID(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJWTSVIDParallel(b *testing.B) {
	c := benchCA(b)
	p := ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"reports"}, TTL: 5 * time.Minute}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.SignJWTSVID(p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGoJOSEJWTBaseline signs the same header and claims with go-jose, for comparison with
// the hand-assembled tokens of SignJWTSVID.
func BenchmarkGoJOSEJWTBaseline(b *testing.B) {
	_, j := newAuthorities(b, testNow(), 24*time.Hour)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: j.Signer.(*ecdsa.PrivateKey)},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", j.KeyID),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var jti [16]byte
		_, _ = rand.Read(jti[:])
		now := time.Now()
		claims := jwt.Claims{
			Subject:  webID.String(),
			Audience: jwt.Audience{"reports"},
			Expiry:   jwt.NewNumericDate(now.Add(5 * time.Minute)),
			IssuedAt: jwt.NewNumericDate(now),
			ID:       hex.EncodeToString(jti[:]),
		}
		if _, err := jwt.Signed(signer).Claims(claims).Serialize(); err != nil {
			b.Fatal(err)
		}
	}
}
