package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/ca/upstream"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// newUpstreamEnv is a node whose keys rotate on rotationSchedule by clock, each signed by up.
func newUpstreamEnv(t *testing.T, clock *manualClock, up *upstream.Disk) (*env, *rotation.Manager) {
	t.Helper()
	keys, err := rotation.Open(rotation.Config{Dir: t.TempDir(), Schedule: rotationSchedule,
		New: rotation.UpstreamFactory(testTD, rotationSchedule.TTL, clock.now, up), Clock: clock.now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, func(c *Config) {
		c.CA, c.Keys, c.Clock = nil, keys, clock.now
		c.KeyCheckEvery = time.Hour
	}, nil)
	return e, keys
}

// TestUpstreamRootRetainedForThisNode: an upstream root another node published first, with a NotAfter
// before this node's key's, counts as published for this node's key, which then raises the root's
// NotAfter to its own (authority-retain): the other node, which alone may remove the root, keeps it until
// this node's key has expired.
func TestUpstreamRootRetainedForThisNode(t *testing.T) {
	clock := newManualClock()
	dir := t.TempDir()
	root := testkit.NewUpstreamCA(t, dir, "root", 48*time.Hour, true)
	up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: root.CertFile, KeyFile: root.KeyFile, Clock: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	e, keys := newUpstreamEnv(t, clock, up)
	// As if node-other had published the root first: this node's publication is taken out (a node may
	// remove its own authorities only), and node-other's put in. The key loop's first AdvanceKeys waits
	// meanwhile (it would publish this node's root again between the two).
	sum := sha256.Sum256(root.Cert.Raw)
	other := newCA(t)
	early := clock.now().Add(time.Minute).UTC().Truncate(time.Second)
	err = func() error {
		e.srv.advanceMu.Lock()
		defer e.srv.advanceMu.Unlock()
		if err := e.st.RemoveAuthority(testCtx(t), storage.AuthorityX509, hex.EncodeToString(sum[:]), e.st.NodeID()); err != nil {
			return err
		}
		return e.srv.publish(testCtx(t), "node-other", []*x509.Certificate{root.Cert}, early, other.JWTPublicKey(), other.JWTKeyID())
	}()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AdvanceKeys(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	want := keys.Slots()[0].NotAfter
	for _, a := range e.st.Authorities() {
		if a.Kind == storage.AuthorityX509 {
			if string(a.DER) != string(root.Cert.Raw) || a.Node != "node-other" || !a.NotAfter.Equal(want) {
				t.Fatalf("X.509 authority %s of %s until %s; want the upstream root, still node-other's, kept until this node's key expires at %s", a.ID, a.Node, a.NotAfter, want)
			}
		}
	}
	if keys.Slots()[0].State != rotation.Active {
		t.Fatalf("this node's key is %s", keys.Slots()[0].State)
	}
}

// TestUpstreamRootsThroughRotation: with a disk upstream authority the bundle carries the upstream root,
// never the node's intermediates; workload, agent and server SVIDs come as leaf + intermediate and verify
// against the bundle; when the upstream's files are replaced (a new upstream root), the next key is signed
// under the new root, both roots stay while a live key depends on the old one, and the old root leaves the
// bundle once the last key under it is pruned.
func TestUpstreamRootsThroughRotation(t *testing.T) {
	clock := newManualClock()
	dir := t.TempDir()
	rootA := testkit.NewUpstreamCA(t, dir, "a", 48*time.Hour, true)
	up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: rootA.CertFile, KeyFile: rootA.KeyFile, Clock: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	e, keys := newUpstreamEnv(t, clock, up)
	if err := e.srv.AdvanceKeys(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	wantRoots := func(what string, want ...*x509.Certificate) storage.Bundle {
		t.Helper()
		b := e.st.Bundle()
		// In any order: the bundle's order is not part of its meaning.
		ok := len(b.X509Authorities) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = slices.ContainsFunc(b.X509Authorities, want[i].Equal)
		}
		if !ok {
			t.Fatalf("%s: the bundle has %d X.509 authorities, want exactly the %d upstream roots", what, len(b.X509Authorities), len(want))
		}
		return b
	}
	b := wantRoots("first key", rootA.Cert)

	e.owner(t, "alice")
	en := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	res, err := e.srv.Issuer.SignX509SVIDs(testCtx(t), agentapi.Caller{AgentID: agentA, NodeAttestation: "test"},
		[]issuer.X509Request{{EntryID: en.ID, CSR: csrFor(t, newP256(t), nil)}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("X.509-SVID: %v %v", err, res[0].Err)
	}
	agentChain, rec, err := e.srv.Issuer.SignAgentSVID(issuer.AgentSVIDRequest{ID: agentA, CSR: csrFor(t, newP256(t), nil), TTL: time.Minute, Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := e.srv.Issuer.ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := serverCert.Sign()
	if err != nil {
		t.Fatal(err)
	}
	serverChain := make([]*x509.Certificate, 0, len(tc.Certificate))
	for _, der := range tc.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		serverChain = append(serverChain, c)
	}
	inter := keys.Active().X509Authority()
	for name, chain := range map[string][]*x509.Certificate{"workload": res[0].Chain, "agent": agentChain, "server": serverChain} {
		if len(chain) != 2 || !chain[1].Equal(inter) {
			t.Fatalf("%s SVID: a chain of %d, want leaf + the node's intermediate", name, len(chain))
		}
		if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(testTD, b.X509Authorities), x509svid.WithTime(clock.now())); err != nil {
			t.Fatalf("%s SVID does not verify against the bundle: %v", name, err)
		}
	}
	if rec.SignedBy != keys.Active().X509KeyID() {
		t.Fatalf("agent SVID record signed by %q, want the intermediate %q", rec.SignedBy, keys.Active().X509KeyID())
	}

	// The upstream CA is replaced: the next key is signed under root B.
	rootB := testkit.NewUpstreamCA(t, dir, "b", 48*time.Hour, true)
	for _, f := range [][2]string{{rootB.CertFile, rootA.CertFile}, {rootB.KeyFile, rootA.KeyFile}} {
		if err := os.Rename(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.srv.RotateKeys(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := keys.Active().X509Authority().CheckSignatureFrom(rootB.Cert); err != nil {
		t.Fatalf("the key after the upstream changed is not signed by the new root: %v", err)
	}
	wantRoots("after the upstream changed", rootA.Cert, rootB.Cert)

	// Past the first key's expiry: it is pruned, and root A with it.
	first := keys.Slots()[0]
	for clock.now().Before(first.NotAfter.Add(time.Minute)) {
		clock.advance(20 * time.Second)
		if err := e.srv.AdvanceKeys(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if keys.Slots()[0].State != rotation.Pruned {
		t.Fatalf("the first key is %s past its NotAfter", keys.Slots()[0].State)
	}
	wantRoots("after the last key under root A was pruned", rootB.Cert)
}
