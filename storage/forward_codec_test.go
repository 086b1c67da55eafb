package storage

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestErrorCodesKeepSentinels: every sentinel a follower's caller may branch on survives the trip as a
// code, wrapped or not, with the leader's message.
func TestErrorCodesKeepSentinels(t *testing.T) {
	seen := map[ErrorCode]bool{}
	for _, c := range errorCodes {
		if seen[c.code] {
			t.Fatalf("code %d is used twice", c.code)
		}
		seen[c.code] = true
		err := fmt.Errorf("storage: something %q: %w", "x", c.err)
		got := ErrorFromCode(ErrorCodeOf(err), err.Error())
		if !errors.Is(got, c.err) || got.Error() != err.Error() {
			t.Errorf("%v: came back as %v (Is %v)", c.err, got, errors.Is(got, c.err))
		}
	}
	if ErrorFromCode(ErrorCodeOf(nil), "") != nil {
		t.Fatal("no error came back as one")
	}
	other := ErrorFromCode(ErrorCodeOf(errors.New("boom")), "boom")
	if other == nil || other.Error() != "boom" || errors.Is(other, ErrInvalid) {
		t.Fatalf("an unknown error came back as %v", other)
	}
	// Every exported sentinel of the package has a code: a new one without is caught here.
	inTable := map[string]bool{}
	for _, c := range errorCodes {
		inTable[c.err.Error()] = true
	}
	for name, msg := range exportedSentinels(t) {
		if !inTable[msg] {
			t.Errorf("%s has no error code: a follower's caller would not see it as %s", name, name)
		}
	}
	// A proposal refused as not appended is retried; a plain not-leader error is not, yet both are
	// ErrNotLeader to callers.
	if ErrorCodeOf(errNotAppended) != codeNotAppended || !errors.Is(ErrorFromCode(codeNotAppended, ""), ErrNotLeader) {
		t.Fatal("errNotAppended does not travel as its own code")
	}
}

// exportedSentinels returns the package's exported `ErrX = errors.New(msg)` variables, by name, with
// their messages, read from its source files.
func exportedSentinels(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || len(vs.Names) != 1 || len(vs.Values) != 1 || !vs.Names[0].IsExported() || !strings.HasPrefix(vs.Names[0].Name, "Err") {
				return true
			}
			call, ok := vs.Values[0].(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "New" {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok {
				out[vs.Names[0].Name] = strings.Trim(lit.Value, `"`)
			}
			return true
		})
	}
	if len(out) < 20 {
		t.Fatalf("found only %d sentinels in the package source: %v", len(out), out)
	}
	return out
}

// TestResultsRoundTrip: the result of every command type a follower may forward decodes to the type the
// store's methods assert, equal to what the leader's FSM returned.
func TestResultsRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	e := Entry{ID: "e1", SPIFFEID: "spiffe://example.org/web", Owner: "alice", Revision: 3, CreatedAt: now}
	fe := e
	fe.FederatesWith = []string{"other.org"}
	tests := []struct {
		t    commandType
		resp any
	}{
		{cmdOwnerCreate, Owner{Name: "alice", CreatedAt: now}},
		{cmdEntryCreate, e}, {cmdEntryDelete, e}, {cmdEntryUpdate, e}, {cmdEntryState, e},
		{cmdEntryBatch, []BatchResult{{Entry: e}, {Err: fmt.Errorf("entry %q: %w", "x", ErrEntryExists)}}},
		{cmdEntryCreateFederated, fe}, {cmdEntryUpdateFederated, fe}, {cmdEntryBatchFederated, []BatchResult{{Entry: fe}, {Err: fmt.Errorf("entry %q: %w", "y", ErrEntryExists)}}},
		{cmdTokenCreate, JoinToken{ID: "t1", Owner: "alice", ExpiresAt: now}},
		{cmdAgentAttest, Agent{ID: "spiffe://example.org/signet/agent/x", Serial: "1", AttestedAt: now}},
		{cmdAgentAttestNode, Agent{ID: "spiffe://example.org/signet/agent/k8s_psat/c/n", AttestationType: "k8s_psat", Serial: "2", AttestedAt: now}},
		{cmdAgentAttestNodeFirstUse, Agent{ID: "spiffe://example.org/signet/agent/aws_iid/1/r/i-1", AttestationType: "aws_iid", Serial: "3", AttestedAt: now}},
		{cmdAgentRenew, Agent{ID: "a"}}, {cmdAgentEvict, Agent{ID: "a"}}, {cmdAgentBan, Agent{ID: "a", Banned: true}},
		{cmdOwnerOffboard, OffboardResult{Owner: Owner{Name: "bob"}, Entries: []Entry{e}, Revisions: map[string]uint64{"e1": 2}}},
		{cmdReviewSign, Review{ID: "r1", Reviewer: "carol", SignedAt: now}},
		{cmdLedgerAppend, 0}, {cmdDeliveryRecord, 3},
		{cmdLedgerAppendSigned, 2}, {cmdAgentAttestSigned, Agent{ID: "a", Serial: "2"}}, {cmdAgentRenewSigned, Agent{ID: "a"}},
		{cmdLedgerPrune, pruneResult{Batches: 2, Records: 9, Bounded: true}},
		{cmdAuthorityPut, nil}, {cmdAuthorityRemove, nil}, {cmdAuthorityRetain, nil}, {cmdRotationRequest, RotationRequest{Seq: 3, Node: "n2", By: "alice", At: now, Reason: "drill"}}, {cmdAuditAppend, nil}, {cmdNodeVersion, nil},
		{cmdKeyRevoke, KeyRevokeResult{Revoked: &RevokedKey{Kind: AuthorityX509, ID: "ab", SignerID: "cd", Node: "n1", NotAfter: now, At: now, By: "bob", Reason: "leak", RequestedBy: "alice"}}},
		{cmdKeyRevoke, KeyRevokeResult{Pending: &PendingRevocation{Kind: AuthorityJWT, ID: "k", By: "alice", At: now, Reason: "leak", Rules: []string{"two"}}}},
		{cmdKeyRevokeIntermediate, KeyRevokeResult{Revoked: &RevokedKey{Kind: AuthorityX509Intermediate, ID: "ab", SignerID: "ab", Node: "n1", At: now, By: "bob", Reason: "leak"}}},
		{cmdFederationCreate, Federation{TrustDomain: "other.org", Profile: "https_web", CreatedBy: "alice", CreatedAt: now}},
		{cmdFederationDelete, Federation{TrustDomain: "other.org"}},
		{cmdFederatedBundleSet, Federation{TrustDomain: "other.org", Bundle: []byte(`{"keys":[]}`), BundleRevision: 2, BundleUpdatedAt: now}},
		{cmdPolicySet, Policy{Revision: 2, Rules: []PolicyRule{{Name: "r", DenyUnless: "true"}}, Limits: PolicyLimits{MinJWTSVIDTTL: time.Minute}, SHA256: "ab", SetBy: "alice", SetAt: now}},
	}
	// Every command type this build proposes (all but the JSON era's) is covered; a policy-checked
	// command's result is its wrapped command's (TestPolicyCheckedResultType).
	covered := map[commandType]bool{cmdPolicyChecked: true}
	for _, tc := range tests {
		covered[tc.t] = true
	}
	for ct, name := range commandNames {
		if !strings.HasSuffix(name, "/json") && !covered[ct] {
			t.Errorf("%s: its forwarded result is not tested", ct)
		}
	}
	for _, tc := range tests {
		b, err := encodeResult(tc.t, tc.resp)
		if err != nil {
			t.Fatalf("%s: %v", tc.t, err)
		}
		got, err := decodeResult(tc.t, b)
		if err != nil {
			t.Fatalf("%s: %v", tc.t, err)
		}
		if br, ok := tc.resp.([]BatchResult); ok {
			gb := got.([]BatchResult)
			if !reflect.DeepEqual(gb[0], br[0]) || !errors.Is(gb[1].Err, ErrEntryExists) || gb[1].Err.Error() != br[1].Err.Error() {
				t.Fatalf("%s: %+v, want %+v", tc.t, gb, br)
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.resp) {
			t.Fatalf("%s: %#v, want %#v", tc.t, got, tc.resp)
		}
	}
}
