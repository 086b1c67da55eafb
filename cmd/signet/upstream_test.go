package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// checkUpstreamIssuance runs an agent and a workload entry on s, reads the SVID through a go-spiffe
// X509Source and checks it: leaf + the node's intermediate (+ the upstream's intermediates), verifying to
// root with go-spiffe and openssl; the bundle served is the upstream root, not the intermediate.
func checkUpstreamIssuance(t *testing.T, s *testServer, root *x509.Certificate) {
	t.Helper()
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/up", "--selector", myUID, "--owner", "alice", "--purpose", "upstream", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/up")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	chain := svid.Certificates
	if len(chain) < 2 || !chain[1].IsCA || chain[1].CheckSignatureFrom(chain[1]) == nil {
		t.Fatalf("SVID chain of %d certificates, want leaf + the node's intermediate", len(chain))
	}
	b, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if auths := b.X509Authorities(); len(auths) != 1 || !auths[0].Equal(root) {
		t.Fatalf("the bundle holds %d X.509 authorities, want the upstream root only", len(auths))
	}
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("example.org"), []*x509.Certificate{root})); err != nil {
		t.Fatalf("go-spiffe verify to the upstream root: %v", err)
	}
	testkit.OpenSSLVerify(t, []*x509.Certificate{root}, chain)
	// The ledger names the node's intermediate as the signer; bundle show --format keys and ca status show
	// both the intermediate and the upstream root.
	signer := ca.SignerKeyID(chain[0])
	if out := s.mustCLI("ledger", "query", "--signed-by", signer, "-o", "json"); !strings.Contains(out, "spiffe://example.org/up") {
		t.Fatalf("ledger query --signed-by the intermediate: %s", out)
	}
	// ledger lookup knows the SVID as issued here (signed by this server's intermediate, not a bundle root).
	leafFile := filepath.Join(t.TempDir(), "svid.pem")
	writeFile(t, leafFile, string(testkit.PEM(chain...)))
	lookup := decodeJSON[struct {
		Known    bool   `json:"known"`
		ValidNow bool   `json:"valid_now"`
		Reason   string `json:"reason"`
	}](t, s.mustCLI("ledger", "lookup", leafFile, "-o", "json"))
	if !lookup.Known || !lookup.ValidNow || lookup.Reason != "" {
		t.Fatalf("ledger lookup of the SVID: %+v", lookup)
	}
	keys := s.mustCLI("bundle", "show", "--format", "keys")
	if !strings.Contains(keys, "x509-intermediate  "+signer) || !strings.Contains(keys, ca.X509KeyID(root)) {
		t.Fatalf("bundle show --format keys lacks the intermediate %s or the root %s:\n%s", signer, ca.X509KeyID(root), keys)
	}
	sum := sha256.Sum256(root.Raw)
	status := decodeJSON[struct {
		Keys []caKeyView `json:"keys"`
	}](t, s.mustCLI("ca", "status", "-o", "json"))
	// (A disk upstream valid for less than ca.ttl shortens every key: a successor may be prepared already.)
	for _, k := range status.Keys {
		if len(k.UpstreamRootIDs) != 1 || k.UpstreamRootIDs[0] != hex.EncodeToString(sum[:]) || !k.InBundle {
			t.Fatalf("ca status: %+v; want every key in the bundle through the upstream root", status.Keys)
		}
	}
	if !slices.ContainsFunc(status.Keys, func(k caKeyView) bool {
		return k.State == "active" && k.X509KeyID == signer
	}) {
		t.Fatalf("ca status: %+v; want the active key signing as %s", status.Keys, signer)
	}
}

// noCAKeys fails if the server's data dir holds a CA key or certificate file.
func noCAKeys(t *testing.T, s *testServer) {
	t.Helper()
	_ = filepath.WalkDir(filepath.Join(s.dir, "data"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			switch d.Name() {
			case ca.X509KeyFile, ca.X509CertFile, ca.JWTKeyFile, ca.UpstreamRootsFile:
				t.Fatalf("a refused upstream left %s", path)
			}
		}
		return nil
	})
}

// TestServerWithStepCAUpstream: a real step-ca authority (started in the test) signs the server node's CA
// through its JWK provisioner; a workload's SVID read with go-spiffe verifies to the step-ca root. With a
// wrong provisioner password the server refuses to start, naming the key, and creates no CA file.
func TestServerWithStepCAUpstream(t *testing.T) {
	step := testkit.StartStepCA(t)
	section := func(password string) string {
		return "upstream_authority:\n  type: step-ca\n  step_ca:\n    url: " + step.URL + "\n    provisioner: " + step.Provisioner +
			"\n    password_file: " + password + "\n    root_fingerprint: " + step.Fingerprint + "\n"
	}
	wrong := testkit.WriteFileMode(t, t.TempDir(), "password", "wrong-password\n", 0o600)
	bad := newTestServer(t)
	bad.appendConfig(t, section(wrong))
	bad.proc = startProc(t, "server", "server", "--config", bad.config)
	if code := bad.waitExit(60 * time.Second); code == 0 {
		t.Fatal("a server whose upstream refuses exited 0")
	}
	if msg := bad.stderr.String(); !strings.Contains(msg, "upstream_authority.step_ca.password_file") || strings.Contains(msg, "wrong-password") {
		t.Fatalf("stderr of a server whose upstream refuses: %s", msg)
	}
	noCAKeys(t, bad)

	s := newTestServer(t)
	s.appendConfig(t, section(step.PasswordFile))
	checkUpstreamIssuance(t, s.start(t), step.Root)
}

// TestServerWithDiskUpstream: a CA certificate and key in files sign the node's CA; SVIDs verify to that
// root. A cert_file that is not a CA is refused at start, naming the key, before anything is created.
func TestServerWithDiskUpstream(t *testing.T) {
	dir := t.TempDir()
	leaf := testkit.NewUpstreamCA(t, dir, "leaf", 24*time.Hour, false)
	bad := newTestServer(t)
	bad.appendConfig(t, "upstream_authority:\n  type: disk\n  disk:\n    cert_file: "+leaf.CertFile+"\n    key_file: "+leaf.KeyFile+"\n")
	bad.proc = startProc(t, "server", "server", "--config", bad.config)
	if code := bad.waitExit(30 * time.Second); code == 0 {
		t.Fatal("a server whose upstream certificate is no CA exited 0")
	}
	if msg := bad.stderr.String(); !strings.Contains(msg, "upstream_authority.disk.cert_file") || !strings.Contains(msg, "not a CA certificate") {
		t.Fatalf("stderr of a server whose upstream certificate is no CA: %s", msg)
	}
	if _, err := os.Stat(filepath.Join(bad.dir, "data")); !os.IsNotExist(err) {
		t.Fatalf("data dir after a refused start: %v, want none", err)
	}

	root := testkit.NewUpstreamCA(t, dir, "root", 30*24*time.Hour, true)
	s := newTestServer(t)
	s.appendConfig(t, "upstream_authority:\n  type: disk\n  disk:\n    cert_file: "+root.CertFile+"\n    key_file: "+root.KeyFile+"\n")
	checkUpstreamIssuance(t, s.start(t), root.Cert)
}
