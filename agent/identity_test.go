package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	keyFile     = "agent_svid.key"
	prevKeyFile = "agent_svid.key.prev"
	certFile    = "agent_svid.pem"
	bundleFile  = "bundle.pem"
)

// attest attests a new agent against e with a fresh join token into dir.
func attest(tb testing.TB, e *env, dir string) (*agent.Identity, string) {
	tb.Helper()
	token, tokenID := e.joinToken(tb)
	id, err := agent.Attest(testCtx(tb, testDeadline), agent.AttestConfig{Address: e.addr, TrustDomain: testTD, DataDir: dir,
		JoinToken: token, Bundle: e.roots(), Logger: testLogger(tb)})
	if err != nil {
		tb.Fatalf("Attest: %v", err)
	}
	return id, tokenID
}

func serialOf(tb testing.TB, id *agent.Identity) string {
	tb.Helper()
	svid, err := id.GetX509SVID()
	if err != nil {
		tb.Fatalf("GetX509SVID: %v", err)
	}
	return svid.Certificates[0].SerialNumber.Text(16)
}

func TestAttestStoresIdentity(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 0)
	dir := filepath.Join(t.TempDir(), "agent-data") // created by Attest
	id, tokenID := attest(t, e, dir)

	wantID := issuer.AgentIDForToken(testTD, tokenID).String()
	if id.ID() != wantID {
		t.Fatalf("agent ID %q, want %q", id.ID(), wantID)
	}
	svid, err := id.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID: %v", err)
	}
	got, _, err := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(testTD, e.roots()))
	if err != nil || got.String() != wantID {
		t.Fatalf("agent SVID verifies as %v (%v), want %s", got, err, wantID)
	}
	notAfter, renewAt := id.NotAfter()
	if !time.Now().Before(renewAt) || !renewAt.Before(notAfter) || notAfter.Sub(time.Now()) > agentapi.DefaultAgentSVIDTTL {
		t.Fatalf("NotAfter %s, renew at %s: want now < renew < expiry <= now+%s", notAfter, renewAt, agentapi.DefaultAgentSVIDTTL)
	}
	b, err := id.GetX509BundleForTrustDomain(testTD)
	if err != nil || !b.HasX509Authority(e.ca.X509Authority()) {
		t.Fatalf("identity bundle lacks the server's root: %v", err)
	}
	if _, err := id.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
		t.Fatal("identity returned a bundle for another trust domain")
	}

	// On disk: the key owner-only, the directory private.
	for _, f := range []struct {
		name string
		mode fs.FileMode
	}{{keyFile, 0o600}, {certFile, 0o644}, {bundleFile, 0o644}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Fatalf("%s has mode %o, want %o", f.name, fi.Mode().Perm(), f.mode)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("data dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(matches) != 0 {
		t.Fatalf("temporary files left behind: %v", matches)
	}

	// Read back as a restarted agent would.
	loaded, err := agent.LoadIdentity(dir, testTD, time.Now())
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if loaded.ID() != wantID || serialOf(t, loaded) != serialOf(t, id) {
		t.Fatalf("loaded %s serial %s, attested %s serial %s", loaded.ID(), serialOf(t, loaded), wantID, serialOf(t, id))
	}
	lsvid, _ := loaded.GetX509SVID()
	if pub, ok := lsvid.Certificates[0].PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(lsvid.PrivateKey.Public()) {
		t.Fatal("loaded key does not match the loaded SVID")
	}
	if lb, err := loaded.GetX509BundleForTrustDomain(testTD); err != nil || !lb.HasX509Authority(e.ca.X509Authority()) {
		t.Fatalf("loaded bundle lacks the server's root: %v", err)
	}

	// The server registered the agent with this SVID and consumed the token.
	rec, err := e.st.Agent(wantID)
	if err != nil {
		t.Fatalf("store Agent: %v", err)
	}
	if rec.Serial != serialOf(t, id) || rec.Owner != testOwner || rec.TokenID != tokenID {
		t.Fatalf("agent record %+v, want serial %s owner %s token %s", rec, serialOf(t, id), testOwner, tokenID)
	}
	if tok, err := e.st.JoinToken(tokenID); err != nil || tok.UsedBy != wantID {
		t.Fatalf("token after attestation: %+v, %v; want used by %s", tok, err, wantID)
	}
}

func TestLoadIdentity(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 0)
	src := t.TempDir()
	id, _ := attest(t, e, src)
	notAfter, _ := id.NotAfter()

	// copyIdentity copies the attested files into a fresh dir (those named in skip are left out).
	copyIdentity := func(t *testing.T, skip ...string) string {
		dir := t.TempDir()
		for _, name := range []string{keyFile, certFile, bundleFile} {
			if strings.Contains(strings.Join(skip, " "), name) {
				continue
			}
			data, err := os.ReadFile(filepath.Join(src, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}

	for _, tc := range []struct {
		name      string
		dir       func(t *testing.T) string
		td        spiffeid.TrustDomain
		now       time.Time
		noID      bool     // errors.Is(err, ErrNoIdentity)
		errSubstr []string // in the error message
	}{
		{name: "valid", dir: func(t *testing.T) string { return copyIdentity(t) }},
		{name: "empty dir", dir: func(t *testing.T) string { return t.TempDir() }, noID: true},
		{name: "missing dir", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, noID: true},
		{name: "no key", dir: func(t *testing.T) string { return copyIdentity(t, keyFile) }, noID: true},
		{name: "expired", dir: func(t *testing.T) string { return copyIdentity(t) }, now: notAfter, noID: true, errSubstr: []string{"expired"}},
		{name: "long expired", dir: func(t *testing.T) string { return copyIdentity(t) }, now: notAfter.Add(24 * time.Hour), noID: true},
		{name: "key readable by others", dir: func(t *testing.T) string {
			dir := copyIdentity(t)
			if err := os.Chmod(filepath.Join(dir, keyFile), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errSubstr: []string{"chmod 600", keyFile}},
		{name: "key readable by group", dir: func(t *testing.T) string {
			dir := copyIdentity(t)
			if err := os.Chmod(filepath.Join(dir, keyFile), 0o640); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errSubstr: []string{"chmod 600"}},
		{name: "interrupted save: key moved aside", dir: func(t *testing.T) string {
			dir := copyIdentity(t)
			if err := os.Rename(filepath.Join(dir, keyFile), filepath.Join(dir, prevKeyFile)); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "interrupted save: new key beside the old certificate", dir: func(t *testing.T) string {
			return withNewKey(t, copyIdentity(t), 0o600)
		}},
		{name: "previous key readable by others", dir: func(t *testing.T) string {
			return withNewKey(t, copyIdentity(t), 0o644)
		}, errSubstr: []string{"chmod 600", prevKeyFile}},
		{name: "key is a link to a file others can read", dir: func(t *testing.T) string {
			dir := copyIdentity(t)
			target := filepath.Join(dir, "elsewhere.key")
			if err := os.Rename(filepath.Join(dir, keyFile), target); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(target, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, keyFile)); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errSubstr: []string{"chmod 600", keyFile}},
		{name: "key is a directory", dir: func(t *testing.T) string {
			dir := copyIdentity(t, keyFile)
			if err := os.Mkdir(filepath.Join(dir, keyFile), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errSubstr: []string{"not a regular file", keyFile}},
		{name: "no certificate", dir: func(t *testing.T) string { return copyIdentity(t, certFile) }, errSubstr: []string{certFile}},
		{name: "no bundle", dir: func(t *testing.T) string { return copyIdentity(t, bundleFile) }, errSubstr: []string{bundleFile}},
		{name: "other trust domain", dir: func(t *testing.T) string { return copyIdentity(t) },
			td: spiffeid.RequireTrustDomainFromString("other.org"), errSubstr: []string{"other.org"}},
		{name: "garbage certificate", dir: func(t *testing.T) string {
			dir := copyIdentity(t)
			if err := os.WriteFile(filepath.Join(dir, certFile), []byte("not PEM"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, errSubstr: []string{certFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td, now := tc.td, tc.now
			if td.IsZero() {
				td = testTD
			}
			if now.IsZero() {
				now = time.Now()
			}
			got, err := agent.LoadIdentity(tc.dir(t), td, now)
			if tc.noID != errors.Is(err, agent.ErrNoIdentity) {
				t.Fatalf("LoadIdentity: %v; ErrNoIdentity wanted: %v", err, tc.noID)
			}
			if !tc.noID && len(tc.errSubstr) == 0 {
				if err != nil || got.ID() != id.ID() {
					t.Fatalf("LoadIdentity: %v, %v; want %s", got, err, id.ID())
				}
				return
			}
			if err == nil || got != nil {
				t.Fatalf("LoadIdentity = %v, %v; want an error", got, err)
			}
			if !containsAll(err.Error(), tc.errSubstr...) {
				t.Fatalf("error %q does not say %q", err, tc.errSubstr)
			}
		})
	}
}

func TestAttestRefused(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 0)
	used, _ := e.joinToken(t)
	attestDir := t.TempDir()
	if _, err := agent.Attest(testCtx(t, testDeadline), agent.AttestConfig{Address: e.addr, TrustDomain: testTD, DataDir: attestDir,
		JoinToken: used, Bundle: e.roots(), Logger: testLogger(t)}); err != nil {
		t.Fatalf("first use of the token: %v", err)
	}
	tokenID, _, _ := strings.Cut(used, ".")

	for _, tc := range []struct {
		name   string
		token  string
		bundle []*x509.Certificate
		want   string
	}{
		{"malformed", "not-a-token", e.roots(), "malformed"},
		{"malformed id", "XYZ.secret", e.roots(), "malformed"},
		{"unknown", "0123456789abcdef.c2VjcmV0", e.roots(), "unknown token"},
		{"wrong secret", tokenID + ".wrong-secret", e.roots(), "unknown token"},
		{"already used", used, e.roots(), "already used"},
		{"no token", "", e.roots(), "join token is required"},
		{"no bundle", used, nil, "no trust bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			log, retries := newLogCounter(t, "retrying")
			start := time.Now()
			id, err := agent.Attest(testCtx(t, testDeadline), agent.AttestConfig{Address: e.addr, TrustDomain: testTD, DataDir: dir,
				JoinToken: tc.token, Bundle: tc.bundle, Logger: log})
			if err == nil || id != nil {
				t.Fatalf("Attest = %v, %v; want a refusal", id, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if errors.Is(err, context.DeadlineExceeded) || retries.count() != 0 || time.Since(start) > 5*time.Second {
				t.Fatalf("refusal retried (%d times, %s): %v", retries.count(), time.Since(start), err)
			}
			if _, err := agent.LoadIdentity(dir, testTD, time.Now()); !errors.Is(err, agent.ErrNoIdentity) {
				t.Fatalf("a refused attestation left an identity behind: %v", err)
			}
		})
	}
}

func TestAttestUnreachable(t *testing.T) {
	t.Parallel()
	log, retries := newLogCounter(t, "server unreachable; retrying attestation")
	dir := t.TempDir()
	const wait = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	id, err := agent.Attest(ctx, agent.AttestConfig{Address: freeAddr(t), TrustDomain: testTD, DataDir: dir,
		JoinToken: "0123456789abcdef.c2VjcmV0", Bundle: []*x509.Certificate{testkit.NewCA(t, testTD, 0).X509Authority()}, Logger: log})
	elapsed := time.Since(start)
	if err == nil || id != nil {
		t.Fatalf("Attest with no server = %v, %v; want an error", id, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Attest error %v does not wrap context.DeadlineExceeded", err)
	}
	if elapsed < wait-100*time.Millisecond || elapsed > wait+2*time.Second {
		t.Fatalf("Attest returned after %s; want it to keep retrying until the %s deadline", elapsed, wait)
	}
	if retries.count() < 2 {
		t.Fatalf("%d retries logged in %s; want the attestation retried with backoff", retries.count(), wait)
	}
	if _, err := os.Stat(filepath.Join(dir, keyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("key file after a failed attestation: %v", err)
	}
}

func TestAttestVerifiesServer(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 0)
	token, tokenID := e.joinToken(t)
	strange := []*x509.Certificate{testkit.NewCA(t, testTD, 0).X509Authority()} // a root the server's certificate does not chain to

	log, retries := newLogCounter(t, "retrying attestation")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	id, err := agent.Attest(ctx, agent.AttestConfig{Address: e.addr, TrustDomain: testTD, DataDir: dir,
		JoinToken: token, Bundle: strange, Logger: log})
	if err == nil || id != nil {
		t.Fatalf("Attest with a bundle that does not hold the server's root = %v, %v; want an error", id, err)
	}
	// The failure is the server's certificate, reported at once: retrying cannot fix a wrong bundle.
	if !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "trust bundle") || retries.count() != 0 {
		t.Fatalf("attestation failure %v after %d retries: want the certificate verification failure, at once", err, retries.count())
	}
	if _, err := agent.LoadIdentity(dir, testTD, time.Now()); !errors.Is(err, agent.ErrNoIdentity) {
		t.Fatalf("identity after a failed attestation: %v", err)
	}
	// The token never reached the server.
	if tok, err := e.st.JoinToken(tokenID); err != nil || !tok.UsedAt.IsZero() {
		t.Fatalf("token after an unverified server: %+v, %v; want unused", tok, err)
	}

	// Insecure bootstrap skips verifying the server and trusts the bundle it returns.
	id, err = agent.Attest(testCtx(t, testDeadline), agent.AttestConfig{Address: e.addr, TrustDomain: testTD, DataDir: dir,
		JoinToken: token, Bundle: strange, Insecure: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("insecure Attest: %v", err)
	}
	b, _ := id.GetX509BundleForTrustDomain(testTD)
	if !b.HasX509Authority(e.ca.X509Authority()) || b.HasX509Authority(strange[0]) {
		t.Fatal("after insecure bootstrap the bundle should be the server's, not the configured one")
	}
	if _, err := agent.LoadIdentity(dir, testTD, time.Now()); err != nil {
		t.Fatalf("LoadIdentity after insecure bootstrap: %v", err)
	}
}

// TestAttestServerAuthorization checks that the agent attests only to a Signet server of its trust
// domain, even one whose certificate chains to the bundle.
func TestAttestServerAuthorization(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 0)

	// The real agent API behind a certificate that is a workload's SVID, not a server's.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := e.ca.SignX509SVID(ca.X509SVIDParams{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/web"), PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	impostor := serveTLS(t, e, &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}})

	for _, tc := range []struct {
		name string
		addr string
		td   spiffeid.TrustDomain
		want string // in the failure
	}{
		{"workload SVID", impostor, testTD, "not a Signet server"},
		{"other trust domain", e.addr, spiffeid.RequireTrustDomainFromString("other.org"), "example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token, tokenID := e.joinToken(t)
			log, retries := newLogCounter(t, "retrying attestation")
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			id, err := agent.Attest(ctx, agent.AttestConfig{Address: tc.addr, TrustDomain: tc.td, DataDir: t.TempDir(),
				JoinToken: token, Bundle: e.roots(), Logger: log})
			if err == nil || id != nil {
				t.Fatalf("Attest = %v, %v; want an error", id, err)
			}
			if !strings.Contains(err.Error(), tc.want) || retries.count() != 0 {
				t.Fatalf("attestation failure %v after %d retries: want %q, at once", err, retries.count(), tc.want)
			}
			if tok, err := e.st.JoinToken(tokenID); err != nil || !tok.UsedAt.IsZero() {
				t.Fatalf("the token was used on a server the agent should not trust: %+v, %v", tok, err)
			}
		})
	}
}

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

// TestAttestWithoutLogger checks that AttestConfig.Logger is optional.
func TestAttestWithoutLogger(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := agent.Attest(ctx, agent.AttestConfig{Address: freeAddr(t), TrustDomain: testTD, DataDir: t.TempDir(),
		JoinToken: "0123456789abcdef.c2VjcmV0", Insecure: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Attest with no server and no logger: %v, want DeadlineExceeded", err)
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

// withNewKey does in dir what a save interrupted after writing the new key does: the key moves to
// prevKeyFile, now with mode prevMode, and a fresh key that does not fit the certificate takes its place.
func withNewKey(t *testing.T, dir string, prevMode os.FileMode) string {
	t.Helper()
	keyPath, prevPath := filepath.Join(dir, keyFile), filepath.Join(dir, prevKeyFile)
	if err := os.Rename(keyPath, prevPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(prevPath, prevMode); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
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
