package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/k8spsat"
	"github.com/signet-id/signet/attestor/k8spsat/payload"
	"github.com/signet-id/signet/internal/k8stest"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Through the agent API with the k8s_psat attestor (offline keys): the agent is registered with its
// attestation type and selectors in one command with its SVID's record (nothing consumed), may attest
// again under the same ID, and each refusal is audited with its reason; a banned node stays out.
func TestK8sPSATThroughAgentAPI(t *testing.T) {
	is := k8stest.NewIssuer(t, "https://kubernetes.default.svc.cluster.local", jose.RS256)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, is.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	psat, err := k8spsat.New(k8spsat.Config{TrustDomain: testTD, Clusters: []k8spsat.ClusterConfig{{Name: "prod", Issuer: is.URL,
		JWKSFile: jwks, ServiceAccountAllowList: []string{"signet:signet-agent"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, func(c *Config) {
		c.NodeAttestors = []agentapi.NodeAttestor{&jointoken.Attestor{Store: c.Store, TrustDomain: testTD}, psat}
	}, nil)
	pod := k8stest.Pod{Namespace: "signet", ServiceAccount: "signet-agent", Name: "agent-1", UID: "pod-uid-1", NodeName: "worker-1", NodeUID: "node-uid-1"}
	attest := func(p k8stest.Pod, ttl time.Duration) (*agentv1.AttestAgentResponse, error) {
		b, err := json.Marshal(payload.Wire{Cluster: "prod", Token: is.Token(t, p, "signet-server", time.Now(), ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{AttestationType: "k8s_psat", AttestationPayload: b,
			Csr: csrFor(t, newP256(t), nil)})
	}

	resp, err := attest(pod, time.Hour)
	const id = "spiffe://example.org/signet/agent/k8s_psat/prod/node-uid-1"
	if err != nil || resp.SpiffeId != id || !resp.Reattestable {
		t.Fatalf("AttestAgent: %v, %v; want %s, reattestable", resp, err, id)
	}
	a, err := e.st.Agent(id)
	if err != nil || a.AttestationType != "k8s_psat" || a.Owner != k8spsat.DefaultOwner || a.TokenID != "" ||
		!slices.ContainsFunc(a.Selectors, func(s selector.Selector) bool { return s.String() == "k8s_psat:agent_node_name:worker-1" }) {
		t.Fatalf("agent record: %+v, %v", a, err)
	}
	rec, err := e.st.LookupIssuance(a.Serial)
	if err != nil || rec.NodeAttestation != "k8s_psat" || !slices.Contains(rec.Selectors, "k8s_psat:cluster:prod") {
		t.Fatalf("agent SVID record: %+v, %v", rec, err)
	}
	if recs := auditRecords(t, e.st, "agent.attest"); len(recs) != 1 || !strings.Contains(recs[0].Reason, "service account signet:signet-agent") {
		t.Fatalf("attestation audit records: %+v", recs)
	}

	// Re-attestation with a new token: same agent, a new SVID.
	if resp, err := attest(pod, time.Hour); err != nil || resp.SpiffeId != id {
		t.Fatalf("re-attestation: %v, %v", resp, err)
	}
	if again, _ := e.st.Agent(id); again.Serial == a.Serial {
		t.Fatal("re-attestation kept the old SVID serial")
	}

	// Refusals: PermissionDenied with the reason, audited with the cluster and service account.
	other := pod
	other.ServiceAccount = "default"
	for _, tc := range []struct {
		name string
		pod  k8stest.Pod
		ttl  time.Duration
		says string
	}{
		{"expired", pod, -time.Minute, "expired at"},
		{"another service account", other, time.Hour, "service_account_allow_list"},
	} {
		ledgerBefore := ledgerCount(t, e.st, storage.LedgerQuery{})
		if _, err := attest(tc.pod, tc.ttl); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.says) {
			t.Fatalf("%s: %v; want PermissionDenied saying %q", tc.name, err, tc.says)
		}
		if n := ledgerCount(t, e.st, storage.LedgerQuery{}); n != ledgerBefore {
			t.Fatalf("%s: the ledger grew", tc.name)
		}
	}
	var denied []storage.AuditRecord
	waitfor.Condition(t, testDeadline, "both refusals in the audit log", func() bool {
		denied = slices.DeleteFunc(auditRecords(t, e.st, "agent.attest"), func(r storage.AuditRecord) bool { return r.Outcome != storage.AuditDenied })
		return len(denied) == 2
	})
	if denied[0].Object != "k8s_psat/prod" || !strings.Contains(denied[0].Reason, "expired") ||
		denied[1].Object != "k8s_psat/prod/signet:default" || !strings.Contains(denied[1].Reason, "service_account_allow_list") {
		t.Fatalf("refusals audited as %+v", denied)
	}

	// Not a payload at all: InvalidArgument, not audited.
	if _, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{AttestationType: "k8s_psat", AttestationPayload: []byte("garbage"),
		Csr: csrFor(t, newP256(t), nil)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("garbage payload: %v; want InvalidArgument", err)
	}

	// A banned node never attests again, whatever token it brings.
	if _, err := e.st.BanAgent(testCtx(t), id, "test-admin", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := attest(pod, time.Hour); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("banned node: %v; want PermissionDenied saying banned", err)
	}
}
