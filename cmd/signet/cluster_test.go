package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var myUID = "unix:uid:" + strconv.Itoa(os.Getuid())

// spiffeIDs fetches the X.509-SVIDs served on socket and returns their SPIFFE IDs, sorted.
func spiffeIDs(t testing.TB, socket string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range svids {
		ids = append(ids, s.ID.String())
	}
	slices.Sort(ids)
	return ids, nil
}

// waitForIDs waits until socket serves exactly the SPIFFE IDs want, logging each different answer on
// the way (so that a timeout shows what was served instead).
func waitForIDs(t testing.TB, socket string, want ...string) {
	t.Helper()
	slices.Sort(want)
	last := "nothing fetched yet"
	eventually(t, 15*time.Second, fmt.Sprintf("socket %s to serve %v", socket, want), func() bool {
		ids, err := spiffeIDs(t, socket)
		if err == nil && slices.Equal(ids, want) {
			return true
		}
		if got := fmt.Sprintf("%v (err %v)", ids, err); got != last {
			t.Logf("socket %s serves %s, want %v", socket, got, want)
			last = got
		}
		return false
	})
}

// TestServerAndTwoAgents: a server and two agents as separate processes; each agent serves only its own
// entries; a new entry reaches its agent without a restart; node aliases; the ledger names the agent.
func TestServerAndTwoAgents(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	s.mustCLI("owner", "add", "bob")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	b := s.newAgent(t, "").start(t, s.token("bob"))
	if a.id == b.id || !strings.HasPrefix(a.id, "spiffe://example.org/signet/agent/join_token/") {
		t.Fatalf("agent IDs %q and %q", a.id, b.id)
	}

	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/api", "--selector", myUID, "--owner", "bob", "--purpose", "api", "--parent-id", b.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")
	waitForIDs(t, b.socket, "spiffe://example.org/api")

	// A node alias: every node vouched for by alice; an entry under it reaches alice's agent only.
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/nodes/alice", "--selector", "join_token:owner:alice",
		"--owner", "alice", "--purpose", "alice's nodes", "--parent-id", "spiffe://example.org/signet/server")
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/metrics", "--selector", myUID, "--owner", "alice",
		"--purpose", "metrics on alice's nodes", "--parent-id", "spiffe://example.org/nodes/alice")
	waitForIDs(t, a.socket, "spiffe://example.org/web", "spiffe://example.org/metrics")
	waitForIDs(t, b.socket, "spiffe://example.org/api")

	// A node alias with a workload selector, or a workload entry with a node selector, is refused.
	if _, stderr, code := s.cli("entry", "create", "--spiffe-id", "spiffe://example.org/x", "--selector", "join_token:owner:alice",
		"--owner", "alice", "--purpose", "p", "--parent-id", a.id); code == 0 || !strings.Contains(stderr, "not a workload selector") {
		t.Fatalf("node selector on a workload entry: exit %d, %s", code, stderr)
	}

	recs := decodeJSON[[]issuanceView](t, s.mustCLI("ledger", "query", "--agent", a.id, "-o", "json"))
	var agentSVID, web bool
	for _, r := range recs {
		agentSVID = agentSVID || (r.SPIFFEID == a.id && r.NodeAttestation == "join_token" && r.Owner == "alice")
		web = web || (r.SPIFFEID == "spiffe://example.org/web" && r.Agent == a.id && r.NodeAttestation == "join_token")
	}
	if !agentSVID || !web {
		t.Fatalf("ledger --agent lacks the agent SVID (%v) or the workload SVID (%v): %+v", agentSVID, web, recs)
	}
	if out := s.mustCLI("healthcheck", "--socket", a.socket); !strings.Contains(out, "SERVING") {
		t.Fatalf("agent healthcheck: %s", out)
	}
}

// TestRotationObservedThroughX509Source: a 1m SVID (the shortest the server accepts) is rotated by the
// agent and the go-spiffe X509Source sees the new one.
func TestRotationObservedThroughX509Source(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/short", "--selector", myUID, "--owner", "alice",
		"--purpose", "rotation", "--parent-id", a.id, "--x509-ttl", "1m")
	waitForIDs(t, a.socket, "spiffe://example.org/short")

	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-src.Updated():
		case <-ctx.Done():
			t.Fatal("no rotated SVID within 80s")
		}
		cur, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if cur.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0 {
			// Rotated before the old one expired, at about half its life.
			if !time.Now().Before(first.Certificates[0].NotAfter) {
				t.Fatalf("rotation came after the old SVID expired")
			}
			return
		}
	}
}

// TestRestarts: an agent restarts without a token and serves again; with the server down the agent
// keeps serving its cache; after the server restarts, new entries reach the agent again.
func TestRestarts(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	// Agent restart: no join token needed; the same agent ID.
	a.stop()
	id := a.id
	start := time.Now()
	a.start(t, "")
	if a.id != id {
		t.Fatalf("agent came back as %s, was %s", a.id, id)
	}
	waitForIDs(t, a.socket, "spiffe://example.org/web")
	t.Logf("agent restart to first SVID: %s", time.Since(start).Round(time.Millisecond))

	// Server down: cached SVIDs are still served.
	s.stop()
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	// Server back (same data dir): the agent reconnects and gets new entries.
	s.start(t)
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/new", "--selector", myUID, "--owner", "alice", "--purpose", "new", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web", "spiffe://example.org/new")
}

// TestEvictAndBan: an evicted agent stops being served at once and must attest again; a banned one
// cannot attest again.
func TestEvictAndBan(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	s.mustCLI("agent", "evict", a.id)
	if code := a.waitExit(15 * time.Second); code == 0 || !strings.Contains(a.stderr.String(), "evicted or banned") {
		t.Fatalf("evicted agent: exit %d\n%s", code, a.stderr.String())
	}
	// Without a new token it cannot come back.
	if code, stderr := a.startFailing(t, ""); code == 0 || !strings.Contains(stderr, "--join-token") {
		t.Fatalf("evicted agent restarted without token: exit %d, %s", code, stderr)
	}
	// A fresh token for the same ID (the token names it) lets it attest again.
	a.start(t, s.token("alice", "--spiffe-id", a.id))
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	s.mustCLI("agent", "ban", a.id)
	if code := a.waitExit(15 * time.Second); code == 0 {
		t.Fatal("banned agent kept running")
	}
	if code, stderr := a.startFailing(t, s.token("alice", "--spiffe-id", a.id)); code == 0 || !strings.Contains(stderr, "banned") {
		t.Fatalf("banned agent re-attesting: exit %d, %s", code, stderr)
	}
	out := decodeJSON[[]agentView](t, s.mustCLI("agent", "list", "-o", "json"))
	if len(out) != 1 || !out[0].Banned {
		t.Fatalf("agent list: %+v", out)
	}
}

// TestJoinTokenBadInput: reused, expired, unknown and malformed tokens are refused with a clear error and
// a non-zero exit.
func TestJoinTokenBadInput(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	used := s.token("alice")
	s.newAgent(t, "").start(t, used)
	expired := s.token("alice", "--ttl", "1s")
	// Wait until the server itself holds the token's one-second life over: asking review does not use
	// the token up, as an attestation attempt before then would.
	expiredID, _, _ := strings.Cut(expired, ".")
	eventually(t, 20*time.Second, "the server to report token "+expiredID+" expired", func() bool {
		for _, it := range decodeJSON[[]reviewView](t, s.mustCLI("review", "-o", "json")) {
			if it.ID == expiredID && slices.ContainsFunc(it.Findings, func(f string) bool { return strings.Contains(f, "expired unused") }) {
				return true
			}
		}
		return false
	})
	tests := []struct {
		name, token, want string
	}{
		{"reused", used, "already used"},
		{"expired", expired, "expired"},
		{"unknown", "0123456789abcdef.c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "unknown token"},
		{"malformed", "not-a-token", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := s.newAgent(t, "").startFailing(t, tc.token)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q does not say %q", code, stderr, tc.want)
			}
			if strings.Contains(stderr, strings.SplitN(tc.token, ".", 2)[len(strings.SplitN(tc.token, ".", 2))-1]) && strings.Contains(tc.token, ".") {
				t.Fatalf("the token secret appears in the error: %s", stderr)
			}
		})
	}
}

// TestAgentServerUnreachable: an agent whose server does not answer logs clear errors and keeps
// retrying instead of crashing.
func TestAgentServerUnreachable(t *testing.T) {
	s := newTestServer(t) // configured, never started
	writeFile(t, s.bundlePath, "")
	a := s.newAgent(t, "insecure_bootstrap: true\n")
	a.proc = startProc(t, "agent", "agent", "--config", a.config, "--join-token", "0123456789abcdef.secret")
	eventually(t, 20*time.Second, "a retry message", func() bool {
		return strings.Count(a.stderr.String(), "server unreachable; retrying attestation") >= 2
	})
	if !a.running() {
		t.Fatalf("agent exited instead of retrying:\n%s", a.stderr.String())
	}
}

// TestWorkloadAPIWithoutEntryOnAgent: a workload with no entry on this agent is denied.
func TestWorkloadAPIWithoutEntryOnAgent(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	_, err := spiffeIDs(t, a.socket)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("fetch with no entry: %v, want PermissionDenied", err)
	}
	// The verified chain: an entry appears and its SVID verifies against the server's bundle.
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+a.socket))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(x.SVIDs[0].Certificates, x.Bundles); err != nil {
		t.Fatalf("SVID from a split deployment does not verify: %v", err)
	}
}
