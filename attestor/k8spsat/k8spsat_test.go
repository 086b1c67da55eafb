package k8spsat_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/attestor/k8spsat"
	"github.com/signet-id/signet/attestor/k8spsat/payload"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/internal/k8stest"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

var agentPod = k8stest.Pod{Namespace: "signet", ServiceAccount: "signet-agent", Name: "signet-agent-x7k2p",
	UID: "0c8f3c55-0d3b-4f5e-9d0e-2d7d7f0a1b11", NodeName: "worker-1", NodeUID: "9a4e1f2c-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}

func wire(tb testing.TB, cluster, token string) []byte {
	tb.Helper()
	b, err := json.Marshal(payload.Wire{Cluster: cluster, Token: token})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func jwksFile(tb testing.TB, is *k8stest.Issuer) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "jwks.json")
	if err := os.WriteFile(p, is.JWKS(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func has(sels []selector.Selector, s string) bool {
	return slices.ContainsFunc(sels, func(x selector.Selector) bool { return x.String() == s })
}

// Offline validation against the issuer's keys (RS256 and ES256), from a file and through OIDC
// discovery: the agent ID is the node's, and the selectors name cluster, service account, pod and node.
func TestOfflineAttestation(t *testing.T) {
	now := time.Now()
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", alg)
		disc := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/.well-known/openid-configuration":
				_, _ = w.Write([]byte(`{"issuer":"` + is.URL + `","jwks_uri":"https://` + r.Host + `/openid/v1/jwks"}`))
			case "/openid/v1/jwks":
				_, _ = w.Write(is.JWKS())
			default:
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(disc.Close)
		for name, cc := range map[string]k8spsat.ClusterConfig{
			"jwks_file": {JWKSFile: jwksFile(t, is)},
			"discovery": {JWKSURL: disc.URL + "/.well-known/openid-configuration", HTTPClient: disc.Client()},
		} {
			t.Run(string(alg)+"/"+name, func(t *testing.T) {
				cc.Name, cc.Issuer, cc.ServiceAccountAllowList = "prod", is.URL, []string{"signet:signet-agent"}
				a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{cc}})
				if err != nil {
					t.Fatal(err)
				}
				att, err := a.Attest(context.Background(), wire(t, "prod", is.Token(t, agentPod, "signet-server", now, time.Hour)), now)
				if err != nil {
					t.Fatal(err)
				}
				if want := "spiffe://example.org/signet/agent/k8s_psat/prod/" + agentPod.NodeUID; att.AgentID.String() != want {
					t.Fatalf("agent ID %s, want %s", att.AgentID, want)
				}
				for _, s := range []string{"k8s_psat:cluster:prod", "k8s_psat:agent_ns:signet", "k8s_psat:agent_sa:signet-agent",
					"k8s_psat:agent_pod_name:" + agentPod.Name, "k8s_psat:agent_pod_uid:" + agentPod.UID,
					"k8s_psat:agent_node_name:worker-1", "k8s_psat:agent_node_uid:" + agentPod.NodeUID} {
					if !has(att.Selectors, s) {
						t.Errorf("selectors %v lack %s", att.Selectors, s)
					}
				}
				for _, s := range att.Selectors {
					key, value, _ := strings.Cut(s.Value, ":")
					if check, ok := k8spsat.SelectorKeys()[key]; s.Type != k8spsat.Type || !ok || check(value) != nil {
						t.Errorf("selector %s is not of a declared key with a valid value", s)
					}
				}
				if !att.Reattestable || att.Owner != k8spsat.DefaultOwner || att.ConsumeJoinToken != "" {
					t.Fatalf("attestation %+v: want reattestable, owner %s, nothing consumed", att, k8spsat.DefaultOwner)
				}
			})
		}
	}
}

// Every refusal says why; each wraps ErrRefused (audited), but garbage, which is ErrMalformed.
func TestOfflineRefusals(t *testing.T) {
	now := time.Now()
	prod := k8stest.NewIssuer(t, "https://prod.example", jose.RS256)
	staging := k8stest.NewIssuer(t, "https://staging.example", jose.ES256)
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{
		{Name: "prod", Issuer: prod.URL, JWKSFile: jwksFile(t, prod), ServiceAccountAllowList: []string{"signet:signet-agent"}},
		{Name: "staging", Issuer: staging.URL, JWKSFile: jwksFile(t, staging), ServiceAccountAllowList: []string{"signet:signet-agent"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	otherSA := agentPod
	otherSA.ServiceAccount = "default"
	noNode := agentPod
	noNode.NodeName, noNode.NodeUID = "", ""
	tests := []struct {
		name    string
		payload []byte
		want    error
		says    string
	}{
		{"another service account", wire(t, "prod", prod.Token(t, otherSA, "signet-server", now, time.Hour)), nodeattest.ErrRefused, "signet:default is not in the cluster's service_account_allow_list"},
		{"expired", wire(t, "prod", prod.Token(t, agentPod, "signet-server", now, -time.Minute)), nodeattest.ErrRefused, "expired at"},
		{"wrong audience", wire(t, "prod", prod.Token(t, agentPod, "vault", now, time.Hour)), nodeattest.ErrRefused, `want "signet-server"`},
		{"another cluster's token", wire(t, "prod", staging.Token(t, agentPod, "signet-server", now, time.Hour)), nodeattest.ErrRefused, "another cluster"},
		{"unknown cluster", wire(t, "dev", prod.Token(t, agentPod, "signet-server", now, time.Hour)), nodeattest.ErrRefused, `cluster "dev"`},
		{"no node and no API", wire(t, "prod", prod.Token(t, noNode, "signet-server", now, time.Hour)), nodeattest.ErrRefused, "no node UID"},
		{"not a JWT", wire(t, "prod", "not-a-jwt"), nodeattest.ErrMalformed, "not a signed JWT"},
		{"not JSON", []byte("eyJhbGciOi"), nodeattest.ErrMalformed, "want JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			att, err := a.Attest(context.Background(), tc.payload, now)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Attest: %v; want %v saying %q", err, tc.want, tc.says)
			}
			if !att.AgentID.IsZero() {
				t.Fatalf("refused attestation named agent %s", att.AgentID)
			}
		})
	}
}

// Bad configuration is refused naming the field.
func TestConfigErrors(t *testing.T) {
	is := k8stest.NewIssuer(t, "https://prod.example", jose.RS256)
	f := jwksFile(t, is)
	ok := k8spsat.ClusterConfig{Name: "prod", Issuer: is.URL, JWKSFile: f, ServiceAccountAllowList: []string{"signet:signet-agent"}}
	tests := []struct {
		name string
		mod  func(*k8spsat.ClusterConfig)
		want string
	}{
		{"bad name", func(c *k8spsat.ClusterConfig) { c.Name = "Prod/1" }, "name"},
		{"no allow-list", func(c *k8spsat.ClusterConfig) { c.ServiceAccountAllowList = nil }, "service_account_allow_list"},
		{"allow-list entry", func(c *k8spsat.ClusterConfig) { c.ServiceAccountAllowList = []string{"signet-agent"} }, "namespace:name"},
		{"no issuer", func(c *k8spsat.ClusterConfig) { c.Issuer = "" }, "issuer"},
		{"file and url", func(c *k8spsat.ClusterConfig) { c.JWKSURL = "https://x" }, "not both"},
		{"no validation", func(c *k8spsat.ClusterConfig) { c.JWKSFile = "" }, "kubeconfig"},
		{"missing file", func(c *k8spsat.ClusterConfig) { c.JWKSFile = f + ".missing" }, "jwks_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := ok
			tc.mod(&cc)
			if _, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{cc}}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error naming %s", err, tc.want)
			}
		})
	}
}

// The selectors an attestation produces are of the keys the attestor declares (SelectorKeys, for a
// selector registry), each passing its key's check, and are node selectors.
func TestSelectorKeysCoverProducedSelectors(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	api := k8stest.NewAPIServer(t, is)
	api.AddPod(agentPod, map[string]string{"app.kubernetes.io/name": "signet-agent"}, map[string]string{"kubernetes.io/os": "linux"})
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{{Name: "prod", API: api.RESTConfig(),
		ServiceAccountAllowList: []string{"signet:signet-agent"}}}})
	if err != nil {
		t.Fatal(err)
	}
	att, err := a.Attest(context.Background(), wire(t, "prod", is.Token(t, agentPod, "signet-server", now, time.Hour)), now)
	if err != nil {
		t.Fatal(err)
	}
	keys := k8spsat.SelectorKeys()
	reg, err := selector.NewRegistry(k8spsat.SelectorType())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range att.Selectors {
		key, value, _ := strings.Cut(s.Value, ":")
		check, ok := keys[key]
		if s.Type != k8spsat.Type || !ok || check(value) != nil {
			t.Errorf("selector %s: type %s, key declared %v", s, s.Type, ok)
		}
		// A server's registry with the declared type accepts it as a node selector.
		if err := reg.Validate(s); err != nil || reg.KindOf(s.Type) != selector.Node {
			t.Errorf("selector %s: %v, kind %d", s, err, reg.KindOf(s.Type))
		}
		seen[key] = true
	}
	if len(seen) != len(keys) {
		t.Errorf("produced keys %v, declared %d", seen, len(keys))
	}
}

// Keys fetched from a URL follow the issuer's key rotation: a token signed by a key the server has not
// seen makes it fetch the keys again (at most every tenth of the refresh interval).
func TestJWKSURLFollowsKeyRotation(t *testing.T) {
	now := time.Now()
	old := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.ES256)
	rotated := k8stest.NewIssuer(t, old.URL, jose.ES256)
	var current atomic.Pointer[k8stest.Issuer]
	current.Store(old)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(current.Load().JWKS()) }))
	t.Cleanup(srv.Close)
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{{Name: "prod", Issuer: old.URL,
		JWKSURL: srv.URL + "/openid/v1/jwks", HTTPClient: srv.Client(), JWKSRefresh: time.Hour, ServiceAccountAllowList: []string{"signet:signet-agent"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Attest(context.Background(), wire(t, "prod", old.Token(t, agentPod, "signet-server", now, time.Hour)), now); err != nil {
		t.Fatal(err)
	}
	current.Store(rotated)
	tok := rotated.Token(t, agentPod, "signet-server", now, time.Hour)
	if _, err := a.Attest(context.Background(), wire(t, "prod", tok), now.Add(time.Minute)); !errors.Is(err, nodeattest.ErrRefused) {
		t.Fatalf("new key within a tenth of the refresh: %v; want refused (keys not fetched again yet)", err)
	}
	if _, err := a.Attest(context.Background(), wire(t, "prod", tok), now.Add(7*time.Minute)); err != nil {
		t.Fatalf("new key after a tenth of the refresh: %v", err)
	}
}

// A JWKS URL that does not answer makes attestations Unavailable (the agent retries), and is not asked
// again for every token: at most once per tenth of the refresh interval.
func TestJWKSURLDown(t *testing.T) {
	now := time.Now()
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	var up atomic.Bool
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(is.JWKS())
	}))
	t.Cleanup(srv.Close)
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: []k8spsat.ClusterConfig{{Name: "prod", Issuer: is.URL,
		JWKSURL: srv.URL, HTTPClient: srv.Client(), JWKSRefresh: 10 * time.Minute, ServiceAccountAllowList: []string{"signet:signet-agent"}}}})
	if err != nil {
		t.Fatal(err)
	}
	p := wire(t, "prod", is.Token(t, agentPod, "signet-server", now, time.Hour))
	for range 3 {
		if _, err := a.Attest(context.Background(), p, now); !errors.Is(err, nodeattest.ErrUnavailable) || !strings.Contains(err.Error(), srv.URL) {
			t.Fatalf("JWKS URL down: %v; want ErrUnavailable naming the URL", err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the JWKS URL was asked %d times for 3 tokens at once, want 1", n)
	}
	up.Store(true)
	if _, err := a.Attest(context.Background(), p, now.Add(time.Minute)); err != nil {
		t.Fatalf("JWKS URL back: %v", err)
	}
}
