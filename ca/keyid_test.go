package ca_test

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
)

// A certificate names the key that signed it: the key ID of the CA's root is the Authority Key
// Identifier of every X.509-SVID it signs.
func TestKeyIDs(t *testing.T) {
	now := testNow()
	c := newCA(t, now, 24*time.Hour, fixedClock(now))
	id := c.X509KeyID()
	if len(id) != 40 || strings.Trim(id, "0123456789abcdef") != "" || id != ca.X509KeyID(c.X509Authority()) {
		t.Fatalf("X.509 key ID %q: want the root's 20-byte Subject Key Identifier in lowercase hex", id)
	}
	cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(t).Public(), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.SignerKeyID(cert); got != id {
		t.Fatalf("signer of an X.509-SVID %q, want the CA's key ID %q", got, id)
	}
	for _, ok := range []string{id, c.JWTKeyID(), "kid-1"} {
		if err := ca.CheckKeyID(ok); err != nil {
			t.Errorf("CheckKeyID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "aa:bb", strings.Repeat("a", 129)} {
		if err := ca.CheckKeyID(bad); err == nil || !strings.Contains(err.Error(), "key ID") {
			t.Errorf("CheckKeyID(%q): %v, want an error naming the key ID", bad, err)
		}
	}
}
