package server

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A used, expired or revoked join token is refused before any agent SVID is signed: even a request
// without a CSR (which signing would refuse first) gets the token's refusal, and nothing reaches the
// ledger or the agent list.
func TestAttestAgentRefusesUnusableTokens(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	e.owner(t, "carol")
	ctx := testCtx(t)

	_, used := e.joinToken(t, "alice", "")
	if _, err := e.srv.Agent.AttestAgent(ctx, &agentv1.AttestAgentRequest{JoinToken: used, Csr: csrFor(t, newP256(t), nil)}); err != nil {
		t.Fatalf("first use of a token: %v", err)
	}
	id, expired, hash, err := adminapi.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateJoinToken(ctx, storage.JoinToken{ID: id, SecretHash: hash, Owner: "alice",
		ExpiresAt: time.Now().Add(-time.Minute), CreatedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	revokedID, revoked := e.joinToken(t, "carol", "")
	if _, err := e.st.OffboardOwner(ctx, "carol", storage.OffboardDisable, "", "left"); err != nil {
		t.Fatalf("OffboardOwner: %v", err)
	}
	if tok, err := e.st.JoinToken(revokedID); err != nil || !tok.Revoked {
		t.Fatalf("carol's token after offboarding: %+v, %v; want revoked", tok, err)
	}

	tests := []struct {
		name, token, want string
	}{
		{"used", used, "already used"},
		{"expired", expired, "expired at"},
		{"revoked", revoked, "revoked"},
	}
	for _, tc := range tests {
		for _, csr := range []struct {
			name string
			der  []byte
		}{{"with CSR", csrFor(t, newP256(t), nil)}, {"without CSR", nil}} {
			t.Run(tc.name+"/"+csr.name, func(t *testing.T) {
				ledgerBefore, agentsBefore := ledgerCount(t, e.st, storage.LedgerQuery{}), len(e.st.Agents())
				resp, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tc.token, Csr: csr.der})
				if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) || resp != nil {
					t.Fatalf("AttestAgent: %v, %v; want PermissionDenied saying %q", resp, err, tc.want)
				}
				if n := ledgerCount(t, e.st, storage.LedgerQuery{}); n != ledgerBefore {
					t.Fatalf("ledger grew from %d to %d records", ledgerBefore, n)
				}
				if n := len(e.st.Agents()); n != agentsBefore {
					t.Fatalf("agents: %d, want %d", n, agentsBefore)
				}
			})
		}
	}
}

// A token naming an agent ID attests the agent under that ID; a workload's ID is refused at creation.
func TestJoinTokenNamedAgentID(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	if _, err := e.srv.Admin.CreateJoinToken(testCtx(t), &adminv1.CreateJoinTokenRequest{Owner: "alice", TtlSeconds: 600,
		SpiffeId: "spiffe://example.org/web"}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), issuer.AgentPathPrefix) {
		t.Fatalf("token for a workload ID: %v; want InvalidArgument naming %s", err, issuer.AgentPathPrefix)
	}
	const named = "spiffe://example.org/signet/agent/web-1"
	_, tok := e.joinToken(t, "alice", named)
	resp, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)})
	if err != nil || resp.SpiffeId != named {
		t.Fatalf("AttestAgent: %v, %v; want agent %s", resp, err, named)
	}
}

// The agent API carries {attestation_type, attestation_payload}; a join token alone (the form of agents
// before node attestors) still attests. A type the server has no attestor of, or both forms at once,
// is refused naming the field.
func TestAttestAgentTypedPayload(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	_, tok := e.joinToken(t, "alice", "")
	resp, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{AttestationType: "join_token",
		AttestationPayload: []byte(tok), Csr: csrFor(t, newP256(t), nil)})
	if err != nil || resp.Reattestable {
		t.Fatalf("typed join-token attestation: %v, %v; want success, not reattestable", resp, err)
	}
	a, err := e.st.Agent(resp.SpiffeId)
	if err != nil || a.AttestationType != "join_token" || len(a.Selectors) != 2 {
		t.Fatalf("agent record: %+v, %v", a, err)
	}
	_, tok2 := e.joinToken(t, "alice", "")
	tests := []struct {
		name string
		req  *agentv1.AttestAgentRequest
		want string
	}{
		{"unknown type", &agentv1.AttestAgentRequest{AttestationType: "tpm", AttestationPayload: []byte("x")}, `attestation_type "tpm"`},
		{"payload without type", &agentv1.AttestAgentRequest{AttestationPayload: []byte(tok2)}, "attestation_type"},
		{"both forms", &agentv1.AttestAgentRequest{JoinToken: tok2, AttestationType: "join_token", AttestationPayload: []byte(tok2)}, "join_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Csr = csrFor(t, newP256(t), nil)
			if _, err := e.srv.Agent.AttestAgent(testCtx(t), tc.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AttestAgent: %v; want InvalidArgument naming %s", err, tc.want)
			}
		})
	}
}
