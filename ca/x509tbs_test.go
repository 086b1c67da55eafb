package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var tbsTestTD = spiffeid.RequireTrustDomainFromString("example.org")

func mustECDSA(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestCA returns a CA for tbsTestTD whose root (created an hour before now, valid a day) is
// signed by rootKey, and whose clock is stuck at now.
func newTestCA(t testing.TB, rootKey crypto.Signer, now time.Time) *CA {
	t.Helper()
	root, err := newRootCertificate(tbsTestTD, rootKey, pkix.Name{Organization: []string{"Signet"}, CommonName: "Signet CA test"}, now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return newTestCAFromRoot(t, root, rootKey, now)
}

func newTestCAFromRoot(t testing.TB, root *x509.Certificate, signer crypto.Signer, now time.Time) *CA {
	t.Helper()
	c, err := New(Config{
		TrustDomain: tbsTestTD,
		X509:        &X509Authority{Certificate: root, Signer: signer},
		JWT:         &JWTAuthority{KeyID: "test-kid", Signer: mustECDSA(t, elliptic.P256()), NotAfter: root.NotAfter},
		Clock:       func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// slowPath returns a copy of c that signs through x509.CreateCertificate.
func slowPath(c *CA) *CA {
	slow := *c
	slow.x509TBS = nil
	return &slow
}

// opaqueSigner hides the concrete key type, as a KMS or HSM client would. If sigKey is set, it
// signs with that key instead (a misbehaving signer).
type opaqueSigner struct {
	key    crypto.Signer
	sigKey crypto.Signer
}

func (s opaqueSigner) Public() crypto.PublicKey { return s.key.Public() }

func (s opaqueSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.sigKey != nil {
		return s.sigKey.Sign(r, digest, opts)
	}
	return s.key.Sign(r, digest, opts)
}

// checkIssued verifies cert the way a relying party would: signature against the root, and
// go-spiffe's X509-SVID verification against a bundle holding only the root.
func checkIssued(t *testing.T, cert, root *x509.Certificate, id spiffeid.ID, now time.Time) {
	t.Helper()
	if err := cert.CheckSignatureFrom(root); err != nil {
		t.Errorf("CheckSignatureFrom(root): %v", err)
	}
	bundle := x509bundle.FromX509Authorities(tbsTestTD, []*x509.Certificate{root})
	got, chains, err := x509svid.Verify([]*x509.Certificate{cert}, bundle, x509svid.WithTime(now))
	if err != nil {
		t.Errorf("x509svid.Verify: %v", err)
	} else if got != id || len(chains) != 1 {
		t.Errorf("x509svid.Verify = %s with %d chains, want %s with 1", got, len(chains), id)
	}
}

// compareCertFields fails unless got and want (two SVIDs for the same parameters, so differing
// only in serial number and signature) agree on every field a relying party looks at.
func compareCertFields(t *testing.T, got, want *x509.Certificate) {
	t.Helper()
	for _, c := range []*x509.Certificate{got, want} {
		if c.Subject.SerialNumber != c.SerialNumber.Text(16) {
			t.Errorf("Subject serialNumber %q is not the serial %x", c.Subject.SerialNumber, c.SerialNumber)
		}
	}
	subject := func(c *x509.Certificate) pkix.Name {
		n := c.Subject
		n.SerialNumber = ""
		n.Names = slices.DeleteFunc(slices.Clone(n.Names), func(a pkix.AttributeTypeAndValue) bool {
			return a.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 5})
		})
		return n
	}
	if g, w := subject(got), subject(want); !reflect.DeepEqual(g, w) {
		t.Errorf("Subject (without serialNumber) = %+v, want %+v", g, w)
	}
	if !got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) {
		t.Errorf("validity %s..%s, want %s..%s", got.NotBefore, got.NotAfter, want.NotBefore, want.NotAfter)
	}
	if got.KeyUsage != want.KeyUsage {
		t.Errorf("KeyUsage = %#x, want %#x", got.KeyUsage, want.KeyUsage)
	}
	if !slices.Equal(got.ExtKeyUsage, want.ExtKeyUsage) || len(got.UnknownExtKeyUsage)+len(want.UnknownExtKeyUsage) != 0 {
		t.Errorf("ExtKeyUsage = %v %v, want %v %v", got.ExtKeyUsage, got.UnknownExtKeyUsage, want.ExtKeyUsage, want.UnknownExtKeyUsage)
	}
	if got.BasicConstraintsValid != want.BasicConstraintsValid || got.IsCA != want.IsCA || got.MaxPathLen != want.MaxPathLen {
		t.Errorf("basic constraints valid=%v CA=%v maxPathLen=%d, want %v %v %d",
			got.BasicConstraintsValid, got.IsCA, got.MaxPathLen, want.BasicConstraintsValid, want.IsCA, want.MaxPathLen)
	}
	uris := func(c *x509.Certificate) (s []string) {
		for _, u := range c.URIs {
			s = append(s, u.String())
		}
		return s
	}
	if !slices.Equal(uris(got), uris(want)) {
		t.Errorf("URIs = %v, want %v", uris(got), uris(want))
	}
	if !slices.Equal(got.DNSNames, want.DNSNames) {
		t.Errorf("DNSNames = %v, want %v", got.DNSNames, want.DNSNames)
	}
	if !bytes.Equal(got.SubjectKeyId, want.SubjectKeyId) || !bytes.Equal(got.AuthorityKeyId, want.AuthorityKeyId) {
		t.Errorf("SKI/AKI = %x/%x, want %x/%x", got.SubjectKeyId, got.AuthorityKeyId, want.SubjectKeyId, want.AuthorityKeyId)
	}
	if len(got.Extensions) != len(want.Extensions) {
		t.Errorf("%d extensions, want %d", len(got.Extensions), len(want.Extensions))
	}
	for i := range min(len(got.Extensions), len(want.Extensions)) {
		g, w := got.Extensions[i], want.Extensions[i]
		if !g.Id.Equal(w.Id) || g.Critical != w.Critical || !bytes.Equal(g.Value, w.Value) {
			t.Errorf("extension %d = %v critical=%v value=%x, want %v critical=%v value=%x", i, g.Id, g.Critical, g.Value, w.Id, w.Critical, w.Value)
		}
	}
	if got.SignatureAlgorithm != want.SignatureAlgorithm || got.PublicKeyAlgorithm != want.PublicKeyAlgorithm || got.Version != want.Version {
		t.Errorf("sig alg %s, key alg %s, version %d; want %s, %s, %d",
			got.SignatureAlgorithm, got.PublicKeyAlgorithm, got.Version, want.SignatureAlgorithm, want.PublicKeyAlgorithm, want.Version)
	}
	if !bytes.Equal(got.RawIssuer, want.RawIssuer) || !bytes.Equal(got.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo) {
		t.Error("issuer or subject public key info differ")
	}
}

// TestX509TBSMatchesCreateCertificate checks the hand-encoded path against x509.CreateCertificate
// for several root and workload key types: the issued SVIDs verify and agree field by field, and
// for one template the TBSCertificate bytes are identical.
func TestX509TBSMatchesCreateCertificate(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	id := spiffeid.RequireFromPath(tbsTestTD, "/ns/prod/sa/web")
	longID := spiffeid.RequireFromPath(tbsTestTD, "/"+strings.Repeat("segment-/", 20)+"end")
	var manyNames []string
	for i := range maxDNSNames {
		manyNames = append(manyNames, fmt.Sprintf("%s-%03d.example.org", strings.Repeat("a", 50), i))
	}
	workloadP256, workloadP384, workloadRSA := mustECDSA(t, elliptic.P256()), mustECDSA(t, elliptic.P384()), mustRSA(t, 2048)

	roots := []struct {
		name   string
		key    *ecdsa.PrivateKey
		sigAlg x509.SignatureAlgorithm
	}{
		{"P-256 root", mustECDSA(t, elliptic.P256()), x509.ECDSAWithSHA256},
		{"P-384 root", mustECDSA(t, elliptic.P384()), x509.ECDSAWithSHA384},
	}
	params := []struct {
		name string
		p    X509SVIDParams
	}{
		{"P-256 key", X509SVIDParams{SPIFFEID: id, PublicKey: workloadP256.Public(), TTL: time.Hour}},
		{"P-256 key with DNS names", X509SVIDParams{SPIFFEID: id, PublicKey: workloadP256.Public(), TTL: time.Hour,
			DNSNames: []string{"web.example.org", "*.web.example.org", "localhost"}}},
		{"P-384 key with DNS name", X509SVIDParams{SPIFFEID: id, PublicKey: workloadP384.Public(), TTL: 10 * time.Minute, DNSNames: []string{"web"}}},
		{"RSA-2048 key", X509SVIDParams{SPIFFEID: id, PublicKey: workloadRSA.Public(), TTL: 90 * time.Second}},
		// Long SPIFFE ID and 100 DNS names: long-form DER lengths of one and two octets.
		{"long ID", X509SVIDParams{SPIFFEID: longID, PublicKey: workloadP256.Public(), TTL: time.Hour}},
		{"100 DNS names", X509SVIDParams{SPIFFEID: id, PublicKey: workloadRSA.Public(), TTL: time.Hour, DNSNames: manyNames}},
	}
	for _, r := range roots {
		fast := newTestCA(t, r.key, now)
		if fast.x509TBS == nil {
			t.Fatalf("%s: CA does not use the hand-encoded path", r.name)
		}
		slow := slowPath(fast)
		root := fast.X509Authority()
		for _, tt := range params {
			t.Run(r.name+"/"+tt.name, func(t *testing.T) {
				got, err := fast.SignX509SVID(tt.p)
				if err != nil {
					t.Fatalf("fast SignX509SVID: %v", err)
				}
				want, err := slow.SignX509SVID(tt.p)
				if err != nil {
					t.Fatalf("CreateCertificate SignX509SVID: %v", err)
				}
				checkIssued(t, got, root, tt.p.SPIFFEID, now)
				checkIssued(t, want, root, tt.p.SPIFFEID, now)
				compareCertFields(t, got, want)
				if got.SignatureAlgorithm != r.sigAlg {
					t.Errorf("SignatureAlgorithm = %s, want %s", got.SignatureAlgorithm, r.sigAlg)
				}
				if got.Version != 3 {
					t.Errorf("Version = %d, want 3", got.Version)
				}
				if got.SerialNumber.Cmp(want.SerialNumber) == 0 {
					t.Error("both paths issued the same serial number")
				}

				// Same template through both encoders: identical TBSCertificate bytes.
				tmpl, err := fast.x509SVIDTemplate(tt.p, now)
				if err != nil {
					t.Fatal(err)
				}
				assertSameTBS(t, fast, tmpl, tt.p.PublicKey, r.key)
			})
		}
	}
}

// assertSameTBS encodes tmpl with c's hand-encoded path and with x509.CreateCertificate and fails
// unless the TBSCertificates are byte-for-byte equal. It also signs tmpl with the hand-encoded path
// and checks the result parses, verifies against the root and carries the same TBSCertificate.
func assertSameTBS(t *testing.T, c *CA, tmpl *x509.Certificate, pub crypto.PublicKey, rootKey crypto.Signer) {
	t.Helper()
	tbs, err := c.x509TBS.encodeTBS(tmpl, pub)
	if err != nil {
		t.Fatalf("encodeTBS: %v", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, rootKey)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	ref, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tbs, ref.RawTBSCertificate) {
		t.Fatalf("TBSCertificate differs from CreateCertificate's\n got: %x\nwant: %x", tbs, ref.RawTBSCertificate)
	}
	signed, err := c.x509TBS.signCertificate(tmpl, pub)
	if err != nil {
		t.Fatalf("signCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(signed)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, tbs) {
		t.Error("signed certificate carries a different TBSCertificate")
	}
	if err := cert.CheckSignatureFrom(c.root); err != nil {
		t.Errorf("CheckSignatureFrom(root): %v", err)
	}
}

// TestX509TBSValidityAcross2050 encodes validity periods on both sides of the UTCTime /
// GeneralizedTime switch (RFC 5280 §4.1.2.5). The CA itself never gets there (roots live at most a
// year), so the template's validity is set directly.
func TestX509TBSValidityAcross2050(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	key := mustECDSA(t, elliptic.P256())
	c := newTestCA(t, key, now)
	p := X509SVIDParams{SPIFFEID: spiffeid.RequireFromPath(tbsTestTD, "/web"), PublicKey: mustECDSA(t, elliptic.P256()).Public(), TTL: time.Hour}
	date := func(y int, m time.Month, d, hh, mm, ss int) time.Time {
		return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	}
	for _, tt := range []struct {
		name                string
		notBefore, notAfter time.Time
	}{
		{"both in 2049", date(2049, 1, 1, 0, 0, 0), date(2049, 12, 31, 23, 59, 59)},
		{"2049 to 2050", date(2049, 12, 31, 23, 59, 50), date(2050, 1, 1, 0, 0, 0)},
		{"2050 to 2051", date(2050, 6, 1, 12, 0, 0), date(2051, 6, 1, 12, 0, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := c.x509SVIDTemplate(p, now)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.NotBefore, tmpl.NotAfter = tt.notBefore, tt.notAfter
			assertSameTBS(t, c, tmpl, p.PublicKey, key)
			der, err := c.x509TBS.signCertificate(tmpl, p.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if !cert.NotBefore.Equal(tt.notBefore) || !cert.NotAfter.Equal(tt.notAfter) {
				t.Errorf("validity %s..%s, want %s..%s", cert.NotBefore, cert.NotAfter, tt.notBefore, tt.notAfter)
			}
		})
	}
}

func TestDERTime(t *testing.T) {
	utc := func(y int, m time.Month, d, hh, mm, ss int) time.Time {
		return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	}
	for _, tt := range []struct {
		t    time.Time
		tag  byte
		text string
	}{
		{utc(1949, 12, 31, 23, 59, 59), tagGeneralizedTime, "19491231235959Z"},
		{utc(1950, 1, 1, 0, 0, 0), tagUTCTime, "500101000000Z"},
		{utc(2000, 2, 29, 1, 2, 3), tagUTCTime, "000229010203Z"},
		{utc(2049, 12, 31, 23, 59, 59), tagUTCTime, "491231235959Z"},
		{utc(2050, 1, 1, 0, 0, 0), tagGeneralizedTime, "20500101000000Z"},
		{utc(2051, 7, 4, 8, 9, 10), tagGeneralizedTime, "20510704080910Z"},
		{utc(9999, 12, 31, 23, 59, 59), tagGeneralizedTime, "99991231235959Z"},
		// Converted to UTC first: 23:00 at UTC-2 on 2049-12-31 is 01:00 on 2050-01-01.
		{time.Date(2049, 12, 31, 23, 0, 0, 0, time.FixedZone("UTC-2", -2*3600)), tagGeneralizedTime, "20500101010000Z"},
		// Fractions of a second are dropped, as encoding/asn1 does.
		{utc(2049, 6, 1, 0, 0, 0).Add(999 * time.Millisecond), tagUTCTime, "490601000000Z"},
	} {
		var b derBuilder
		if err := b.time(tt.t); err != nil {
			t.Errorf("%s: %v", tt.t, err)
			continue
		}
		want := append([]byte{tt.tag, byte(len(tt.text))}, tt.text...)
		if !bytes.Equal(b.buf, want) {
			t.Errorf("%s encoded as %q, want %q", tt.t, b.buf, want)
		}
		// Same as crypto/x509 (encoding/asn1 on the UTC time).
		ref, err := asn1.Marshal(tt.t.UTC())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.buf, ref) {
			t.Errorf("%s encoded as %q, encoding/asn1 writes %q", tt.t, b.buf, ref)
		}
	}
	for _, bad := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		var b derBuilder
		if err := b.time(bad); err == nil {
			t.Errorf("%s encoded as %q, want error", bad, b.buf)
		}
	}
}

func TestDERBuilderLengths(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 255, 256, 65535, 65536, 1<<24 - 1, 1 << 24} {
		contents := make([]byte, n)
		if n > 0 {
			contents[0], contents[n-1] = 0xaa, 0xbb
		}
		want, err := asn1.Marshal(struct{ V []byte }{contents})
		if err != nil {
			t.Fatal(err)
		}
		var b derBuilder
		seq := b.open(tagSequence)
		b.primitive(tagOctetString, contents)
		b.close(seq)
		if !bytes.Equal(b.buf, want) {
			t.Errorf("length %d: encoding differs from encoding/asn1 (got header % x, want % x)", n, b.buf[:min(8, len(b.buf))], want[:min(8, len(want))])
		}
	}
}

// TestX509CreateCertificatePath covers roots whose signer cannot take the hand-encoded path.
func TestX509CreateCertificatePath(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	id := spiffeid.RequireFromPath(tbsTestTD, "/web")
	p := X509SVIDParams{SPIFFEID: id, PublicKey: mustECDSA(t, elliptic.P256()).Public(), TTL: time.Hour, DNSNames: []string{"web.example.org"}}

	t.Run("RSA root", func(t *testing.T) {
		c := newTestCA(t, mustRSA(t, 2048), now)
		if c.x509TBS != nil {
			t.Fatal("RSA root uses the hand-encoded path")
		}
		cert, err := c.SignX509SVID(p)
		if err != nil {
			t.Fatalf("SignX509SVID: %v", err)
		}
		if cert.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("SignatureAlgorithm = %s, want SHA256-RSA", cert.SignatureAlgorithm)
		}
		checkIssued(t, cert, c.X509Authority(), id, now)
	})

	t.Run("opaque ECDSA signer", func(t *testing.T) {
		// The same root key, once in process and once behind an opaque crypto.Signer: the
		// second takes the CreateCertificate path, and both issue equivalent SVIDs.
		key := mustECDSA(t, elliptic.P256())
		fast := newTestCA(t, key, now)
		opaque := newTestCAFromRoot(t, fast.X509Authority(), opaqueSigner{key: key}, now)
		if fast.x509TBS == nil || opaque.x509TBS != nil {
			t.Fatalf("hand-encoded path: in-process key %v, opaque signer %v; want true, false", fast.x509TBS != nil, opaque.x509TBS != nil)
		}
		got, err := fast.SignX509SVID(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := opaque.SignX509SVID(p)
		if err != nil {
			t.Fatal(err)
		}
		checkIssued(t, want, fast.X509Authority(), id, now)
		compareCertFields(t, got, want)
	})

	t.Run("misbehaving signer", func(t *testing.T) {
		// A signer whose signatures do not match its public key: CreateCertificate's own
		// verification turns that into an error instead of an unverifiable SVID.
		key := mustECDSA(t, elliptic.P256())
		root := newTestCA(t, key, now).X509Authority()
		c := newTestCAFromRoot(t, root, opaqueSigner{key: key, sigKey: mustECDSA(t, elliptic.P256())}, now)
		cert, err := c.SignX509SVID(p)
		if err == nil {
			t.Fatalf("SignX509SVID succeeded (serial %x), want error", cert.SerialNumber)
		}
		if !strings.Contains(err.Error(), "signature returned by signer is invalid") {
			t.Errorf("error %q does not come from CreateCertificate's signature check", err)
		}
	})
}

// TestX509TBSKeyChecks covers New's check of the private scalar and the CA's private key copy.
func TestX509TBSKeyChecks(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	key := mustECDSA(t, elliptic.P256())
	c := newTestCA(t, key, now)
	root := c.X509Authority()

	// Right public key, wrong private scalar: New refuses it rather than issuing SVIDs that do
	// not verify.
	other := mustECDSA(t, elliptic.P256())
	mismatched := &ecdsa.PrivateKey{PublicKey: key.PublicKey, D: other.D}
	_, err := New(Config{
		TrustDomain: tbsTestTD,
		X509:        &X509Authority{Certificate: root, Signer: mismatched},
		JWT:         &JWTAuthority{KeyID: "k", Signer: other, NotAfter: root.NotAfter},
	})
	if err == nil || !strings.Contains(err.Error(), "X509.Signer") || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("New with a mismatched private scalar: %v, want a mismatch error", err)
	}

	// Changing the caller's key after New does not change what the CA signs with.
	key.D = new(big.Int).Set(other.D)
	p := X509SVIDParams{SPIFFEID: spiffeid.RequireFromPath(tbsTestTD, "/web"), PublicKey: other.Public(), TTL: time.Minute}
	cert, err := c.SignX509SVID(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		t.Errorf("CheckSignatureFrom(root) after the caller's key changed: %v", err)
	}
}
