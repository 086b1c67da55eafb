package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasic    = asn1.ObjectIdentifier{2, 5, 29, 19}
)

func extension(cert *x509.Certificate, oid asn1.ObjectIdentifier) (critical, found bool) {
	for _, e := range cert.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical, true
		}
	}
	return false, false
}

func TestSignX509SVIDFields(t *testing.T) {
	now := testNow()
	c := newCA(t, now.Add(-time.Hour), 24*time.Hour, fixedClock(now))
	root := c.X509Authority()

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		key      crypto.Signer
		ttl      time.Duration
		dnsNames []string
	}{
		{name: "ECDSA P-256", key: newP256(t), ttl: time.Hour},
		{name: "ECDSA P-384", key: p384, ttl: 10 * time.Minute},
		{name: "RSA 2048", key: rsa2048, ttl: 90 * time.Second},
		{name: "DNS names", key: newP256(t), ttl: time.Hour, dnsNames: []string{"web.example.org", "*.web.example.org", "localhost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: tt.key.Public(), TTL: tt.ttl, DNSNames: tt.dnsNames})
			if err != nil {
				t.Fatalf("SignX509SVID: %v", err)
			}

			// X509-SVID §2: exactly one URI SAN, the SPIFFE ID.
			if len(cert.URIs) != 1 || cert.URIs[0].String() != webID.String() {
				t.Errorf("URIs = %v, want [%s]", cert.URIs, webID)
			}
			if len(cert.DNSNames) != len(tt.dnsNames) {
				t.Errorf("DNSNames = %v, want %v", cert.DNSNames, tt.dnsNames)
			}
			for i := range tt.dnsNames {
				if cert.DNSNames[i] != tt.dnsNames[i] {
					t.Errorf("DNSNames[%d] = %q, want %q", i, cert.DNSNames[i], tt.dnsNames[i])
				}
			}
			if len(cert.EmailAddresses)+len(cert.IPAddresses) != 0 {
				t.Errorf("unexpected email/IP SANs")
			}
			// §3.1: Subject present, so the SAN extension need not be critical.
			if len(cert.Subject.Organization) == 0 || cert.Subject.Organization[0] != "Signet" {
				t.Errorf("Subject = %q, want O=Signet", cert.Subject)
			}
			if cert.Subject.SerialNumber != cert.SerialNumber.Text(16) {
				t.Errorf("Subject serialNumber = %q, want %q", cert.Subject.SerialNumber, cert.SerialNumber.Text(16))
			}
			if crit, ok := extension(cert, oidSAN); !ok || crit {
				t.Errorf("SAN extension found=%v critical=%v, want present and non-critical", ok, crit)
			}
			// §4.1: basic constraints present, cA=false.
			if _, ok := extension(cert, oidBasic); !ok || !cert.BasicConstraintsValid || cert.IsCA {
				t.Errorf("basic constraints present=%v valid=%v IsCA=%v, want present with cA=false", ok, cert.BasicConstraintsValid, cert.IsCA)
			}
			// §4.3: key usage critical, digitalSignature only.
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %#x, want digitalSignature only", cert.KeyUsage)
			}
			if crit, ok := extension(cert, oidKeyUsage); !ok || !crit {
				t.Errorf("key usage extension found=%v critical=%v, want critical", ok, crit)
			}
			// §4.4: serverAuth and clientAuth.
			if len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || cert.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
				t.Errorf("ExtKeyUsage = %v, want [serverAuth clientAuth]", cert.ExtKeyUsage)
			}
			if len(cert.UnknownExtKeyUsage) != 0 {
				t.Errorf("UnknownExtKeyUsage = %v", cert.UnknownExtKeyUsage)
			}
			// Serial: 128-bit random positive integer.
			if bl := cert.SerialNumber.BitLen(); cert.SerialNumber.Sign() <= 0 || bl < 100 || bl > 128 {
				t.Errorf("serial %x has %d bits, want a positive integer of at most 128 bits", cert.SerialNumber, bl)
			}
			// Validity: now-10s .. now+TTL.
			if want := now.Add(-ca.Backdate); !cert.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s", cert.NotBefore, want)
			}
			if want := now.Add(tt.ttl); !cert.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", cert.NotAfter, want)
			}
			// Key identifiers.
			if len(cert.SubjectKeyId) != 20 {
				t.Errorf("SubjectKeyId has %d bytes, want 20", len(cert.SubjectKeyId))
			}
			if !bytes.Equal(cert.AuthorityKeyId, root.SubjectKeyId) {
				t.Errorf("AuthorityKeyId = %x, want root SubjectKeyId %x", cert.AuthorityKeyId, root.SubjectKeyId)
			}
			if cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("SignatureAlgorithm = %s, want ECDSA-SHA256", cert.SignatureAlgorithm)
			}
			if cert.Version != 3 {
				t.Errorf("Version = %d, want 3", cert.Version)
			}
			if !tt.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
				t.Error("certificate public key is not the requested key")
			}
			if !bytes.Equal(cert.RawIssuer, root.RawSubject) {
				t.Error("issuer is not the root's subject")
			}
			if err := cert.CheckSignatureFrom(root); err != nil {
				t.Errorf("CheckSignatureFrom(root): %v", err)
			}

			// go-spiffe path and leaf validation (X509-SVID §5).
			bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{root})
			id, chains, err := x509svid.Verify([]*x509.Certificate{cert}, bundle, x509svid.WithTime(now))
			if err != nil {
				t.Fatalf("x509svid.Verify: %v", err)
			}
			if id != webID || len(chains) != 1 {
				t.Errorf("Verify = %s with %d chains, want %s with 1", id, len(chains), webID)
			}
			// A bundle of another CA for the same trust domain must not verify it.
			other := newCA(t, now.Add(-time.Hour), 24*time.Hour, fixedClock(now))
			if _, _, err := x509svid.Verify([]*x509.Certificate{cert}, x509bundle.FromX509Authorities(td, []*x509.Certificate{other.X509Authority()}), x509svid.WithTime(now)); err == nil {
				t.Error("x509svid.Verify accepted the SVID against an unrelated root")
			}
		})
	}
}

func TestSignX509SVIDSerialsDistinct(t *testing.T) {
	c := newCA(t, testNow(), time.Hour, nil)
	key := newP256(t)
	seen := make(map[string]bool)
	minBits, maxBits := 128, 0
	for i := 0; i < 64; i++ {
		cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: key.Public(), TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		s := cert.SerialNumber.String()
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
		minBits = min(minBits, cert.SerialNumber.BitLen())
		maxBits = max(maxBits, cert.SerialNumber.BitLen())
	}
	// Uniform 128-bit values: never more than 128 bits; over 64 draws the longest reaches 126+ bits
	// (failure odds 4^-64) and the shortest stays above 100 bits (failure odds 64 * 2^-28).
	if maxBits > 128 || maxBits < 126 {
		t.Errorf("longest serial has %d bits, want 126..128", maxBits)
	}
	if minBits < 100 {
		t.Errorf("shortest serial has %d bits, want >= 100", minBits)
	}
}

func TestRootProperties(t *testing.T) {
	now := testNow()
	x, j := newAuthorities(t, now, 48*time.Hour)
	root := x.Certificate

	if !root.BasicConstraintsValid || !root.IsCA {
		t.Errorf("root basic constraints valid=%v IsCA=%v, want CA", root.BasicConstraintsValid, root.IsCA)
	}
	if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root KeyUsage = %#x, want keyCertSign|cRLSign", root.KeyUsage)
	}
	if crit, ok := extension(root, oidKeyUsage); !ok || !crit {
		t.Errorf("root key usage found=%v critical=%v, want critical", ok, crit)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("root URIs = %v, want [spiffe://example.org]", root.URIs)
	}
	if id, err := spiffeid.FromURI(root.URIs[0]); err != nil || id.Path() != "" || id.TrustDomain() != td {
		t.Errorf("root SPIFFE ID %v (err %v), want the trust domain ID without path", id, err)
	}
	if !bytes.Equal(root.RawIssuer, root.RawSubject) {
		t.Error("root is not self-issued")
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if bl := root.SerialNumber.BitLen(); root.SerialNumber.Sign() <= 0 || bl < 100 || bl > 128 {
		t.Errorf("root serial has %d bits", bl)
	}
	if !root.NotBefore.Equal(now.Add(-ca.Backdate)) || !root.NotAfter.Equal(now.Add(48*time.Hour)) {
		t.Errorf("root validity %s..%s, want %s..%s", root.NotBefore, root.NotAfter, now.Add(-ca.Backdate), now.Add(48*time.Hour))
	}
	if len(root.SubjectKeyId) == 0 {
		t.Error("root has no SubjectKeyId")
	}
	if root.Subject.CommonName == "" || len(root.Subject.Organization) == 0 || root.Subject.Organization[0] != "Signet" {
		t.Errorf("root Subject = %q, want O=Signet and a CN", root.Subject)
	}
	if !strings.HasPrefix(root.Subject.CommonName, "Signet CA ") {
		t.Errorf("root CN = %q, want prefix \"Signet CA \"", root.Subject.CommonName)
	}
	if root.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("root SignatureAlgorithm = %s", root.SignatureAlgorithm)
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", root.PublicKey)
	}
	if !j.NotAfter.Equal(root.NotAfter) {
		t.Errorf("JWT NotAfter %s, want root NotAfter %s", j.NotAfter, root.NotAfter)
	}

	c, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j, Clock: fixedClock(now)})
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain() != td || c.X509Authority() != root || c.JWTKeyID() != j.KeyID || !c.NotAfter().Equal(root.NotAfter) {
		t.Error("accessors do not reflect the configuration")
	}
	if got := c.RemainingLife(); got != 48*time.Hour {
		t.Errorf("RemainingLife = %s, want 48h", got)
	}
	if !j.Signer.Public().(*ecdsa.PublicKey).Equal(c.JWTPublicKey()) {
		t.Error("JWTPublicKey differs from the JWT signer")
	}
}

func TestSignX509SVIDInvalidParams(t *testing.T) {
	now := testNow()
	c := newCA(t, now, 2*time.Hour, fixedClock(now))
	key := newP256(t).Public()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := ca.X509SVIDParams{SPIFFEID: webID, PublicKey: key, TTL: time.Hour}
	with := func(f func(p *ca.X509SVIDParams)) ca.X509SVIDParams { p := good; f(&p); return p }

	tests := []struct {
		name    string
		params  ca.X509SVIDParams
		wantErr error
		wantMsg string
	}{
		{"empty SPIFFE ID", with(func(p *ca.X509SVIDParams) { p.SPIFFEID = spiffeid.ID{} }), ca.ErrInvalidParams, "SPIFFE ID is empty"},
		{"ID outside trust domain", with(func(p *ca.X509SVIDParams) { p.SPIFFEID = spiffeid.RequireFromPath(otherTD, "/web") }), ca.ErrInvalidParams, "outside trust domain"},
		{"root ID", with(func(p *ca.X509SVIDParams) { p.SPIFFEID = td.ID() }), ca.ErrInvalidParams, "no path"},
		{"TTL zero", with(func(p *ca.X509SVIDParams) { p.TTL = 0 }), ca.ErrInvalidParams, "must be positive"},
		{"TTL negative", with(func(p *ca.X509SVIDParams) { p.TTL = -time.Minute }), ca.ErrInvalidParams, "must be positive"},
		{"TTL below a second", with(func(p *ca.X509SVIDParams) { p.TTL = 500 * time.Millisecond }), ca.ErrInvalidParams, "resolution"},
		{"nil key", with(func(p *ca.X509SVIDParams) { p.PublicKey = nil }), ca.ErrInvalidParams, "public key: is required"},
		{"typed nil ECDSA key", with(func(p *ca.X509SVIDParams) { p.PublicKey = (*ecdsa.PublicKey)(nil) }), ca.ErrInvalidParams, "is required"},
		{"RSA 1024", with(func(p *ca.X509SVIDParams) { p.PublicKey = &rsa1024.PublicKey }), ca.ErrInvalidParams, "RSA key size 1024 bits"},
		{"ECDSA P-521", with(func(p *ca.X509SVIDParams) { p.PublicKey = &p521.PublicKey }), ca.ErrInvalidParams, "ECDSA P-521 key is not supported"},
		{"Ed25519", with(func(p *ca.X509SVIDParams) { p.PublicKey = edPub }), ca.ErrInvalidParams, "Ed25519 key is not supported"},
		{"private key instead of public", with(func(p *ca.X509SVIDParams) { p.PublicKey = p521 }), ca.ErrInvalidParams, "not supported"},
		{"empty DNS name", with(func(p *ca.X509SVIDParams) { p.DNSNames = []string{""} }), ca.ErrInvalidParams, "DNSNames[0]"},
		{"DNS name with underscore", with(func(p *ca.X509SVIDParams) { p.DNSNames = []string{"ok.example", "bad_name.example"} }), ca.ErrInvalidParams, "DNSNames[1]"},
		{"DNS name too long", with(func(p *ca.X509SVIDParams) { p.DNSNames = []string{strings.Repeat("a.", 127) + "ab"} }), ca.ErrInvalidParams, "at most 253"},
		{"DNS name with trailing dot", with(func(p *ca.X509SVIDParams) { p.DNSNames = []string{"web.example."} }), ca.ErrInvalidParams, "empty label"},
		{"too many DNS names", with(func(p *ca.X509SVIDParams) { p.DNSNames = make([]string, 101) }), ca.ErrInvalidParams, "at most 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := c.SignX509SVID(tt.params)
			if err == nil {
				t.Fatalf("SignX509SVID succeeded (serial %x), want error", cert.SerialNumber)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q does not wrap %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %q lacks the \"ca: \" prefix", err)
			}
		})
	}
}

func TestSignX509SVIDLifetimeBounds(t *testing.T) {
	created := testNow()
	const caTTL = 2 * time.Hour
	x, j := newAuthorities(t, created, caTTL)
	key := newP256(t).Public()

	tests := []struct {
		name       string
		now        time.Time
		ttl        time.Duration
		wantErr    error
		wantBefore time.Time
		wantAfter  time.Time // zero: now (truncated) + ttl
	}{
		{name: "TTL exactly the remaining life", now: created, ttl: caTTL, wantBefore: created.Add(-ca.Backdate)},
		{name: "sub-second clock is truncated", now: created.Add(400 * time.Millisecond), ttl: caTTL, wantBefore: created.Add(-ca.Backdate)},
		{name: "backdate clamped to root NotBefore", now: created.Add(-5 * time.Second), ttl: time.Minute, wantBefore: created.Add(-ca.Backdate)},
		// An SVID never outlives its CA: a TTL past the CA's NotAfter is capped there, not refused.
		{name: "TTL one second past the CA is capped", now: created, ttl: caTTL + time.Second, wantBefore: created.Add(-ca.Backdate), wantAfter: created.Add(caTTL)},
		{name: "TTL far past the CA is capped", now: created.Add(caTTL - 90*time.Second), ttl: 24 * time.Hour,
			wantBefore: created.Add(caTTL - 90*time.Second - ca.Backdate), wantAfter: created.Add(caTTL)},
		{name: "one second of CA life left", now: created.Add(caTTL - time.Second), ttl: time.Hour,
			wantBefore: created.Add(caTTL - time.Second - ca.Backdate), wantAfter: created.Add(caTTL)},
		{name: "CA expires this second", now: created.Add(caTTL - 300*time.Millisecond), ttl: time.Hour, wantErr: ca.ErrCAExpired},
		{name: "CA expired", now: created.Add(caTTL + time.Second), ttl: time.Second, wantErr: ca.ErrCAExpired},
		{name: "clock before CA validity", now: created.Add(-time.Minute), ttl: time.Minute, wantErr: errors.New("not valid before")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j, Clock: fixedClock(tt.now)})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: key, TTL: tt.ttl})
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("succeeded, want %v", tt.wantErr)
				}
				if !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !cert.NotBefore.Equal(tt.wantBefore) {
				t.Errorf("NotBefore = %s, want %s", cert.NotBefore, tt.wantBefore)
			}
			if cert.NotAfter.After(x.Certificate.NotAfter) {
				t.Errorf("NotAfter %s is after the CA's %s", cert.NotAfter, x.Certificate.NotAfter)
			}
			want := tt.wantAfter
			if want.IsZero() {
				want = tt.now.Truncate(time.Second).Add(tt.ttl)
			}
			if !cert.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", cert.NotAfter, want)
			}
			// The capped SVID still verifies against the root (go-spiffe checks the chain's validity).
			bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{x.Certificate})
			if id, _, err := x509svid.Verify([]*x509.Certificate{cert}, bundle, x509svid.WithTime(tt.now)); err != nil || id != webID {
				t.Errorf("x509svid.Verify = %s, %v; want %s", id, err, webID)
			}
		})
	}
}

func TestSignX509SVIDConcurrent(t *testing.T) {
	c := newCA(t, testNow(), time.Hour, nil)
	root := c.X509Authority()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := newP256(t).Public()
			for i := 0; i < 8; i++ {
				id := spiffeid.RequireFromPathf(td, "/w/%d/%d", g, i)
				cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: id, PublicKey: key, TTL: time.Minute, DNSNames: []string{"a.example"}})
				if err != nil {
					errs <- err
					return
				}
				if cert.URIs[0].String() != id.String() {
					errs <- fmt.Errorf("got %s, want %s", cert.URIs[0], id)
					return
				}
				if err := cert.CheckSignatureFrom(root); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
