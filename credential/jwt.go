package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// NumericDate bounds (RFC 7519 §2): values outside years 0001-9999 are treated as absent.
const (
	minNumericDate = -62135596800 // 0001-01-01T00:00:00Z
	maxNumericDate = 253402300799 // 9999-12-31T23:59:59Z
)

// parseJWT reads tok as a JWT in JWS compact serialization. isJWT is false when tok does not look
// like one at all (then the caller tries other formats); once the header has been read as a JSON
// object, every failure is ErrMalformed naming the part.
//
// Claims of the wrong type (a string exp, a numeric sub) are ignored rather than rejected: the
// point is to identify a token, and a forged one may carry anything.
func parseJWT(tok string) (c Credential, isJWT bool, err error) {
	tok = removeSpace(tok)
	if !isTokenShaped(tok) {
		return Credential{}, false, nil
	}
	nsegs := strings.Count(tok, ".") + 1
	segs := strings.SplitN(tok, ".", 4) // a JWS has 3; more is only counted

	headerJSON, err := decodeSegment(segs[0])
	if err != nil {
		if strings.HasPrefix(segs[0], "eyJ") { // base64url of `{"`
			return Credential{}, true, fmt.Errorf("%w: JWT header: not valid base64url (%s)", ErrMalformed, safeReason(err))
		}
		return Credential{}, false, nil
	}
	if t := bytes.TrimLeft(headerJSON, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		if strings.HasPrefix(segs[0], "eyJ") {
			return Credential{}, true, fmt.Errorf("%w: JWT header: not a JSON object", ErrMalformed)
		}
		return Credential{}, false, nil
	}
	header, err := decodeObject(headerJSON)
	if err != nil {
		return Credential{}, true, fmt.Errorf("%w: JWT header: not a JSON object (%s)", ErrMalformed, safeReason(err))
	}
	if nsegs > 3 {
		if _, jwe := header["enc"]; jwe {
			return Credential{}, true, fmt.Errorf("%w: JWT: encrypted token (JWE, %d segments) cannot be read without the key", ErrMalformed, nsegs)
		}
		return Credential{}, true, fmt.Errorf("%w: JWT: %d segments, want header.payload.signature", ErrMalformed, nsegs)
	}

	if segs[1] == "" {
		return Credential{}, true, fmt.Errorf("%w: JWT payload: empty", ErrMalformed)
	}
	payloadJSON, err := decodeSegment(segs[1])
	if err != nil {
		return Credential{}, true, fmt.Errorf("%w: JWT payload: not valid base64url (%s)", ErrMalformed, safeReason(err))
	}
	claims, err := decodeObject(payloadJSON)
	if err != nil {
		return Credential{}, true, fmt.Errorf("%w: JWT payload: not a JSON object (%s)", ErrMalformed, safeReason(err))
	}

	c = Credential{
		Kind:             KindJWT,
		ID:               stringClaim(claims["jti"]),
		SPIFFEID:         stringClaim(claims["sub"]),
		Issuer:           stringClaim(claims["iss"]),
		KeyID:            stringClaim(header["kid"]),
		Audience:         audience(claims["aud"]),
		SignaturePresent: len(segs) == 3 && segs[2] != "",
	}
	if c.SPIFFEID != "" {
		c.TrustDomain = trustDomainOf(c.SPIFFEID)
	}
	c.NotAfter, _ = numericDate(claims["exp"])
	c.IssuedAt, _ = numericDate(claims["iat"])
	c.NotBefore = c.IssuedAt
	if c.NotBefore.IsZero() {
		c.NotBefore, _ = numericDate(claims["nbf"])
	}
	return c, true, nil
}

// isTokenShaped reports whether tok has at least two dot-separated segments and the first (the
// header) is non-empty base64url (padding tolerated). The other segments are checked when decoded,
// so that a damaged payload is reported as such.
func isTokenShaped(tok string) bool {
	dot := strings.IndexByte(tok, '.')
	if dot <= 0 {
		return false
	}
	for i := 0; i < dot; i++ {
		c := tok[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

// decodeSegment decodes one JWS segment: base64url without padding (RFC 7515 §2), padding
// tolerated.
func decodeSegment(seg string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
}

// decodeObject decodes exactly one JSON object. Numbers are kept as json.Number so that large
// integers are not rounded.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return m, nil
}

// stringClaim returns v if it is a string; a number (a non-standard numeric jti) as written.
func stringClaim(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// audience returns the aud claim: a string or an array (non-string elements are skipped).
func audience(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// numericDate converts a JWT NumericDate (seconds since the epoch, integer or not) to UTC time.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		if i < minNumericDate || i > maxNumericDate {
			return time.Time{}, false
		}
		return time.Unix(i, 0).UTC(), true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < minNumericDate || f > maxNumericDate {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	nsec := math.Round((f - sec) * 1e9)
	return time.Unix(int64(sec), int64(nsec)).UTC(), true
}
