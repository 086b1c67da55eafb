package credential_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/credential"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSignetIssued parses SVIDs issued by Signet's own CA and checks that ID is the key the
// ledger records: cert.SerialNumber.Text(16) for X.509-SVIDs and the jti (JWTSVID.ID) for
// JWT-SVIDs. This is the only test that depends on another Signet package.
func TestSignetIssued(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: filepath.Join(t.TempDir(), "ca"), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j})
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromPath(td, "/ns/prod/sa/web")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	cert, err := authority.SignX509SVID(ca.X509SVIDParams{SPIFFEID: id, PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.X509Authority().Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	c, err := credential.Parse(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != credential.KindX509 || c.ID != cert.SerialNumber.Text(16) || c.SPIFFEID != id.String() ||
		c.TrustDomain != "example.org" || c.Chain != 2 || !c.Leaf.Equal(cert) {
		t.Errorf("X.509-SVID: got %+v", c)
	}

	svid, err := authority.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: id, Audience: []string{"reports"}, TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c, err = credential.Parse([]byte("Authorization: Bearer " + svid.Token))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != credential.KindJWT || c.ID != svid.ID || c.SPIFFEID != id.String() || c.KeyID != authority.JWTKeyID() ||
		!slices.Equal(c.Audience, svid.Audience) || !c.IssuedAt.Equal(svid.IssuedAt) || !c.NotAfter.Equal(svid.ExpiresAt) ||
		!c.SignaturePresent {
		t.Errorf("JWT-SVID: got %+v, issued %+v", c, svid)
	}
}
