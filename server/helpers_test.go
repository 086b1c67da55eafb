package server

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"github.com/signet-id/signet/attestor/jointoken"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
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
func startRecorder(tb testing.TB, rec *issuer.Recorder) (stop func()) {
	tb.Helper()
	return startRun(tb, rec.Run)
}

// startRun runs run (a Recorder's or Server's Run) until the test ends or stop is called; stop cancels
// its context and waits for it to return.
func startRun(tb testing.TB, run func(context.Context)) (stop func()) {
	tb.Helper()
	return testkit.Run(tb, testDeadline, run)
}

// ledgerCount returns how many records the ledger holds for q (at most MaxLedgerLimit).
func ledgerCount(tb testing.TB, st *storage.Store, q storage.LedgerQuery) int {
	tb.Helper()
	return testkit.LedgerCount(tb, st, q)
}

// fixedAgent authenticates every call as c.
func fixedAgent(c agentapi.Caller) agentapi.Authenticator {
	return func(context.Context) (agentapi.Caller, error) { return c, nil }
}

// env is a complete server node on real components: store, CA, recorder (running), issuer, services.
type env struct {
	st  *storage.Store
	ca  *ca.CA
	srv *Server
	// stop ends the server's Run (the recorder, the denial log) and waits for it.
	stop func()
}

// newEnv builds a server node whose agent API authenticates every caller as agent A (node attestation
// "test"), starts its recorder and publishes its authorities into the bundle.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	return newEnvWith(tb, nil)
}

// newEnvWith is newEnv with mod, if non-nil, adjusting the server before it runs.
func newEnvWith(tb testing.TB, mod func(*Server)) *env {
	tb.Helper()
	return newEnvConfig(tb, nil, mod)
}

// newEnvConfig is newEnvWith with cfgMod, if non-nil, adjusting the server's Config before New.
func newEnvConfig(tb testing.TB, cfgMod func(*Config), mod func(*Server)) *env {
	tb.Helper()
	st := openStore(tb)
	authority := newCA(tb)
	cfg := Config{Store: st, CA: authority, TrustDomain: testTD, Selectors: testSelectors(),
		AgentAuth: fixedAgent(agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}),
		AdminAuth: func(context.Context) (string, error) { return "test-admin", nil },
		Logger:    testLogger(tb)}
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if mod != nil {
		mod(srv)
	}
	stop := startRun(tb, srv.Run)
	if err := srv.PublishAuthorities(testCtx(tb)); err != nil {
		tb.Fatalf("PublishAuthorities: %v", err)
	}
	return &env{st: st, ca: authority, srv: srv, stop: stop}
}

// testSelectors is the selector registry of a server built with the unix workload attestor and join
// tokens (as cmd/signet builds it, without the attestors server tests do not use). A registry of
// these fixed types cannot fail to build.
func testSelectors() *selector.Registry {
	reg, err := selector.NewRegistry(unix.SelectorType(), jointoken.SelectorType())
	if err != nil {
		panic(err)
	}
	return reg
}

func (e *env) owner(tb testing.TB, name string) {
	tb.Helper()
	if _, err := e.st.CreateOwner(testCtx(tb), storage.Owner{Name: name, CreatedAt: time.Now().UTC()}); err != nil {
		tb.Fatalf("CreateOwner %q: %v", name, err)
	}
}

// entry stores an entry for spiffeID under parent, owned by owner, selected by uid 1000, with SVIDs of
// the default lifetime unless mod, if non-nil, says otherwise; its selectors are normalized as the admin
// API stores them.
func (e *env) entry(tb testing.TB, spiffeID string, parent spiffeid.ID, owner string, mod func(*storage.Entry)) storage.Entry {
	tb.Helper()
	en := storage.Entry{SPIFFEID: spiffeID, ParentID: parent.String(), Owner: owner, Purpose: "test workload",
		Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}}}
	if mod != nil {
		mod(&en)
	}
	en.X509TTL = cmp.Or(en.X509TTL, adminapi.DefaultSVIDTTL)
	en.JWTTTL = cmp.Or(en.JWTTTL, adminapi.DefaultSVIDTTL)
	en.Selectors = selector.Normalize(en.Selectors)
	id, err := adminapi.NewEntryID()
	if err != nil {
		tb.Fatal(err)
	}
	en.ID, en.CreatedAt, en.CreatedBy = id, time.Now().UTC().Truncate(time.Second), "test"
	stored, err := e.st.CreateEntry(testCtx(tb), en)
	if err != nil {
		tb.Fatalf("CreateEntry %s: %v", spiffeID, err)
	}
	return stored
}

// entries creates n entries spiffe://example.org/bulk/<prefix>/<i> under parent, concurrently (Raft
// batches concurrent proposals), and returns their IDs. mod, if non-nil, adjusts each entry.
func (e *env) entries(tb testing.TB, n int, prefix string, parent spiffeid.ID, owner string, mod func(*storage.Entry)) map[string]bool {
	tb.Helper()
	ctx := testCtx(tb)
	ids := make([]string, n)
	errs := make(chan error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range work {
				id, err := adminapi.NewEntryID()
				if err != nil {
					errs <- err
					continue
				}
				en := storage.Entry{ID: id, SPIFFEID: fmt.Sprintf("spiffe://example.org/bulk/%s/%05d", prefix, i),
					ParentID: parent.String(), Owner: owner, Purpose: "bulk",
					Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}}, X509TTL: time.Hour, JWTTTL: time.Hour}
				if mod != nil {
					mod(&en)
				}
				if _, err := e.st.CreateEntry(ctx, en); err != nil {
					errs <- err
					continue
				}
				ids[i] = id
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("bulk CreateEntry: %v", err)
	}
	out := make(map[string]bool, n)
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// manualClock is a clock that moves only when told to.
type manualClock struct{ *testkit.ManualClock }

func newManualClock() *manualClock { return &manualClock{testkit.NewManualClock()} }

func (c *manualClock) now() time.Time          { return c.Now() }
func (c *manualClock) advance(d time.Duration) { c.Advance(d) }

func newP256(tb testing.TB) *ecdsa.PrivateKey { tb.Helper(); return testkit.P256(tb) }

// csrFor returns a PKCS#10 CSR signed by key; tmpl may carry URIs or extensions (nil means none).
func csrFor(tb testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	tb.Helper()
	return testkit.CSR(tb, key, tmpl)
}

func mustURL(tb testing.TB, s string) *url.URL {
	tb.Helper()
	u, err := url.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// serveBufconn serves register's services on an in-memory gRPC listener and returns a client
// connection to it, dialled with opts in addition to the defaults.
func serveBufconn(tb testing.TB, register func(*grpc.Server), opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///bufconn", opts...)
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return conn
}
