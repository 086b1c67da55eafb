package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/internal/k8stest"
)

// TestK8sPSATEndToEnd: real server and agent processes; the server reaches a local Kubernetes API
// (TokenReview, pods, nodes) through a kubeconfig; the agent attests with a projected-style token file
// written by the test, no join token. Its ID is the node's; a node alias by k8s_psat:cluster parents an
// entry that go-spiffe then fetches; the ledger and 'ledger lookup' of the agent SVID show the
// attestation type and its selectors. Without an SVID, or evicted while running, the agent attests
// again by itself under the same ID; banned, it is refused and exits. An agent whose service account is not allowed is refused with
// the reason, and the refusal is in the audit log.
func TestK8sPSATEndToEnd(t *testing.T) {
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.ES256)
	api := k8stest.NewAPIServer(t, is)
	pod := k8stest.Pod{Namespace: "signet", ServiceAccount: "signet-agent", Name: "signet-agent-x7k2p",
		UID: "0c8f3c55-0d3b-4f5e-9d0e-2d7d7f0a1b11", NodeName: "worker-1", NodeUID: "9a4e1f2c-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}
	api.AddPod(pod, map[string]string{"app": "signet-agent"}, map[string]string{"kubernetes.io/os": "linux"})
	intruder := k8stest.Pod{Namespace: "default", ServiceAccount: "default", Name: "curious", UID: "c0ffee00-0000-4000-8000-000000000001",
		NodeName: "worker-1", NodeUID: pod.NodeUID}
	api.AddPod(intruder, nil, nil)

	s := newTestServer(t)
	kubeconfig := filepath.Join(s.dir, "kubeconfig")
	api.WriteKubeconfig(t, kubeconfig)
	writeFile(t, s.config, string(mustRead(t, s.config))+fmt.Sprintf(`node_attestors:
  k8s_psat:
    clusters:
      - name: prod
        service_account_allow_list: ["signet:signet-agent"]
        kubeconfig: %s
`, kubeconfig))
	s.start(t)
	s.mustCLI("owner", "add", "alice")

	// psatAgent writes p's token (a new one each call) where the agent's config says it is mounted.
	tokenDir := t.TempDir()
	psatAgent := func(p k8stest.Pod) *testAgent {
		tokenPath := filepath.Join(tokenDir, p.Name)
		writeFile(t, tokenPath, is.Token(t, p, "signet-server", time.Now(), time.Hour))
		return s.newAgent(t, fmt.Sprintf("node_attestor:\n  k8s_psat:\n    cluster: prod\n    token_path: %s\n", tokenPath))
	}
	a := psatAgent(pod).startWith(t, nil)
	if want := "spiffe://example.org/signet/agent/k8s_psat/prod/" + pod.NodeUID; a.id != want {
		t.Fatalf("agent ID %s, want %s", a.id, want)
	}

	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/nodes/prod", "--selector", "k8s_psat:cluster:prod",
		"--owner", "alice", "--purpose", "every node of cluster prod", "--parent-id", "spiffe://example.org/signet/server")
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice",
		"--purpose", "web on prod's nodes", "--parent-id", "spiffe://example.org/nodes/prod")
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	wantSels := []string{"k8s_psat:cluster:prod", "k8s_psat:agent_sa:signet-agent", "k8s_psat:agent_node_uid:" + pod.NodeUID,
		"k8s_psat:agent_pod_label:app:signet-agent", "k8s_psat:agent_node_label:kubernetes.io/os:linux"}
	recs := s.ledgerRecords(t, a.id)
	if len(recs) == 0 || recs[0].NodeAttestation != "k8s_psat" || recs[0].Owner != "signet" {
		t.Fatalf("ledger records of the agent SVID: %+v", recs)
	}
	for _, sel := range wantSels {
		if !slices.Contains(recs[0].Selectors, sel) {
			t.Errorf("ledger record selectors %v lack %s", recs[0].Selectors, sel)
		}
	}
	looked, table := s.lookup(t, filepath.Join(a.dir, "data", "agent_svid.pem"))
	if !looked.Known || !strings.Contains(table, "k8s_psat") || !strings.Contains(table, "k8s_psat:cluster:prod") {
		t.Fatalf("ledger lookup of the agent SVID: %+v\n%s", looked, table)
	}

	if out := s.mustCLI("agent", "show", a.id); !strings.Contains(out, "k8s_psat") || !strings.Contains(out, "k8s_psat:agent_node_name:worker-1") {
		t.Fatalf("agent show:\n%s", out)
	}

	// Re-attestation: an agent without an SVID (here removed as a revoked agent removes it; in
	// production, one that expired) attests again with a new token, under the same agent ID.
	a.stop()
	for _, f := range []string{"agent_svid.pem", "agent_svid.key"} {
		if err := os.Remove(filepath.Join(a.dir, "data", f)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(tokenDir, pod.Name), is.Token(t, pod, "signet-server", time.Now(), time.Hour))
	a.startWith(t, nil)
	if want := "spiffe://example.org/signet/agent/k8s_psat/prod/" + pod.NodeUID; a.id != want {
		t.Fatalf("re-attested agent ID %s, want %s", a.id, want)
	}
	waitForIDs(t, a.socket, "spiffe://example.org/web")
	if n := len(s.ledgerRecords(t, a.id)); n < 2 {
		t.Fatalf("%d agent SVID records after re-attestation, want 2", n)
	}

	// Evicted while running: the agent attests again by itself (a new token in the file), same ID; once
	// banned, its attestation is refused and it exits saying so.
	writeFile(t, filepath.Join(tokenDir, pod.Name), is.Token(t, pod, "signet-server", time.Now(), time.Hour))
	before := len(s.ledgerRecords(t, a.id))
	s.mustCLI("agent", "evict", a.id)
	eventually(t, 30*time.Second, "the evicted agent attested again", func() bool { return len(s.ledgerRecords(t, a.id)) > before })
	waitForIDs(t, a.socket, "spiffe://example.org/web")
	s.mustCLI("agent", "ban", a.id)
	if code := a.waitExit(30 * time.Second); code == 0 || !strings.Contains(a.stderr.String(), "banned") {
		t.Fatalf("banned agent: exit %d\n%s", code, a.stderr.String())
	}

	// Another service account's token: refused with the reason, audited, no agent.
	code, stderr := psatAgent(intruder).startFailing(t, "")
	if code == 0 || !strings.Contains(stderr, "default:default is not in the cluster's service_account_allow_list") {
		t.Fatalf("agent with another service account: exit %d\n%s", code, stderr)
	}
	eventually(t, 10*time.Second, "the refused attestation in the audit log", func() bool {
		out, _, code := s.cli("audit", "list", "--action", "agent.attest", "-o", "json")
		return code == 0 && strings.Contains(out, "k8s_psat/prod/default:default") && strings.Contains(out, "service_account_allow_list")
	})
}
