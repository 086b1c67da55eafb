package issuer

import (
	"crypto"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// TestSignJWTSVIDIssuer: a node configured with an issuer signs JWT-SVIDs carrying it as iss, which
// go-spiffe still validates; a node without one leaves iss out.
func TestSignJWTSVIDIssuer(t *testing.T) {
	f := newIssuerFixture(t)
	const issURL = "https://oidc.example.org"
	withIss, err := NewIssuer(IssuerConfig{Store: f.st, CA: f.ca, Recorder: f.srv.Recorder, NodeID: f.st.NodeID(), JWTIssuer: issURL,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		issuer  *Issuer
		wantIss string
	}{{"configured", withIss, issURL}, {"not configured", f.srv.Issuer, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			svid, err := tc.issuer.SignJWTSVID(testCtx(t), f.caller, f.ent.ID, []string{"api"})
			if err != nil {
				t.Fatalf("SignJWTSVID: %v", err)
			}
			tok, err := jwt.ParseSigned(svid.Token, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var claims jwt.Claims
			if err := tok.Claims(f.ca.JWTPublicKey(), &claims); err != nil {
				t.Fatal(err)
			}
			if claims.Issuer != tc.wantIss || svid.Issuer != tc.wantIss {
				t.Errorf("iss = %q (JWTSVID.Issuer %q), want %q", claims.Issuer, svid.Issuer, tc.wantIss)
			}
			if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: tc.wantIss, AnyAudience: jwt.Audience{"api"}, Time: time.Now()}, time.Second); err != nil {
				t.Errorf("standard claims: %v", err)
			}
			bundle := jwtbundle.FromJWTAuthorities(testTD, map[string]crypto.PublicKey{f.ca.JWTKeyID(): f.ca.JWTPublicKey()})
			if _, err := jwtsvid.ParseAndValidate(svid.Token, bundle, []string{"api"}); err != nil {
				t.Errorf("go-spiffe refused it: %v", err)
			}
		})
	}
}
