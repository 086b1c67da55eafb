package agent_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The agent identity after attestation: renewal over mTLS, bundle updates and saves in the data dir,
// and removal after eviction. identity_test.go holds attestation and loading, and the helpers both use.

// attestAndDial attests an agent into a new data dir against a new TLS server that issues agent SVIDs
// of 12s (the CA backdates them by 10s, so renewals come about a second apart) and dials that server
// with the agent's identity.
func attestAndDial(t *testing.T) (e *env, dir string, id *agent.Identity, conn *agent.ServerConn) {
	t.Helper()
	e = newTLSEnv(t, 12*time.Second)
	dir = t.TempDir()
	id, _ = attest(t, e, dir)
	conn, err := agent.Dial(e.addr, id, testTD)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return e, dir, id, conn
}

// TestDialAndRenewal runs an attested agent over mTLS: it syncs and mints, renews its SVID (the server
// records the new serial, the files follow), keeps syncing on the replaced connection, and learns of its
// eviction.
func TestDialAndRenewal(t *testing.T) {
	t.Parallel()
	e, dir, id, conn := attestAndDial(t)
	agentID := spiffeid.RequireFromString(id.ID())
	first := serialOf(t, id)
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web", parent: agentID})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/elsewhere", parent: agentA})
	var revoked atomic.Int64
	revokedCh := make(chan error, 1)
	a, _ := startAgent(t, conn, func(c *agent.Config) {
		c.OnRevoked = func(err error) { revoked.Add(1); revokedCh <- err }
	})
	waitReady(t, a)
	ids := fetchSVIDs(t, a, uid1000(t), 1)
	if got := svidIDs(ids); len(got) != 1 || !got["spiffe://example.org/web"] {
		t.Fatalf("over mTLS the agent got %v, want only its own entry", got)
	}
	checkSVID(t, ids, ids.SVIDs[0])
	jwts, err := a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"aud"}})
	if err != nil || len(jwts) != 1 || jwts[0].SPIFFEID != "spiffe://example.org/web" {
		t.Fatalf("JWT-SVIDs over mTLS: %v, %v", jwts, err)
	}

	renewCtx, stopRenewal := context.WithCancel(context.Background())
	defer stopRenewal()
	renewErr := make(chan error, 1)
	go func() { renewErr <- conn.RunRenewal(renewCtx, testLogger(t)) }()

	// Wait for a renewal.
	deadline := time.After(testDeadline)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for serialOf(t, id) == first {
		select {
		case <-tick.C:
		case err := <-renewErr:
			t.Fatalf("RunRenewal returned %v before renewing", err)
		case <-deadline:
			t.Fatal("the agent SVID was not renewed")
		}
	}
	// The store's record follows (the renewal is committed before the server answers), and so do the
	// files a restarted agent would load.
	rec, err := e.st.Agent(agentID.String())
	if err != nil {
		t.Fatal(err)
	}
	cur := serialOf(t, id)
	if rec.Serial != cur && rec.PrevSerial != cur {
		t.Fatalf("store has serial %s (previous %s); the identity holds %s", rec.Serial, rec.PrevSerial, cur)
	}
	if rec.Serial == first || rec.RenewedAt.IsZero() {
		t.Fatalf("store still records the first serial %s (renewed at %s)", first, rec.RenewedAt)
	}
	// The identity is updated in memory before it is written: wait for the files (key and SVID are
	// separate files, so a read between the two writes may see a mismatched pair).
	for {
		loaded, err := agent.LoadIdentity(dir, testTD, time.Now())
		if err == nil && serialOf(t, loaded) != first {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the renewed SVID was not written to the data dir (LoadIdentity: %v)", err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after renewal: %v, %v", fi.Mode(), err)
	}
	if page, err := e.st.QueryLedger(storage.LedgerQuery{Agent: agentID.String(), SPIFFEID: agentID.String()}); err != nil || len(page.Issuances) < 2 {
		t.Fatalf("ledger holds %d agent SVIDs (%v), want the attestation's and the renewal's", len(page.Issuances), err)
	}

	// The agent keeps syncing over the replaced connection: the server now authenticates its stream by
	// a renewed SVID.
	for e.presentedSerial(methodSync) == first {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the entry sync still presents the first SVID: the connection was not replaced")
		}
	}
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/after-renewal", parent: agentID})
	waitIdentities(t, a, uid1000(t), testDeadline, "an entry created after the renewal", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, "spiffe://example.org/after-renewal")
		return ok
	})

	// Evicted: renewal is refused with PermissionDenied and the sync stream revokes the agent.
	if _, err := e.st.EvictAgent(testCtx(t, testDeadline), agentID.String()); err != nil {
		t.Fatalf("EvictAgent: %v", err)
	}
	select {
	case err := <-renewErr:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("RunRenewal after eviction returned %v, want PermissionDenied", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("RunRenewal did not return after eviction")
	}
	select {
	case err := <-revokedCh:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("OnRevoked got %v, want PermissionDenied", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("the agent was not revoked after eviction")
	}
	if ids, _ := a.Identities(uid1000(t)); len(ids.SVIDs) != 0 || ids.Pending {
		t.Fatalf("after eviction: %v (pending %v), want nothing", svidIDs(ids), ids.Pending)
	}
	if revoked.Load() != 1 {
		t.Fatalf("OnRevoked called %d times", revoked.Load())
	}
}

// TestRenewalAtHalfLife checks that RunRenewal waits for half of the agent SVID's TTL.
func TestRenewalAtHalfLife(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second // the server's minimum
	e := newTLSEnv(t, ttl)
	id, _ := attest(t, e, t.TempDir())
	conn, err := agent.Dial(e.addr, id, testTD)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	log, renewals := newLogCounter(t, "agent SVID renewed")
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	if err := conn.RunRenewal(ctx, log); err != nil {
		t.Fatalf("RunRenewal: %v", err)
	}
	// 7s of a 10s TTL renewed at half life (5s after issuance): exactly one renewal.
	if n := renewals.count(); n != 1 {
		t.Fatalf("%d renewals in 7s of %s agent SVIDs, want 1", n, ttl)
	}
}

// TestIdentityBundleAndRemove checks the identity's life outside attestation: a bootstrap identity,
// bundle updates persisted for the next start, and removal after eviction.
func TestIdentityBundleAndRemove(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 0)
	boot := agent.NewIdentity(t.TempDir(), testTD, e.roots())
	if boot.ID() != "" {
		t.Fatalf("bootstrap identity has ID %q", boot.ID())
	}
	if na, ra := boot.NotAfter(); !na.IsZero() || !ra.IsZero() {
		t.Fatalf("bootstrap identity NotAfter %s, %s", na, ra)
	}
	if _, err := boot.GetX509SVID(); err == nil {
		t.Fatal("bootstrap identity returned an SVID")
	}
	if b, err := boot.GetX509BundleForTrustDomain(testTD); err != nil || !b.HasX509Authority(e.ca.X509Authority()) {
		t.Fatalf("bootstrap bundle: %v", err)
	}

	dir := t.TempDir()
	id, _ := attest(t, e, dir)
	extra := testkit.NewCA(t, testTD, 0).X509Authority()
	before := statFiles(t, dir, keyFile, certFile)
	if err := id.SetBundle(append(e.roots(), extra)); err != nil {
		t.Fatalf("SetBundle: %v", err)
	}
	// Only the bundle is written: the key and SVID files are the very same files as before.
	for name, after := range statFiles(t, dir, keyFile, certFile) {
		if !os.SameFile(before[name], after) || !before[name].ModTime().Equal(after.ModTime()) {
			t.Fatalf("SetBundle rewrote %s", name)
		}
	}
	if b, _ := id.GetX509BundleForTrustDomain(testTD); !b.HasX509Authority(extra) {
		t.Fatal("SetBundle did not replace the bundle in memory")
	}
	loaded, err := agent.LoadIdentity(dir, testTD, time.Now())
	if err != nil {
		t.Fatalf("LoadIdentity after SetBundle: %v", err)
	}
	if b, _ := loaded.GetX509BundleForTrustDomain(testTD); !b.HasX509Authority(extra) || !b.HasX509Authority(e.ca.X509Authority()) {
		t.Fatal("the new bundle was not persisted")
	}
	if loaded.ID() != id.ID() {
		t.Fatalf("SetBundle changed the stored SVID: %s, want %s", loaded.ID(), id.ID())
	}

	if err := id.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := id.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if id.ID() != "" {
		t.Fatalf("removed identity still has ID %q", id.ID())
	}
	if _, err := id.GetX509SVID(); err == nil {
		t.Fatal("removed identity still returns an SVID")
	}
	if _, err := agent.LoadIdentity(dir, testTD, time.Now()); !errors.Is(err, agent.ErrNoIdentity) {
		t.Fatalf("LoadIdentity after Remove: %v, want ErrNoIdentity", err)
	}
	for _, name := range []string{keyFile, certFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after Remove: %v", name, err)
		}
	}
	// The bundle stays for the next attestation.
	if b, err := x509bundle.Load(testTD, filepath.Join(dir, bundleFile)); err != nil || !b.HasX509Authority(extra) {
		t.Fatalf("bundle after Remove: %v", err)
	}
}

// statFiles returns the file info of each named file in dir.
func statFiles(tb testing.TB, dir string, names ...string) map[string]fs.FileInfo {
	tb.Helper()
	out := map[string]fs.FileInfo{}
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = fi
	}
	return out
}

// TestBundleAndRenewalSaves runs the agent as the agent command does (OnBundle persisting the bundle
// through the identity) while the agent SVID is renewed about every second and the bundle is saved
// in a loop: saves never fail or interleave, the data dir ends with the identity held in memory and
// nothing else, and the bundle re-sent on each reconnect (the connection is replaced after every
// renewal) is not applied again. A restarted agent still applies the first bundle it receives.
func TestBundleAndRenewalSaves(t *testing.T) {
	t.Parallel()
	e, dir, id, conn := attestAndDial(t)
	agentID := spiffeid.RequireFromString(id.ID())
	first := serialOf(t, id)

	var pushes atomic.Int64
	a, stopAgent := startAgent(t, conn, func(c *agent.Config) {
		c.OnBundle = func(roots []*x509.Certificate, _ []string) {
			pushes.Add(1)
			if err := id.SetBundle(roots); err != nil {
				t.Errorf("SetBundle from OnBundle: %v", err)
			}
		}
	})
	waitCount(t, &pushes, 1, testDeadline, "the first bundle")

	stop := make(chan struct{})
	hammered := make(chan struct{})
	go func() {
		defer close(hammered)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := id.SetBundle(e.roots()); err != nil {
				t.Errorf("SetBundle during renewals: %v", err)
				return
			}
		}
	}()
	renewCtx, stopRenewal := context.WithCancel(context.Background())
	renewed := make(chan error, 1)
	go func() { renewed <- conn.RunRenewal(renewCtx, testLogger(t)) }()

	// Two renewals, and the entry sync on a connection made after the first.
	deadline := time.After(testDeadline)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seen := map[string]bool{first: true}
	for len(seen) < 3 || e.presentedSerial(methodSync) == first {
		seen[serialOf(t, id)] = true
		select {
		case <-tick.C:
		case err := <-renewed:
			t.Fatalf("RunRenewal returned %v", err)
		case <-deadline:
			t.Fatalf("saw %d agent SVIDs, sync presents %s: the agent SVID was not renewed twice", len(seen), e.presentedSerial(methodSync))
		}
	}
	// An entry created now arrives on the reconnected stream, after the bundle that stream began with.
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/after-reconnect", parent: agentID})
	waitIdentities(t, a, uid1000(t), testDeadline, "an entry created after the reconnect", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, "spiffe://example.org/after-reconnect")
		return ok
	})
	if n := pushes.Load(); n != 1 {
		t.Fatalf("OnBundle called %d times for one unchanged bundle (re-sent on each reconnect)", n)
	}

	close(stop)
	<-hammered
	stopRenewal()
	if err := <-renewed; err != nil {
		t.Fatalf("RunRenewal: %v", err)
	}
	loaded, err := agent.LoadIdentity(dir, testTD, time.Now())
	if err != nil {
		t.Fatalf("LoadIdentity after concurrent saves: %v", err)
	}
	if got, want := serialOf(t, loaded), serialOf(t, id); got != want {
		t.Fatalf("data dir holds SVID %s, the identity %s", got, want)
	}
	// "*" matches hidden names too: no temporary file is left.
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); !slices.Equal(names, []string{
		filepath.Join(dir, keyFile), filepath.Join(dir, certFile), filepath.Join(dir, bundleFile)}) {
		t.Fatalf("data dir holds %q, want only the key, SVID and bundle", names)
	}

	// A restarted agent applies the first bundle it gets, although its sequence is the same.
	stopAgent()
	var restartPushes atomic.Int64
	restarted, _ := startAgent(t, conn, func(c *agent.Config) { c.OnBundle = func([]*x509.Certificate, []string) { restartPushes.Add(1) } })
	waitCount(t, &restartPushes, 1, testDeadline, "the first bundle after a restart")
	waitIdentities(t, restarted, uid1000(t), testDeadline, "the bundle after a restart", func(ids workloadapi.Identities) bool {
		return len(ids.X509Bundle) > 0 && ids.BundleSequence == e.st.Bundle().Sequence
	})
}
