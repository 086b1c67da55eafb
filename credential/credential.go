package credential

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind of credential found.
type Kind string

const (
	// KindX509 is an X.509 certificate (normally an X.509-SVID).
	KindX509 Kind = "x509-svid"
	// KindJWT is a JWT in JWS compact serialization (normally a JWT-SVID).
	KindJWT Kind = "jwt-svid"
)

// Credential is what could be read from the input. Fields not present are zero. Nothing in it has
// been verified: not the signature, not the validity period, not the issuer.
type Credential struct {
	Kind Kind
	// ID is the key of Signet's issuance ledger. X.509: the serial number in lowercase hex without
	// leading zeros (big.Int.Text(16)); JWT: the jti claim.
	ID string
	// SPIFFEID is, for X.509, the URI SAN when the certificate has exactly one and it is a
	// spiffe:// URI; for a JWT, the sub claim as it appears (whatever its form).
	SPIFFEID string
	// TrustDomain is the trust domain name of SPIFFEID if SPIFFEID is a valid SPIFFE ID.
	TrustDomain string
	// Issuer is, for X.509, the issuer DN (pkix.Name.String); for a JWT, the iss claim if present.
	Issuer string
	// AuthorityKeyID is the authority key identifier of an X.509 certificate.
	AuthorityKeyID []byte
	// KeyID is the kid header parameter of a JWT.
	KeyID string
	// Audience is the aud claim of a JWT; a single string becomes a one-element slice.
	Audience []string
	// NotBefore and NotAfter are the X.509 validity period. For a JWT NotAfter is exp and
	// NotBefore is iat, or nbf when iat is absent.
	NotBefore, NotAfter time.Time
	// IssuedAt is the iat claim of a JWT.
	IssuedAt time.Time
	// PublicKeySHA256 is the hex SHA-256 of an X.509 certificate's RawSubjectPublicKeyInfo.
	PublicKeySHA256 string
	// SignaturePresent reports, for a JWT, whether the third segment is present and non-empty.
	// It is always false for X.509 (a parsed certificate always carries a signature).
	SignaturePresent bool
	// Chain is, for X.509, how many certificates the input held. The leaf is the first one that is
	// not a CA; if all are CAs, the first.
	Chain int
	// Leaf is the certificate described (X.509 only).
	Leaf *x509.Certificate
}

// Sentinel errors. Every error returned by Parse wraps exactly one of them; test with errors.Is.
// Error messages never contain key material, the token, or more than a few bytes of the input.
var (
	// ErrEmpty: the input is empty or only whitespace.
	ErrEmpty = errors.New("credential: input is empty")
	// ErrTooLarge: the input is longer than MaxInput bytes.
	ErrTooLarge = errors.New("credential: input is too large")
	// ErrUnrecognized: the input is neither a certificate (PEM, DER or base64 DER) nor a JWT.
	ErrUnrecognized = errors.New("credential: input is neither a certificate (PEM, DER, base64 DER) nor a JWT")
	// ErrMalformed: the input looks like a certificate or a JWT but cannot be read; the message
	// names the part that failed (for example "JWT payload" or "PEM CERTIFICATE block 2").
	ErrMalformed = errors.New("credential: malformed credential")
)

// MaxInput is the largest input Parse accepts, in bytes.
const MaxInput = 1 << 20

// Parse identifies one credential in data: PEM (one or more CERTIFICATE blocks; other PEM blocks
// such as keys are ignored — and never echoed in errors), raw DER certificate, base64 of DER, or a
// JWT in compact serialization (header.payload.signature, or header.payload. / header.payload
// with the signature stripped), with surrounding whitespace, an optional "Bearer " prefix, or an
// "authorization: Bearer ..." header line. Never verifies signatures or expiry.
//
// Concatenated DER certificates are read as a chain like PEM. A JWT may be wrapped over several
// lines. A JWT whose header says "alg":"none" is identified like any other.
func Parse(data []byte) (Credential, error) {
	if len(data) > MaxInput {
		return Credential{}, fmt.Errorf("%w: %d bytes, at most %d accepted", ErrTooLarge, len(data), MaxInput)
	}
	// Raw DER first, on the untouched bytes: trimming "whitespace" could eat signature bytes.
	if looksLikeCertDER(data) {
		return parseDER(data, "DER")
	}
	text := bytes.TrimSpace(data)
	if len(text) == 0 {
		return Credential{}, ErrEmpty
	}
	if bytes.Contains(text, []byte("-----BEGIN")) {
		return parsePEM(text)
	}
	if tok, ok := bearerToken(text); ok {
		if c, isJWT, err := parseJWT(tok); isJWT {
			return c, err
		}
		return Credential{}, fmt.Errorf("%w (the bearer value is not a JWT)", ErrUnrecognized)
	}
	if c, isJWT, err := parseJWT(string(text)); isJWT {
		return c, err
	}
	if der, ok := decodeBase64(text); ok && looksLikeCertDER(der) {
		return parseDER(der, "base64 DER")
	}
	return Credential{}, ErrUnrecognized
}

// bearerToken finds an "authorization:" header line (any line, any case) or a leading "Bearer "
// and returns what follows, trimmed. ok is false when neither is there.
func bearerToken(text []byte) (tok string, ok bool) {
	s := string(text)
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if rest, found := cutPrefixFold(line, "authorization:"); found {
			rest = strings.TrimSpace(rest)
			if r, found := cutBearer(rest); found {
				rest = r
			}
			return rest, true
		}
	}
	return cutBearer(s)
}

// cutBearer removes a leading "Bearer" (any case) followed by whitespace.
func cutBearer(s string) (string, bool) {
	rest, ok := cutPrefixFold(s, "bearer")
	if !ok || rest == "" || !isSpace(rest[0]) {
		return s, false
	}
	return strings.TrimSpace(rest), true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// removeSpace returns s without ASCII whitespace (tokens and base64 wrapped over lines).
func removeSpace(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// safeReason returns the message of an error from a parsing library (crypto/x509, encoding/json,
// encoding/base64) in a form fit to be shown: cut before the first quote, because those libraries
// quote input they could not parse (a URI SAN, an OID), and bounded in length.
func safeReason(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\"'`"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(strings.TrimSpace(s), ":")
	const maxLen = 80
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	if s == "" {
		return "unreadable"
	}
	return s
}
