package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Backdate is subtracted from the current time to form NotBefore of every certificate this package
// signs (SVIDs and roots). Peers whose clocks run slightly behind the CA's would otherwise reject a
// freshly issued certificate as "not yet valid". Leaf NotBefore is never earlier than the root's.
const Backdate = 10 * time.Second

const (
	// minRSABits is the smallest RSA modulus accepted for any key.
	minRSABits = 2048
	// maxDNSNames bounds the DNS SANs of one X.509-SVID.
	maxDNSNames = 100
	// maxDNSNameLen is the longest DNS name accepted (RFC 1035 §2.3.4, textual form without the
	// trailing dot).
	maxDNSNameLen = 253
	// serialBytes is the size of random certificate serial numbers: 128 bits.
	serialBytes = 16
)

// X509SVIDParams are the inputs of SignX509SVID.
type X509SVIDParams struct {
	// SPIFFEID is the workload's ID; it must be in the CA's trust domain and have a path.
	SPIFFEID spiffeid.ID
	// PublicKey is the workload's key: ECDSA P-256/P-384 or RSA with at least 2048 bits.
	PublicKey crypto.PublicKey
	// TTL is the lifetime counted from now. The certificate's NotAfter is now+TTL, capped at the
	// CA's NotAfter.
	TTL time.Duration
	// DNSNames are optional DNS SANs (X509-SVID §2 allows them next to the URI SAN). Each must be
	// a syntactically valid host name (letters, digits, hyphens; labels of 1-63 characters; at
	// most 253 characters), optionally with a leading "*." wildcard label. At most 100.
	DNSNames []string
}

// SignX509SVID issues an X.509-SVID for p.SPIFFEID (X509-SVID spec). The certificate is valid from
// now-Backdate (clock-skew allowance, never before the root's NotBefore) to now+TTL, both truncated
// to whole seconds because X.509 times have second resolution. If now+TTL is after the CA's
// NotAfter the SVID expires with the CA instead (an SVID is never valid past the CA, and is not
// refused for it); once the CA has less than a second left the call fails with ErrCAExpired.
// Invalid input fails with ErrInvalidParams.
//
// The work is split into three steps: checking the parameters and building the template, signing,
// and validating the signed certificate against the SPIFFE rules and the root before returning it.
// Signing encodes the certificate directly when the root key is an in-process ECDSA P-256/P-384
// key and uses x509.CreateCertificate otherwise; both produce the same certificate (see
// X509Authority.Signer and DESIGN.md).
func (c *CA) SignX509SVID(p X509SVIDParams) (*x509.Certificate, error) {
	now := c.clock()
	tmpl, err := c.x509SVIDTemplate(p, now)
	if err != nil {
		return nil, err
	}
	der, err := c.signX509SVID(tmpl, p.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ca: sign X509-SVID %s: %w", p.SPIFFEID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse signed X509-SVID %s: %w", p.SPIFFEID, err)
	}
	if err := c.validateX509SVID(cert, tmpl, p.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: signed X509-SVID %s failed validation: %w", p.SPIFFEID, err)
	}
	return cert, nil
}

// SignX509SVIDChain is SignX509SVID returning the chain to deliver, leaf first: the leaf, then
// X509Chain() (the node's intermediate and the upstream chain above it, if any).
func (c *CA) SignX509SVIDChain(p X509SVIDParams) ([]*x509.Certificate, error) {
	cert, err := c.SignX509SVID(p)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{cert}, c.chain...), nil
}

// signX509SVID returns the DER certificate for tmpl and the workload key pub, signed by the root.
//
// With an in-process ECDSA root key the TBSCertificate is encoded by hand and signed once
// (x509TBSSigner). Any other signer goes through x509.CreateCertificate, which after signing
// verifies the signature against the signer's public key: that guards against a KMS, HSM or other
// external crypto.Signer returning a bad signature, at the cost of one verification per SVID.
func (c *CA) signX509SVID(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if c.x509TBS != nil {
		return c.x509TBS.signCertificate(tmpl, pub)
	}
	return x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.rootSigner)
}

// x509SVIDTemplate checks p and returns the certificate template to sign at time now.
func (c *CA) x509SVIDTemplate(p X509SVIDParams, now time.Time) (*x509.Certificate, error) {
	if err := c.checkSPIFFEID(p.SPIFFEID); err != nil {
		return nil, fmt.Errorf("%w: X509-SVID: %w", ErrInvalidParams, err)
	}
	spki, err := checkPublicKey(p.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: X509-SVID %s: public key: %w", ErrInvalidParams, p.SPIFFEID, err)
	}
	if err := checkTTL(p.TTL); err != nil {
		return nil, fmt.Errorf("%w: X509-SVID %s: %w", ErrInvalidParams, p.SPIFFEID, err)
	}
	if len(p.DNSNames) > maxDNSNames {
		return nil, fmt.Errorf("%w: X509-SVID %s: %d DNS names, at most %d allowed", ErrInvalidParams, p.SPIFFEID, len(p.DNSNames), maxDNSNames)
	}
	for i, name := range p.DNSNames {
		if err := checkDNSName(name); err != nil {
			return nil, fmt.Errorf("%w: X509-SVID %s: DNSNames[%d] %q: %w", ErrInvalidParams, p.SPIFFEID, i, name, err)
		}
	}

	notBefore, notAfter, err := c.validity(now, p.TTL)
	if err != nil {
		return nil, fmt.Errorf("%w (X509-SVID %s)", err, p.SPIFFEID)
	}

	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: X509-SVID %s: %w", p.SPIFFEID, err)
	}

	tmpl := c.leafProto // shallow copy; shared slices are read-only
	tmpl.SerialNumber = serial
	tmpl.Subject.SerialNumber = serial.Text(16)
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	// X509-SVID §2: exactly one URI SAN, the SPIFFE ID.
	tmpl.URIs = []*url.URL{p.SPIFFEID.URL()}
	tmpl.DNSNames = p.DNSNames
	// RFC 5280 §4.2.1.2 / RFC 7093 §2 method 1: leftmost 160 bits of SHA-256 over the
	// subjectPublicKey bits.
	sum := sha256.Sum256(spki)
	tmpl.SubjectKeyId = sum[:20]
	return &tmpl, nil
}

// validity returns the NotBefore/NotAfter of an X.509-SVID issued at now with ttl.
func (c *CA) validity(now time.Time, ttl time.Duration) (notBefore, notAfter time.Time, err error) {
	now, notAfter, err = expiry(now, ttl, c.root.NotAfter)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if now.Before(c.root.NotBefore) {
		return time.Time{}, time.Time{}, fmt.Errorf("ca: CA is not valid before %s, clock reads %s",
			c.root.NotBefore.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	notBefore = now.Add(-Backdate)
	if notBefore.Before(c.root.NotBefore) {
		notBefore = c.root.NotBefore.UTC()
	}
	return notBefore, notAfter, nil
}

// expiry truncates now to whole seconds (the resolution of X.509 and JWT times) and returns it with
// now+ttl capped at limit, the signing authority's NotAfter (also truncated): nothing is ever valid
// past its issuer, and a TTL longer than the authority's remaining life is shortened, not refused.
// It fails with ErrCAExpired when less than one second of the authority's life is left.
func expiry(now time.Time, ttl time.Duration, limit time.Time) (time.Time, time.Time, error) {
	limit = limit.UTC().Truncate(time.Second)
	if limit.Sub(now) < time.Second {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: it expires at %s, clock reads %s",
			ErrCAExpired, limit.Format(time.RFC3339), now.UTC().Format(time.RFC3339Nano))
	}
	now = now.UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	if exp.After(limit) {
		exp = limit
	}
	return now, exp, nil
}

// validateX509SVID checks the certificate that came back from signing against the X509-SVID rules
// and against what was asked for (template tmpl, workload key pub). It is deliberately cheap: field
// comparisons on the parsed certificate, so a bug in either encoder fails loudly.
//
// It does not verify the signature against the root. That check would cost about 70 µs per SVID
// (an ECDSA verification is about twice a signature) and cannot fail: the x509.CreateCertificate
// path has already verified the signature over these exact bytes, and the hand-encoded path signs
// with a private copy of the root key whose public half New checked against the root certificate.
// Tests verify every kind of issued SVID with CheckSignatureFrom and go-spiffe.
func (c *CA) validateX509SVID(cert, tmpl *x509.Certificate, pub crypto.PublicKey) error {
	// X509-SVID §2 and §5.2: exactly one URI SAN, equal to the requested SPIFFE ID (scheme and
	// non-root path were checked on the way in).
	if len(cert.URIs) != 1 {
		return fmt.Errorf("has %d URI SANs, want exactly 1", len(cert.URIs))
	}
	if got, want := cert.URIs[0].String(), tmpl.URIs[0].String(); got != want {
		return fmt.Errorf("URI SAN is %q, want %q", got, want)
	}
	// X509-SVID §4.1 and §5.2: basic constraints present with cA=false.
	if !cert.BasicConstraintsValid || cert.IsCA {
		return errors.New("basic constraints must be present with cA=false")
	}
	// X509-SVID §4.3: key usage present (critical) with digitalSignature and without
	// keyCertSign/cRLSign. We set digitalSignature only.
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		return fmt.Errorf("key usage is %#x, want digitalSignature only", cert.KeyUsage)
	}
	if !keyUsageCritical(cert) {
		return errors.New("key usage extension is not critical")
	}
	// X509-SVID §4.4: serverAuth and clientAuth.
	if len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || cert.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		return fmt.Errorf("extended key usage is %v, want serverAuth and clientAuth", cert.ExtKeyUsage)
	}
	if !cert.NotBefore.Equal(tmpl.NotBefore) || !cert.NotAfter.Equal(tmpl.NotAfter) {
		return fmt.Errorf("validity is %s..%s, want %s..%s", cert.NotBefore, cert.NotAfter, tmpl.NotBefore, tmpl.NotAfter)
	}
	if cert.NotBefore.Before(c.root.NotBefore) || cert.NotAfter.After(c.root.NotAfter) {
		return errors.New("validity is not within the CA's validity")
	}
	if cert.SerialNumber.Cmp(tmpl.SerialNumber) != 0 {
		return errors.New("serial number differs from the template")
	}
	if !bytes.Equal(cert.RawIssuer, c.root.RawSubject) {
		return errors.New("issuer is not the CA's subject")
	}
	if !bytes.Equal(cert.AuthorityKeyId, c.root.SubjectKeyId) {
		return errors.New("authority key identifier is not the CA's subject key identifier")
	}
	if len(cert.Subject.Organization) == 0 {
		return errors.New("subject is empty")
	}
	if !publicKeysEqual(pub, cert.PublicKey) {
		return errors.New("public key is not the requested key")
	}
	if !bytes.Equal(cert.SubjectKeyId, tmpl.SubjectKeyId) {
		return errors.New("subject key identifier differs from the template")
	}
	if !slices.Equal(cert.DNSNames, tmpl.DNSNames) {
		return fmt.Errorf("DNS SANs are %q, want %q", cert.DNSNames, tmpl.DNSNames)
	}
	if len(cert.EmailAddresses)+len(cert.IPAddresses) != 0 {
		return errors.New("has e-mail or IP address SANs")
	}
	return nil
}

// keyUsageCritical reports whether cert's key usage extension (2.5.29.15) is marked critical.
func keyUsageCritical(cert *x509.Certificate) bool {
	for i := range cert.Extensions {
		if cert.Extensions[i].Id.Equal(oidExtensionKeyUsage) {
			return cert.Extensions[i].Critical
		}
	}
	return false
}

// checkSPIFFEID checks that id can be the subject of an SVID issued by c.
func (c *CA) checkSPIFFEID(id spiffeid.ID) error {
	if id.IsZero() {
		return errors.New("SPIFFE ID is empty")
	}
	if !id.MemberOf(c.td) {
		return fmt.Errorf("SPIFFE ID %q is outside trust domain %q", id.String(), c.td.Name())
	}
	// X509-SVID §3.1 (and SPIFFE-ID §3): SVIDs identify workloads, whose IDs have a non-root path;
	// the bare trust domain ID names the signing authority.
	if id.Path() == "" {
		return fmt.Errorf("SPIFFE ID %q has no path; a workload ID must have a non-root path (X509-SVID §3.1)", id.String())
	}
	return nil
}

// checkTTL refuses TTLs that are not positive or are below the one-second resolution of
// certificate and JWT times.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("ttl %s must be positive", ttl)
	}
	if ttl < time.Second {
		return fmt.Errorf("ttl %s is below the 1s resolution of SVID expiry times", ttl)
	}
	return nil
}

// checkPublicKey accepts ECDSA P-256/P-384 and RSA keys of at least 2048 bits and returns the
// subjectPublicKey bits of the key (the contents of the SPKI BIT STRING), used for the key ID.
func checkPublicKey(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case nil:
		return nil, errors.New("is required")
	case *ecdsa.PublicKey:
		if k == nil {
			return nil, errors.New("is required")
		}
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%s is not supported; want ECDSA P-256/P-384 or RSA >= %d bits", describeKey(k), minRSABits)
		}
		b, err := k.Bytes() // rejects points not on the curve
		if err != nil {
			return nil, fmt.Errorf("invalid %s: %w", describeKey(k), err)
		}
		return b, nil
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("is required")
		}
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key size %d bits is below the %d-bit minimum", bits, minRSABits)
		}
		if k.E < 3 || k.E%2 == 0 {
			return nil, fmt.Errorf("RSA public exponent %d is invalid", k.E)
		}
		return x509.MarshalPKCS1PublicKey(k), nil
	default:
		return nil, fmt.Errorf("%s is not supported; want ECDSA P-256/P-384 or RSA >= %d bits", describeKey(pub), minRSABits)
	}
}

// describeKey names the type and size of a key for error messages (never its value).
func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "ECDSA key without curve"
		}
		return "ECDSA " + k.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "empty RSA key"
		}
		return fmt.Sprintf("RSA %d-bit key", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519 key"
	case nil:
		return "no key"
	default:
		return fmt.Sprintf("%T key", pub)
	}
}

// newSerial returns a random 128-bit certificate serial number (RFC 5280 §4.1.2.2: a positive
// integer of at most 20 octets). big.Int.SetBytes yields a non-negative value, and DER prepends a
// zero octet when the top bit is set, so the encoding is at most 17 octets. Zero is redrawn.
func newSerial() (*big.Int, error) {
	var b [serialBytes]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		n := new(big.Int).SetBytes(b[:])
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// checkDNSName checks RFC 1035 §2.3.1 / RFC 1123 §2.1 host name syntax (the "preferred name
// syntax" RFC 5280 §4.2.1.6 requires for dNSName), allowing a leading "*." wildcard label.
func checkDNSName(name string) error {
	if name == "" {
		return errors.New("is empty")
	}
	if len(name) > maxDNSNameLen {
		return fmt.Errorf("is %d characters long, at most %d allowed", len(name), maxDNSNameLen)
	}
	rest := name
	if len(rest) > 2 && rest[0] == '*' && rest[1] == '.' {
		rest = rest[2:]
	}
	for label := range splitLabels(rest) {
		if label == "" {
			return errors.New("has an empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
				return fmt.Errorf("label %q contains %q; only letters, digits and hyphens are allowed", label, rune(ch))
			}
		}
	}
	return nil
}

// splitLabels yields the dot-separated labels of name without allocating.
func splitLabels(name string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		start := 0
		for i := 0; i <= len(name); i++ {
			if i == len(name) || name[i] == '.' {
				if !yield(name[start:i]) {
					return
				}
				start = i + 1
			}
		}
	}
}
