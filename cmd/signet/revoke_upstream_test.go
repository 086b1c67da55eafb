package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestRevokeUpstreamIntermediate, with real server and agent processes under a disk upstream authority
// and a go-spiffe workload: revoke-key of the upstream ROOT is refused, naming what to do, and changes
// nothing; revoke-key of the server's intermediate (by its x509_key_id) is accepted and audited: the
// server replaces the slot with a new intermediate from the upstream, the bundle keeps the upstream root,
// the workload is pushed an SVID of the new intermediate and nothing it is pushed afterwards chains
// through the revoked one, the agent's own SVID is renewed, the answer's note says that peers trusting
// the root still accept what it signed, ledger query --signed-by lists what it signed, and a second
// revocation is refused.
func TestRevokeUpstreamIntermediate(t *testing.T) {
	root := testkit.NewUpstreamCA(t, t.TempDir(), "root", 30*24*time.Hour, true)
	s := newTestServer(t)
	s.appendConfig(t, "upstream_authority:\n  type: disk\n  disk:\n    cert_file: "+root.CertFile+"\n    key_file: "+root.KeyFile+"\n")
	s.start(t)
	const web = "spiffe://example.org/web"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, c, updates := watchedWorkload(t, ctx, s, web)
	first, _ := updates.since(time.Time{})
	old := first.issuers[0]
	before, err := c.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldSVID := filepath.Join(t.TempDir(), "old-svid.pem")
	writeFile(t, oldSVID, string(testkit.PEM(before[0].Certificates...)))
	active, _ := activeAndRevoked(t, s, "")
	if active.X509KeyID != old || len(active.UpstreamRootIDs) != 1 {
		t.Fatalf("ca status: active key %+v; want the intermediate %s that signed the workload's SVID, under one upstream root", active, old)
	}
	sum := sha256.Sum256(root.Cert.Raw)
	rootID := hex.EncodeToString(sum[:])
	keysBefore := s.mustCLI("bundle", "show", "--format", "keys")

	// The upstream root: refused, whether named by its bundle ID or its key ID; nothing changes.
	for _, id := range []string{rootID, ca.X509KeyID(root.Cert)} {
		_, stderr, code := s.cli("ca", "revoke-key", id, "--reason", "upstream root leaked")
		if code == 0 || !strings.Contains(stderr, "root of the upstream authority") || !strings.Contains(stderr, "Revoke the compromised intermediate") {
			t.Fatalf("ca revoke-key of the upstream root %s: exit %d, %s; want a refusal naming what to do", id, code, stderr)
		}
	}
	if keys := s.mustCLI("bundle", "show", "--format", "keys"); keys != keysBefore {
		t.Fatalf("a refused revocation of the upstream root changed the bundle:\n%s\nwas:\n%s", keys, keysBefore)
	}

	// The intermediate, by its x509_key_id.
	out := s.mustCLI("ca", "revoke-key", old, "--reason", "intermediate key file copied off the host (INC-7)")
	done := time.Now()
	for _, want := range []string{"x509-intermediate key " + old, "still accepts the SVIDs it signed", "no CRL", "ledger query --signed-by " + old} {
		if !strings.Contains(out, want) {
			t.Fatalf("ca revoke-key of the intermediate printed (want %q):\n%s", want, out)
		}
	}
	waitfor.Condition(t, 30*time.Second, "an SVID of a new intermediate pushed to the workload", func() bool {
		last, _ := updates.since(done)
		return len(last.issuers) == 1 && last.issuers[0] != old
	})
	lastUpdate, after := updates.since(done)
	for _, up := range after {
		if slices.Contains(up.issuers, old) {
			t.Fatalf("pushed after the revocation returned: SVIDs signed by %v; the revoked intermediate %s is among them", up.issuers, old)
		}
	}
	last := lastUpdate.issuers
	svids, err := c.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chain := svids[0].Certificates
	if ca.SignerKeyID(chain[0]) != last[0] || slices.ContainsFunc(chain, func(c *x509.Certificate) bool { return ca.X509KeyID(c) == old }) {
		t.Fatalf("FetchX509SVIDs: leaf signed by %s; want %s, with no certificate of the revoked intermediate", ca.SignerKeyID(chain[0]), last[0])
	}
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(exampleTD, []*x509.Certificate{root.Cert})); err != nil {
		t.Fatalf("the new SVID does not verify to the upstream root: %v", err)
	}

	// The server: the revoked slot is revoked, a new intermediate active, the bundle still the root only.
	now, revoked := activeAndRevoked(t, s, active.X509ID)
	if !revoked || now.X509KeyID != last[0] || !now.InBundle || !slices.Equal(now.UpstreamRootIDs, []string{rootID}) {
		t.Fatalf("ca status after the revocation: revoked slot %v, active %+v; want a new intermediate under root %s", revoked, now, rootID)
	}
	if ids := pemKeyIDs(t, []byte(s.mustCLI("bundle", "show"))); !slices.Equal(ids, []string{ca.X509KeyID(root.Cert)}) {
		t.Fatalf("bundle after the revocation: %v; want the upstream root only", ids)
	}
	waitfor.Condition(t, 30*time.Second, "the agent's own SVID renewed under the new intermediate", func() bool {
		return agentSVIDIssuer(t, a) == last[0]
	})

	// ledger lookup of an SVID it signed says so, and that peers trusting the root still accept it.
	lookup := decodeJSON[struct {
		Known    bool   `json:"known"`
		ValidNow bool   `json:"valid_now"`
		Reason   string `json:"reason"`
	}](t, s.mustCLI("ledger", "lookup", oldSVID, "-o", "json"))
	if !lookup.Known || !strings.Contains(lookup.Reason, "x509-intermediate key "+old+", revoked by") || !strings.Contains(lookup.Reason, "peers that trust that root accept it") {
		t.Fatalf("ledger lookup of an SVID the revoked intermediate signed: %+v", lookup)
	}

	// Recorded, audited, listed; a second revocation is refused.
	got := decodeJSON[[]issuanceView](t, s.mustCLI("ledger", "query", "--signed-by", old, "-o", "json"))
	if !slices.ContainsFunc(got, func(v issuanceView) bool { return v.SPIFFEID == web && v.Owner == "alice" }) {
		t.Fatalf("ledger query --signed-by the revoked intermediate: %+v; want the workload's first SVID", got)
	}
	if audit := s.mustCLI("audit", "list", "--action", "ca.revoke-key", "-o", "json"); !strings.Contains(audit, "x509-intermediate key "+old) || !strings.Contains(audit, "INC-7") {
		t.Fatalf("audit of the revocation:\n%s", audit)
	}
	if _, stderr, code := s.cli("ca", "revoke-key", old, "--reason", "again"); code == 0 || !strings.Contains(stderr, "revoked") {
		t.Fatalf("revoking %s again: exit %d, %s", old, code, stderr)
	}
}

// TestRevokeUpstreamIntermediateOfAnotherServer: in a three-server cluster under one disk upstream, the
// leader's admin revokes a follower's active intermediate, which the leader knows only from the ledger
// (it signed the follower's server SVID). The follower, on applying the revocation, replaces it with a new
// intermediate from the upstream (audited ca.rotate by node:<id>); the bundle keeps the upstream root.
func TestRevokeUpstreamIntermediateOfAnotherServer(t *testing.T) {
	root := testkit.NewUpstreamCA(t, t.TempDir(), "root", 30*24*time.Hour, true)
	c := newTestCluster(t, 3)
	for _, s := range c.servers {
		s.appendConfig(t, "upstream_authority:\n  type: disk\n  disk:\n    cert_file: "+root.CertFile+"\n    key_file: "+root.KeyFile+"\n")
	}
	leader, follower, node, old := c.startWithFollower()
	out := c.servers[leader].mustCLI("ca", "revoke-key", old.X509KeyID, "--reason", "node disk image leaked", "-o", "json")
	res := decodeJSON[struct {
		Revoked struct {
			Kind     string `json:"kind"`
			SignerID string `json:"signer_id"`
			Node     string `json:"node"`
			NotAfter string `json:"not_after"`
		} `json:"revoked"`
		Note string `json:"note"`
	}](t, out)
	if r := res.Revoked; r.Kind != "x509-intermediate" || r.SignerID != old.X509KeyID || r.Node != node || r.NotAfter != "unknown" ||
		!strings.Contains(res.Note, "node "+node+" replaces the intermediate") || !strings.Contains(res.Note, "still accepts the SVIDs it signed") {
		t.Fatalf("revoke-key of another server's intermediate answered:\n%s", out)
	}
	eventually(t, 60*time.Second, "the follower to replace its revoked intermediate with a new one under the same root", func() bool {
		active, revoked := activeAndRevoked(t, follower, old.X509ID)
		return revoked && active.X509KeyID != "" && active.X509KeyID != old.X509KeyID && active.InBundle &&
			slices.Equal(active.UpstreamRootIDs, old.UpstreamRootIDs)
	})
	eventually(t, 60*time.Second, "the follower's retirement audited", func() bool {
		out, _, code := c.servers[leader].cli("audit", "list", "--action", "ca.rotate", "--object", node, "-o", "json")
		return code == 0 && strings.Contains(out, "x509-intermediate key "+old.X509KeyID+" revoked by")
	})
	for i, s := range c.servers {
		if ids := pemKeyIDs(t, []byte(s.mustCLI("bundle", "show"))); !slices.Equal(ids, []string{ca.X509KeyID(root.Cert)}) {
			t.Fatalf("server %d's bundle after the revocation: %v; want the upstream root only", i, ids)
		}
	}
}
