package server

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
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
	id, expired, hash, err := newJoinToken()
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

// Join tokens give agent IDs only: under /signet/agent/ in the trust domain, never a workload's ID or a
// server's.
func TestValidateTokenRequestSPIFFEID(t *testing.T) {
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"none: derived from the token", "", true},
		{"token-derived form", "spiffe://example.org/signet/agent/join_token/0123456789abcdef", true},
		{"named agent", "spiffe://example.org/signet/agent/web-1", true},
		{"nested agent path", "spiffe://example.org/signet/agent/eu/web-1", true},
		{"workload ID", "spiffe://example.org/web", false},
		{"workload-looking host ID", "spiffe://example.org/host/web-1", false},
		{"server ID", "spiffe://example.org/signet/server", false},
		{"a server node's ID", "spiffe://example.org/signet/server/node-1", false},
		{"agent path itself", "spiffe://example.org/signet/agent", false},
		{"agent prefix without separator", "spiffe://example.org/signet/agents/web-1", false},
		{"reserved root", "spiffe://example.org/signet", false},
		{"other trust domain", "spiffe://other.org/signet/agent/web-1", false},
		{"no path", "spiffe://example.org", false},
		{"not a SPIFFE ID", "web-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ttl, err := validateTokenRequest(testTD, "alice", 600, tc.id)
			if tc.ok {
				if err != nil || ttl != 10*time.Minute {
					t.Fatalf("validateTokenRequest(%q): %s, %v; want accepted", tc.id, ttl, err)
				}
				return
			}
			if codeOf(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spiffe_id") {
				t.Fatalf("validateTokenRequest(%q): %v; want InvalidArgument naming spiffe_id", tc.id, err)
			}
		})
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
