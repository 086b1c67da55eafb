package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/denials"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// auditRecords returns every audit record of action, oldest first.
func auditRecords(tb testing.TB, st *storage.Store, action string) []storage.AuditRecord {
	tb.Helper()
	return testkit.AuditRecords(tb, st, action)
}

// refusals is how many refused requests an audit record stands for.
func refusals(tb testing.TB, r storage.AuditRecord) int { tb.Helper(); return testkit.Refusals(tb, r) }

// waitRefusals waits until the denied records of action stand for want refusals in all, and returns them.
func waitRefusals(tb testing.TB, st *storage.Store, action string, want int) []storage.AuditRecord {
	tb.Helper()
	return testkit.WaitRefusals(tb, st, action, want, testDeadline)
}

// joinToken creates a join token for owner (optionally naming the agent's SPIFFE ID) through the admin
// API and returns its ID and the token to hand to the agent.
func (e *env) joinToken(tb testing.TB, owner, spiffeID string) (id, token string) {
	tb.Helper()
	resp, err := e.srv.Admin.CreateJoinToken(testCtx(tb), &adminv1.CreateJoinTokenRequest{Owner: owner, TtlSeconds: 600, SpiffeId: spiffeID})
	if err != nil {
		tb.Fatalf("CreateJoinToken: %v", err)
	}
	return resp.Token.Id, resp.Secret
}

// A burst of refusals of one kind costs a handful of audit writes, each saying how many refusals it
// stands for, and no more than that many in all.
func TestDenialBurstIsCoalesced(t *testing.T) {
	e := newEnvWith(t, func(s *Server) { s.Denials.SetWindow(200 * time.Millisecond) })
	const n = 500
	reqs := make([]*agentv1.X509SVIDRequest, n)
	for i := range reqs {
		// Each names another entry: the object does not make a refusal a new kind.
		reqs[i] = &agentv1.X509SVIDRequest{EntryId: fmt.Sprintf("%032x", i), Csr: []byte("not reached")}
	}
	resp, err := e.srv.Agent.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: reqs})
	if err != nil {
		t.Fatalf("SignX509SVIDs: %v", err)
	}
	for i, r := range resp.Results {
		if codes.Code(r.ErrorCode) != codes.PermissionDenied || len(r.CertChain) != 0 {
			t.Fatalf("result %d: code %d, %d certificates; want PermissionDenied and none", i, r.ErrorCode, len(r.CertChain))
		}
	}
	recs := waitRefusals(t, e.st, "svid.x509", n)
	// The first refusal is written at once, the rest within the window as one record.
	if len(recs) > 3 {
		t.Fatalf("%d refusals made %d audit records, want at most 3", n, len(recs))
	}
	for _, r := range recs {
		if r.Actor != "agent:"+agentA.String() || r.Object == "" || !strings.Contains(r.Reason, "not an entry of agent") {
			t.Fatalf("audit record %+v: want agent A's refusal naming an entry", r)
		}
	}
	// A refusal of another kind (another reason) is a record of its own.
	if _, err := e.srv.Agent.SignJWTSVID(testCtx(t), &agentv1.SignJWTSVIDRequest{EntryId: "none", Audience: []string{"db"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("SignJWTSVID of an unknown entry: %v, want PermissionDenied", err)
	}
	if recs := waitRefusals(t, e.st, "svid.jwt", 1); recs[0].Object != "none" {
		t.Fatalf("JWT refusal recorded as %+v", recs[0])
	}
}

// A refusal is handed to the denial log and the RPC answers at once: it does not wait for the audit
// write, which happens only when the log runs. A full queue drops (and counts) instead of blocking.
func TestDenialDoesNotWaitForTheAuditLog(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	dl := denials.NewDenialLog(e.st, nil, testLogger(t)) // not running yet
	svc, err := agentapi.NewAgentService(agentapi.AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD,
		Authenticate: fixedAgent(agentapi.Caller{AgentID: agentA}), Denials: dl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	tokID, tok := e.joinToken(t, "alice", "")
	wrong := tokID + ".not-the-secret"
	start := time.Now()
	for range denials.QueueLen + 10 {
		if _, err := svc.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: wrong}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("AttestAgent with a wrong secret: %v, want PermissionDenied", err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("%d refused attestations took %s with no audit writer running", denials.QueueLen+10, d)
	}
	if recs := auditRecords(t, e.st, "agent.attest"); len(recs) != 0 {
		t.Fatalf("refusals were written on the request path: %+v", recs)
	}
	if n := dl.Dropped(); n != 10 {
		t.Fatalf("%d refusals dropped, want the 10 beyond the queue", n)
	}
	startRun(t, dl.Run)
	recs := waitRefusals(t, e.st, "agent.attest", denials.QueueLen)
	if len(recs) > 3 || recs[0].Object != tokID || recs[0].Actor != "unattested node" || strings.Contains(recs[0].Reason, tok) {
		t.Fatalf("attestation refusals recorded as %d records, first %+v", len(recs), recs[0])
	}
}

// Malformed join tokens need no credential at all: they are refused and logged, never audited.
func TestMalformedJoinTokenIsNotAudited(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	for _, tok := range []string{"", "garbage", "0123456789abcdef", "nothex0123456789.secret", strings.Repeat("a", maxJoinTokenLen(t)+1)} {
		if _, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: tok}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("AttestAgent(%.20q): %v, want InvalidArgument", tok, err)
		}
	}
	// A well-formed unknown token is audited: once it is, every refusal before it has been handled.
	if _, err := e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: "0123456789abcdef.secret"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("AttestAgent with an unknown token: %v, want PermissionDenied", err)
	}
	recs := waitRefusals(t, e.st, "agent.attest", 1)
	if recs[0].Object != "0123456789abcdef" || !strings.Contains(recs[0].Reason, "unknown token") {
		t.Fatalf("unknown token recorded as %+v", recs[0])
	}
}

// Audit records of changes are written by the store with the change, whatever refusals are queued.
func TestAdminChangesAuditedDuringDenials(t *testing.T) {
	e := newEnv(t)
	refused := make([]*agentv1.X509SVIDRequest, issuer.MaxCSRBatch)
	for i := range refused {
		refused[i] = &agentv1.X509SVIDRequest{EntryId: fmt.Sprintf("e%d", i)}
	}
	for i := range 3 {
		if _, err := e.srv.Agent.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: refused}); err != nil {
			t.Fatalf("SignX509SVIDs: %v", err)
		}
		name := fmt.Sprintf("owner-%d", i)
		if _, err := e.srv.Admin.CreateOwner(testCtx(t), &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: name}}); err != nil {
			t.Fatalf("CreateOwner: %v", err)
		}
		recs := auditRecords(t, e.st, "owner.create")
		if len(recs) != i+1 || recs[i].Object != name || recs[i].Outcome != storage.AuditOK || recs[i].Actor != "test-admin" {
			t.Fatalf("after creating %s, owner.create records: %+v", name, recs)
		}
	}
	if v, err := e.st.VerifyAudit(); err != nil || v.BrokenAt != 0 {
		t.Fatalf("VerifyAudit: %+v, %v", v, err)
	}
}

// maxJoinTokenLen is the agent API's bound on a join token.
func maxJoinTokenLen(tb testing.TB) int {
	n, _, ok := agentapi.RequestBound("signet.agent.v1.AttestAgentRequest.join_token")
	if !ok {
		tb.Fatal("the agent API has no bound on join tokens")
	}
	return n
}
