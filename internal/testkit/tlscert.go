package testkit

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"testing"
	"time"
)

// WriteTLSCert writes a new self-signed server certificate for 127.0.0.1 and localhost, with common
// name cn, to dir/tls.crt (0644) and its P-256 key to dir/tls.key (mode keyMode), replacing what is
// there, and returns the certificate.
func WriteTLSCert(tb testing.TB, dir, cn string, keyMode os.FileMode) *x509.Certificate {
	tb.Helper()
	key := P256(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	cert, keyPEM := SelfSign(tb, tmpl, key)
	WriteFileMode(tb, dir, "tls.crt", string(PEM(cert)), 0o644)
	WriteFileMode(tb, dir, "tls.key", string(keyPEM), keyMode)
	return cert
}

// SelfSign signs tmpl with key itself and returns the certificate and the key as PKCS#8 PEM.
func SelfSign(tb testing.TB, tmpl *x509.Certificate, key *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
