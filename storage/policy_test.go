package storage

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var testRules = []PolicyRule{{Name: "max-ttl", Description: "a day at most", DenyUnless: `entry.x509_ttl <= duration("24h")`}}

// TestPolicySetIsVersioned: the policy is set against the revision the caller read, a stale set is
// refused and changes nothing, and each set is audited with the policy before and after (digests
// included).
func TestPolicySetIsVersioned(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	s := storeWithOwners(t, ctx)
	if p, err := s.Policy(); err != nil || p.Revision != 0 || p.Rules != nil {
		t.Fatalf("a new state's policy: %+v %v", p, err)
	}
	p1, err := s.SetPolicy(ctx, testRules, PolicyLimits{MinX509SVIDTTL: time.Minute}, 0, "seed")
	if err != nil || p1.Revision != 1 || p1.SetBy != "uid:0(root)" || p1.SHA256 != PolicyDigest(testRules, PolicyLimits{MinX509SVIDTTL: time.Minute}) || p1.Limits.MinX509SVIDTTL != time.Minute || p1.Reason != "seed" {
		t.Fatalf("first set: %+v %v", p1, err)
	}
	if _, err := s.SetPolicy(ctx, nil, PolicyLimits{}, 0, "stale"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "at revision 1, the change was based on revision 0") {
		t.Fatalf("a set based on a stale read: %v", err)
	}
	if got, _ := s.Policy(); got.Revision != 1 || len(got.Rules) != 1 {
		t.Fatalf("the refused set changed the policy: %+v", got)
	}
	p2, err := s.SetPolicy(ctx, nil, PolicyLimits{}, 1, "no rules")
	if err != nil || p2.Revision != 2 || p2.Rules == nil || len(p2.Rules) != 0 || p2.SHA256 == p1.SHA256 || p2.Limits != (PolicyLimits{}) {
		t.Fatalf("second set: %+v %v", p2, err)
	}
	recs, _, err := s.AuditLog(AuditQuery{Action: "policy.set"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit: %d records, %v", len(recs), err)
	}
	var before, after Policy
	if recs[0].Before != nil || json.Unmarshal(recs[0].After, &after) != nil || after.SHA256 != p1.SHA256 {
		t.Fatalf("first audit record: before %s after %s", recs[0].Before, recs[0].After)
	}
	if json.Unmarshal(recs[1].Before, &before) != nil || before.SHA256 != p1.SHA256 || json.Unmarshal(recs[1].After, &after) != nil || after.SHA256 != p2.SHA256 {
		t.Fatalf("second audit record: before %s after %s", recs[1].Before, recs[1].After)
	}
	if _, err := s.SetPolicy(ctx, []PolicyRule{{Name: "both", DenyUnless: "true", ApprovalWhen: "true"}}, PolicyLimits{}, 2, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"both"`) {
		t.Fatalf("a rule with both expressions: %v", err)
	}
	if _, err := s.SetPolicy(ctx, nil, PolicyLimits{DefaultEntryTTL: -time.Hour}, 2, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "negative limits") {
		t.Fatalf("negative limits: %v", err)
	}
	if got, _ := s.Policy(); got.Revision != 2 {
		t.Fatalf("a refused set changed the policy: %+v", got)
	}
}

// TestPolicyRevisionRace: a governed write decided under one policy revision is refused by the state
// machine once the policy has changed, whether it names the older revision or none; decided under the
// current one it applies. So a policy change racing an admin write cannot slip past it.
func TestPolicyRevisionRace(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	s := storeWithOwners(t, ctx, "alice", "payments")
	// No policy ever set: writes without a revision apply, as before policies were replicated.
	if _, err := s.CreateEntry(ctx, testEntry(t, "e0", "spiffe://example.org/0", "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPolicy(ctx, testRules, PolicyLimits{}, 0, ""); err != nil {
		t.Fatal(err)
	}
	// Decided before the policy existed, applied after: refused.
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/1", "alice")); !errors.Is(err, ErrConflict) ||
		!strings.Contains(err.Error(), "the entry policy changed (revision 1 now) since this request was checked against revision 0") {
		t.Fatalf("a create decided under no policy: %v", err)
	}
	at1 := WithPolicyRevision(ctx, 1)
	if _, err := s.CreateEntry(at1, testEntry(t, "e1", "spiffe://example.org/1", "alice")); err != nil {
		t.Fatalf("a create decided under the current policy: %v", err)
	}
	if _, err := s.SetPolicy(ctx, nil, PolicyLimits{}, 1, ""); err != nil {
		t.Fatal(err)
	}
	// Decided under revision 1, applied under revision 2: each governed write is refused, nothing changes.
	e2 := testEntry(t, "e2", "spiffe://example.org/2", "alice")
	if _, err := s.CreateEntry(at1, e2); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "checked against revision 1") {
		t.Fatalf("create under a stale policy: %v", err)
	}
	if _, err := s.CreateEntries(at1, []Entry{e2}); !errors.Is(err, ErrConflict) {
		t.Fatalf("batch create under a stale policy: %v", err)
	}
	cur, _ := s.Entry("e1")
	upd := cur
	upd.Purpose = "changed"
	if _, err := s.UpdateEntry(at1, upd, cur.Revision, "r"); !errors.Is(err, ErrConflict) {
		t.Fatalf("update under a stale policy: %v", err)
	}
	plan, err := s.PlanOffboard(ctx, "alice", OffboardReassign, "payments", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OffboardOwnerChecked(at1, "alice", OffboardReassign, "payments", "", plan.Revisions); !errors.Is(err, ErrConflict) {
		t.Fatalf("offboarding under a stale policy: %v", err)
	}
	if _, err := s.OffboardOwner(ctx, "alice", OffboardReassign, "payments", ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("a reassignment checked against no policy: %v", err)
	}
	if _, err := s.Entry("e2"); !errors.Is(err, ErrEntryNotFound) {
		t.Fatalf("a refused create stored the entry: %v", err)
	}
	if got, _ := s.Entry("e1"); got.Purpose != cur.Purpose || got.Owner != "alice" {
		t.Fatalf("a refused write changed the entry: %+v", got)
	}
	// Writes the policy does not decide are not held to it.
	if _, err := s.SetEntryState(ctx, "e1", EntryDisable, "x"); err != nil {
		t.Fatalf("disable: %v", err)
	}
	at2 := WithPolicyRevision(ctx, 2)
	if _, err := s.UpdateEntry(at2, upd, cur.Revision+1, "r"); err != nil {
		t.Fatalf("update under the current policy: %v", err)
	}
	if _, err := s.OffboardOwner(ctx, "alice", OffboardDisable, "", "left"); err != nil {
		t.Fatalf("offboarding by disabling needs no policy check: %v", err)
	}
}

func TestPolicyCheckedResultType(t *testing.T) {
	inner, err := encodeCommand(cmdEntryCreate, entryCreateCmd{Entry: sampleEntry("e1"), Meta: sampleMeta()}.wire())
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := wrapPolicyChecked(WithPolicyRevision(context.Background(), 7), inner)
	if err != nil || commandType(wrapped[0]) != cmdPolicyChecked {
		t.Fatalf("wrap: %x %v", wrapped, err)
	}
	if got := resultType(wrapped); got != cmdEntryCreate {
		t.Fatalf("result type %s, want entry-create", got)
	}
	if same, _ := wrapPolicyChecked(context.Background(), inner); string(same) != string(inner) {
		t.Fatal("a command decided under no policy was wrapped")
	}
	del, _ := encodeCommand(cmdEntryDelete, entryDeleteCmd{ID: "e1", Meta: sampleMeta()}.wire())
	if same, _ := wrapPolicyChecked(WithPolicyRevision(context.Background(), 7), del); string(same) != string(del) {
		t.Fatal("a command the policy does not govern was wrapped")
	}
}

// TestPolicyCheckedWrapsOnlyGovernedCommands: a policy-checked command wrapping a command the policy
// does not decide, or another policy-checked command, is refused by the state machine (a response, not
// a stop) and changes nothing.
func TestPolicyCheckedWrapsOnlyGovernedCommands(t *testing.T) {
	ctx := WithActor(context.Background(), "uid:0(root)")
	s := storeWithOwners(t, ctx, "alice")
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/1", "alice")); err != nil {
		t.Fatal(err)
	}
	del, _ := encodeCommand(cmdEntryDelete, entryDeleteCmd{ID: "e1", Meta: sampleMeta()}.wire())
	create, _ := encodeCommand(cmdEntryCreate, entryCreateCmd{Entry: testEntry(t, "e2", "spiffe://example.org/2", "alice"), Meta: sampleMeta()}.wire())
	nested, _ := encodeCommand(cmdPolicyChecked, policyCheckedCmd{Command: create}.wire())
	for name, inner := range map[string][]byte{"a delete": del, "a policy-checked command": nested} {
		cmd, _ := encodeCommand(cmdPolicyChecked, policyCheckedCmd{Command: inner}.wire())
		if _, err := s.apply(ctx, cmd); !errors.Is(err, ErrInvalid) {
			t.Fatalf("policy-checked wrapping %s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Entry("e1"); err != nil {
		t.Fatalf("the refused delete removed the entry: %v", err)
	}
	if _, err := s.Entry("e2"); !errors.Is(err, ErrEntryNotFound) {
		t.Fatalf("the refused nested create stored the entry: %v", err)
	}
	// Wrapped at the current revision (0), the create applies.
	cmd, _ := encodeCommand(cmdPolicyChecked, policyCheckedCmd{Command: create}.wire())
	if _, err := s.apply(ctx, cmd); err != nil {
		t.Fatalf("a create checked against the current revision: %v", err)
	}
}
