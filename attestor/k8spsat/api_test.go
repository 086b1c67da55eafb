package k8spsat_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/attestor/k8spsat"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/internal/k8stest"
	"github.com/signet-id/signet/selector"
)

func apiAttestor(t *testing.T, api *k8stest.APIServer) *k8spsat.Attestor {
	t.Helper()
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{{Name: "prod", API: api.RESTConfig(),
		Owner: "platform", ServiceAccountAllowList: []string{"signet:signet-agent"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TokenReview validates the token; the pod and node are read, and their labels become selectors.
func TestTokenReviewAttestation(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	api := k8stest.NewAPIServer(t, is)
	api.AddPod(agentPod, map[string]string{"app": "signet-agent"}, map[string]string{"topology.kubernetes.io/zone": "eu-west-1a"})
	a := apiAttestor(t, api)
	// A token without the node claims (Kubernetes before 1.30): the pod names the node.
	noNode := agentPod
	noNode.NodeName, noNode.NodeUID = "", ""
	for name, pod := range map[string]k8stest.Pod{"with node claims": agentPod, "without node claims": noNode} {
		t.Run(name, func(t *testing.T) {
			att, err := a.Attest(context.Background(), wire(t, "prod", is.Token(t, pod, "signet-server", now, time.Hour)), now)
			if err != nil {
				t.Fatal(err)
			}
			if want := "spiffe://example.org/signet/agent/k8s_psat/prod/" + agentPod.NodeUID; att.AgentID.String() != want {
				t.Fatalf("agent ID %s, want %s", att.AgentID, want)
			}
			for _, s := range []string{"k8s_psat:cluster:prod", "k8s_psat:agent_pod_label:app:signet-agent",
				"k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a", "k8s_psat:agent_node_name:worker-1",
				"k8s_psat:agent_node_uid:" + agentPod.NodeUID} {
				if !has(att.Selectors, s) {
					t.Errorf("selectors %v lack %s", att.Selectors, s)
				}
			}
			if att.Owner != "platform" || !strings.Contains(att.Reason, "signet:signet-agent") {
				t.Fatalf("attestation %+v", att)
			}
		})
	}
}

// TokenReview's refusals, and the pod and node checks, each with its reason.
func TestTokenReviewRefusals(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.ES256)
	other := k8stest.NewIssuer(t, "https://other.example", jose.ES256)
	api := k8stest.NewAPIServer(t, is)
	api.AddPod(agentPod, nil, nil)
	a := apiAttestor(t, api)

	deleted := agentPod
	deleted.Name, deleted.UID = "signet-agent-gone", "11111111-2222-3333-4444-555555555555"
	replaced := agentPod
	replaced.Name = "signet-agent-replaced"
	api.AddPod(replaced, nil, nil)
	replaced.UID = "66666666-7777-8888-9999-000000000000" // the token's pod was deleted and a new one took its name
	otherSA := agentPod
	otherSA.ServiceAccount = "default"
	tests := []struct {
		name  string
		token string
		want  error
		says  string
	}{
		{"another service account", is.Token(t, otherSA, "signet-server", now, time.Hour), nodeattest.ErrRefused, "signet:default is not in"},
		{"expired", is.Token(t, agentPod, "signet-server", now, -time.Minute), nodeattest.ErrRefused, "expired"},
		{"wrong audience", is.Token(t, agentPod, "vault", now, time.Hour), nodeattest.ErrRefused, `want "signet-server"`},
		{"not a JWT", "garbage", nodeattest.ErrMalformed, "not a signed JWT"},
		{"another cluster's token", other.Token(t, agentPod, "signet-server", now, time.Hour), nodeattest.ErrRefused, "invalid bearer token"},
		{"deleted pod", is.Token(t, deleted, "signet-server", now, time.Hour), nodeattest.ErrRefused, "no longer exists"},
		{"replaced pod", is.Token(t, replaced, "signet-server", now, time.Hour), nodeattest.ErrRefused, "deleted pod"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Attest(context.Background(), wire(t, "prod", tc.token), now)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Attest: %v; want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	// A pod deleted after its token was issued.
	tok := is.Token(t, agentPod, "signet-server", now, time.Hour)
	api.DeletePod(agentPod.Namespace, agentPod.Name)
	if _, err := a.Attest(context.Background(), wire(t, "prod", tok), now); !errors.Is(err, nodeattest.ErrRefused) || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("token of a deleted pod: %v", err)
	}
	// The server's own credentials refused: not the token's fault, the agent retries.
	api.SetBearerToken("rotated")
	if _, err := a.Attest(context.Background(), wire(t, "prod", tok), now); !errors.Is(err, nodeattest.ErrUnavailable) || !strings.Contains(err.Error(), "TokenReview") {
		t.Fatalf("API refusing the server's credentials: %v; want ErrUnavailable naming TokenReview", err)
	}
}

// A kubeconfig's current context reaches the API server with its CA and token; credentials Signet
// cannot use (an exec plugin) are refused with the reason.
func TestLoadKubeconfig(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	api := k8stest.NewAPIServer(t, is)
	api.AddPod(agentPod, nil, nil)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	api.WriteKubeconfig(t, path)
	cfg, err := k8spsat.LoadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{{Name: "prod", API: cfg,
		ServiceAccountAllowList: []string{"signet:signet-agent"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Attest(context.Background(), wire(t, "prod", is.Token(t, agentPod, "signet-server", now, time.Hour)), now); err != nil {
		t.Fatalf("attestation through the kubeconfig's API: %v", err)
	}
	execCfg := `{"current-context":"c","contexts":[{"name":"c","context":{"cluster":"k","user":"u"}}],
"clusters":[{"name":"k","cluster":{"server":"https://127.0.0.1:1"}}],"users":[{"name":"u","user":{"exec":{"command":"aws"}}}]}`
	if err := os.WriteFile(path, []byte(execCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := k8spsat.LoadKubeconfig(path); err == nil || !strings.Contains(err.Error(), "exec") {
		t.Fatalf("exec credentials: %v; want an error naming exec", err)
	}
}

// The attestations reaching the cluster's API are bounded: past the burst, Unavailable (the agent
// retries) until the bucket refills, by the attestation's clock.
func TestAPIRateLimit(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	api := k8stest.NewAPIServer(t, is)
	api.AddPod(agentPod, nil, nil)
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{{Name: "prod", API: api.RESTConfig(),
		ServiceAccountAllowList: []string{"signet:signet-agent"}, APIRate: 1, APIBurst: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	p := wire(t, "prod", is.Token(t, agentPod, "signet-server", now, time.Hour))
	for i := range 2 {
		if _, err := a.Attest(context.Background(), p, now); err != nil {
			t.Fatalf("attestation %d within the burst: %v", i+1, err)
		}
	}
	if _, err := a.Attest(context.Background(), p, now); !errors.Is(err, nodeattest.ErrUnavailable) || !strings.Contains(err.Error(), "attestations per second") {
		t.Fatalf("attestation past the burst: %v; want ErrUnavailable naming the limit", err)
	}
	if _, err := a.Attest(context.Background(), p, now.Add(time.Second)); err != nil {
		t.Fatalf("attestation a second later: %v", err)
	}
}

// Labels are bounded: at most MaxLabels of a pod (the first by key), and a label too long for a
// selector is left out (and does not count).
func TestLabelSelectorsBounded(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	api := k8stest.NewAPIServer(t, is)
	labels := map[string]string{"a-long": strings.Repeat("v", selector.MaxLength)}
	for i := range k8spsat.MaxLabels + 10 {
		labels[fmt.Sprintf("l%03d", i)] = "x"
	}
	api.AddPod(agentPod, labels, nil)
	att, err := apiAttestor(t, api).Attest(context.Background(), wire(t, "prod", is.Token(t, agentPod, "signet-server", now, time.Hour)), now)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range att.Selectors {
		if strings.HasPrefix(s.Value, "agent_pod_label:") {
			n++
			if strings.HasPrefix(s.Value, "agent_pod_label:a-long") || s.Value == fmt.Sprintf("agent_pod_label:l%03d:x", k8spsat.MaxLabels) {
				t.Errorf("selector %s is past the bound", s)
			}
		}
	}
	if n != k8spsat.MaxLabels {
		t.Fatalf("%d pod label selectors, want %d", n, k8spsat.MaxLabels)
	}
}
