package testkit

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/storage"
)

// Run runs run (a recorder's or a server node's Run) until the test ends or stop is called; stop cancels
// its context and waits, at most deadline, for run to return.
func Run(tb testing.TB, deadline time.Duration, run func(context.Context)) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(deadline):
				tb.Errorf("Run did not return within %s of cancellation", deadline)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// P256 returns a new ECDSA P-256 key.
func P256(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// CSR returns a PKCS#10 CSR signed by key; tmpl may carry URIs or extensions (nil means none).
func CSR(tb testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	tb.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

// LedgerCount returns how many records the ledger holds for q (at most storage.MaxLedgerLimit).
func LedgerCount(tb testing.TB, st *storage.Store, q storage.LedgerQuery) int {
	tb.Helper()
	q.Limit = storage.MaxLedgerLimit
	page, err := st.QueryLedger(q)
	if err != nil {
		tb.Fatalf("QueryLedger: %v", err)
	}
	return len(page.Issuances)
}

// ManualClock is a clock that moves only when told to.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a clock standing at the current time.
func NewManualClock() *ManualClock { return &ManualClock{t: time.Now()} }

// Now is the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
