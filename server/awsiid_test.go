package server

import (
	"crypto/x509"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/awsiid"
	"github.com/signet-id/signet/attestor/awsiid/awsiidtest"
	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Through the agent API with the aws_iid attestor: of concurrent first attestations of one instance
// exactly one registers the agent (the store decides, in the command that registers it), the others are
// PermissionDenied, audited, and leave no ledger record; an evicted instance attests again.
func TestAWSIIDFirstUseThroughAgentAPI(t *testing.T) {
	signer := awsiidtest.NewSigner(t)
	a, err := awsiid.New(awsiid.Config{TrustDomain: testTD, Accounts: []string{"111122223333"},
		ExtraCertificates: map[string][]*x509.Certificate{"us-east-1": {signer.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, func(c *Config) {
		c.NodeAttestors = []agentapi.NodeAttestor{&jointoken.Attestor{Store: c.Store, TrustDomain: testTD}, awsiid.Node{Attestor: a}}
	}, nil)
	doc := awsiidtest.NewDoc("111122223333", "i-0123456789abcdef0", time.Now().Add(-time.Minute)).JSON(t)
	p := awsiidtest.NewIMDS(t, doc, signer.Sign(t, doc)).Read(t)
	attest := func() (*agentv1.AttestAgentResponse, error) {
		return e.srv.Agent.AttestAgent(testCtx(t), &agentv1.AttestAgentRequest{AttestationType: awsiid.Type, AttestationPayload: p,
			Csr: csrFor(t, newP256(t), nil)})
	}

	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = attest() })
	}
	wg.Wait()
	const id = "spiffe://example.org/signet/agent/aws_iid/111122223333/us-east-1/i-0123456789abcdef0"
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already attested"):
			t.Fatalf("a concurrent attestation: %v; want PermissionDenied saying already attested", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent first attestations succeeded, want 1: %v", ok, n, errs)
	}
	if got := ledgerCount(t, e.st, storage.LedgerQuery{SPIFFEID: id}); got != 1 {
		t.Fatalf("%d agent SVID records, want 1", got)
	}
	waitfor.Condition(t, testDeadline, "the refusal in the audit log", func() bool {
		denied := slices.DeleteFunc(auditRecords(t, e.st, "agent.attest"), func(r storage.AuditRecord) bool { return r.Outcome != storage.AuditDenied })
		// Repeated identical denials may be folded into one record (server/denials).
		return len(denied) >= 1 && denied[0].Object == id && strings.Contains(denied[0].Reason, "already attested")
	})

	if _, err := e.st.EvictAgent(testCtx(t), id); err != nil {
		t.Fatal(err)
	}
	if resp, err := attest(); err != nil || resp.SpiffeId != id || resp.Reattestable {
		t.Fatalf("attestation after eviction: %v, %v; want %s, not reattestable", resp, err, id)
	}
}
