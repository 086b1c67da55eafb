package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// baseInput complies with every example rule.
func baseInput() Input {
	return Input{
		Entry: EntryInput{
			SPIFFEID:    "spiffe://example.org/team/payments/api",
			TrustDomain: "example.org",
			Path:        "/team/payments/api",
			ParentID:    "spiffe://example.org/signet/agent/node-1",
			Purpose:     "payments API",
			Selectors:   []string{"unix:uid:1000", "k8s:ns:payments", "unix:gid:50"},
			X509TTL:     time.Hour,
			JWTTTL:      5 * time.Minute,
			DNSNames:    []string{"api.payments.example.org"},
			ExpiresAt:   testNow.Add(30 * 24 * time.Hour),
		},
		Owner:  OwnerInput{Name: "payments", Kind: "team", Team: "payments"},
		Admin:  "alice",
		Action: "create",
		Now:    testNow,
	}
}

func mustCompile(t testing.TB, rules ...Rule) *Policy {
	t.Helper()
	p, err := Compile(Config{Rules: rules})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func evaluate(t testing.TB, p *Policy, in Input) Decision {
	t.Helper()
	d, err := p.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	return d
}

func TestExamples(t *testing.T) {
	tests := []struct {
		name, desc, expr string
		bad              func(*Input) // makes the base input non-compliant
	}{
		{
			name: "team-path", desc: "the SPIFFE ID path must begin with /team/<owner's team>/",
			expr: `entry.path.startsWith("/team/" + owner.team + "/")`,
			bad:  func(in *Input) { in.Owner.Team = "billing" },
		},
		{
			name: "max-ttl",
			expr: `entry.x509_ttl <= duration("24h")`,
			bad:  func(in *Input) { in.Entry.X509TTL = 25 * time.Hour },
		},
		{
			name: "two-selectors", desc: "at least two selectors, one of them not unix:uid",
			expr: `size(entry.selectors) >= 2 && entry.selectors.exists(s, !s.startsWith("unix:uid:"))`,
			bad:  func(in *Input) { in.Entry.Selectors = []string{"unix:uid:1000", "unix:uid:1001"} },
		},
		{
			name: "prod-ticket", desc: "ticket required in ns prod",
			expr: `!entry.path.startsWith("/ns/prod/") || entry.ticket != ""`,
			bad:  func(in *Input) { in.Entry.Path = "/ns/prod/db" },
		},
		{
			name: "no-never-expiring",
			expr: `!entry.never_expires`,
			bad:  func(in *Input) { in.Entry.NeverExpires, in.Entry.ExpiresAt = true, time.Time{} },
		},
		{
			name: "max-lifetime", desc: "entries expire within 90 days",
			expr: `has(entry.expires_at) && entry.expires_at - now <= duration("2160h")`,
			bad:  func(in *Input) { in.Entry.ExpiresAt = testNow.Add(91 * 24 * time.Hour) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, Rule{Name: tc.name, Description: tc.desc, DenyUnless: tc.expr})
			if d := evaluate(t, p, baseInput()); !d.Allowed() || len(d.Approval) != 0 {
				t.Fatalf("compliant input: got %+v, want allowed", d)
			}
			in := baseInput()
			tc.bad(&in)
			d := evaluate(t, p, in)
			if d.Allowed() || len(d.Denied) != 1 {
				t.Fatalf("non-compliant input: got %+v, want one denial", d)
			}
			shown := tc.desc
			if shown == "" {
				shown = tc.expr
			}
			want := fmt.Sprintf("policy rule %q denies this entry: %s", tc.name, shown)
			if got := d.Denied[0]; got.Rule != tc.name || got.Message != want {
				t.Errorf("denial = %+v, want rule %q message %q", got, tc.name, want)
			}
		})
	}
	// The ticket rule allows a prod entry that has a ticket.
	t.Run("prod-ticket-with-ticket", func(t *testing.T) {
		p := mustCompile(t, Rule{Name: "prod-ticket", DenyUnless: tests[3].expr})
		in := baseInput()
		in.Entry.Path, in.Entry.Ticket = "/ns/prod/db", "CHG-1234"
		if d := evaluate(t, p, in); !d.Allowed() {
			t.Errorf("got %+v, want allowed", d)
		}
	})
}

// TestVariables checks every variable and key of the schema against the base input.
func TestVariables(t *testing.T) {
	never := baseInput()
	never.Entry.NeverExpires, never.Entry.ExpiresAt = true, time.Time{}
	rootPath := baseInput()
	rootPath.Entry.Path, rootPath.Entry.Selectors, rootPath.Entry.DNSNames = "/", nil, nil
	tests := []struct {
		name, expr string
		in         Input
	}{
		{"spiffe_id", `entry.spiffe_id == "spiffe://example.org/team/payments/api"`, baseInput()},
		{"trust_domain", `entry.trust_domain == "example.org"`, baseInput()},
		{"path", `entry.path == "/team/payments/api"`, baseInput()},
		{"path_segments", `entry.path_segments == ["team", "payments", "api"]`, baseInput()},
		{"path_segments-root", `entry.path_segments == [] && entry.selectors == [] && size(entry.dns_names) == 0`, rootPath},
		{"parent_id", `entry.parent_id.endsWith("/agent/node-1")`, baseInput()},
		{"purpose", `entry.purpose.lowerAscii().contains("payments")`, baseInput()},
		{"ticket", `entry.ticket == ""`, baseInput()},
		{"selectors", `"k8s:ns:payments" in entry.selectors`, baseInput()},
		{"selector_types", `entry.selector_types == ["unix", "k8s"]`, baseInput()},
		{"x509_ttl", `entry.x509_ttl == duration("1h") && entry.x509_ttl > duration("59m")`, baseInput()},
		{"jwt_ttl", `entry.jwt_ttl == duration("5m")`, baseInput()},
		{"dns_names", `entry.dns_names.all(d, d.endsWith(".example.org"))`, baseInput()},
		{"expires_at", `entry.expires_at == timestamp("2026-03-31T12:00:00Z")`, baseInput()},
		{"never_expires-false", `entry.never_expires == false && has(entry.expires_at)`, baseInput()},
		{"never_expires-true", `entry.never_expires && !has(entry.expires_at)`, never},
		{"owner", `owner.name == "payments" && owner.kind == "team" && owner.team == "payments"`, baseInput()},
		{"admin", `admin == "alice"`, baseInput()},
		{"action", `action == "create"`, baseInput()},
		{"now", `now == timestamp("2026-03-01T12:00:00Z")`, baseInput()},
		{"split", `entry.spiffe_id.split("/")[2] == entry.trust_domain`, baseInput()},
		{"index-syntax", `entry["path"] == entry.path`, baseInput()},
		{"dyn-bool", `entry.never_expires`, never},
		{"shadowed-entry", `entry.selectors.all(entry, entry.contains(":"))`, baseInput()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, Rule{Name: "r", DenyUnless: tc.expr})
			if d := evaluate(t, p, tc.in); !d.Allowed() {
				t.Errorf("%s: got %+v, want true", tc.expr, d.Denied)
			}
		})
	}
	t.Run("now-defaults-to-time.Now", func(t *testing.T) {
		p := mustCompile(t, Rule{Name: "r", DenyUnless: `now > timestamp("2026-01-01T00:00:00Z")`})
		in := baseInput()
		in.Now = time.Time{}
		if d := evaluate(t, p, in); !d.Allowed() {
			t.Errorf("got %+v", d)
		}
	})
}

func TestMultipleDenialsInRuleOrder(t *testing.T) {
	p := mustCompile(t,
		Rule{Name: "max-ttl", Description: "X.509-SVIDs live at most 24h", DenyUnless: `entry.x509_ttl <= duration("24h")`},
		Rule{Name: "allowed", DenyUnless: `true`},
		Rule{Name: "no-never-expiring", DenyUnless: `!entry.never_expires`},
		Rule{Name: "prod-approval", ApprovalWhen: `entry.path.startsWith("/prod/")`},
		Rule{Name: "team-path", DenyUnless: `entry.path.startsWith("/team/" + owner.team + "/")`},
	)
	in := baseInput()
	in.Entry.X509TTL = 48 * time.Hour
	in.Entry.NeverExpires = true
	in.Entry.Path = "/prod/db"
	d := evaluate(t, p, in)
	want := []Denial{
		{"max-ttl", `policy rule "max-ttl" denies this entry: X.509-SVIDs live at most 24h`},
		{"no-never-expiring", `policy rule "no-never-expiring" denies this entry: !entry.never_expires`},
		{"team-path", `policy rule "team-path" denies this entry: entry.path.startsWith("/team/" + owner.team + "/")`},
	}
	if fmt.Sprint(d.Denied) != fmt.Sprint(want) {
		t.Errorf("Denied =\n%q\nwant\n%q", d.Denied, want)
	}
	if fmt.Sprint(d.Approval) != "[prod-approval]" {
		t.Errorf("Approval = %q", d.Approval)
	}
}

func TestApproval(t *testing.T) {
	p := mustCompile(t,
		Rule{Name: "prod-approval", Description: "prod entries need a second admin", ApprovalWhen: `entry.path.startsWith("/prod/")`},
		Rule{Name: "long-ttl-approval", ApprovalWhen: `entry.x509_ttl > duration("12h")`},
		Rule{Name: "max-ttl", DenyUnless: `entry.x509_ttl <= duration("24h")`},
	)
	tests := []struct {
		name     string
		mod      func(*Input)
		approval []string
	}{
		{"none", func(*Input) {}, nil},
		{"prod", func(in *Input) { in.Entry.Path = "/prod/db" }, []string{"prod-approval"}},
		{"both", func(in *Input) { in.Entry.Path, in.Entry.X509TTL = "/prod/db", 20*time.Hour }, []string{"prod-approval", "long-ttl-approval"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			tc.mod(&in)
			d := evaluate(t, p, in)
			if !d.Allowed() {
				t.Errorf("approval rules denied: %+v", d.Denied)
			}
			if fmt.Sprint(d.Approval) != fmt.Sprint(tc.approval) {
				t.Errorf("Approval = %q, want %q", d.Approval, tc.approval)
			}
		})
	}
}

// TestKeyRevocation: a key revocation (Input.Key set) sees the key variable and is decided by approval
// rules only: an entry rule that would deny an empty entry does not stop it; an entry request sees an
// empty key; a misspelt key of key is refused at Compile.
func TestKeyRevocation(t *testing.T) {
	p := mustCompile(t,
		Rule{Name: "two-person-revoke", ApprovalWhen: `action == "ca.revoke-key" && key.kind == "x509" && key.node.startsWith("node-")`},
		Rule{Name: "prod-approval", ApprovalWhen: `entry.path.startsWith("/prod/")`},
		Rule{Name: "team-paths", DenyUnless: `entry.path.startsWith("/team/")`},
	)
	in := Input{Admin: "alice", Action: "ca.revoke-key", Key: &KeyInput{Kind: "x509", ID: "ab", SignerID: "cd", Node: "node-1"}}
	if d := evaluate(t, p, in); !d.Allowed() || fmt.Sprint(d.Approval) != "[two-person-revoke]" {
		t.Fatalf("revocation: denied %+v, approval %q; want allowed, approval by two-person-revoke", d.Denied, d.Approval)
	}
	in.Key.Kind = "jwt"
	if d := evaluate(t, p, in); !d.Allowed() || len(d.Approval) != 0 {
		t.Fatalf("revocation of a JWT key: denied %+v, approval %q; want allowed without approval", d.Denied, d.Approval)
	}
	entry := baseInput()
	entry.Entry.Path = "/team/a"
	if d := evaluate(t, p, entry); !d.Allowed() || len(d.Approval) != 0 {
		t.Fatalf("entry request: denied %+v, approval %q", d.Denied, d.Approval)
	}
	if _, err := Compile(Config{Rules: []Rule{{Name: "typo", ApprovalWhen: `key.owner == "x"`}}}); err == nil || !strings.Contains(err.Error(), `key has no key "owner"`) {
		t.Fatalf("a misspelt key of key: %v", err)
	}
}

func TestEmptyPolicyAllowsEverything(t *testing.T) {
	for name, cfg := range map[string]Config{"zero": {}, "empty-rules": {Rules: []Rule{}}} {
		t.Run(name, func(t *testing.T) {
			p, err := Compile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d := evaluate(t, p, Input{}); !d.Allowed() || len(d.Approval) != 0 {
				t.Errorf("got %+v", d)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		var p *Policy
		if d := evaluate(t, p, baseInput()); !d.Allowed() {
			t.Errorf("got %+v", d)
		}
	})
}

func TestCompileErrors(t *testing.T) {
	ok := `entry.x509_ttl <= duration("24h")`
	long := "true" + strings.Repeat(" && true", (MaxExpressionBytes)/8)
	tests := []struct {
		name  string
		rules []Rule
		want  []string // each must appear in the error
	}{
		{"empty-name", []Rule{{Name: "a", DenyUnless: ok}, {DenyUnless: ok}}, []string{"policy rule #2", "name is required"}},
		{"duplicate-name", []Rule{{Name: "max-ttl", DenyUnless: ok}, {Name: "max-ttl", DenyUnless: ok}}, []string{`policy rule "max-ttl" (#2)`, "duplicate name"}},
		{"upper-case-name", []Rule{{Name: "Max-TTL", DenyUnless: ok}}, []string{`policy rule "Max-TTL"`, "malformed name"}},
		{"name-with-space", []Rule{{Name: "max ttl", DenyUnless: ok}}, []string{`policy rule "max ttl"`, "malformed name"}},
		{"name-with-underscore", []Rule{{Name: "max_ttl", DenyUnless: ok}}, []string{`policy rule "max_ttl"`, "malformed name"}},
		{"both-expressions", []Rule{{Name: "both", DenyUnless: ok, ApprovalWhen: ok}}, []string{`policy rule "both"`, "not both"}},
		{"neither-expression", []Rule{{Name: "neither", Description: "x"}}, []string{`policy rule "neither"`, "one of deny_unless and approval_when is required"}},
		{"blank-expression", []Rule{{Name: "blank", DenyUnless: "  \n"}}, []string{`policy rule "blank"`, "is required"}},
		{"syntax-error", []Rule{{Name: "syntax", DenyUnless: `entry.path.startsWith("/a"`}}, []string{`policy rule "syntax": deny_unless:`, "Syntax error"}},
		{"undeclared-variable", []Rule{{Name: "undeclared", ApprovalWhen: `request.path == "/"`}}, []string{`policy rule "undeclared": approval_when:`, "undeclared reference to 'request'"}},
		{"no-such-function", []Rule{{Name: "nofunc", DenyUnless: `admin.frobnicate()`}}, []string{`policy rule "nofunc"`, "frobnicate"}},
		{"wrong-argument-type", []Rule{{Name: "types", DenyUnless: `admin > 3`}}, []string{`policy rule "types"`, "no matching overload"}},
		{"int-not-bool", []Rule{{Name: "int", DenyUnless: `size(entry.selectors)`}}, []string{`policy rule "int"`, "of type int, not bool"}},
		{"string-not-bool", []Rule{{Name: "str", ApprovalWhen: `admin + "x"`}}, []string{`policy rule "str"`, "of type string, not bool"}},
		{"too-long", []Rule{{Name: "long", DenyUnless: long}}, []string{`policy rule "long"`, fmt.Sprintf("longer than %d", MaxExpressionBytes)}},
		{"unknown-entry-key", []Rule{{Name: "typo", DenyUnless: `entry.nosuchkey == "x"`}}, []string{`policy rule "typo"`, `entry has no key "nosuchkey"`}},
		{"unknown-owner-key-in-has", []Rule{{Name: "typo", DenyUnless: `has(owner.teams)`}}, []string{`policy rule "typo"`, `owner has no key "teams"`}},
		{"unknown-key-by-index", []Rule{{Name: "typo", DenyUnless: `entry["x509ttl"] < duration("1h")`}}, []string{`policy rule "typo"`, `entry has no key "x509ttl"`}},
		{"unknown-key-in-comprehension", []Rule{{Name: "typo", DenyUnless: `entry.selectors.all(s, s != entry.parent)`}}, []string{`policy rule "typo"`, `entry has no key "parent"`}},
		{"description-too-long", []Rule{{Name: "wordy", Description: strings.Repeat("x", MaxDescriptionBytes+1), DenyUnless: ok}},
			[]string{`policy rule "wordy"`, fmt.Sprintf("description is %d bytes, longer than %d", MaxDescriptionBytes+1, MaxDescriptionBytes)}},
		{"too-many-rules", slices.Repeat([]Rule{{Name: "r", DenyUnless: ok}}, MaxRules+1), []string{fmt.Sprintf("%d rules, at most %d", MaxRules+1, MaxRules)}},
		{"every-bad-rule-named", []Rule{{Name: "good", DenyUnless: ok}, {Name: "bad-one", DenyUnless: `1 +`}, {Name: "bad-two", ApprovalWhen: `nope`}},
			[]string{`policy rule "bad-one"`, `policy rule "bad-two"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(Config{Rules: tc.rules})
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want an error", p)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), `"good"`) {
				t.Errorf("error names a good rule: %v", err)
			}
		})
	}
	t.Run("at-the-limit", func(t *testing.T) {
		e := "true" + strings.Repeat(" ", MaxExpressionBytes-4)
		mustCompile(t, Rule{Name: "limit", DenyUnless: e})
	})
}

func TestRuntimeErrorsFailClosed(t *testing.T) {
	never := baseInput()
	never.Entry.NeverExpires, never.Entry.ExpiresAt = true, time.Time{}
	ticket := baseInput()
	ticket.Entry.Ticket = "CHG-12"
	tests := []struct {
		name string
		rule Rule
		in   Input
		want string
	}{
		{"absent-key", Rule{Name: "expiry", DenyUnless: `entry.expires_at < now + duration("720h")`}, never, "no such key: expires_at"},
		{"index-out-of-range", Rule{Name: "third-dns", DenyUnless: `entry.dns_names[2] != ""`}, baseInput(), "index out of bounds"},
		{"bad-conversion", Rule{Name: "ticket-number", DenyUnless: `int(entry.ticket) > 0`}, ticket, "ticket-number"},
		{"dyn-not-bool", Rule{Name: "dyn", DenyUnless: `entry.purpose`}, baseInput(), "evaluated to string, not bool"},
		{"wrong-dyn-type", Rule{Name: "ttl-type", DenyUnless: `entry.x509_ttl < 3600`}, baseInput(), "no such overload"},
		{"approval-rule-errors", Rule{Name: "appr", ApprovalWhen: `entry.expires_at < now`}, never, "no such key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, tc.rule, Rule{Name: "fine", DenyUnless: `true`})
			d := evaluate(t, p, tc.in)
			if len(d.Denied) != 1 || len(d.Approval) != 0 {
				t.Fatalf("got %+v, want exactly one denial", d)
			}
			prefix := fmt.Sprintf("policy rule %q denies this entry: rule failed to evaluate (fail closed): ", tc.rule.Name)
			if got := d.Denied[0]; got.Rule != tc.rule.Name || !strings.HasPrefix(got.Message, prefix) || !strings.Contains(got.Message, tc.want) {
				t.Errorf("denial = %+v, want rule %q, message starting %q containing %q", got, tc.rule.Name, prefix, tc.want)
			}
		})
	}
}

func TestCostLimit(t *testing.T) {
	// 100 elements, nested four deep: 10^8 iterations and a 10^8-element result without the limit.
	nums := make([]string, 100)
	for i := range nums {
		nums[i] = fmt.Sprint(i)
	}
	l := "[" + strings.Join(nums, ",") + "]"
	expr := fmt.Sprintf(`size(%s.map(a, %s.map(b, %s.map(c, %s.map(d, a + b + c + d))))) > 0`, l, l, l, l)
	if len(expr) > MaxExpressionBytes {
		t.Fatalf("test expression is %d bytes", len(expr))
	}
	tests := []struct {
		name string
		rule Rule
	}{
		{"literal-list", Rule{Name: "expensive", DenyUnless: expr}},
		// The list is generated from the input: a selector list of 64 entries, nested four deep.
		{"input-list", Rule{Name: "expensive", ApprovalWhen: `entry.selectors.exists(a, entry.selectors.exists(b, entry.selectors.exists(c, entry.selectors.exists(d, a + b + c + d == "x"))))`}},
	}
	in := baseInput()
	in.Entry.Selectors = nil
	for i := range 64 {
		in.Entry.Selectors = append(in.Entry.Selectors, fmt.Sprintf("unix:uid:%d", i))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, tc.rule)
			start := time.Now()
			d := evaluate(t, p, in)
			if elapsed := time.Since(start); elapsed > 20*time.Second {
				t.Errorf("evaluation took %v", elapsed)
			}
			if len(d.Denied) != 1 || !strings.Contains(d.Denied[0].Message, "cost limit exceeded") || !strings.Contains(d.Denied[0].Message, `"expensive"`) {
				t.Errorf("got %+v, want a cost-limit denial naming the rule", d)
			}
		})
	}
}

func TestContextCanceled(t *testing.T) {
	p := mustCompile(t, Rule{Name: "a", DenyUnless: `true`}, Rule{Name: "b", DenyUnless: `true`})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := p.Evaluate(ctx, baseInput())
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `policy rule "a"`) {
		t.Errorf("err = %v, want context.Canceled naming rule a", err)
	}
	if d.Allowed() {
		t.Errorf("a canceled evaluation was allowed: %+v", d)
	}
}

func TestContextDeadlineInterruptsEvaluation(t *testing.T) {
	// Interrupted by the deadline well before the cost limit would stop it.
	p := mustCompile(t, Rule{Name: "slow", DenyUnless: `entry.selectors.all(a, entry.selectors.all(b, entry.selectors.all(c, a + b + c != "")))`})
	in := baseInput()
	in.Entry.Selectors = nil
	for i := range 64 {
		in.Entry.Selectors = append(in.Entry.Selectors, fmt.Sprintf("unix:uid:%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	d, err := p.Evaluate(ctx, in)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `policy rule "slow"`) {
		t.Errorf("err = %v, want context.DeadlineExceeded naming rule slow", err)
	}
	if d.Allowed() {
		t.Errorf("an interrupted evaluation was allowed: %+v", d)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	p := mustCompile(t,
		Rule{Name: "max-ttl", DenyUnless: `entry.x509_ttl <= duration("24h")`},
		Rule{Name: "team-path", DenyUnless: `entry.path.startsWith("/team/" + owner.team + "/")`},
		Rule{Name: "prod-approval", ApprovalWhen: `entry.path.startsWith("/team/prod/")`},
	)
	const goroutines, iterations = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iterations {
				in := baseInput()
				in.Entry.X509TTL = time.Duration(g+i%3) * 12 * time.Hour // denied when > 24h
				team := fmt.Sprintf("team-%d", g)
				in.Owner.Team = team
				in.Entry.Path = "/team/" + team + "/svc"
				if g%2 == 0 {
					in.Owner.Team, in.Entry.Path = "prod", "/team/prod/svc"
				}
				d, err := p.Evaluate(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				wantDenied := in.Entry.X509TTL > 24*time.Hour
				wantApproval := g%2 == 0
				if (len(d.Denied) == 1 && d.Denied[0].Rule == "max-ttl") != wantDenied || (len(d.Denied) > 0) != wantDenied ||
					(len(d.Approval) == 1) != wantApproval {
					errs <- fmt.Errorf("goroutine %d iteration %d: got %+v", g, i, d)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	p := mustCompile(b,
		Rule{Name: "team-path", DenyUnless: `entry.path.startsWith("/team/" + owner.team + "/")`},
		Rule{Name: "max-ttl", DenyUnless: `entry.x509_ttl <= duration("24h")`},
		Rule{Name: "two-selectors", DenyUnless: `size(entry.selectors) >= 2 && entry.selectors.exists(s, !s.startsWith("unix:uid:"))`},
	)
	in := baseInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := p.Evaluate(ctx, in)
		if err != nil || !d.Allowed() {
			b.Fatalf("%+v %v", d, err)
		}
	}
}
