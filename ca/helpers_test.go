package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	otherTD = spiffeid.RequireTrustDomainFromString("other.example")
	webID   = spiffeid.RequireFromPath(td, "/ns/prod/sa/web")
)

// fixedClock returns a clock stuck at t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// testNow is a wall-clock time truncated to seconds, so that go-spiffe's own time.Now-based
// checks agree with the CA's fixed clock.
func testNow() time.Time { return time.Now().UTC().Truncate(time.Second) }

// newAuthorities creates fresh on-disk authorities in a temporary directory.
func newAuthorities(tb testing.TB, now time.Time, ttl time.Duration) (*ca.X509Authority, *ca.JWTAuthority) {
	tb.Helper()
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{
		Dir:         filepath.Join(tb.TempDir(), "ca"),
		TrustDomain: td,
		TTL:         ttl,
		Clock:       fixedClock(now),
	})
	if err != nil {
		tb.Fatalf("LoadOrCreate: %v", err)
	}
	return x, j
}

// newCA returns a CA for td whose root was created at now with ttl and whose clock is clock.
func newCA(tb testing.TB, now time.Time, ttl time.Duration, clock func() time.Time) *ca.CA {
	tb.Helper()
	x, j := newAuthorities(tb, now, ttl)
	c, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j, Clock: clock})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return c
}

func newP256(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func pub(k crypto.Signer) crypto.PublicKey { return k.Public() }
