package cluster_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/upstream"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/storage"
)

// TestClusterUnderAnUpstreamAuthority: three servers whose CAs are intermediates of one upstream CA form a
// cluster (joining nodes register with server SVID chains leaf + intermediate, verified against the
// upstream root they send; Raft's TLS between them verifies the same chains), the bundle holds the
// upstream root once and no intermediate, and a write through a follower reaches every server.
func TestClusterUnderAnUpstreamAuthority(t *testing.T) {
	dir := t.TempDir()
	root := testkit.NewUpstreamCA(t, dir, "root", 2*365*24*time.Hour, true)
	up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: root.CertFile, KeyFile: root.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes, _, follower := startClusterWith(t, func() *ca.CA {
		x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: filepath.Join(t.TempDir(), "ca"), TrustDomain: td, Upstream: up})
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if _, err := follower.st.CreateOwner(ctx, storage.Owner{Name: "alice"}); err != nil {
		t.Fatalf("a write through a follower: %v", err)
	}
	for i, n := range nodes {
		if err := n.st.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := n.st.Owner("alice"); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		b := n.st.Bundle()
		if len(b.X509Authorities) != 1 || !b.X509Authorities[0].Equal(root.Cert) || len(b.JWTAuthorities) != 3 {
			t.Fatalf("node %d: %d X.509 authorities, %d JWT keys; want the upstream root alone and one JWT key per server", i, len(b.X509Authorities), len(b.JWTAuthorities))
		}
	}
}
