package server

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestConfiguredPolicySeedsTheCluster: a server's configured policy is set through Raft when the state
// holds none, and decides its writes; once the cluster's policy is another, the configured one decides
// nothing, and a server configured with it warns at start that the cluster's decides.
func TestConfiguredPolicySeedsTheCluster(t *testing.T) {
	seed := &policy.Config{Rules: []policy.Rule{{Name: "no-web", Description: "nothing under /web", DenyUnless: `!entry.path.startsWith("/web")`}}}
	e := newEnvConfig(t, func(c *Config) { c.Policy = seed }, nil)
	e.owner(t, "alice")
	waitfor.Condition(t, testDeadline, "the configured policy in the state", func() bool {
		p, err := e.st.Policy()
		return err == nil && p.Revision == 1
	})
	p, _ := e.st.Policy()
	if len(p.Rules) != 1 || p.Rules[0].Name != "no-web" || p.SetBy != "config:"+e.st.NodeID() {
		t.Fatalf("the seeded policy: %+v", p)
	}
	c := adminClient(t, e.srv.Admin)
	web := adminEntry("spiffe://example.org/web/a", agentA.String(), "alice")
	if _, err := c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: web}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "nothing under /web") {
		t.Fatalf("an entry the seeded policy denies: %v", err)
	}

	// The cluster's policy changes: the configured one decides nothing any more.
	if _, err := e.st.SetPolicy(storage.WithActor(testCtx(t), "bob"), nil, storage.PolicyLimits{}, 1, "no rules"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: web}); err != nil {
		t.Fatalf("an entry the cluster's policy allows: %v", err)
	}
	var logs testkit.SyncBuffer
	restarted, err := adminapi.NewAdminService(adminapi.AdminServiceConfig{Store: e.st, CA: e.ca, TrustDomain: testTD, Selectors: testSelectors(), Policy: seed,
		Authenticate: func(context.Context) (string, error) { return "x", nil }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	restarted.SeedPolicy(testCtx(t))
	if out := logs.String(); !strings.Contains(out, "configured policy differs from the cluster's entry policy") || !strings.Contains(out, "cluster_revision=2") {
		t.Fatalf("the warning of a server whose configured policy differs: %q", out)
	}
	if got, _ := e.st.Policy(); got.Revision != 2 {
		t.Fatalf("a server with a configured policy changed the cluster's: %+v", got)
	}
}

// TestUnusablePolicyRefusesWrites: a cluster policy this server cannot compile (set by a newer signet)
// refuses the writes it decides, naming the rule, instead of allowing them.
func TestUnusablePolicyRefusesWrites(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	if _, err := e.st.SetPolicy(testCtx(t), []storage.PolicyRule{{Name: "future", DenyUnless: "entry.attested_by_tpm"}}, storage.PolicyLimits{}, 0, "newer"); err != nil {
		t.Fatal(err)
	}
	c := adminClient(t, e.srv.Admin)
	_, err := c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: adminEntry("spiffe://example.org/a", agentA.String(), "alice")})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "does not compile on this server") || !strings.Contains(err.Error(), `policy rule "future"`) {
		t.Fatalf("a create under a policy this server cannot compile: %v", err)
	}
	if es := e.st.Entries(); len(es) != 0 {
		t.Fatalf("the refused create stored %d entries", len(es))
	}
}

// TestSetPolicyRefusesBadInput: a policy set without a reason, with a limit out of bounds or with a rule
// that does not compile is refused naming what is wrong, and changes nothing.
func TestSetPolicyRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	c := adminClient(t, e.srv.Admin)
	ok := []*adminv1.PolicyRule{{Name: "fine", DenyUnless: "true"}}
	for _, tc := range []struct {
		name string
		req  *adminv1.SetPolicyRequest
		want string
	}{
		{"no reason", &adminv1.SetPolicyRequest{Rules: ok}, "reason is required"},
		{"min TTL too long", &adminv1.SetPolicyRequest{Rules: ok, Reason: "r", Limits: &adminv1.PolicyLimits{MinX509SvidTtlSeconds: 31 * 24 * 3600}}, "limits.min_x509_svid_ttl 744h0m0s"},
		{"default entry TTL overflowing", &adminv1.SetPolicyRequest{Rules: ok, Reason: "r", Limits: &adminv1.PolicyLimits{DefaultEntryTtlSeconds: 1 << 62}}, "limits.default_entry_ttl"},
		{"a rule that does not compile", &adminv1.SetPolicyRequest{Rules: append(ok, &adminv1.PolicyRule{Name: "bad", ApprovalWhen: "owner.teams"}), Reason: "r"}, `policy rule "bad": approval_when: owner has no key "teams"`},
	} {
		if _, err := c.SetPolicy(testCtx(t), tc.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want InvalidArgument naming %q", tc.name, err, tc.want)
		}
	}
	if p, _ := e.st.Policy(); p.Revision != 0 {
		t.Fatalf("a refused set changed the policy: %+v", p)
	}
	got, err := c.SetPolicy(testCtx(t), &adminv1.SetPolicyRequest{Rules: ok, Reason: "r", Limits: &adminv1.PolicyLimits{MinJwtSvidTtlSeconds: 60}})
	if err != nil || got.Revision != 1 || got.GetLimits().GetMinJwtSvidTtlSeconds() != 60 || got.SetBy != "test-admin" {
		t.Fatalf("a good set: %+v %v", got, err)
	}
}
