package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// x509Updates records every X.509 context the Workload API pushes to a watching workload.
type x509Updates struct {
	mu  sync.Mutex
	got []x509Update
}

type x509Update struct {
	at      time.Time
	signers []string // the SVIDs' signers (hex Authority Key Identifier of the chain's top)
	issuers []string // the keys that signed the SVIDs' leaves (under an upstream: the intermediates)
	roots   []string // the bundle's X.509 key IDs
}

func (u *x509Updates) OnX509ContextUpdate(c *workloadapi.X509Context) {
	up := x509Update{at: time.Now()}
	for _, s := range c.SVIDs {
		up.signers = append(up.signers, ca.SignerKeyID(s.Certificates[len(s.Certificates)-1]))
		up.issuers = append(up.issuers, ca.SignerKeyID(s.Certificates[0]))
	}
	if b, err := c.Bundles.GetX509BundleForTrustDomain(exampleTD); err == nil {
		for _, r := range b.X509Authorities() {
			up.roots = append(up.roots, ca.X509KeyID(r))
		}
	}
	u.mu.Lock()
	u.got = append(u.got, up)
	u.mu.Unlock()
}

func (u *x509Updates) OnX509ContextWatchError(error) {}

// since returns the latest update and every update received since t.
func (u *x509Updates) since(t time.Time) (last x509Update, after []x509Update) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.got {
		if !up.at.Before(t) {
			after = append(after, up)
		}
	}
	if len(u.got) > 0 {
		last = u.got[len(u.got)-1]
	}
	return last, after
}

// watchedWorkload starts an agent on s with one entry, spiffeID owned by alice, for this test process,
// and a go-spiffe client watching its X.509 contexts; it returns once the first one, with the SVID, came.
func watchedWorkload(t *testing.T, ctx context.Context, s *testServer, spiffeID string) (*testAgent, *workloadapi.Client, *x509Updates) {
	t.Helper()
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", spiffeID, "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, spiffeID)
	c := newClient(t, ctx, a.socket)
	updates := &x509Updates{}
	go func() { _ = c.WatchX509Context(ctx, updates) }()
	waitfor.Condition(t, 30*time.Second, "the first X.509 context pushed to the workload", func() bool {
		last, _ := updates.since(time.Time{})
		return len(last.signers) == 1
	})
	return a, c, updates
}

// agentSVIDIssuer is the key ID that signed the agent's own SVID (agent_svid.pem), "" while unreadable.
func agentSVIDIssuer(t *testing.T, a *testAgent) string {
	t.Helper()
	block, _ := pem.Decode(mustRead(t, filepath.Join(a.dir, "data", "agent_svid.pem")))
	if block == nil {
		return ""
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ""
	}
	return ca.SignerKeyID(leaf)
}

func pemKeyIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var ids []string
	for len(b) > 0 {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ca.X509KeyID(c))
	}
	return ids
}

// TestRevokeKeyEndToEnd, with real server and agent processes and a go-spiffe workload: the server's
// active X.509 key (its only one) is revoked with signet ca revoke-key; the workload is pushed an SVID of
// a new key and a bundle without the revoked one, and nothing it is pushed after the revocation returned
// chains to the revoked key; no bundle served (the agent API's, the Workload API's X.509 and JWT ones,
// bundle show) holds it; the agent renewed its own SVID with the new key; ledger query --signed-by lists
// what the revoked key signed, with owners. The slot's JWT key is revoked next. Bad input is refused, and
// with a policy asking a second admin, a revocation waits and its requester cannot approve it.
func TestRevokeKeyEndToEnd(t *testing.T) {
	s := newTestServer(t).start(t)
	const web = "spiffe://example.org/web"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, c, updates := watchedWorkload(t, ctx, s, web)
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, _ := updates.since(time.Time{})
	oldKey := first.signers[0]
	svids, err := c.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := svids[0].Certificates[0].SerialNumber.Text(16)
	tok, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
	if err != nil {
		t.Fatal(err)
	}
	st := decodeJSON[caStatusView](t, s.mustCLI("ca", "status", "-o", "json"))
	var oldKid string
	for _, k := range st.Keys {
		if k.State == "active" {
			oldKid = k.JWTKeyID
		}
	}

	// Bad input.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{oldKey}, "--reason is required"},
		{[]string{"00ff", "--reason", "leak"}, "key 00ff"},
		{[]string{oldKey, "--reason", "leak", "extra"}, "one key ID"},
	} {
		if _, stderr, code := s.cli(append([]string{"ca", "revoke-key"}, tc.args...)...); code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("ca revoke-key %q: exit %d, %s; want a refusal naming %q", tc.args, code, stderr, tc.want)
		}
	}

	out := s.mustCLI("ca", "revoke-key", oldKey, "--reason", "root key file copied off the host (INC-1)")
	done := time.Now()
	if !strings.Contains(out, "revoked") || !strings.Contains(out, "ledger query --signed-by "+oldKey) {
		t.Fatalf("ca revoke-key printed:\n%s", out)
	}
	waitfor.Condition(t, 30*time.Second, "an SVID of a new key and a bundle without the revoked one, pushed to the workload", func() bool {
		last, _ := updates.since(done)
		return len(last.signers) == 1 && last.signers[0] != oldKey && !slices.Contains(last.roots, oldKey) && len(last.roots) > 0
	})
	last, after := updates.since(done)
	for _, up := range after {
		if slices.Contains(up.signers, oldKey) || slices.Contains(up.roots, oldKey) {
			t.Fatalf("pushed after the revocation returned: SVIDs signed by %v, bundle %v; the revoked key %s is in it", up.signers, up.roots, oldKey)
		}
	}
	newKey := last.signers[0]
	// The go-spiffe X509Source holds an SVID of the new key that verifies against its bundle.
	eventually(t, 30*time.Second, "the X509Source's SVID of the new key", func() bool {
		svid, err := src.GetX509SVID()
		return err == nil && ca.SignerKeyID(svid.Certificates[0]) == newKey
	})
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, src); err != nil {
		t.Fatalf("the X509Source's SVID does not verify against its bundle: %v", err)
	}
	if b, err := src.GetX509BundleForTrustDomain(exampleTD); err != nil || slices.ContainsFunc(b.X509Authorities(), func(r *x509.Certificate) bool { return ca.X509KeyID(r) == oldKey }) {
		t.Fatalf("the X509Source's bundle holds the revoked key (%v)", err)
	}

	// Every bundle served lacks it; the agent's own SVID is renewed with the new key.
	if keys := s.mustCLI("bundle", "show", "--format", "keys"); strings.Contains(keys, oldKey) || !strings.Contains(keys, newKey) {
		t.Fatalf("bundle show --format keys after the revocation:\n%s", keys)
	}
	if ids := pemKeyIDs(t, []byte(s.mustCLI("bundle", "show"))); slices.Contains(ids, oldKey) {
		t.Fatalf("bundle show (pem) still holds the revoked key: %v", ids)
	}
	agentData := filepath.Join(a.dir, "data")
	waitfor.Condition(t, 30*time.Second, "the agent's bundle (agent API) without the revoked key and its SVID renewed with the new key", func() bool {
		return agentSVIDIssuer(t, a) == newKey && !slices.Contains(pemKeyIDs(t, mustRead(t, filepath.Join(agentData, "bundle.pem"))), oldKey)
	})
	bundles, err := c.FetchX509Bundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := bundles.GetX509BundleForTrustDomain(exampleTD); slices.ContainsFunc(b.X509Authorities(), func(r *x509.Certificate) bool { return ca.X509KeyID(r) == oldKey }) {
		t.Fatal("FetchX509Bundles still holds the revoked key")
	}

	// What the revoked key signed, with owners: the workload's first SVID, the agent's SVID.
	got := decodeJSON[[]issuanceView](t, s.mustCLI("ledger", "query", "--signed-by", oldKey, "--valid-at", "now", "-o", "json"))
	if !slices.ContainsFunc(got, func(r issuanceView) bool { return r.ID == oldSerial && r.Owner == "alice" && r.SPIFFEID == web }) ||
		!slices.ContainsFunc(got, func(r issuanceView) bool { return r.SPIFFEID == a.id && r.Owner == "alice" }) {
		t.Fatalf("ledger query --signed-by %s: %+v; want the workload's SVID %s and the agent's, owned by alice", oldKey, got, oldSerial)
	}
	if audit := s.mustCLI("audit", "list", "--action", "ca.revoke-key", "-o", "json"); !strings.Contains(audit, "INC-1") {
		t.Fatalf("the revocation is not in the audit log with its reason: %s", audit)
	}

	// Its slot's JWT key: dropped from the agent's cache; the next JWT-SVID is signed by the new kid.
	s.mustCLI("ca", "revoke-key", oldKid, "--reason", "it sat next to the root key")
	waitfor.Condition(t, 30*time.Second, "a JWT bundle without the revoked kid", func() bool {
		jb, err := c.FetchJWTBundles(ctx)
		if err != nil {
			return false
		}
		b, err := jb.GetJWTBundleForTrustDomain(exampleTD)
		if err != nil {
			return false
		}
		_, there := b.FindJWTAuthority(oldKid)
		return !there
	})
	tok2, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if tok2.Marshal() == tok.Marshal() || jwtKid(t, tok2.Marshal()) == oldKid {
		t.Fatalf("JWT-SVID after the revocation of %s is signed by %s (the cached one again: %v)", oldKid, jwtKid(t, tok2.Marshal()), tok2.Marshal() == tok.Marshal())
	}
	if _, stderr, code := s.cli("ca", "revoke-key", oldKid, "--reason", "again"); code == 0 || !strings.Contains(stderr, "revoked") {
		t.Fatalf("revoking %s again: exit %d, %s", oldKid, code, stderr)
	}

	// With a policy asking a second admin: pending, and not approved by the admin who asked.
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, policyFile, "rules:\n  - name: two-person-revoke\n    approval_when: action == \"ca.revoke-key\"\n")
	s.mustCLI("policy", "set", policyFile, "--reason", "incident drill")
	out = s.mustCLI("ca", "revoke-key", newKey, "--reason", "drill")
	if !strings.Contains(out, "waits for a second admin") || !strings.Contains(out, "two-person-revoke") {
		t.Fatalf("revocation under a two-person policy printed:\n%s", out)
	}
	if _, stderr, code := s.cli("ca", "revoke-key", newKey, "--approve"); code == 0 || !strings.Contains(stderr, "another admin approves it") {
		t.Fatalf("self-approval: exit %d, %s", code, stderr)
	}
	if keys := s.mustCLI("bundle", "show", "--format", "keys"); !strings.Contains(keys, newKey) {
		t.Fatalf("a pending revocation took the key out of the bundle:\n%s", keys)
	}
}

// startWithFollower starts c's servers and returns the leader's index, a follower, its node ID and its
// active CA key.
func (c *testCluster) startWithFollower() (leader int, follower *testServer, node string, active caKeyView) {
	c.startAll()
	leader = c.leaderIndex(0, 1, 2)
	f := (leader + 1) % 3
	follower, node = c.servers[f], c.nodeID(f)
	active, _ = activeAndRevoked(c.t, follower, "")
	return leader, follower, node, active
}

// activeAndRevoked reads s's ca status: its active key, and whether the slot of x509ID is revoked (a
// zero key and false while s does not answer).
func activeAndRevoked(t testing.TB, s *testServer, x509ID string) (active caKeyView, revoked bool) {
	st, _, code := s.cli("ca", "status", "-o", "json")
	if code != 0 {
		return caKeyView{}, false
	}
	for _, k := range decodeJSON[caStatusView](t, st).Keys {
		revoked = revoked || (k.X509ID == x509ID && k.State == "revoked")
		if k.State == "active" {
			active = k
		}
	}
	return active, revoked
}

// jwtKid returns the kid of a JWT-SVID's header (not verified).
func jwtKid(t *testing.T, token string) string {
	t.Helper()
	h, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON[struct {
		Kid string `json:"kid"`
	}](t, string(b)).Kid
}

// TestRevokeKeyOfAnotherServer: in a three-server cluster, the leader's admin revokes a follower's active
// X.509 key. It leaves every server's bundle at once; the follower, on applying the revocation, activates
// a fresh key, publishes it and prunes the revoked slot (audited ca.rotate by node:<id>), and goes on
// serving: writes through it reach the leader again.
func TestRevokeKeyOfAnotherServer(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, follower, node, old := c.startWithFollower()
	out := c.servers[leader].mustCLI("ca", "revoke-key", old.X509ID, "--reason", "node disk image leaked")
	if !strings.Contains(out, "node "+node+" replaces the key") {
		t.Fatalf("revoke-key of another server's key printed:\n%s", out)
	}
	for i, s := range c.servers {
		if keys := s.mustCLI("bundle", "show", "--format", "keys"); strings.Contains(keys, old.X509ID) {
			t.Fatalf("server %d's bundle still holds the revoked key:\n%s", i, keys)
		}
	}
	eventually(t, 60*time.Second, "the follower to replace its revoked key, the successor in every server's bundle", func() bool {
		active, revoked := activeAndRevoked(t, follower, old.X509ID)
		if !revoked || active.X509ID == "" || active.X509ID == old.X509ID || !active.InBundle {
			return false
		}
		keys, _, code := c.servers[leader].cli("ca", "status", "-o", "json")
		return code == 0 && strings.Contains(keys, active.X509ID)
	})
	eventually(t, 60*time.Second, "the follower's retirement audited", func() bool {
		out, _, code := c.servers[leader].cli("audit", "list", "--action", "ca.rotate", "--object", node, "-o", "json")
		return code == 0 && strings.Contains(out, "revoked by")
	})
	attempt := 0
	eventually(t, 60*time.Second, "a write through the follower to reach the leader", func() bool {
		attempt++
		_, _, code := follower.cli("owner", "add", fmt.Sprintf("bob%d", attempt))
		return code == 0
	})
}
