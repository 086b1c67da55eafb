package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
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

// auditRecords returns every audit record of action, oldest first.
func auditRecords(tb testing.TB, st *storage.Store, action string) []storage.AuditRecord {
	tb.Helper()
	var out []storage.AuditRecord
	q := storage.AuditQuery{Action: action, Limit: storage.MaxLedgerLimit}
	for {
		recs, next, err := st.AuditLog(q)
		if err != nil {
			tb.Fatalf("AuditLog: %v", err)
		}
		out = append(out, recs...)
		if next == 0 {
			return out
		}
		q.After = next
	}
}

var refusalsRE = regexp.MustCompile(`\[(\d+) refusals like this one from `)

// refusals is how many refused requests an audit record stands for.
func refusals(tb testing.TB, r storage.AuditRecord) int {
	tb.Helper()
	m := refusalsRE.FindStringSubmatch(r.Reason)
	if m == nil {
		return 1
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 2 {
		tb.Fatalf("audit record %d: bad count in %q", r.Seq, r.Reason)
	}
	return n
}

// waitRefusals waits until the denied records of action stand for want refusals in all, and returns them.
func waitRefusals(tb testing.TB, st *storage.Store, action string, want int) []storage.AuditRecord {
	tb.Helper()
	deadline := time.Now().Add(testDeadline)
	for {
		recs := auditRecords(tb, st, action)
		total := 0
		for _, r := range recs {
			if r.Outcome != storage.AuditDenied {
				tb.Fatalf("audit record %d of %s: outcome %q, want denied", r.Seq, action, r.Outcome)
			}
			total += refusals(tb, r)
		}
		switch {
		case total == want:
			return recs
		case total > want:
			tb.Fatalf("%d %s records stand for %d refusals, want %d: %+v", len(recs), action, total, want, recs)
		case time.Now().After(deadline):
			tb.Fatalf("after %s, %d %s records stand for %d refusals, want %d", testDeadline, len(recs), action, total, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	e := newEnvWith(t, func(s *Server) { s.Denials.window = 200 * time.Millisecond })
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
	denials := NewDenialLog(e.st, nil, testLogger(t)) // not running yet
	svc, err := NewAgentService(AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD,
		Authenticate: fixedAgent(Caller{AgentID: agentA}), Denials: denials, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	tokID, tok := e.joinToken(t, "alice", "")
	wrong := tokID + ".not-the-secret"
	start := time.Now()
	for range denialQueueLen + 10 {
		if _, err := svc.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{JoinToken: wrong}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("AttestAgent with a wrong secret: %v, want PermissionDenied", err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("%d refused attestations took %s with no audit writer running", denialQueueLen+10, d)
	}
	if recs := auditRecords(t, e.st, "agent.attest"); len(recs) != 0 {
		t.Fatalf("refusals were written on the request path: %+v", recs)
	}
	if n := denials.dropped.Load(); n != 10 {
		t.Fatalf("%d refusals dropped, want the 10 beyond the queue", n)
	}
	startRun(t, denials.Run)
	recs := waitRefusals(t, e.st, "agent.attest", denialQueueLen)
	if len(recs) > 3 || recs[0].Object != tokID || recs[0].Actor != "unattested node" || strings.Contains(recs[0].Reason, tok) {
		t.Fatalf("attestation refusals recorded as %d records, first %+v", len(recs), recs[0])
	}
}

// Malformed join tokens need no credential at all: they are refused and logged, never audited.
func TestMalformedJoinTokenIsNotAudited(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	for _, tok := range []string{"", "garbage", "0123456789abcdef", "nothex0123456789.secret", strings.Repeat("a", maxJoinTokenLen+1)} {
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

func TestDenialKind(t *testing.T) {
	base := denial{actor: "agent:a", action: "svid.x509", object: "e1", reason: `entry "e1": permission denied: not an entry of agent a`}
	tests := []struct {
		name string
		mod  func(*denial)
		same bool
	}{
		{"another object", func(d *denial) { d.object, d.reason = "e2", `entry "e2": permission denied: not an entry of agent a` }, true},
		{"another time", func(d *denial) { d.at = time.Now() }, true},
		// %q escapes quotes and backslashes: the quoted object is recognised too.
		{"another object that quoting escapes", func(d *denial) {
			d.object = `e"2\`
			d.reason = fmt.Sprintf("entry %q: permission denied: not an entry of agent a", d.object)
		}, true},
		{"another reason", func(d *denial) { d.reason = `entry "e1": permission denied: disabled (x)` }, false},
		{"another actor", func(d *denial) { d.actor = "agent:b" }, false},
		{"another action", func(d *denial) { d.action = "svid.jwt" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			tc.mod(&d)
			if got := d.kind() == base.kind(); got != tc.same {
				t.Fatalf("same kind = %v, want %v", got, tc.same)
			}
		})
	}
}

// Stopping the log writes the repeats it still holds.
func TestDenialLogStopWritesHeldRepeats(t *testing.T) {
	st := openStore(t)
	l := NewDenialLog(st, nil, testLogger(t))
	stop := startRun(t, l.Run)
	a := auditor{denials: l, log: testLogger(t), limit: newRefusalLogLimiter()}
	for i := range 5 {
		a.denied(context.Background(), "uid:1001", "admin.CreateEntry", "", errors.New("uid 1001 is not an admin"))
		if i == 0 {
			waitRefusals(t, st, "admin.CreateEntry", 1)
		}
	}
	stop()
	recs := waitRefusals(t, st, "admin.CreateEntry", 5)
	if len(recs) != 2 || refusals(t, recs[1]) != 4 || recs[1].Actor != "uid:1001" {
		t.Fatalf("records after stop: %+v", recs)
	}
}
