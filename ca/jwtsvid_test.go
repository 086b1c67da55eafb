package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment is not unpadded base64url: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("segment is not a JSON object: %v", err)
	}
	return m
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestSignJWTSVID(t *testing.T) {
	now := testNow()
	c := newCA(t, now.Add(-time.Hour), 24*time.Hour, fixedClock(now))
	bundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{c.JWTKeyID(): c.JWTPublicKey()})

	tests := []struct {
		name     string
		audience []string
		ttl      time.Duration
	}{
		{"one audience", []string{"a"}, 5 * time.Minute},
		{"several audiences", []string{"a", "spiffe://example.org/reports", "b"}, time.Hour},
		{"audience needing JSON escapes", []string{"a", "quote\" back\\slash\nnewline\x01ctl é ☃"}, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: tt.audience, TTL: tt.ttl})
			if err != nil {
				t.Fatalf("SignJWTSVID: %v", err)
			}

			// JWT-SVID §5.1: compact serialization, three segments.
			parts := strings.Split(svid.Token, ".")
			if len(parts) != 3 {
				t.Fatalf("token has %d segments, want 3", len(parts))
			}
			// JWT-SVID §2: header exactly alg, kid, typ.
			header := decodeSegment(t, parts[0])
			if len(header) != 3 || header["alg"] != "ES256" || header["kid"] != c.JWTKeyID() || header["typ"] != "JWT" {
				t.Errorf("header = %v, want exactly {alg:ES256 kid:%s typ:JWT}", header, c.JWTKeyID())
			}
			// JWT-SVID §3: sub, aud (array), exp; plus iat and jti.
			claims := decodeSegment(t, parts[1])
			if len(claims) != 5 {
				t.Errorf("claims = %v, want exactly aud, exp, iat, jti, sub", claims)
			}
			if claims["sub"] != webID.String() {
				t.Errorf("sub = %v, want %s", claims["sub"], webID)
			}
			aud, ok := claims["aud"].([]any)
			if !ok || len(aud) != len(tt.audience) {
				t.Fatalf("aud = %#v, want array %q", claims["aud"], tt.audience)
			}
			for i := range aud {
				if aud[i] != tt.audience[i] {
					t.Errorf("aud[%d] = %q, want %q", i, aud[i], tt.audience[i])
				}
			}
			if exp, _ := claims["exp"].(float64); int64(exp) != now.Add(tt.ttl).Unix() {
				t.Errorf("exp = %v, want %d", claims["exp"], now.Add(tt.ttl).Unix())
			}
			if iat, _ := claims["iat"].(float64); int64(iat) != now.Unix() {
				t.Errorf("iat = %v, want %d", claims["iat"], now.Unix())
			}
			if claims["jti"] != svid.ID || !hex32.MatchString(svid.ID) {
				t.Errorf("jti = %v, ID = %q, want the same 32 hex characters", claims["jti"], svid.ID)
			}
			if raw, _ := base64.RawURLEncoding.DecodeString(parts[2]); len(raw) != 64 {
				t.Errorf("signature is %d bytes, want 64 (R||S)", len(raw))
			}

			// Returned metadata.
			if svid.SPIFFEID != webID || !svid.IssuedAt.Equal(now) || !svid.ExpiresAt.Equal(now.Add(tt.ttl)) {
				t.Errorf("svid = %+v", svid)
			}
			if strings.Join(svid.Audience, "\x00") != strings.Join(tt.audience, "\x00") {
				t.Errorf("Audience = %q, want %q", svid.Audience, tt.audience)
			}

			// go-spiffe validation (JWT-SVID §4, Appendix A).
			got, err := jwtsvid.ParseAndValidate(svid.Token, bundle, []string{tt.audience[0]})
			if err != nil {
				t.Fatalf("jwtsvid.ParseAndValidate: %v", err)
			}
			if got.ID != webID || !got.Expiry.Equal(svid.ExpiresAt) {
				t.Errorf("ParseAndValidate = %s exp %s", got.ID, got.Expiry)
			}
			if _, err := jwtsvid.ParseAndValidate(svid.Token, bundle, []string{"wrong"}); err == nil {
				t.Error("ParseAndValidate accepted a wrong audience")
			}
			otherKey := newP256(t)
			wrongBundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{c.JWTKeyID(): otherKey.Public()})
			if _, err := jwtsvid.ParseAndValidate(svid.Token, wrongBundle, []string{tt.audience[0]}); err == nil {
				t.Error("ParseAndValidate accepted a token against the wrong key")
			}

			// Independent check with go-jose, restricted to ES256.
			tok, err := jwt.ParseSigned(svid.Token, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var std jwt.Claims
			if err := tok.Claims(c.JWTPublicKey(), &std); err != nil {
				t.Fatalf("go-jose verification: %v", err)
			}
			if std.ID != svid.ID || std.Subject != webID.String() {
				t.Errorf("go-jose claims = %+v", std)
			}
		})
	}
}

// TestSignJWTSVIDIssuer: with an issuer the token carries iss (and nothing else changes); go-spiffe
// still validates it, and go-jose's standard checks accept iss, aud and exp.
func TestSignJWTSVIDIssuer(t *testing.T) {
	now := testNow()
	c := newCA(t, now.Add(-time.Hour), 24*time.Hour, fixedClock(now))
	const iss = "https://oidc.example.org/signet"
	svid, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"api"}, TTL: time.Minute, Issuer: iss})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	if svid.Issuer != iss {
		t.Errorf("Issuer = %q, want %q", svid.Issuer, iss)
	}
	claims := decodeSegment(t, strings.Split(svid.Token, ".")[1])
	if len(claims) != 6 || claims["iss"] != iss {
		t.Errorf("claims = %v, want aud, exp, iat, iss %q, jti, sub", claims, iss)
	}
	bundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{c.JWTKeyID(): c.JWTPublicKey()})
	if _, err := jwtsvid.ParseAndValidate(svid.Token, bundle, []string{"api"}); err != nil {
		t.Errorf("go-spiffe refused a JWT-SVID with iss: %v", err)
	}
	tok, err := jwt.ParseSigned(svid.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var std jwt.Claims
	if err := tok.Claims(bundle.JWTAuthorities()[c.JWTKeyID()], &std); err != nil {
		t.Fatal(err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{"api"}, Time: now}, 0); err != nil {
		t.Errorf("go-jose: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: "https://other.example.org", Time: now}, 0); !errors.Is(err, jwt.ErrInvalidIssuer) {
		t.Errorf("go-jose with another issuer: %v, want ErrInvalidIssuer", err)
	}

	// Without an issuer, no iss claim.
	plain, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"api"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := decodeSegment(t, strings.Split(plain.Token, ".")[1])["iss"]; ok || plain.Issuer != "" {
		t.Errorf("token without issuer carries iss (Issuer %q)", plain.Issuer)
	}
}

func TestSignJWTSVIDDistinctIDs(t *testing.T) {
	c := newCA(t, testNow(), time.Hour, nil)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		svid, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"a"}, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if seen[svid.ID] {
			t.Fatalf("jti %s issued twice", svid.ID)
		}
		seen[svid.ID] = true
	}
}

func TestSignJWTSVIDInvalidParams(t *testing.T) {
	now := testNow()
	c := newCA(t, now, 2*time.Hour, fixedClock(now))
	good := ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"a"}, TTL: time.Minute}
	with := func(f func(p *ca.JWTSVIDParams)) ca.JWTSVIDParams {
		p := good
		f(&p)
		return p
	}
	tests := []struct {
		name    string
		params  ca.JWTSVIDParams
		wantErr error
		wantMsg string
	}{
		{"empty SPIFFE ID", with(func(p *ca.JWTSVIDParams) { p.SPIFFEID = spiffeid.ID{} }), ca.ErrInvalidParams, "SPIFFE ID is empty"},
		{"ID outside trust domain", with(func(p *ca.JWTSVIDParams) { p.SPIFFEID = spiffeid.RequireFromPath(otherTD, "/web") }), ca.ErrInvalidParams, "outside trust domain"},
		{"root ID", with(func(p *ca.JWTSVIDParams) { p.SPIFFEID = td.ID() }), ca.ErrInvalidParams, "no path"},
		{"no audience", with(func(p *ca.JWTSVIDParams) { p.Audience = nil }), ca.ErrInvalidParams, "at least one audience"},
		{"empty audience list", with(func(p *ca.JWTSVIDParams) { p.Audience = []string{} }), ca.ErrInvalidParams, "at least one audience"},
		{"empty audience element", with(func(p *ca.JWTSVIDParams) { p.Audience = []string{"a", ""} }), ca.ErrInvalidParams, "Audience[1] is empty"},
		{"invalid UTF-8 audience", with(func(p *ca.JWTSVIDParams) { p.Audience = []string{"\xff"} }), ca.ErrInvalidParams, "UTF-8"},
		{"TTL zero", with(func(p *ca.JWTSVIDParams) { p.TTL = 0 }), ca.ErrInvalidParams, "must be positive"},
		{"TTL negative", with(func(p *ca.JWTSVIDParams) { p.TTL = -time.Second }), ca.ErrInvalidParams, "must be positive"},
		{"issuer too long", with(func(p *ca.JWTSVIDParams) { p.Issuer = "https://" + strings.Repeat("a", ca.MaxIssuerLen) }), ca.ErrInvalidParams, "Issuer must be at most"},
		{"invalid UTF-8 issuer", with(func(p *ca.JWTSVIDParams) { p.Issuer = "https://\xff" }), ca.ErrInvalidParams, "Issuer must be at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.SignJWTSVID(tt.params)
			if err == nil {
				t.Fatal("SignJWTSVID succeeded, want error")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q does not wrap %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}

	// The bound is the JWT authority's NotAfter, which may be earlier than the root's.
	x, j := newAuthorities(t, now, 2*time.Hour)
	j.NotAfter = now.Add(time.Hour)
	c2, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j, Clock: fixedClock(now)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"a"}, TTL: time.Hour}); err != nil {
		t.Errorf("TTL equal to the JWT authority's remaining life: %v", err)
	}
	// A TTL past the JWT authority's NotAfter is capped there, not refused.
	capped, err := c2.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"a"}, TTL: 5 * time.Hour})
	if err != nil {
		t.Fatalf("TTL past the JWT authority's NotAfter: %v, want a capped token", err)
	}
	if !capped.ExpiresAt.Equal(j.NotAfter) || !capped.IssuedAt.Equal(now) {
		t.Errorf("capped token: iat %s exp %s, want iat %s exp %s", capped.IssuedAt, capped.ExpiresAt, now, j.NotAfter)
	}
	claims := decodeSegment(t, strings.Split(capped.Token, ".")[1])
	if exp, ok := claims["exp"].(float64); !ok || int64(exp) != j.NotAfter.Unix() {
		t.Errorf("exp claim %v, want %d", claims["exp"], j.NotAfter.Unix())
	}

	// With under a second of life left, the authority refuses: it has expired.
	c3, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j, Clock: fixedClock(j.NotAfter.Add(-time.Millisecond))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"a"}, TTL: time.Minute}); !errors.Is(err, ca.ErrCAExpired) ||
		!strings.Contains(err.Error(), "expires at") {
		t.Errorf("JWT authority expired: %v, want ErrCAExpired naming the expiry", err)
	}
}

func TestNewConfigValidation(t *testing.T) {
	now := testNow()
	x, j := newAuthorities(t, now, time.Hour)
	ox, _ := newAuthorities(t, now, time.Hour)
	leafCA, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := leafCA.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(t).Public(), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := func() ca.Config {
		xc, jc := *x, *j
		return ca.Config{TrustDomain: td, X509: &xc, JWT: &jc}
	}
	with := func(f func(c *ca.Config)) ca.Config { c := good(); f(&c); return c }

	tests := []struct {
		name    string
		cfg     ca.Config
		wantMsg []string
	}{
		{"no trust domain", with(func(c *ca.Config) { c.TrustDomain = spiffeid.TrustDomain{} }), []string{"ca: config: TrustDomain is required"}},
		{"no X509", with(func(c *ca.Config) { c.X509 = nil }), []string{"ca: config: X509 is required"}},
		{"no X509 certificate", with(func(c *ca.Config) { c.X509.Certificate = nil }), []string{"ca: config: X509.Certificate is required"}},
		{"no X509 signer", with(func(c *ca.Config) { c.X509.Signer = nil }), []string{"ca: config: X509.Signer is required"}},
		{"no JWT", with(func(c *ca.Config) { c.JWT = nil }), []string{"ca: config: JWT is required"}},
		{"no JWT signer", with(func(c *ca.Config) { c.JWT.Signer = nil }), []string{"ca: config: JWT.Signer is required"}},
		{"no JWT key ID", with(func(c *ca.Config) { c.JWT.KeyID = "" }), []string{"ca: config: JWT.KeyID"}},
		{"JWT key ID with quote", with(func(c *ca.Config) { c.JWT.KeyID = `a"b` }), []string{"ca: config: JWT.KeyID", "0x22"}},
		{"no JWT NotAfter", with(func(c *ca.Config) { c.JWT.NotAfter = time.Time{} }), []string{"ca: config: JWT.NotAfter is required"}},
		{"JWT signer not P-256", with(func(c *ca.Config) { c.JWT.Signer = p384 }), []string{"ca: config: JWT.Signer: want an ECDSA P-256 key", "P-384"}},
		{"X509 signer does not match", with(func(c *ca.Config) { c.X509.Signer = j.Signer }), []string{"X509.Signer does not match"}},
		{"X509 cert of other trust domain", with(func(c *ca.Config) { c.TrustDomain = otherTD }), []string{"X509.Certificate", `"example.org"`, `"other.example"`}},
		{"X509 cert is a leaf", with(func(c *ca.Config) { c.X509.Certificate = leaf }), []string{"X509.Certificate: not a CA"}},
		{"X509 cert of another CA", with(func(c *ca.Config) { c.X509.Certificate = ox.Certificate }), []string{"X509.Signer does not match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.New(tt.cfg)
			if err == nil {
				t.Fatal("New succeeded, want error")
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}
