package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Values of the JWK "use" parameter (Trust Domain and Bundle §4.2.2).
const (
	UseX509SVID = "x509-svid" // X509-SVID §6.1
	UseJWTSVID  = "jwt-svid"  // JWT-SVID §6.1
)

// UseSig is the JWK "use" of a signing key in a plain JWK Set (RFC 7517 §4.2), the form OIDC relying
// parties read from a provider's jwks_uri.
const UseSig = "sig"

// jwk is one entry of a SPIFFE bundle. Only parameters defined by RFC 7517/7518 for the key type
// and by the SVID specs are emitted (Trust Domain and Bundle §4.2: implementers SHOULD NOT include
// others), so there is no x5t, alg or key_ops. Alg is set only in the OIDC JWK Set
// (MarshalSigningJWKS), never in a SPIFFE bundle.
type jwk struct {
	Kty string   `json:"kty"`           // §4.2.1: MUST be set
	Use string   `json:"use"`           // §4.2.2: MUST be set
	Kid string   `json:"kid,omitempty"` // JWT-SVID §6.1: MUST be set; X509-SVID §6.1: MUST NOT be set
	Alg string   `json:"alg,omitempty"` // RFC 7517 §4.4: OIDC JWK Set only
	Crv string   `json:"crv,omitempty"` // RFC 7518 §6.2.1.1
	X   string   `json:"x,omitempty"`   // RFC 7518 §6.2.1.2
	Y   string   `json:"y,omitempty"`   // RFC 7518 §6.2.1.3
	N   string   `json:"n,omitempty"`   // RFC 7518 §6.3.1.1
	E   string   `json:"e,omitempty"`   // RFC 7518 §6.3.1.2
	X5c []string `json:"x5c,omitempty"` // X509-SVID §6.1: exactly one base64 DER CA certificate
}

// bundleDoc is a SPIFFE bundle (Trust Domain and Bundle §4.1).
type bundleDoc struct {
	Keys        []jwk  `json:"keys"`                          // §4.1.3: MUST be present, may be empty
	Sequence    uint64 `json:"spiffe_sequence"`               // §4.1.1
	RefreshHint int64  `json:"spiffe_refresh_hint,omitempty"` // §4.1.2: seconds
}

// jwkSet is a plain RFC 7517 §5 JWK Set.
type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// MarshalBundle returns the SPIFFE bundle document of td (Trust Domain and Bundle §4):
//
//	{"keys":[...],"spiffe_sequence":sequence,"spiffe_refresh_hint":seconds}
//
// Each X.509 root becomes a JWK with "use":"x509-svid", an "x5c" holding exactly that certificate
// and no "kid" (X509-SVID §6.1). Each JWT key becomes a JWK with "use":"jwt-svid" and its "kid"
// (JWT-SVID §6.1). Roots are de-duplicated and keep their order; JWT keys are sorted by kid, so the
// output is deterministic. refreshHint is rounded up to whole seconds; zero omits it (§4.1.2 makes
// it a SHOULD, but a negative hint is an error). Roots must be CA certificates and, when they carry
// a SPIFFE ID, belong to td. Keys must be ECDSA (P-256/P-384/P-521) or RSA.
func MarshalBundle(td spiffeid.TrustDomain, x509Roots []*x509.Certificate, jwtKeys map[string]crypto.PublicKey, sequence uint64, refreshHint time.Duration) ([]byte, error) {
	if td.IsZero() {
		return nil, errors.New("ca: bundle: trust domain is required")
	}
	if refreshHint < 0 {
		return nil, fmt.Errorf("ca: bundle for %q: refresh hint %s is negative", td.Name(), refreshHint)
	}
	doc := bundleDoc{Keys: make([]jwk, 0, len(x509Roots)+len(jwtKeys)), Sequence: sequence}
	if refreshHint > 0 {
		doc.RefreshHint = int64((refreshHint + time.Second - 1) / time.Second)
	}

	seen := make([][]byte, 0, len(x509Roots))
	for i, cert := range x509Roots {
		if cert == nil {
			return nil, fmt.Errorf("ca: bundle for %q: X.509 root %d is nil", td.Name(), i)
		}
		if slices.ContainsFunc(seen, func(raw []byte) bool { return bytes.Equal(raw, cert.Raw) }) {
			continue
		}
		seen = append(seen, cert.Raw)
		if err := checkBundleRoot(cert, td); err != nil {
			return nil, fmt.Errorf("ca: bundle for %q: X.509 root %d (serial %x): %w", td.Name(), i, cert.SerialNumber, err)
		}
		k, err := publicJWK(cert.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("ca: bundle for %q: X.509 root %d (serial %x): %w", td.Name(), i, cert.SerialNumber, err)
		}
		k.Use = UseX509SVID
		// X509-SVID §6.1: x5c holds the base64 (standard, not URL) DER certificate, RFC 7517 §4.7.
		k.X5c = []string{base64.StdEncoding.EncodeToString(cert.Raw)}
		doc.Keys = append(doc.Keys, k)
	}

	jwtJWKs, err := jwtJWKs(jwtKeys)
	if err != nil {
		return nil, fmt.Errorf("ca: bundle for %q: %w", td.Name(), err)
	}
	doc.Keys = append(doc.Keys, jwtJWKs...)

	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("ca: bundle for %q: %w", td.Name(), err)
	}
	return out, nil
}

// MarshalJWTBundle returns a JWK Set (RFC 7517 §5) holding only JWT-SVID keys, each with
// "use":"jwt-svid" and its "kid", sorted by kid. This is the form the Workload API's
// FetchJWTBundles returns, which MUST NOT include keys with other uses (Workload API §6.2.2).
func MarshalJWTBundle(jwtKeys map[string]crypto.PublicKey) ([]byte, error) {
	keys, err := jwtJWKs(jwtKeys)
	if err != nil {
		return nil, fmt.Errorf("ca: JWT bundle: %w", err)
	}
	out, err := json.Marshal(jwkSet{Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("ca: JWT bundle: %w", err)
	}
	return out, nil
}

// MarshalSigningJWKS returns the JWT-SVID keys as a plain JWK Set (RFC 7517 §5) for OIDC relying
// parties: each key with "use":"sig", its "kid" and its JWS algorithm in "alg" (RFC 7518 §3.1: ES256,
// ES384 or ES512 by curve, RS256 for RSA), sorted by kid. It also returns the distinct algorithms,
// sorted, for a discovery document's id_token_signing_alg_values_supported.
func MarshalSigningJWKS(jwtKeys map[string]crypto.PublicKey) (doc []byte, algs []string, err error) {
	keys, err := jwtJWKs(jwtKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: JWK Set: %w", err)
	}
	for i := range keys {
		keys[i].Use = UseSig
		keys[i].Alg = jwsAlg(keys[i])
		if !slices.Contains(algs, keys[i].Alg) {
			algs = append(algs, keys[i].Alg)
		}
	}
	slices.Sort(algs)
	out, err := json.Marshal(jwkSet{Keys: keys})
	if err != nil {
		return nil, nil, fmt.Errorf("ca: JWK Set: %w", err)
	}
	return out, algs, nil
}

// jwsAlg is the JWS algorithm a key of k's type and curve signs with (RFC 7518 §3.1).
func jwsAlg(k jwk) string {
	switch k.Crv {
	case "P-384":
		return "ES384"
	case "P-521":
		return "ES512"
	case "":
		return "RS256"
	}
	return "ES256"
}

// CertificatesPEM returns certs PEM-encoded, one CERTIFICATE block each, in order.
func CertificatesPEM(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		if c == nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// jwtJWKs turns JWT authorities into "jwt-svid" JWKs sorted by kid.
func jwtJWKs(jwtKeys map[string]crypto.PublicKey) ([]jwk, error) {
	kids := make([]string, 0, len(jwtKeys))
	for kid := range jwtKeys {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	out := make([]jwk, 0, len(kids))
	for _, kid := range kids {
		// JWT-SVID §6.1: the kid parameter MUST be set.
		if kid == "" {
			return nil, errors.New("JWT key with empty key ID")
		}
		k, err := publicJWK(jwtKeys[kid])
		if err != nil {
			return nil, fmt.Errorf("JWT key %q: %w", kid, err)
		}
		k.Use = UseJWTSVID
		k.Kid = kid
		out = append(out, k)
	}
	return out, nil
}

// checkBundleRoot applies X509-SVID §6.1 (the entry is one CA certificate) and §3.2 (a signing
// certificate's SPIFFE ID, if present, has no path and belongs to the trust domain).
func checkBundleRoot(cert *x509.Certificate, td spiffeid.TrustDomain) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("not a CA certificate")
	}
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := spiffeid.FromURI(u)
		if err != nil {
			return fmt.Errorf("URI SAN %q: %w", u.String(), err)
		}
		if id.TrustDomain() != td {
			return fmt.Errorf("certificate is for trust domain %q, not %q", id.TrustDomain().Name(), td.Name())
		}
	}
	return nil
}

// publicJWK encodes the key parameters of pub (RFC 7518 §6.2 for EC, §6.3 for RSA).
func publicJWK(pub crypto.PublicKey) (jwk, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return jwk{}, errors.New("empty ECDSA key")
		}
		crv := k.Curve.Params().Name // "P-256", "P-384", "P-521": the JWA names
		if crv != "P-256" && crv != "P-384" && crv != "P-521" {
			return jwk{}, fmt.Errorf("unsupported curve %s", crv)
		}
		point, err := k.Bytes() // 0x04 || X || Y, each coordinate full field size
		if err != nil {
			return jwk{}, fmt.Errorf("invalid %s: %w", describeKey(k), err)
		}
		// RFC 7518 §6.2.1.2-3: coordinates are the full-length octet strings, base64url.
		size := (len(point) - 1) / 2
		return jwk{
			Kty: "EC",
			Crv: crv,
			X:   base64.RawURLEncoding.EncodeToString(point[1 : 1+size]),
			Y:   base64.RawURLEncoding.EncodeToString(point[1+size:]),
		}, nil
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.E <= 0 {
			return jwk{}, errors.New("empty RSA key")
		}
		// RFC 7518 §6.3.1: Base64urlUInt, minimal big-endian octets.
		return jwk{
			Kty: "RSA",
			N:   base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		}, nil
	default:
		return jwk{}, fmt.Errorf("unsupported %s; want ECDSA or RSA", describeKey(pub))
	}
}
