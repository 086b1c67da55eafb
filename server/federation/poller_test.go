package federation_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// timers is an injected After: the test fires the poller's waits itself and sees how long each was.
// Each wait is recorded with the number of fetches made before it (mark).
type timers struct {
	mark    func() int64
	mu      sync.Mutex
	pending []chan time.Time
	waits   []time.Duration
	marks   []int64
}

func (tm *timers) after(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	m := tm.mark()
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.pending = append(tm.pending, ch)
	tm.waits = append(tm.waits, d)
	tm.marks = append(tm.marks, m)
	return ch
}

// waitAfter returns the first wait begun after more than fetches fetches, if there is one yet.
func (tm *timers) waitAfter(fetches int64) (time.Duration, bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	for i, m := range tm.marks {
		if m > fetches {
			return tm.waits[i], true
		}
	}
	return 0, false
}

func (tm *timers) fire() {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	for _, ch := range tm.pending {
		ch <- time.Time{}
	}
	tm.pending = nil
}

// remoteDomain is another trust domain's bundle endpoint (https_web) serving whatever document it is
// given, counting the fetches.
type remoteDomain struct {
	srv     *httptest.Server
	doc     atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newRemote(t *testing.T) *remoteDomain {
	r := &remoteDomain{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.fetches.Add(1)
		_, _ = w.Write(*r.doc.Load())
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *remoteDomain) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.srv.Certificate())
	return p
}

// serve makes the endpoint serve the bundle of CA authorities of td, with a refresh hint.
func (r *remoteDomain) serve(t *testing.T, td spiffeid.TrustDomain, hint time.Duration, seq uint64) {
	t.Helper()
	c := testkit.NewCA(t, td, 0)
	b := storage.Bundle{X509Authorities: []*x509.Certificate{c.X509Authority()}, JWTAuthorities: map[string]crypto.PublicKey{c.JWTKeyID(): c.JWTPublicKey()}, Sequence: seq}
	doc, err := federation.BundleOf(td, b, hint).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r.doc.Store(&doc)
}

// The leader fetches each relationship's bundle at its refresh hint (bounded), stores it only when it
// changed, keeps the stored one when the endpoint serves a bad bundle, and backs off after failures.
func TestPoller(t *testing.T) {
	ctx := context.Background()
	st := testkit.OpenStore(t, testkit.Logger(t))
	other := spiffeid.RequireTrustDomainFromString("other.org")
	remote := newRemote(t)
	remote.serve(t, other, 2*time.Minute, 1)
	if _, err := st.CreateFederation(ctx, storage.Federation{TrustDomain: other.Name(), BundleEndpointURL: remote.srv.URL + "/bundle", Profile: federation.ProfileHTTPSWeb}, ""); err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewManualClock()
	tm := &timers{mark: remote.fetches.Load}
	p, err := federation.NewPoller(federation.PollerConfig{Store: st, WebRoots: remote.roots(), MinInterval: 30 * time.Second, MaxInterval: time.Hour,
		Clock: clock.Now, After: tm.after, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, testkit.Deadline, p.Run)
	revision := func() uint64 {
		f, err := st.Federation(other.Name())
		if err != nil {
			t.Fatal(err)
		}
		return f.BundleRevision
	}
	waitfor.Condition(t, testkit.Deadline, "the first bundle stored", func() bool { return revision() == 1 })
	// step moves the clock past the refresh hint, fires the poller's wait, and returns the poller's
	// next wait once it has fetched again and waits once more.
	step := func() time.Duration {
		t.Helper()
		fetches := remote.fetches.Load()
		clock.Advance(2 * time.Minute)
		tm.fire()
		var wait time.Duration
		waitfor.Condition(t, testkit.Deadline, "a fetch and the poller waiting again", func() bool {
			var ok bool
			wait, ok = tm.waitAfter(fetches)
			return ok
		})
		return wait
	}

	// The same bundle again: nothing is written; the next fetch is at the refresh hint.
	if wait := step(); wait != 2*time.Minute || revision() != 1 {
		t.Fatalf("unchanged bundle: next fetch in %s, revision %d; want 2m and 1", wait, revision())
	}
	// A changed bundle is stored; a hint below the minimum is raised to it.
	remote.serve(t, other, time.Second, 2)
	if wait := step(); wait != 30*time.Second || revision() != 2 {
		t.Fatalf("changed bundle: next fetch in %s, revision %d; want 30s and 2", wait, revision())
	}
	// A bundle of another trust domain is refused: the stored one stays, and the poller backs off.
	remote.serve(t, spiffeid.RequireTrustDomainFromString("third.org"), time.Minute, 3)
	if wait := step(); wait != 30*time.Second || revision() != 2 {
		t.Fatalf("bad bundle: next fetch in %s, revision %d; want 30s and 2", wait, revision())
	}
	if wait := step(); wait != time.Minute || revision() != 2 {
		t.Fatalf("second failure: next fetch in %s, want the backoff doubled to 1m", wait)
	}
	recs, _, err := st.AuditLog(storage.AuditQuery{Action: "federation.bundle-update", Limit: 10})
	if err != nil || len(recs) != 2 {
		t.Fatalf("bundle updates audited: %d, %v; want 2 (nothing for unchanged or refused bundles)", len(recs), err)
	}
	// Refresh fetches at once, outside the schedule.
	remote.serve(t, other, time.Minute, 4)
	if f, changed, err := p.Refresh(ctx, other.Name()); err != nil || !changed || f.BundleRevision != 3 {
		t.Fatalf("Refresh: %+v, changed %v, %v", f, changed, err)
	}
	if _, _, err := p.Refresh(ctx, "nobody.org"); !errors.Is(err, storage.ErrFederationNotFound) {
		t.Fatalf("Refresh of an unknown trust domain: %v", err)
	}
}
