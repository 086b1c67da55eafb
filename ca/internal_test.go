package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestECDSADERToRaw(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Enough signatures that r or s with leading zero bytes (probability 1/128 each) show up.
	for i := 0; i < 1000; i++ {
		digest := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		var raw [64]byte
		if err := ecdsaDERToRaw(der, raw[:]); err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
		r := new(big.Int).SetBytes(raw[:32])
		s := new(big.Int).SetBytes(raw[32:])
		if !ecdsa.Verify(&key.PublicKey, digest[:], r, s) {
			t.Fatalf("signature %d does not verify after conversion", i)
		}
	}

	for _, tt := range []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"not a sequence", []byte{0x02, 0x01, 0x01}},
		{"truncated", []byte{0x30, 0x06, 0x02, 0x01, 0x01}},
		{"one integer", []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
		{"trailing data", []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00}},
		{"extra element", []byte{0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}},
		{"negative", []byte{0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01}},
		{"zero", []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01}},
		{"empty integer", []byte{0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x01}},
		{"too large", append([]byte{0x30, 0x26, 0x02, 0x21, 0x01}, append(make([]byte, 32), 0x02, 0x01, 0x01)...)},
		{"non-minimal long length", []byte{0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var raw [64]byte
			if err := ecdsaDERToRaw(tt.der, raw[:]); err == nil {
				t.Errorf("accepted % x", tt.der)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\x00\x01\x1f\n\r\t", "é ☃ 𝄞", "<>&\u2028\x7f", "spiffe://example.org/a-b_c.d"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q encoded as %s, not valid JSON: %v", s, got, err)
			continue
		}
		if back != s {
			t.Errorf("%q round-tripped to %q", s, back)
		}
	}
}

func TestCheckDNSName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"localhost", true},
		{"web.example.org", true},
		{"*.example.org", true},
		{"a-b.c0.EXAMPLE", true},
		{"xn--bcher-kva.example", true},
		{strings.Repeat("a", 63) + ".example", true},
		{strings.Repeat("a.", 126) + "a", true}, // 253 characters
		{"", false},
		{"*", false},
		{"*.", false},
		{"a.*.example", false},
		{"**.example", false},
		{"-web.example", false},
		{"web-.example", false},
		{"web..example", false},
		{".web.example", false},
		{"web.example.", false},
		{"web_1.example", false},
		{"web example", false},
		{"wéb.example", false},
		{strings.Repeat("a", 64) + ".example", false},
		{strings.Repeat("a.", 127) + "a", false}, // 255 characters
	} {
		err := checkDNSName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("checkDNSName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestNewSerial(t *testing.T) {
	for i := 0; i < 100; i++ {
		n, err := newSerial()
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 128 {
			t.Fatalf("serial %x: sign %d, %d bits", n, n.Sign(), n.BitLen())
		}
	}
}

// BenchmarkX509SVIDSteps measures the parts of SignX509SVID separately: the template, the two
// signing paths (encode+sign by hand, CreateCertificate), parsing and validation.
func BenchmarkX509SVIDSteps(b *testing.B) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	x, j, err := LoadOrCreate(KeyStoreConfig{Dir: b.TempDir(), TrustDomain: td})
	if err != nil {
		b.Fatal(err)
	}
	c, err := New(Config{TrustDomain: td, X509: x, JWT: j})
	if err != nil {
		b.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	p := X509SVIDParams{SPIFFEID: spiffeid.RequireFromPath(td, "/web"), PublicKey: key.Public(), TTL: time.Hour}
	tmpl, err := c.x509SVIDTemplate(p, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, p.PublicKey, c.rootSigner)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("template", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.x509SVIDTemplate(p, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.x509TBS.encodeTBS(tmpl, p.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode+sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.x509TBS.signCertificate(tmpl, p.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, p.PublicKey, c.rootSigner); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := x509.ParseCertificate(der); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.validateX509SVID(cert, tmpl, p.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}
