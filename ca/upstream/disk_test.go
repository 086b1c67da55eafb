package upstream_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/upstream"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// loadCA makes the node CA in dir with up (nil: load what dir holds).
func loadCA(t *testing.T, dir string, up ca.Upstream, ttl time.Duration) (*ca.CA, error) {
	t.Helper()
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: dir, TrustDomain: td, TTL: ttl, Upstream: up})
	if err != nil {
		return nil, err
	}
	return ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j})
}

// An upstream on disk signs the node's CA as an intermediate (path length 0, inside the upstream's
// validity): SVID chains are leaf + intermediate, verify to the upstream root with go-spiffe and
// openssl, the bundle carries the upstream root, and the node's files load again as the same CA.
func TestDiskUpstreamSignsTheNodeIntermediate(t *testing.T) {
	dir := t.TempDir()
	root := testkit.NewUpstreamCA(t, dir, "root", 48*time.Hour, true)
	up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: root.CertFile, KeyFile: root.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	// Asked for longer than the upstream lives: cut at its NotAfter.
	c, err := loadCA(t, caDir, up, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	inter := c.X509Authority()
	if !c.Upstream() || !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero || inter.CheckSignatureFrom(root.Cert) != nil {
		t.Fatalf("node CA: upstream %v, CA %v, pathlen %d (zero %v), signed by the upstream: %v", c.Upstream(), inter.IsCA, inter.MaxPathLen, inter.MaxPathLenZero, inter.CheckSignatureFrom(root.Cert))
	}
	if !inter.NotAfter.Equal(root.Cert.NotAfter) {
		t.Fatalf("intermediate NotAfter %s, want the upstream's %s", inter.NotAfter, root.Cert.NotAfter)
	}
	if roots := c.X509Roots(); len(roots) != 1 || !roots[0].Equal(root.Cert) {
		t.Fatalf("bundle roots %v, want the upstream root only", roots)
	}
	chain, err := c.SignX509SVIDChain(ca.X509SVIDParams{SPIFFEID: spiffeid.RequireFromPath(td, "/web"), PublicKey: testkit.P256(t).Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !chain[1].Equal(inter) {
		t.Fatalf("chain of %d certificates, want leaf + the node's intermediate", len(chain))
	}
	if ca.SignerKeyID(chain[0]) != c.X509KeyID() {
		t.Fatalf("leaf signed by %s, want the intermediate %s", ca.SignerKeyID(chain[0]), c.X509KeyID())
	}
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, []*x509.Certificate{root.Cert}))
	if err != nil || id.Path() != "/web" {
		t.Fatalf("go-spiffe verify to the upstream root: %v (%s)", err, id)
	}
	testkit.OpenSSLVerify(t, []*x509.Certificate{root.Cert}, chain)

	again, err := loadCA(t, caDir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !again.X509Authority().Equal(inter) || len(again.X509Roots()) != 1 || !again.X509Roots()[0].Equal(root.Cert) {
		t.Fatal("the node CA loaded again is not the same intermediate under the same root")
	}
}

// A cert_file that is not a CA is refused, naming the key, both when the upstream is configured and when
// the file is replaced later; a key file others can read is refused too. Nothing is created in the node's
// key directory.
func TestDiskUpstreamBadInput(t *testing.T) {
	dir := t.TempDir()
	leaf := testkit.NewUpstreamCA(t, dir, "leaf", time.Hour, false)
	_, err := upstream.NewDisk(upstream.DiskConfig{CertFile: leaf.CertFile, KeyFile: leaf.KeyFile})
	if err == nil || !strings.Contains(err.Error(), "upstream_authority.disk.cert_file") || !strings.Contains(err.Error(), "not a CA certificate") {
		t.Fatalf("a leaf as cert_file: %v", err)
	}

	root := testkit.NewUpstreamCA(t, dir, "root", time.Hour, true)
	up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: root.CertFile, KeyFile: root.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	// Replaced by a leaf after start: the next key slot is refused.
	if err := os.WriteFile(root.CertFile, testkit.PEM(leaf.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root.KeyFile, mustRead(t, leaf.KeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	_, err = loadCA(t, caDir, up, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "upstream_authority.disk.cert_file") {
		t.Fatalf("cert_file replaced by a leaf: %v", err)
	}
	if names := testkit.DirNames(t, caDir); len(names) != 0 {
		t.Fatalf("a refused upstream left %v in the key directory", names)
	}

	open := testkit.NewUpstreamCA(t, dir, "open", time.Hour, true)
	if err := os.Chmod(open.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = upstream.NewDisk(upstream.DiskConfig{CertFile: open.CertFile, KeyFile: open.KeyFile})
	if err == nil || !strings.Contains(err.Error(), "upstream_authority.disk.key_file") || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key file others can read: %v", err)
	}
	// A key that is not the certificate's.
	fresh := testkit.NewUpstreamCA(t, dir, "fresh", time.Hour, true)
	_, err = upstream.NewDisk(upstream.DiskConfig{CertFile: fresh.CertFile, KeyFile: testkit.NewUpstreamCA(t, dir, "other", time.Hour, true).KeyFile})
	if err == nil || !strings.Contains(err.Error(), "upstream_authority.disk.key_file") {
		t.Fatalf("a key that does not match: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
