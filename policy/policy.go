// Package policy evaluates entry-creation policy written in CEL (the Common Expression Language,
// https://cel.dev). The server evaluates the configured rules on every registration entry create and
// update, after the entry has been validated and its defaults (TTLs) filled in.
//
// # Rules
//
// A rule has a name ([a-z0-9-]+, unique), an optional description (shown in denials) and exactly one
// expression of type bool:
//
//   - deny_unless: the request is denied unless the expression is true.
//   - approval_when: when the expression is true, a second admin must approve the request (two-person
//     rule). Such a rule never denies by itself.
//
// A rule whose expression fails at evaluation (a missing map key, a value of the wrong type, the cost
// limit) denies the request, whatever its kind: policy fails closed. Expressions are at most
// [MaxExpressionBytes] long, and each evaluation of one is bounded by [MaxCost].
//
// # Variables
//
// Expressions see these variables (the standard CEL library is enabled, plus the cel-go strings
// extension: startsWith, endsWith, contains, split, lowerAscii, upperAscii, replace, trim, indexOf,
// substring, join, format, ...):
//
//	entry   map(string, dyn), with exactly these keys:
//	  spiffe_id       string     "spiffe://example.org/team/payments/api"
//	  trust_domain    string     "example.org"
//	  path            string     "/team/payments/api"
//	  path_segments   list(string)  ["team", "payments", "api"] (empty segments dropped)
//	  parent_id       string
//	  purpose         string
//	  ticket          string     "" when none
//	  selectors       list(string)  "type:key:value", e.g. "unix:uid:1000"
//	  selector_types  list(string)  the distinct types, in order of first appearance: ["unix", "k8s"]
//	  x509_ttl        duration   compare with duration("24h")
//	  jwt_ttl         duration
//	  dns_names       list(string)
//	  expires_at      timestamp  ABSENT when the entry never expires: test has(entry.expires_at)
//	  never_expires   bool
//	owner   map(string, dyn): name, kind ("person" or "team"), team (strings; "" when unset)
//	key     map(string, dyn), the CA key of a revocation (action "ca.revoke-key"); "" in entry requests:
//	  kind            string     "x509" or "jwt"
//	  id              string     the key's ID in the bundle (a root's SHA-256, a JWT kid)
//	  signer_id       string     its ID in the ledger's signed_by (a root's Subject Key Identifier)
//	  node            string     the server node that owns it
//	admin   string     the admin making the request
//	action  string     "create" or "update" (entries), "ca.revoke-key" (signet ca revoke-key)
//	now     timestamp  the time of the request (Input.Now)
//
// A key revocation (action "ca.revoke-key") is decided by the approval_when rules only: deny_unless rules
// govern entries, and none of them may stop the response to a compromise. A rule asks a second admin for
// every revocation with approval_when: action == "ca.revoke-key".
//
// A reference to a key of entry or owner that is not listed above (entry.nosuchkey, has(entry.typo),
// entry["typo"]) is refused by [Compile], so that a misspelt rule is caught when the configuration is
// loaded rather than denying every request.
//
// # Examples
//
//	deny_unless:   entry.path.startsWith("/team/" + owner.team + "/")
//	deny_unless:   entry.x509_ttl <= duration("24h")
//	deny_unless:   size(entry.selectors) >= 2 && entry.selectors.exists(s, !s.startsWith("unix:uid:"))
//	deny_unless:   !entry.path.startsWith("/ns/prod/") || entry.ticket != ""
//	deny_unless:   !entry.never_expires
//	deny_unless:   entry.never_expires || entry.expires_at - now <= duration("2160h")
//	approval_when: entry.path.startsWith("/prod/")
package policy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
)

// Limits on rules.
const (
	// MaxExpressionBytes is the longest expression Compile accepts, in bytes.
	MaxExpressionBytes = 4096
	// MaxCost bounds the work of one evaluation of one rule, in CEL cost units (roughly one per
	// operation, one per comprehension iteration, more for string operations on long strings). Ordinary
	// rules cost tens to a few thousand; an evaluation that reaches it fails, which denies the request.
	MaxCost = 1_000_000
	// MaxRules is the most rules a policy has; MaxDescriptionBytes bounds a rule's description.
	MaxRules            = 256
	MaxDescriptionBytes = 1024
	// interruptEvery is how many comprehension iterations run between checks of the context.
	interruptEvery = 100
)

// Rule is one policy rule from the server configuration.
type Rule struct {
	Name        string `yaml:"name"`        // required, unique, [a-z0-9-]+
	Description string `yaml:"description"` // optional, shown in denials
	// Exactly one of the two:
	DenyUnless   string `yaml:"deny_unless"`   // CEL bool expression: the request is denied unless it is true
	ApprovalWhen string `yaml:"approval_when"` // CEL bool expression: when true, a second admin must approve (two-person rule)
}

// Config is the policy section of the server configuration.
type Config struct {
	Rules []Rule `yaml:"rules"`
}

// Input is what rules see; Evaluate turns it into the CEL variables described in the package doc.
type Input struct {
	Entry  EntryInput
	Owner  OwnerInput
	Admin  string // who asks
	Action string // "create" or "update", or "ca.revoke-key" with Key set
	// Key is the CA key of a revocation; when set, only approval_when rules are evaluated.
	Key *KeyInput
	// Now is the time of the request, the variable now; zero means time.Now() at Evaluate.
	Now time.Time
}

// EntryInput is the entry as it would be stored (validated, defaults filled in).
type EntryInput struct {
	SPIFFEID, TrustDomain, Path, ParentID, Purpose, Ticket string
	Selectors                                              []string // "type:key:value"
	X509TTL, JWTTTL                                        time.Duration
	DNSNames                                               []string
	ExpiresAt                                              time.Time // zero when never
	NeverExpires                                           bool
}

// KeyInput is a CA key an admin asks to revoke.
type KeyInput struct{ Kind, ID, SignerID, Node string }

// OwnerInput is the entry's owner.
type OwnerInput struct{ Name, Kind, Team string }

// Decision is the outcome of evaluating a request.
type Decision struct {
	// Denied lists the rules that deny, in rule order, each with a message naming the rule:
	// `policy rule "max-ttl" denies this entry: <description or expression>`.
	Denied []Denial
	// Approval lists, in rule order, the names of the approval_when rules that are true: the request
	// needs a second admin's approval.
	Approval []string
}

// Denial is one rule's denial.
type Denial struct{ Rule, Message string }

// Allowed reports whether no rule denies. A request that is allowed may still need approval.
func (d Decision) Allowed() bool { return len(d.Denied) == 0 }

// Policy is a compiled set of rules; safe for concurrent use. A nil or empty Policy allows everything.
type Policy struct {
	rules []compiledRule
}

type compiledRule struct {
	name     string
	approval bool   // approval_when, else deny_unless
	shown    string // description, or the expression
	prg      cel.Program
}

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// The keys of the entry and owner maps; Compile refuses any other.
var (
	entryKeys = map[string]bool{
		"spiffe_id": true, "trust_domain": true, "path": true, "path_segments": true, "parent_id": true,
		"purpose": true, "ticket": true, "selectors": true, "selector_types": true, "x509_ttl": true,
		"jwt_ttl": true, "dns_names": true, "expires_at": true, "never_expires": true,
	}
	ownerKeys = map[string]bool{"name": true, "kind": true, "team": true}
	keyKeys   = map[string]bool{"kind": true, "id": true, "signer_id": true, "node": true}
	mapKeys   = map[string]map[string]bool{"entry": entryKeys, "owner": ownerKeys, "key": keyKeys}
)

func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("entry", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("owner", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("key", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("admin", cel.StringType),
		cel.Variable("action", cel.StringType),
		cel.Variable("now", cel.TimestampType),
		ext.Strings(),
		cel.ParserExpressionSizeLimit(MaxExpressionBytes),
	)
}

// Compile type-checks every rule. It returns an error naming the rule (and the CEL error) for each rule
// with an empty, duplicate or malformed name, with both or neither expression set, with an expression
// that is too long, does not compile, is not of type bool or uses a key of entry or owner that does not
// exist. An empty Config gives a Policy that allows everything.
func Compile(cfg Config) (*Policy, error) {
	p := &Policy{}
	if len(cfg.Rules) == 0 {
		return p, nil
	}
	if len(cfg.Rules) > MaxRules {
		return nil, fmt.Errorf("policy: %d rules, at most %d: merge rules (one expression may test many things)", len(cfg.Rules), MaxRules)
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	var errs []error
	seen := make(map[string]bool, len(cfg.Rules))
	for i, r := range cfg.Rules {
		label := fmt.Sprintf("policy rule %q", r.Name)
		switch {
		case r.Name == "":
			errs = append(errs, fmt.Errorf("policy rule #%d: name is required", i+1))
			label = fmt.Sprintf("policy rule #%d", i+1)
		case !nameRE.MatchString(r.Name):
			errs = append(errs, fmt.Errorf("%s (#%d): malformed name: use lower-case letters, digits and -", label, i+1))
		case seen[r.Name]:
			errs = append(errs, fmt.Errorf("%s (#%d): duplicate name", label, i+1))
		}
		seen[r.Name] = true
		if len(r.Description) > MaxDescriptionBytes {
			errs = append(errs, fmt.Errorf("%s: description is %d bytes, longer than %d", label, len(r.Description), MaxDescriptionBytes))
		}
		deny, appr := strings.TrimSpace(r.DenyUnless) != "", strings.TrimSpace(r.ApprovalWhen) != ""
		var field, expr string
		switch {
		case deny && appr:
			errs = append(errs, fmt.Errorf("%s: set one of deny_unless and approval_when, not both", label))
			continue
		case !deny && !appr:
			errs = append(errs, fmt.Errorf("%s: one of deny_unless and approval_when is required", label))
			continue
		case deny:
			field, expr = "deny_unless", r.DenyUnless
		default:
			field, expr = "approval_when", r.ApprovalWhen
		}
		prg, err := compileExpr(env, expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", label, field, err))
			continue
		}
		shown := strings.TrimSpace(r.Description)
		if shown == "" {
			shown = strings.TrimSpace(expr)
		}
		p.rules = append(p.rules, compiledRule{name: r.Name, approval: appr, shown: shown, prg: prg})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func compileExpr(env *cel.Env, expr string) (cel.Program, error) {
	if len(expr) > MaxExpressionBytes {
		return nil, fmt.Errorf("expression is %d bytes, longer than %d", len(expr), MaxExpressionBytes)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	// dyn passes here (entry.never_expires); Evaluate fails closed if it is not a bool at run time.
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("expression is of type %s, not bool", t)
	}
	if err := checkKeys(ast.NativeRep().Expr(), nil); err != nil {
		return nil, err
	}
	return env.Program(ast, cel.CostLimit(MaxCost), cel.InterruptCheckFrequency(interruptEvery))
}

// checkKeys refuses entry.KEY, has(entry.KEY) and entry["KEY"] (likewise for owner) where KEY is not a
// key of the map. local holds the comprehension variables in scope, which shadow the globals.
func checkKeys(e celast.Expr, local map[string]bool) error {
	unknown := func(v, key string) error {
		if keys := mapKeys[v]; keys != nil && !local[v] && !keys[key] {
			return fmt.Errorf("%s has no key %q", v, key)
		}
		return nil
	}
	switch e.Kind() {
	case celast.SelectKind:
		s := e.AsSelect()
		if op := s.Operand(); op.Kind() == celast.IdentKind {
			if err := unknown(op.AsIdent(), s.FieldName()); err != nil {
				return err
			}
		}
		return checkKeys(s.Operand(), local)
	case celast.CallKind:
		c := e.AsCall()
		if args := c.Args(); c.FunctionName() == "_[_]" && len(args) == 2 && args[0].Kind() == celast.IdentKind && args[1].Kind() == celast.LiteralKind {
			if k, ok := args[1].AsLiteral().(types.String); ok {
				if err := unknown(args[0].AsIdent(), string(k)); err != nil {
					return err
				}
			}
		}
		if c.IsMemberFunction() {
			if err := checkKeys(c.Target(), local); err != nil {
				return err
			}
		}
		for _, a := range c.Args() {
			if err := checkKeys(a, local); err != nil {
				return err
			}
		}
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			if err := checkKeys(el, local); err != nil {
				return err
			}
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			if err := checkKeys(me.Key(), local); err != nil {
				return err
			}
			if err := checkKeys(me.Value(), local); err != nil {
				return err
			}
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			if err := checkKeys(f.AsStructField().Value(), local); err != nil {
				return err
			}
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		if err := checkKeys(c.IterRange(), local); err != nil {
			return err
		}
		if err := checkKeys(c.AccuInit(), local); err != nil {
			return err
		}
		inner := make(map[string]bool, len(local)+3)
		for k := range local {
			inner[k] = true
		}
		inner[c.IterVar()], inner[c.AccuVar()] = true, true
		if c.HasIterVar2() {
			inner[c.IterVar2()] = true
		}
		for _, x := range []celast.Expr{c.LoopCondition(), c.LoopStep(), c.Result()} {
			if err := checkKeys(x, inner); err != nil {
				return err
			}
		}
	}
	return nil
}

// Evaluate runs every rule against the request. A rule that fails at evaluation denies the request
// (fail closed), with a message naming the rule and the error. The error is non-nil only when ctx ends
// before every rule has run; the Decision then also denies, and the request must be refused.
func (p *Policy) Evaluate(ctx context.Context, in Input) (Decision, error) {
	var d Decision
	if p == nil || len(p.rules) == 0 {
		return d, nil
	}
	if ctx == nil {
		ctx = context.Background()
	}
	act, err := cel.NewActivation(variables(in))
	if err != nil { // cannot happen: the input is a map
		return Decision{Denied: []Denial{{Message: "policy: " + err.Error()}}}, err
	}
	for _, r := range p.rules {
		if in.Key != nil && !r.approval {
			continue // a key revocation is decided by approval rules only
		}
		if err := ctx.Err(); err != nil {
			d.Denied = append(d.Denied, r.deny("not evaluated: "+err.Error()))
			return d, fmt.Errorf("policy rule %q: %w", r.name, err)
		}
		out, _, err := r.prg.ContextEval(ctx, act)
		if err == nil {
			if b, ok := out.(types.Bool); ok {
				if r.approval && bool(b) {
					d.Approval = append(d.Approval, r.name)
				} else if !r.approval && !bool(b) {
					d.Denied = append(d.Denied, r.deny(r.shown))
				}
				continue
			}
			err = fmt.Errorf("evaluated to %s, not bool", out.Type().TypeName())
		}
		d.Denied = append(d.Denied, r.deny("rule failed to evaluate (fail closed): "+err.Error()))
		if cerr := ctx.Err(); cerr != nil {
			return d, fmt.Errorf("policy rule %q: %w", r.name, cerr)
		}
	}
	return d, nil
}

func (r *compiledRule) deny(why string) Denial {
	return Denial{Rule: r.name, Message: fmt.Sprintf("policy rule %q denies this entry: %s", r.name, why)}
}

// variables builds the CEL variables from the input, as native CEL values (no reflection at evaluation).
func variables(in Input) map[string]any {
	e := in.Entry
	entry := map[string]any{
		"spiffe_id":      types.String(e.SPIFFEID),
		"trust_domain":   types.String(e.TrustDomain),
		"path":           types.String(e.Path),
		"path_segments":  stringList(pathSegments(e.Path)),
		"parent_id":      types.String(e.ParentID),
		"purpose":        types.String(e.Purpose),
		"ticket":         types.String(e.Ticket),
		"selectors":      stringList(e.Selectors),
		"selector_types": stringList(selectorTypes(e.Selectors)),
		"x509_ttl":       types.Duration{Duration: e.X509TTL},
		"jwt_ttl":        types.Duration{Duration: e.JWTTTL},
		"dns_names":      stringList(e.DNSNames),
		"never_expires":  types.Bool(e.NeverExpires),
	}
	if !e.NeverExpires && !e.ExpiresAt.IsZero() {
		entry["expires_at"] = types.Timestamp{Time: e.ExpiresAt}
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	var k KeyInput
	if in.Key != nil {
		k = *in.Key
	}
	return map[string]any{
		"entry": types.NewStringInterfaceMap(types.DefaultTypeAdapter, entry),
		"owner": types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{
			"name": types.String(in.Owner.Name),
			"kind": types.String(in.Owner.Kind),
			"team": types.String(in.Owner.Team),
		}),
		"key": types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{
			"kind":      types.String(k.Kind),
			"id":        types.String(k.ID),
			"signer_id": types.String(k.SignerID),
			"node":      types.String(k.Node),
		}),
		"admin":  types.String(in.Admin),
		"action": types.String(in.Action),
		"now":    types.Timestamp{Time: now},
	}
}

func stringList(s []string) ref.Val {
	if s == nil {
		s = []string{}
	}
	return types.NewStringList(types.DefaultTypeAdapter, s)
}

func pathSegments(path string) []string {
	segs := strings.Split(path, "/")
	out := segs[:0]
	for _, s := range segs {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func selectorTypes(sels []string) []string {
	var out []string
	for _, s := range sels {
		if t, _, _ := strings.Cut(s, ":"); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
