package ca_test

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
)

// An intermediate is accepted only with the roots it chains to: New refuses other roots and an upstream
// chain without roots, and LoadOrCreate refuses a key directory whose roots file was replaced, naming the
// certificate file.
func TestIntermediateMustChainToItsRoots(t *testing.T) {
	dir := t.TempDir()
	root := testkit.NewUpstreamCA(t, dir, "root", 48*time.Hour, true)
	other := testkit.NewUpstreamCA(t, dir, "other", 48*time.Hour, true)
	up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: root.CertFile, KeyFile: root.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "ca")
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: caDir, TrustDomain: td, TTL: time.Hour, Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j}); err != nil {
		t.Fatal(err)
	}
	wrong := *x
	wrong.UpstreamRoots = []*x509.Certificate{other.Cert}
	if _, err := ca.New(ca.Config{TrustDomain: td, X509: &wrong, JWT: j}); err == nil || !strings.Contains(err.Error(), "does not chain to the upstream roots") {
		t.Fatalf("an intermediate with another upstream's roots: %v", err)
	}
	wrong = *x
	wrong.UpstreamRoots, wrong.UpstreamChain = nil, []*x509.Certificate{root.Cert}
	if _, err := ca.New(ca.Config{TrustDomain: td, X509: &wrong, JWT: j}); err == nil || !strings.Contains(err.Error(), "UpstreamRoots is empty") {
		t.Fatalf("an upstream chain without roots: %v", err)
	}
	wrong = *x
	wrong.UpstreamRoots = nil
	if _, err := ca.New(ca.Config{TrustDomain: td, X509: &wrong, JWT: j}); err == nil || !strings.Contains(err.Error(), "not self-signed") {
		t.Fatalf("an intermediate taken for a self-signed root: %v", err)
	}

	if err := os.WriteFile(filepath.Join(caDir, ca.UpstreamRootsFile), testkit.PEM(other.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = ca.LoadOrCreate(ca.KeyStoreConfig{Dir: caDir, TrustDomain: td})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(caDir, ca.X509CertFile)) || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("a key directory whose roots file was replaced: %v", err)
	}
}
