package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// es256SigSize is the size of an ES256 JWS signature: R and S as 32-byte big-endian integers
// (RFC 7518 §3.4).
const es256SigSize = 64

// JWTSVIDParams are the inputs of SignJWTSVID.
type JWTSVIDParams struct {
	// SPIFFEID becomes the sub claim; it must be in the CA's trust domain and have a path.
	SPIFFEID spiffeid.ID
	// Audience becomes the aud claim: at least one value, each non-empty valid UTF-8.
	// JWT-SVID §7.2 strongly recommends a single audience.
	Audience []string
	// TTL is the lifetime counted from now. The exp claim is now+TTL, capped at the JWT
	// authority's NotAfter.
	TTL time.Duration
	// Issuer, if set, becomes the iss claim (JWT-SVID §3 allows registered claims besides sub, aud
	// and exp): the OIDC issuer URL relying parties that federate over OIDC discovery check. At most
	// MaxIssuerLen bytes of valid UTF-8; empty leaves iss out.
	Issuer string
}

// MaxIssuerLen bounds JWTSVIDParams.Issuer.
const MaxIssuerLen = 512

// JWTSVID is a signed JWT-SVID and the claims it carries.
type JWTSVID struct {
	Token     string      // JWS compact serialization (JWT-SVID §5.1)
	ID        string      // the jti claim: 128 random bits, hex
	SPIFFEID  spiffeid.ID // the sub claim
	Audience  []string    // the aud claim
	Issuer    string      // the iss claim; empty when the token has none
	IssuedAt  time.Time   // the iat claim (whole seconds, UTC)
	ExpiresAt time.Time   // the exp claim (whole seconds, UTC)
}

// SignJWTSVID issues a JWT-SVID (JWT-SVID spec) for p.SPIFFEID: JWS compact serialization with the
// protected header exactly {"alg":"ES256","kid":<kid>,"typ":"JWT"} and the claims sub, aud (always
// an array), exp, iat and jti, and iss when p.Issuer is set. If now+TTL is after the JWT authority's NotAfter, exp is that NotAfter
// (capped, not refused); once the authority has less than a second left the call fails with
// ErrCAExpired. Invalid input fails with ErrInvalidParams.
//
// The token is assembled by hand rather than through a JOSE library: the header never changes, so
// it is encoded once in New, and only the claims are built per call (see DESIGN.md for numbers).
func (c *CA) SignJWTSVID(p JWTSVIDParams) (*JWTSVID, error) {
	if err := c.checkSPIFFEID(p.SPIFFEID); err != nil {
		return nil, fmt.Errorf("%w: JWT-SVID: %w", ErrInvalidParams, err)
	}
	// JWT-SVID §3.2: aud MUST be present with one or more values.
	if len(p.Audience) == 0 {
		return nil, fmt.Errorf("%w: JWT-SVID %s: at least one audience is required (JWT-SVID §3.2)", ErrInvalidParams, p.SPIFFEID)
	}
	for i, aud := range p.Audience {
		if aud == "" {
			return nil, fmt.Errorf("%w: JWT-SVID %s: Audience[%d] is empty", ErrInvalidParams, p.SPIFFEID, i)
		}
		if !utf8.ValidString(aud) {
			return nil, fmt.Errorf("%w: JWT-SVID %s: Audience[%d] is not valid UTF-8", ErrInvalidParams, p.SPIFFEID, i)
		}
	}
	if len(p.Issuer) > MaxIssuerLen || !utf8.ValidString(p.Issuer) {
		return nil, fmt.Errorf("%w: JWT-SVID %s: Issuer must be at most %d bytes of valid UTF-8", ErrInvalidParams, p.SPIFFEID, MaxIssuerLen)
	}
	if err := checkTTL(p.TTL); err != nil {
		return nil, fmt.Errorf("%w: JWT-SVID %s: %w", ErrInvalidParams, p.SPIFFEID, err)
	}
	// JWT-SVID §3.3: exp MUST be set. It is capped at the authority's NotAfter.
	iat, exp, err := expiry(c.clock(), p.TTL, c.jwtNotAfter)
	if err != nil {
		return nil, fmt.Errorf("%w (JWT-SVID %s)", err, p.SPIFFEID)
	}

	var jtiRaw [16]byte
	if _, err := rand.Read(jtiRaw[:]); err != nil {
		return nil, fmt.Errorf("ca: JWT-SVID %s: generate jti: %w", p.SPIFFEID, err)
	}
	jti := hex.EncodeToString(jtiRaw[:])
	sub := p.SPIFFEID.String()

	claims := appendClaims(make([]byte, 0, 128+len(sub)+len(p.Issuer)+audLen(p.Audience)), sub, p.Audience, exp.Unix(), iat.Unix(), jti, p.Issuer)
	token, err := c.signJWS(claims)
	if err != nil {
		return nil, fmt.Errorf("ca: sign JWT-SVID %s: %w", p.SPIFFEID, err)
	}
	return &JWTSVID{
		Token:     token,
		ID:        jti,
		SPIFFEID:  p.SPIFFEID,
		Audience:  append([]string(nil), p.Audience...),
		Issuer:    p.Issuer,
		IssuedAt:  iat,
		ExpiresAt: exp,
	}, nil
}

// signJWS returns the JWS compact serialization (RFC 7515 §7.1) of payload under the precomputed
// protected header: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
func (c *CA) signJWS(payload []byte) (string, error) {
	b64 := base64.RawURLEncoding
	n := len(c.jwtHeaderB64) + b64.EncodedLen(len(payload)) + 1 + b64.EncodedLen(es256SigSize)
	buf := make([]byte, 0, n)
	buf = append(buf, c.jwtHeaderB64...)
	buf = b64.AppendEncode(buf, payload)

	// RFC 7518 §3.4: ES256 signs SHA-256 of the signing input; the signature is R||S.
	digest := sha256.Sum256(buf)
	der, err := c.jwtSigner.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", err
	}
	var raw [es256SigSize]byte
	if err := ecdsaDERToRaw(der, raw[:]); err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, raw[:])
	return string(buf), nil
}

// appendClaims appends the JSON claims object. Keys are written in a fixed order; every string is
// escaped by appendJSONString. aud is always an array (JWT-SVID §3.2 allows a string for a single
// value, but an array is unambiguous for every consumer). iss is left out when empty.
func appendClaims(b []byte, sub string, aud []string, exp, iat int64, jti, iss string) []byte {
	b = append(b, `{"aud":[`...)
	for i, a := range aud {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, a)
	}
	b = append(b, `],"exp":`...)
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, iat, 10)
	if iss != "" {
		b = append(b, `,"iss":`...)
		b = appendJSONString(b, iss)
	}
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, jti)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, sub)
	return append(b, '}')
}

func audLen(aud []string) int {
	n := 0
	for _, a := range aud {
		n += len(a) + 3
	}
	return n
}

// appendJSONString appends s as a JSON string (RFC 8259 §7). s must be valid UTF-8 (checked by the
// callers); quotation mark, reverse solidus and control characters are escaped, everything else is
// copied as is.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 0x20 && ch != '"' && ch != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch ch {
		case '"', '\\':
			b = append(b, '\\', ch)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[ch>>4], hexDigits[ch&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ecdsaDERToRaw converts an ASN.1 DER ECDSA-Sig-Value, SEQUENCE { r INTEGER, s INTEGER } (RFC 3279
// §2.2.3), into the fixed-size R||S form JWS uses (RFC 7518 §3.4). out's length is twice the
// curve's byte size.
func ecdsaDERToRaw(der, out []byte) error {
	size := len(out) / 2
	seq, rest, ok := derElement(der, 0x30)
	if !ok || len(rest) != 0 {
		return errors.New("malformed ECDSA signature")
	}
	r, seq, ok := derElement(seq, 0x02)
	if !ok {
		return errors.New("malformed ECDSA signature")
	}
	s, seq, ok := derElement(seq, 0x02)
	if !ok || len(seq) != 0 {
		return errors.New("malformed ECDSA signature")
	}
	if !putFixed(out[:size], r) || !putFixed(out[size:], s) {
		return errors.New("ECDSA signature value out of range")
	}
	return nil
}

// derElement splits one DER element with the given tag off the front of b, returning its contents
// and the bytes after it. Only lengths up to 0xffff are supported, plenty for ECDSA signatures.
func derElement(b []byte, tag byte) (contents, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, hdr := int(b[1]), 2
	switch {
	case n < 0x80:
	case n == 0x81 && len(b) >= 3 && b[2] >= 0x80:
		n, hdr = int(b[2]), 3
	case n == 0x82 && len(b) >= 4 && b[2] != 0:
		n, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		return nil, nil, false
	}
	if len(b)-hdr < n {
		return nil, nil, false
	}
	return b[hdr : hdr+n], b[hdr+n:], true
}

// putFixed writes the positive DER INTEGER contents v left-padded into out. It fails for empty,
// negative, zero or oversized values.
func putFixed(out, v []byte) bool {
	if len(v) == 0 || v[0]&0x80 != 0 {
		return false
	}
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > len(out) {
		return false
	}
	clear(out[:len(out)-len(v)])
	copy(out[len(out)-len(v):], v)
	return true
}
