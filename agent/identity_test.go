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
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Agent attestation (join tokens, refusals, server verification and authorization) and loading an
// attested identity from the data dir. identity_renewal_test.go holds renewal, bundle saves and removal.

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
