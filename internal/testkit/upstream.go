package testkit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// UpstreamCA is a PKI outside Signet for the upstream authority tests: a self-signed certificate and its
// key, written as PEM files.
type UpstreamCA struct {
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	CertFile string // the certificate, PEM
	KeyFile  string // the key, PKCS#8 PEM, mode 0600
}

// NewUpstreamCA writes a self-signed ECDSA P-256 certificate named name, valid for ttl, and its key into
// dir (name.crt, name.key). With isCA false it is a plain leaf certificate (no cA, no keyCertSign), which
// an upstream authority must refuse.
func NewUpstreamCA(tb testing.TB, dir, name string, ttl time.Duration, isCA bool) *UpstreamCA {
	tb.Helper()
	key := P256(tb)
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{Organization: []string{"Upstream"}, CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(ttl), BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	cert, keyPEM := SelfSign(tb, tmpl, key)
	return &UpstreamCA{Cert: cert, Key: key,
		CertFile: WriteFileMode(tb, dir, name+".crt", string(PEM(cert)), 0o644),
		KeyFile:  WriteFileMode(tb, dir, name+".key", string(keyPEM), 0o600)}
}

// PEM encodes certs as PEM certificates.
func PEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// OpenSSLVerify runs `openssl verify -CAfile <roots> -untrusted <intermediates> <leaf>` on chain (leaf
// first) and fails tb unless it passes.
func OpenSSLVerify(tb testing.TB, roots []*x509.Certificate, chain []*x509.Certificate) {
	tb.Helper()
	dir := tb.TempDir()
	write := func(name string, certs []*x509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, PEM(certs...), 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	args := []string{"verify", "-CAfile", write("root.pem", roots)}
	if len(chain) > 1 {
		args = append(args, "-untrusted", write("intermediate.pem", chain[1:]))
	}
	args = append(args, write("leaf.pem", chain[:1]))
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("leaf.pem: OK")) {
		tb.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}
