package server

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The agent API decides token expiry and stamps attestations and renewals by its configured clock.
func TestAgentServiceAttestsByItsClock(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	now := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second) // past a fresh token's 10 minutes
	var caller agentapi.Caller
	svc, err := agentapi.NewAgentService(agentapi.AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD,
		Authenticate: func(context.Context) (agentapi.Caller, error) { return caller, nil },
		Clock:        func() time.Time { return now }, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, fresh := e.joinToken(t, "alice", "")
	if _, err := svc.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: fresh, Csr: csrFor(t, newP256(t), nil)}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("AttestAgent with a token expired by the service's clock: %v", err)
	}

	id, tok, hash, err := adminapi.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateJoinToken(testCtx(t), storage.JoinToken{ID: id, SecretHash: hash, Owner: "alice",
		ExpiresAt: now.Add(time.Minute), CreatedAt: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	resp, err := svc.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(t, newP256(t), nil)})
	if err != nil {
		t.Fatalf("AttestAgent: %v", err)
	}
	a, err := e.st.Agent(resp.SpiffeId)
	if err != nil || !a.AttestedAt.Equal(now) {
		t.Fatalf("agent %+v, %v; want attested at %s", a, err, now)
	}

	cert, err := x509.ParseCertificate(resp.SvidChain[0])
	if err != nil {
		t.Fatal(err)
	}
	caller = agentapi.Caller{AgentID: issuer.AgentIDForToken(testTD, id), NodeAttestation: agentapi.AttestationJoinToken}
	// The CA signs by the wall clock: renew within the SVID's life by the service's clock (an expired
	// SVID never renews).
	now = cert.NotAfter.Add(-time.Minute).UTC().Truncate(time.Second)
	ctx := peerContext(testCtx(t), cert)
	if _, err := svc.RenewAgent(ctx, &agentv1.RenewAgentRequest{Csr: csrFor(t, newP256(t), nil)}); err != nil {
		t.Fatalf("RenewAgent: %v", err)
	}
	if a, err := e.st.Agent(resp.SpiffeId); err != nil || !a.RenewedAt.Equal(now) {
		t.Fatalf("agent %+v, %v; want renewed at %s", a, err, now)
	}
}

// Which node aliases an agent's sync stream follows is decided by the service's clock.
func TestSyncEntriesAliasesByItsClock(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	wall := time.Now()
	aliasID, err := adminapi.NewEntryID()
	if err != nil {
		t.Fatal(err)
	}
	// An alias active by the wall clock for another hour.
	if _, err := e.st.CreateEntry(testCtx(t), storage.Entry{ID: aliasID, SPIFFEID: "spiffe://example.org/nodes/alice",
		ParentID: issuer.ServerID(testTD).String(), Owner: "alice", Purpose: "alias", X509TTL: time.Hour, JWTTTL: time.Hour,
		Selectors: []selector.Selector{{Type: agentapi.AttestationJoinToken, Value: "owner:alice"}}, ExpiresAt: wall.Add(time.Hour).UTC()}); err != nil {
		t.Fatal(err)
	}
	child := e.entry(t, "spiffe://example.org/metrics", spiffeid.RequireFromString("spiffe://example.org/nodes/alice"), "alice", nil)
	caller := agentapi.Caller{AgentID: agentA, Selectors: []selector.Selector{{Type: agentapi.AttestationJoinToken, Value: "owner:alice"}}}
	tests := []struct {
		name  string
		clock time.Time
		want  []string
	}{
		{"alias active", wall, []string{child.ID}},
		{"alias expired by the clock", wall.Add(2 * time.Hour), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := agentapi.NewAgentService(agentapi.AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD,
				Authenticate: fixedAgent(caller), Clock: func() time.Time { return tc.clock }, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			conn := serveBufconn(t, func(g *grpc.Server) { agentv1.RegisterAgentServer(g, svc) })
			msgs := recvUpdate(t, syncStream(t, agentv1.NewAgentClient(conn), 0))
			if got := entryIDs(msgs...); !slices.Equal(got, tc.want) {
				t.Fatalf("entries %v, want %v", got, tc.want)
			}
		})
	}
}
