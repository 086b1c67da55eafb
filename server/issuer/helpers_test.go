package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	testTD = spiffeid.RequireTrustDomainFromString("example.org")
	agentA = spiffeid.RequireFromString("spiffe://example.org/signet/agent/a")
	agentB = spiffeid.RequireFromString("spiffe://example.org/signet/agent/b")
)

// testDeadline bounds every wait in this package's tests.
const testDeadline = 20 * time.Second

func testLogger(tb testing.TB) *slog.Logger { return testkit.Logger(tb) }

// testCtx returns a context that ends at the test's deadline bound (or when the test ends).
func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	tb.Cleanup(cancel)
	return ctx
}

// openStore opens a real single-node Raft store on a temporary directory and waits for leadership.
func openStore(tb testing.TB) *storage.Store {
	tb.Helper()
	return testkit.OpenStore(tb, nil)
}

// newCA creates real on-disk CA authorities (default one-year root) and returns the CA.
func newCA(tb testing.TB) *ca.CA {
	tb.Helper()
	return testkit.NewCA(tb, testTD, 0)
}

// startRecorder runs rec until the test ends (or until the returned stop is called); stop waits for
// Run to return.
func startRecorder(tb testing.TB, rec *Recorder) (stop func()) {
	tb.Helper()
	return testkit.Run(tb, testDeadline, rec.Run)
}

// node is the issuer's part of a server node: its recorder (running) and issuer.
type node struct {
	Recorder *Recorder
	Issuer   *Issuer
}

// env is an issuer on real components: store, CA, a running recorder.
type env struct {
	st  *storage.Store
	ca  *ca.CA
	srv *node
}

// newEnv builds an issuer on a new store and CA and starts its recorder.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	st := openStore(tb)
	authority := newCA(tb)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		tb.Fatal(err)
	}
	startRecorder(tb, rec)
	iss, err := NewIssuer(IssuerConfig{Store: st, CA: authority, Recorder: rec, NodeID: st.NodeID(), Logger: testLogger(tb)})
	if err != nil {
		tb.Fatalf("NewIssuer: %v", err)
	}
	return &env{st: st, ca: authority, srv: &node{Recorder: rec, Issuer: iss}}
}

func (e *env) owner(tb testing.TB, name string) {
	tb.Helper()
	if _, err := e.st.CreateOwner(testCtx(tb), storage.Owner{Name: name, CreatedAt: time.Now().UTC()}); err != nil {
		tb.Fatalf("CreateOwner %q: %v", name, err)
	}
}

// entry stores an entry for spiffeID under parent, owned by owner, selected by uid 1000, with one-hour
// SVIDs unless mod, if non-nil, says otherwise.
func (e *env) entry(tb testing.TB, spiffeID string, parent spiffeid.ID, owner string, mod func(*storage.Entry)) storage.Entry {
	tb.Helper()
	id, err := newEntryID()
	if err != nil {
		tb.Fatal(err)
	}
	en := storage.Entry{ID: id, SPIFFEID: spiffeID, ParentID: parent.String(), Owner: owner, Purpose: "test workload",
		Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}}, X509TTL: time.Hour, JWTTTL: time.Hour,
		CreatedAt: time.Now().UTC().Truncate(time.Second), CreatedBy: "test"}
	if mod != nil {
		mod(&en)
	}
	en.Selectors = selector.Normalize(en.Selectors) // as the admin API stores them
	stored, err := e.st.CreateEntry(testCtx(tb), en)
	if err != nil {
		tb.Fatalf("CreateEntry %s: %v", spiffeID, err)
	}
	return stored
}

// newEntryID returns a random entry ID (128 bits, hex), as the admin API assigns them.
func newEntryID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func newP256(tb testing.TB) *ecdsa.PrivateKey { tb.Helper(); return testkit.P256(tb) }

// csrFor returns a PKCS#10 CSR signed by key; tmpl may carry URIs or extensions (nil means none).
func csrFor(tb testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	tb.Helper()
	return testkit.CSR(tb, key, tmpl)
}

// ledgerCount returns how many records the ledger holds for q (at most MaxLedgerLimit).
func ledgerCount(tb testing.TB, st *storage.Store, q storage.LedgerQuery) int {
	tb.Helper()
	return testkit.LedgerCount(tb, st, q)
}

func mustURL(tb testing.TB, s string) *url.URL {
	tb.Helper()
	u, err := url.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}
