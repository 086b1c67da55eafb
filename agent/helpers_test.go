package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"
)

var (
	testTD = spiffeid.RequireTrustDomainFromString("example.org")
	// agentA is the agent every bufconn caller is authenticated as; agentB is another node.
	agentA = spiffeid.RequireFromString("spiffe://example.org/signet/agent/a")
	agentB = spiffeid.RequireFromString("spiffe://example.org/signet/agent/b")
)

const (
	// testDeadline bounds every wait in this package's tests.
	testDeadline = 30 * time.Second
	testOwner    = "alice"
	// Full gRPC method names, as grpc.Method reports them on the server.
	methodSync = "/signet.agent.v1.Agent/SyncEntries"
	methodSign = "/signet.agent.v1.Agent/SignX509SVIDs"
)

func testLogger(tb testing.TB) *slog.Logger { return testkit.Logger(tb) }

// testCtx returns a context that ends after d (or when the test ends).
func testCtx(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// authHook, when set, runs before an agent API call is authenticated; a non-nil error refuses it.
type authHook func(ctx context.Context, method string) error

// env is a complete server node on real components: store, CA, running recorder, services.
type env struct {
	st   *storage.Store
	ca   *ca.CA
	srv  *server.Server
	hook atomic.Pointer[authHook]
	// conn reaches the agent API over bufconn (nil for TLS environments).
	conn *grpc.ClientConn
	// addr is the TLS agent API listener (empty for bufconn environments).
	addr string
	// stopServing stops serving the agent API: the server becomes unreachable (bufconn environments).
	stopServing func()
	// clock is the server's clock (the issuer checks entry expiry with it).
	clock offsetClock
	// presented records, per agent API method, the serial of the last client certificate presented
	// (TLS environments).
	presented sync.Map
}

// newServer builds a server node with the given agent authenticator (nil: fixed agent A, subject to
// the env's hook), runs its recorder, publishes its authorities and creates testOwner.
func newServer(tb testing.TB, agentSVIDTTL time.Duration, auth func(*env) agentapi.Authenticator) *env {
	return newServerWith(tb, agentSVIDTTL, auth, nil)
}

// newServerWith is newServer with mod, if not nil, applied to the server's configuration.
func newServerWith(tb testing.TB, agentSVIDTTL time.Duration, auth func(*env) agentapi.Authenticator, mod func(*server.Config)) *env {
	tb.Helper()
	e := &env{st: testkit.OpenStore(tb, nil), ca: testkit.NewCA(tb, testTD, 0)}
	if auth == nil {
		auth = (*env).fixedAgentAuth
	}
	cfg := server.Config{Store: e.st, CA: e.ca, TrustDomain: testTD, AgentAuth: auth(e), Selectors: testenv.Selectors(),
		AdminAuth:    func(context.Context) (string, error) { return "test-admin", nil },
		AgentSVIDTTL: agentSVIDTTL, Clock: e.clock.now, Logger: testLogger(tb)}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testDeadline):
			tb.Errorf("server Run did not return within %s of cancellation", testDeadline)
		}
	})
	if err := srv.PublishAuthorities(testCtx(tb, testDeadline)); err != nil {
		tb.Fatalf("PublishAuthorities: %v", err)
	}
	if _, err := srv.Admin.CreateOwner(testCtx(tb, testDeadline), &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: testOwner}}); err != nil {
		tb.Fatalf("CreateOwner: %v", err)
	}
	return e
}

// fixedAgentAuth authenticates every call as agent A unless the env's hook refuses it.
func (e *env) fixedAgentAuth() agentapi.Authenticator {
	caller := agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}
	return func(ctx context.Context) (agentapi.Caller, error) {
		if h := e.hook.Load(); h != nil {
			method, _ := grpc.Method(ctx)
			if err := (*h)(ctx, method); err != nil {
				return agentapi.Caller{}, err
			}
		}
		return caller, nil
	}
}

func (e *env) setHook(h authHook) { e.hook.Store(&h) }

// newBufconnEnv serves the agent API of a fresh server node over bufconn; every caller is agent A.
func newBufconnEnv(tb testing.TB) *env { return newBufconnEnvWith(tb, nil) }

// newBufconnEnvWith is newBufconnEnv with mod, if not nil, applied to the server's configuration.
func newBufconnEnvWith(tb testing.TB, mod func(*server.Config)) *env {
	tb.Helper()
	e := newServerWith(tb, 0, nil, mod)
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.WaitForHandlers(true))
	agentv1.RegisterAgentServer(gs, e.srv.Agent)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	e.conn, e.stopServing = conn, gs.Stop
	return e
}

// newTLSEnv serves the agent API of a fresh server node over TLS on 127.0.0.1, authenticating agents by
// their SVIDs, with agent SVIDs of the given lifetime (0: the default).
func newTLSEnv(tb testing.TB, agentSVIDTTL time.Duration) *env {
	return newTLSEnvWith(tb, agentSVIDTTL, nil)
}

// newTLSEnvWith is newTLSEnv with mod, if not nil, applied to the server's configuration.
func newTLSEnvWith(tb testing.TB, agentSVIDTTL time.Duration, mod func(*server.Config)) *env {
	tb.Helper()
	e := newServerWith(tb, agentSVIDTTL, (*env).recordingTLSAuth, mod)
	tlsConf, err := e.srv.AgentTLSConfig(testCtx(tb, testDeadline))
	if err != nil {
		tb.Fatalf("ServerTLSConfig: %v", err)
	}
	e.addr = serveTLS(tb, e, tlsConf)
	return e
}

// recordingTLSAuth is agentapi.TLSAgentAuth, recording the certificate each call presents.
func (e *env) recordingTLSAuth() agentapi.Authenticator {
	auth := agentapi.TLSAgentAuth(e.st, nil)
	return func(ctx context.Context) (agentapi.Caller, error) {
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
				method, _ := grpc.Method(ctx)
				e.presented.Store(method, info.State.PeerCertificates[0].SerialNumber.Text(16))
			}
		}
		return auth(ctx)
	}
}

// presentedSerial returns the serial of the client certificate last presented to method.
func (e *env) presentedSerial(method string) string {
	v, _ := e.presented.Load(method)
	s, _ := v.(string)
	return s
}

// serveTLS serves e's agent API with tlsConf on 127.0.0.1 until the test ends and returns the address.
func serveTLS(tb testing.TB, e *env, tlsConf *tls.Config) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConf)), grpc.WaitForHandlers(true))
	agentv1.RegisterAgentServer(gs, e.srv.Agent)
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// roots returns the trust bundle's X.509 authorities.
func (e *env) roots() []*x509.Certificate { return e.st.Bundle().X509Authorities }

// joinToken creates a join token for testOwner and returns what the agent is given (ID.SECRET) and
// the token's ID.
func (e *env) joinToken(tb testing.TB) (token, id string) {
	tb.Helper()
	resp, err := e.srv.Admin.CreateJoinToken(testCtx(tb, testDeadline), &adminv1.CreateJoinTokenRequest{Owner: testOwner, TtlSeconds: 600})
	if err != nil {
		tb.Fatalf("CreateJoinToken: %v", err)
	}
	return resp.Secret, resp.Token.Id
}

// entrySpec describes an entry to create through the admin API.
type entrySpec struct {
	spiffeID  string
	parent    spiffeid.ID // zero: agent A
	selectors []string    // nil: unix:uid:1000
	x509TTL   time.Duration
	jwtTTL    time.Duration
	jwtUnique bool
	// prefetch: minted ahead of any request (otherwise on the first fetch).
	prefetch  bool
	expiresAt time.Time
}

func (s entrySpec) admin(tb testing.TB) *adminv1.Entry {
	tb.Helper()
	parent := s.parent
	if parent.IsZero() {
		parent = agentA
	}
	sels := s.selectors
	if sels == nil {
		sels = []string{"unix:uid:1000"}
	}
	out := &adminv1.Entry{SpiffeId: s.spiffeID, ParentId: parent.String(), Owner: testOwner, Purpose: "agent test",
		X509TtlSeconds: int64(s.x509TTL / time.Second), JwtTtlSeconds: int64(s.jwtTTL / time.Second), JwtUnique: s.jwtUnique, Prefetch: s.prefetch}
	if !s.expiresAt.IsZero() {
		out.ExpiresAt = s.expiresAt.Unix()
	}
	for _, text := range sels {
		sel := mustSel(tb, text)
		out.Selectors = append(out.Selectors, &adminv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	return out
}

// entry creates an entry through the admin API (full validation) and returns its ID.
func (e *env) entry(tb testing.TB, s entrySpec) string {
	tb.Helper()
	created, err := e.srv.Admin.CreateEntry(testCtx(tb, testDeadline), &adminv1.CreateEntryRequest{Entry: s.admin(tb)})
	if err != nil {
		tb.Fatalf("CreateEntry %s: %v", s.spiffeID, err)
	}
	return created.Id
}

// bulkEntries creates n entries spiffe://example.org/bulk/<prefix>/<i> for agent A (uid 1000) in one
// batch (prefetch ones if prefetch) and returns their SPIFFE IDs.
func (e *env) bulkEntries(tb testing.TB, n int, prefix string, prefetch bool) map[string]bool {
	tb.Helper()
	req := &adminv1.BatchCreateEntriesRequest{}
	want := make(map[string]bool, n)
	for i := range n {
		id := fmt.Sprintf("spiffe://example.org/bulk/%s/%05d", prefix, i)
		want[id] = true
		req.Entries = append(req.Entries, entrySpec{spiffeID: id, prefetch: prefetch}.admin(tb))
	}
	resp, err := e.srv.Admin.BatchCreateEntries(testCtx(tb, testDeadline), req)
	if err != nil {
		tb.Fatalf("BatchCreateEntries: %v", err)
	}
	for i, r := range resp.Results {
		if r.ErrorCode != 0 {
			tb.Fatalf("BatchCreateEntries result %d: %s", i, r.ErrorMessage)
		}
	}
	return want
}

func (e *env) deleteEntry(tb testing.TB, id string) {
	tb.Helper()
	if _, err := e.srv.Admin.DeleteEntry(testCtx(tb, testDeadline), &adminv1.DeleteEntryRequest{Id: id}); err != nil {
		tb.Fatalf("DeleteEntry %s: %v", id, err)
	}
}

func mustSel(tb testing.TB, text string) selector.Selector {
	tb.Helper()
	s, err := selector.Parse(text)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func sels(tb testing.TB, texts ...string) []selector.Selector {
	tb.Helper()
	out := make([]selector.Selector, 0, len(texts))
	for _, t := range texts {
		out = append(out, mustSel(tb, t))
	}
	return out
}

// uid1000 is the caller every default entry matches.
func uid1000(tb testing.TB) []selector.Selector { return sels(tb, "unix:uid:1000") }

// startAgent creates an agent on client (after mod adjusts its config) and runs it until the test
// ends; stop cancels it and waits for Run to return.
func startAgent(tb testing.TB, client agentv1.AgentClient, mod func(*agent.Config)) (a *agent.Agent, stop func()) {
	tb.Helper()
	cfg := agent.Config{Client: client, TrustDomain: testTD, Logger: testLogger(tb)}
	if mod != nil {
		mod(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		tb.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(testDeadline):
				tb.Errorf("agent Run did not return within %s of cancellation", testDeadline)
			}
		})
	}
	tb.Cleanup(stop)
	return a, stop
}

// waitReady waits for the agent's first complete entry set and the SVIDs of its prefetch entries.
func waitReady(tb testing.TB, a *agent.Agent) {
	tb.Helper()
	if err := a.WaitReady(testCtx(tb, testDeadline)); err != nil {
		tb.Fatalf("WaitReady: %v", err)
	}
}

// fetchSVIDs fetches as a workload with sels would, until n SVIDs are served (the first fetch has
// them minted), and returns them.
func fetchSVIDs(tb testing.TB, a *agent.Agent, sels []selector.Selector, n int) workloadapi.Identities {
	tb.Helper()
	return waitIdentities(tb, a, sels, testDeadline, fmt.Sprintf("%d SVIDs", n), func(ids workloadapi.Identities) bool {
		return len(ids.SVIDs) == n && !ids.Pending
	})
}

// waitIdentities waits, on the agent's change channel, until what callers with sels see satisfies
// cond, and returns it. It fails the test (naming what) after d.
func waitIdentities(tb testing.TB, a *agent.Agent, sels []selector.Selector, d time.Duration, what string, cond func(workloadapi.Identities) bool) workloadapi.Identities {
	tb.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		ids, changed := a.Identities(sels)
		if cond(ids) {
			return ids
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("waited %s for %s; last seen: %d SVIDs, pending %v", d, what, len(ids.SVIDs), ids.Pending)
			return ids
		}
	}
}

// svidIDs returns the SPIFFE IDs of the SVIDs a caller sees.
func svidIDs(ids workloadapi.Identities) map[string]bool {
	out := map[string]bool{}
	for _, s := range ids.SVIDs {
		out[s.SPIFFEID] = true
	}
	return out
}

// findSVID returns the caller's SVID for spiffeID.
func findSVID(ids workloadapi.Identities, spiffeID string) (workloadapi.X509SVID, bool) {
	for _, s := range ids.SVIDs {
		if s.SPIFFEID == spiffeID {
			return s, true
		}
	}
	return workloadapi.X509SVID{}, false
}

// checkSVID verifies a Workload API SVID against the bundle the caller was given: its chain verifies
// as its SPIFFE ID, its serial is the leaf's, and its key is the PKCS#8 key of the leaf. It returns the
// leaf.
func checkSVID(tb testing.TB, ids workloadapi.Identities, s workloadapi.X509SVID) *x509.Certificate {
	tb.Helper()
	chain, err := x509.ParseCertificates(s.CertChain)
	if err != nil || len(chain) == 0 {
		tb.Fatalf("SVID %s: parse chain: %v", s.SPIFFEID, err)
	}
	leaf := chain[0]
	bundle, err := x509bundle.ParseRaw(ids.TrustDomain, ids.X509Bundle)
	if err != nil {
		tb.Fatalf("parse X.509 bundle: %v", err)
	}
	id, _, err := x509svid.Verify(chain, bundle)
	if err != nil {
		tb.Fatalf("SVID %s does not verify against the bundle: %v", s.SPIFFEID, err)
	}
	if id.String() != s.SPIFFEID {
		tb.Fatalf("SVID verifies as %s, want %s", id, s.SPIFFEID)
	}
	if got := leaf.SerialNumber.Text(16); got != s.Serial {
		tb.Fatalf("SVID %s: Serial %q, leaf serial %q", s.SPIFFEID, s.Serial, got)
	}
	key, err := x509.ParsePKCS8PrivateKey(s.Key)
	if err != nil {
		tb.Fatalf("SVID %s: key is not PKCS#8: %v", s.SPIFFEID, err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(leaf.PublicKey) {
		tb.Fatalf("SVID %s: key (%T) does not match the leaf", s.SPIFFEID, key)
	}
	if !time.Now().Before(leaf.NotAfter) {
		tb.Fatalf("SVID %s served after it expired at %s", s.SPIFFEID, leaf.NotAfter)
	}
	return leaf
}

func leafOf(tb testing.TB, s workloadapi.X509SVID) *x509.Certificate {
	tb.Helper()
	c, err := x509.ParseCertificates(s.CertChain)
	if err != nil || len(c) == 0 {
		tb.Fatalf("SVID %s: parse chain: %v", s.SPIFFEID, err)
	}
	return c[0]
}

// logCounter is a slog handler that counts records whose message contains a substring.
type logCounter struct {
	tb    testing.TB
	match string
	n     *atomic.Int64
	last  *atomic.Pointer[string]
}

func newLogCounter(tb testing.TB, match string) (*slog.Logger, *logCounter) {
	c := &logCounter{tb: tb, match: match, n: new(atomic.Int64), last: new(atomic.Pointer[string])}
	return slog.New(c), c
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	line := b.String()
	if strings.Contains(r.Message, c.match) {
		c.n.Add(1)
		c.last.Store(&line)
	}
	c.tb.Log(line)
	return nil
}
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }

func (c *logCounter) count() int64 { return c.n.Load() }
func (c *logCounter) lastLine() string {
	if p := c.last.Load(); p != nil {
		return *p
	}
	return ""
}

// freeAddr returns a 127.0.0.1 address where nothing listens.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// client is an agent API client on the env's bufconn connection.
func (e *env) client() agentv1.AgentClient { return agentv1.NewAgentClient(e.conn) }

// storeEntry creates an entry directly in the store (no admin API), for fields the admin API does not
// carry through; it returns the entry's ID.
func (e *env) storeEntry(tb testing.TB, s entrySpec) string {
	tb.Helper()
	in := s.admin(tb)
	id, err := adminapi.NewEntryID()
	if err != nil {
		tb.Fatal(err)
	}
	en := storage.Entry{ID: id, SPIFFEID: in.SpiffeId, ParentID: in.ParentId, Owner: in.Owner, Purpose: in.Purpose,
		X509TTL: s.x509TTL, JWTTTL: s.jwtTTL, JWTUnique: s.jwtUnique, ExpiresAt: s.expiresAt, CreatedAt: time.Now().UTC(), CreatedBy: "test"}
	if en.X509TTL == 0 {
		en.X509TTL = time.Hour
	}
	if en.JWTTTL == 0 {
		en.JWTTTL = time.Hour
	}
	for _, sel := range in.Selectors {
		en.Selectors = append(en.Selectors, selector.Selector{Type: sel.Type, Value: sel.Value})
	}
	en.Selectors = selector.Normalize(en.Selectors)
	if _, err := e.st.CreateEntry(testCtx(tb, testDeadline), en); err != nil {
		tb.Fatalf("store CreateEntry %s: %v", s.spiffeID, err)
	}
	return id
}
