package agentapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// concluding is a node attestor that concludes whatever it is given: it stands for a faulty attestor,
// which no real one is, to show what the agent API refuses whatever an attestor says.
type concluding struct{ att nodeattest.Attestation }

func (c concluding) Type() string { return "faulty" }

func (c concluding) Attest(context.Context, []byte, time.Time) (nodeattest.Attestation, error) {
	return c.att, nil
}

// An attestor speaks only for its own selector type and this trust domain's agent IDs, and must name an
// owner: an attestation that oversteps is refused and registers nothing.
func TestAttestationChecked(t *testing.T) {
	st, iss := newIssuer(t)
	good := nodeattest.Attestation{AgentID: spiffeid.RequireFromString("spiffe://example.org/signet/agent/faulty/n1"), Owner: "signet",
		Selectors: []selector.Selector{{Type: "faulty", Value: "node:n1"}}}
	tests := []struct {
		name string
		mod  func(*nodeattest.Attestation)
		want string
	}{
		{"another attestor's selectors", func(a *nodeattest.Attestation) {
			a.Selectors = append(a.Selectors, selector.Selector{Type: jointoken.Type, Value: "owner:alice"})
		}, `not of the attestor's type "faulty"`},
		{"a workload's ID", func(a *nodeattest.Attestation) { a.AgentID = spiffeid.RequireFromString("spiffe://example.org/web") }, "not under"},
		{"another trust domain", func(a *nodeattest.Attestation) {
			a.AgentID = spiffeid.RequireFromString("spiffe://other.org/signet/agent/faulty/n1")
		}, "not under"},
		{"no owner", func(a *nodeattest.Attestation) { a.Owner = "" }, "no owner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			att := good
			att.Selectors = append([]selector.Selector(nil), good.Selectors...)
			tc.mod(&att)
			svc, err := NewAgentService(AgentServiceConfig{Store: st, Issuer: iss, TrustDomain: testTD,
				Authenticate: func(context.Context) (Caller, error) { return Caller{}, nil }, NodeAttestors: []NodeAttestor{concluding{att}}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = svc.AttestAgent(context.Background(), &agentv1.AttestAgentRequest{AttestationType: "faulty", AttestationPayload: []byte("x"),
				Csr: testkit.CSR(t, testkit.P256(t), nil)})
			if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AttestAgent: %v; want Internal saying %q", err, tc.want)
			}
			if len(st.Agents()) != 0 {
				t.Fatalf("agents registered: %+v", st.Agents())
			}
		})
	}
}
