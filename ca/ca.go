package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrCAExpired is returned (wrapped, naming the authority's NotAfter and the clock) when the
// authority that would sign an SVID has less than one second of life left. An SVID whose TTL
// reaches past the authority's NotAfter is not refused: its expiry is capped at the NotAfter.
var ErrCAExpired = errors.New("ca: signing authority has expired")

// ErrInvalidParams is returned (wrapped, naming the offending field) when signing parameters are
// unusable: an empty SPIFFE ID, an ID outside the CA's trust domain, a root ID without a path, a
// nil or weak public key, a TTL that is not positive, a JWT-SVID without audience, an invalid DNS
// name, and so on.
var ErrInvalidParams = errors.New("ca: invalid params")

// X509Authority is the node's X.509 signing certificate and the signer holding its private key: a
// self-signed root, or an intermediate signed by an upstream authority (UpstreamRoots set).
type X509Authority struct {
	// Certificate is the signing certificate: CA=true, keyCertSign|cRLSign, URI SAN spiffe://<td>;
	// self-signed unless UpstreamRoots is set.
	Certificate *x509.Certificate
	// Signer holds the private key matching Certificate.PublicKey.
	//
	// When Signer is an in-process *ecdsa.PrivateKey on P-256 or P-384 (what LoadOrCreate
	// returns), X.509-SVIDs are DER-encoded and signed directly, without x509.CreateCertificate;
	// New then checks that the private scalar itself belongs to Certificate, and the CA keeps its
	// own copy of the key. Any other signer (RSA, a KMS or HSM behind crypto.Signer) goes through
	// x509.CreateCertificate, which verifies every signature the signer returns.
	Signer crypto.Signer
	// UpstreamChain, for an intermediate, holds the certificates between Certificate and
	// UpstreamRoots, the issuer of Certificate first (usually none). X.509-SVIDs are delivered as
	// leaf, Certificate, UpstreamChain.
	UpstreamChain []*x509.Certificate
	// UpstreamRoots, when set, are the upstream authority's roots: Certificate must chain to one of
	// them, and they (not Certificate) are what the trust bundle carries. Empty means Certificate is
	// a self-signed root.
	UpstreamRoots []*x509.Certificate
}

// JWTAuthority is the key that signs JWT-SVIDs.
type JWTAuthority struct {
	// KeyID is published as "kid" in the bundle and set in every token header. LoadOrCreate makes
	// it 32 random base64url characters and keeps it on disk so it is stable across restarts.
	KeyID string
	// Signer holds an ECDSA P-256 private key (tokens are signed ES256).
	Signer crypto.Signer
	// NotAfter bounds the exp claim of every token; it is the X.509 root's NotAfter.
	NotAfter time.Time
}

// Config configures New.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	X509        *X509Authority
	JWT         *JWTAuthority
	Clock       func() time.Time // nil means time.Now
}

// CA signs X.509-SVIDs and JWT-SVIDs for one trust domain. It is immutable after New and safe for
// concurrent use.
type CA struct {
	td    spiffeid.TrustDomain
	clock func() time.Time

	root       *x509.Certificate
	rootSigner crypto.Signer
	// chain is what follows a leaf on the wire: the intermediate and the upstream chain above it;
	// nil for a self-signed root. bundleRoots is what the trust bundle carries for this CA.
	chain       []*x509.Certificate
	bundleRoots []*x509.Certificate

	// leafProto is the part of every X.509-SVID template that does not change between calls. It
	// is copied (shallowly; its slices are never written) for each signature.
	leafProto x509.Certificate
	// x509TBS is the fast signing path (x509tbs.go), set when rootSigner is an in-process ECDSA
	// P-256/P-384 key; nil means every X.509-SVID goes through x509.CreateCertificate.
	x509TBS *x509TBSSigner

	jwtKeyID    string
	jwtSigner   crypto.Signer
	jwtPublic   crypto.PublicKey
	jwtNotAfter time.Time
	// jwtHeaderB64 is base64url(header) followed by '.', computed once: the JOSE header of every
	// token is the same {"alg":"ES256","kid":...,"typ":"JWT"}.
	jwtHeaderB64 []byte
}

// leafSubjectOrganization is the Organization of every X.509-SVID Subject. See newLeafProto.
const leafSubjectOrganization = "Signet"

// New validates cfg and returns a CA. Errors name the offending field, for example
// "ca: config: X509 is required".
func New(cfg Config) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("ca: config: TrustDomain is required")
	}
	if cfg.X509 == nil {
		return nil, errors.New("ca: config: X509 is required")
	}
	if cfg.X509.Certificate == nil {
		return nil, errors.New("ca: config: X509.Certificate is required")
	}
	if cfg.X509.Signer == nil {
		return nil, errors.New("ca: config: X509.Signer is required")
	}
	if cfg.JWT == nil {
		return nil, errors.New("ca: config: JWT is required")
	}
	if cfg.JWT.Signer == nil {
		return nil, errors.New("ca: config: JWT.Signer is required")
	}
	if cfg.JWT.NotAfter.IsZero() {
		return nil, errors.New("ca: config: JWT.NotAfter is required")
	}
	if err := checkKeyID(cfg.JWT.KeyID); err != nil {
		return nil, fmt.Errorf("ca: config: JWT.KeyID: %w", err)
	}

	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	root := cfg.X509.Certificate
	chain, bundleRoots := []*x509.Certificate(nil), []*x509.Certificate{root}
	if len(cfg.X509.UpstreamRoots) == 0 {
		if len(cfg.X509.UpstreamChain) != 0 {
			return nil, errors.New("ca: config: X509.UpstreamChain is set but X509.UpstreamRoots is empty")
		}
		if err := checkRoot(root, cfg.TrustDomain); err != nil {
			return nil, fmt.Errorf("ca: config: X509.Certificate: %w", err)
		}
	} else {
		if err := checkIntermediate(root, cfg.TrustDomain, cfg.X509.UpstreamChain, cfg.X509.UpstreamRoots, clock()); err != nil {
			return nil, fmt.Errorf("ca: config: X509.Certificate: %w", err)
		}
		chain = append([]*x509.Certificate{root}, cfg.X509.UpstreamChain...)
		bundleRoots = slices.Clone(cfg.X509.UpstreamRoots)
	}
	if _, err := checkPublicKey(cfg.X509.Signer.Public()); err != nil {
		return nil, fmt.Errorf("ca: config: X509.Signer: %w", err)
	}
	if !publicKeysEqual(cfg.X509.Signer.Public(), root.PublicKey) {
		return nil, errors.New("ca: config: X509.Signer does not match the public key of X509.Certificate")
	}

	leafProto := newLeafProto(root)
	x509TBS, err := newX509TBSSigner(root, cfg.X509.Signer, leafProto.Subject)
	if err != nil {
		return nil, fmt.Errorf("ca: config: X509.Signer: %w", err)
	}

	jwtPub := cfg.JWT.Signer.Public()
	ecPub, ok := jwtPub.(*ecdsa.PublicKey)
	if !ok || ecPub.Curve != elliptic.P256() {
		// JWT-SVID §2.1 allows several algorithms; Signet signs ES256 only, so the key must be
		// ECDSA P-256.
		return nil, fmt.Errorf("ca: config: JWT.Signer: want an ECDSA P-256 key for ES256, got %s", describeKey(jwtPub))
	}
	if _, err := ecPub.Bytes(); err != nil {
		return nil, fmt.Errorf("ca: config: JWT.Signer: invalid public key: %w", err)
	}

	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{Alg: "ES256", Kid: cfg.JWT.KeyID, Typ: "JWT"})
	if err != nil {
		return nil, fmt.Errorf("ca: config: JWT header: %w", err)
	}
	headerB64 := base64.RawURLEncoding.AppendEncode(nil, header)
	headerB64 = append(headerB64, '.')

	return &CA{
		td:           cfg.TrustDomain,
		clock:        clock,
		root:         root,
		rootSigner:   cfg.X509.Signer,
		chain:        chain,
		bundleRoots:  bundleRoots,
		leafProto:    leafProto,
		x509TBS:      x509TBS,
		jwtKeyID:     cfg.JWT.KeyID,
		jwtSigner:    cfg.JWT.Signer,
		jwtPublic:    jwtPub,
		jwtNotAfter:  cfg.JWT.NotAfter,
		jwtHeaderB64: headerB64,
	}, nil
}

// TrustDomain returns the trust domain the CA issues SVIDs in.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// X509Authority returns the CA's signing certificate: its self-signed root, or its intermediate under
// an upstream authority. Callers must not modify it.
func (c *CA) X509Authority() *x509.Certificate { return c.root }

// X509Chain returns the certificates that follow a leaf X.509-SVID on the wire (leaf first, then
// these): the intermediate and the upstream chain above it, or nil for a self-signed root. Callers
// must not modify it.
func (c *CA) X509Chain() []*x509.Certificate { return c.chain }

// X509Roots returns the certificates the trust bundle carries for this CA: the upstream authority's
// roots, or the self-signed root itself. Callers must not modify it.
func (c *CA) X509Roots() []*x509.Certificate { return c.bundleRoots }

// Upstream reports whether the signing certificate is an intermediate of an upstream authority.
func (c *CA) Upstream() bool { return c.chain != nil }

// JWTKeyID returns the kid of the JWT signing key.
func (c *CA) JWTKeyID() string { return c.jwtKeyID }

// JWTPublicKey returns the public half of the JWT signing key.
func (c *CA) JWTPublicKey() crypto.PublicKey { return c.jwtPublic }

// NotAfter returns the root certificate's NotAfter.
func (c *CA) NotAfter() time.Time { return c.root.NotAfter }

// RemainingLife returns NotAfter minus the current time; it is negative once the CA has expired.
func (c *CA) RemainingLife() time.Duration { return c.root.NotAfter.Sub(c.clock()) }

// checkRoot checks that cert can serve as the self-signed X.509 signing certificate of td.
func checkRoot(cert *x509.Certificate, td spiffeid.TrustDomain) error {
	if err := checkSigningCert(cert, td); err != nil {
		return err
	}
	if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		return errors.New("not self-signed (issuer differs from subject)")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("not self-signed: %w", err)
	}
	return nil
}

// checkIntermediate checks that cert can serve as td's X.509 signing certificate under an upstream
// authority: a signing certificate that chains, through chain, to one of roots at time now.
func checkIntermediate(cert *x509.Certificate, td spiffeid.TrustDomain, chain, roots []*x509.Certificate, now time.Time) error {
	if err := checkSigningCert(cert, td); err != nil {
		return err
	}
	for _, c := range chain {
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("upstream chain certificate %q is not a CA certificate", c.Subject.String())
		}
	}
	if err := VerifyChain(cert, chain, roots, now); err != nil {
		return fmt.Errorf("does not chain to the upstream roots: %w", err)
	}
	return nil
}

// VerifyChain checks that cert chains, through the intermediates, to one of roots at time now, for any
// key usage.
func VerifyChain(cert *x509.Certificate, intermediates, roots []*x509.Certificate, now time.Time) error {
	rootPool, interPool := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range intermediates {
		interPool.AddCert(c)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: interPool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// checkSigningCert checks what every X.509 signing certificate of td needs, self-signed or not.
func checkSigningCert(cert *x509.Certificate, td spiffeid.TrustDomain) error {
	// X509-SVID §3.2 and §4.1: a signing certificate has cA=true and keyCertSign.
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("not a CA certificate (basic constraints cA is not true)")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("key usage lacks keyCertSign")
	}
	// SPIFFE-ID §3 and X509-SVID §3.2: the signing certificate is itself an SVID whose SPIFFE ID
	// has no path and lives in the trust domain it issues for.
	if len(cert.URIs) != 1 {
		return fmt.Errorf("want exactly one URI SAN spiffe://%s, found %d", td.Name(), len(cert.URIs))
	}
	id, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return fmt.Errorf("URI SAN %q is not a SPIFFE ID: %w", cert.URIs[0].String(), err)
	}
	if id.TrustDomain() != td {
		return fmt.Errorf("certificate is for trust domain %q but the configured trust domain is %q", id.TrustDomain().Name(), td.Name())
	}
	if id.Path() != "" {
		return fmt.Errorf("URI SAN %q has a path; a signing certificate's SPIFFE ID must not (X509-SVID §3.2)", id.String())
	}
	// RFC 5280 §4.2.1.2: CA certificates carry a subject key identifier; leaves use it as their
	// authority key identifier.
	if len(cert.SubjectKeyId) == 0 {
		return errors.New("subject key identifier is missing")
	}
	return nil
}

// newLeafProto returns the fields shared by every X.509-SVID signed under root.
//
// Subject choice: every leaf has a non-empty Subject, O=Signet plus a serialNumber attribute equal
// to the certificate serial (hex). X509-SVID §3.1 allows omitting Subject only if the URI SAN is then
// marked critical (RFC 5280 §4.1.2.6); keeping a Subject means the SAN extension is non-critical,
// which is what most TLS stacks expect. Nothing workload-specific or sensitive goes into it.
func newLeafProto(root *x509.Certificate) x509.Certificate {
	return x509.Certificate{
		Subject: pkix.Name{Organization: []string{leafSubjectOrganization}},
		// X509-SVID §4.1: leaf certificates MUST set cA to false (basic constraints present).
		BasicConstraintsValid: true,
		IsCA:                  false,
		// X509-SVID §4.3: leaves MUST set digitalSignature and MUST NOT set keyCertSign or
		// cRLSign. crypto/x509 always marks the key usage extension critical, as §4.3 requires.
		KeyUsage: x509.KeyUsageDigitalSignature,
		// X509-SVID §4.4: when EKU is present, serverAuth and clientAuth MUST both be set.
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: root.SubjectKeyId,
	}
}

// checkKeyID accepts 1 to 128 characters of the URL-safe unreserved set (RFC 3986 §2.3), which
// covers the base64url and hex identifiers this package generates and needs no JSON escaping.
func checkKeyID(kid string) error {
	if kid == "" {
		return errors.New("is required")
	}
	if len(kid) > 128 {
		return fmt.Errorf("is %d characters long, at most 128 allowed", len(kid))
	}
	for i := 0; i < len(kid); i++ {
		ch := kid[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '.', ch == '~':
		default:
			return fmt.Errorf("contains byte 0x%02x at offset %d; allowed are A-Z a-z 0-9 - _ . ~", ch, i)
		}
	}
	return nil
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
