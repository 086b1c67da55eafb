package adminapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
)

// The entry policy is the cluster's, in the replicated state (storage.Policy): every server compiles it
// when it changes (cached by revision) and decides the writes that come through it by it; the state
// machine refuses a write decided under a revision that is no longer the policy's. A server's configured
// policy (AdminServiceConfig.Policy) only seeds a cluster that has none, and until then decides that
// server's writes.

// DefaultPolicySeedRetry is how long a server waits before trying again to seed the cluster's policy
// from its configuration after a failed attempt (no leader yet, an upgrade in progress).
const DefaultPolicySeedRetry = time.Second

// policySeedTimeout bounds one attempt to seed the policy.
const policySeedTimeout = 10 * time.Second

// compiledPolicy caches the compiled replicated policy, or why it does not compile, by revision.
type compiledPolicy struct {
	mu  sync.Mutex
	rev uint64 // 0: nothing cached
	p   *policy.Policy
	err error
}

func (c *compiledPolicy) get(cur storage.Policy) (*policy.Policy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev != cur.Revision {
		c.rev = cur.Revision
		if c.p, c.err = policy.Compile(policyConfig(cur.Rules)); c.err != nil {
			c.err = fmt.Errorf("%w (revision %d, set by %s): %v: upgrade this server, or set a policy it compiles (signet policy set)",
				ErrPolicyUnusable, cur.Revision, cur.SetBy, c.err)
		}
	}
	return c.p, c.err
}

func policyConfig(rules []storage.PolicyRule) policy.Config {
	cfg := policy.Config{Rules: make([]policy.Rule, len(rules))}
	for i, r := range rules {
		cfg.Rules[i] = policy.Rule{Name: r.Name, Description: r.Description, DenyUnless: r.DenyUnless, ApprovalWhen: r.ApprovalWhen}
	}
	return cfg
}

func storedRules(cfg policy.Config) []storage.PolicyRule {
	out := make([]storage.PolicyRule, len(cfg.Rules))
	for i, r := range cfg.Rules {
		out[i] = storage.PolicyRule{Name: r.Name, Description: r.Description, DenyUnless: r.DenyUnless, ApprovalWhen: r.ApprovalWhen}
	}
	return out
}

// policyKey carries, in a request's context, the policy the request is decided under (decidedBy).
type policyKey struct{}

type decidedBy struct {
	p      *policy.Policy
	limits storage.PolicyLimits
}

// withPolicy returns ctx carrying the entry policy the request is decided under: the cluster's, or
// while the cluster has none this server's configured one (nil without: everything is allowed), with
// the cluster's limits and the revision for the state machine's check.
func (s *AdminService) withPolicy(ctx context.Context) (context.Context, error) {
	cur, err := s.cfg.Store.Policy()
	if err != nil {
		return ctx, err
	}
	p := s.seed
	if cur.Revision != 0 {
		if p, err = s.compiled.get(cur); err != nil {
			return ctx, err
		}
	}
	return context.WithValue(storage.WithPolicyRevision(ctx, cur.Revision), policyKey{}, decidedBy{p: p, limits: cur.Limits}), nil
}

// policyFrom returns the policy withPolicy put in ctx; nil means every request is allowed.
func policyFrom(ctx context.Context) *policy.Policy {
	d, _ := ctx.Value(policyKey{}).(decidedBy)
	return d.p
}

// rulesFor returns the checks of an entry the request is decided under: this server's, with the
// cluster's minimum SVID lifetimes where its policy sets them.
func (s *AdminService) rulesFor(ctx context.Context) entryRules {
	r := s.rules()
	d, _ := ctx.Value(policyKey{}).(decidedBy)
	if d.limits.MinX509SVIDTTL != 0 {
		r.MinX509TTL = d.limits.MinX509SVIDTTL
	}
	if d.limits.MinJWTSVIDTTL != 0 {
		r.MinJWTTTL = d.limits.MinJWTSVIDTTL
	}
	return r
}

// entryTTL is how long an entry created without an expiry lives: the cluster's default_entry_ttl if its
// policy sets one, else this server's.
func (s *AdminService) entryTTL(ctx context.Context) time.Duration {
	if d, _ := ctx.Value(policyKey{}).(decidedBy); d.limits.DefaultEntryTTL != 0 {
		return d.limits.DefaultEntryTTL
	}
	return s.cfg.DefaultEntryTTL
}

// Bounds of the cluster's limits (PolicyLimits): a default entry lifetime at least MinDefaultEntryTTL
// and at most MaxDefaultEntryTTL; minimum SVID lifetimes as AdminServiceConfig's.
const (
	MinDefaultEntryTTL = time.Hour
	MaxDefaultEntryTTL = 10 * 365 * 24 * time.Hour
)

// validateLimits checks the cluster's limits; each error names the field and its bounds.
func validateLimits(l storage.PolicyLimits) error {
	for _, f := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"limits.min_x509_svid_ttl", l.MinX509SVIDTTL, ShortestSVIDTTL, maxTTL},
		{"limits.min_jwt_svid_ttl", l.MinJWTSVIDTTL, ShortestSVIDTTL, maxTTL},
		{"limits.default_entry_ttl", l.DefaultEntryTTL, MinDefaultEntryTTL, MaxDefaultEntryTTL},
	} {
		if f.v != 0 && (f.v < f.min || f.v > f.max) {
			return fmt.Errorf("%w: %s %s: want 0 (each server's configured value) or between %s and %s", ErrInvalidArgument, f.name, f.v, f.min, f.max)
		}
	}
	return nil
}

// SeedPolicy makes this server's configured policy the cluster's, if the cluster has none: through
// Raft, against revision 0, so of several servers seeding at once one wins and the others find its
// policy. A server whose configured policy differs from the cluster's logs a warning saying which
// decides. It returns once the cluster has a policy or ctx ends; without a configured policy at once.
func (s *AdminService) SeedPolicy(ctx context.Context) {
	if s.cfg.Policy == nil {
		return
	}
	rules := storedRules(*s.cfg.Policy)
	digest := storage.PolicyDigest(rules, storage.PolicyLimits{})
	node := s.cfg.Store.NodeID()
	wctx := storage.WithActor(ctx, "config:"+node)
	for {
		cur, err := s.cfg.Store.Policy()
		if err == nil && cur.Revision != 0 {
			if cur.SHA256 != digest {
				s.log.Warn("this server's configured policy differs from the cluster's entry policy, which decides on every server: "+
					"change the cluster's with 'signet policy set FILE' ('signet policy show' prints it), and remove policy: from this server's configuration",
					"cluster_revision", cur.Revision, "cluster_sha256", cur.SHA256, "set_by", cur.SetBy, "configured_sha256", digest)
			}
			return
		}
		if err == nil {
			actx, cancel := context.WithTimeout(wctx, policySeedTimeout)
			var p storage.Policy
			p, err = s.cfg.Store.SetPolicy(actx, rules, storage.PolicyLimits{}, 0, "seeded from the configuration of server "+node)
			cancel()
			if err == nil {
				s.log.Info("the cluster's entry policy was seeded from this server's configuration", "revision", p.Revision, "rules", len(rules), "sha256", p.SHA256)
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, storage.ErrConflict) { // a conflict: another server seeded it; read it once applied
			s.log.Debug("seeding the cluster's entry policy from the configuration failed; retrying", "error", err, "in", s.cfg.PolicySeedRetry)
		}
		t := time.NewTimer(s.cfg.PolicySeedRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// GetPolicy returns the cluster's entry policy as this server has applied it.
func (s *AdminService) GetPolicy(ctx context.Context, req *adminv1.GetPolicyRequest) (*adminv1.PolicyInfo, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	p, err := s.cfg.Store.Policy()
	if err != nil {
		return nil, toStatus(err)
	}
	return policyToAdmin(&p), nil
}

// SetPolicy replaces the cluster's entry policy. Rules that do not compile are refused, audited, and
// change nothing.
func (s *AdminService) SetPolicy(ctx context.Context, req *adminv1.SetPolicyRequest) (*adminv1.PolicyInfo, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	if err := requireReason(req.GetReason()); err != nil {
		return nil, toStatus(err)
	}
	rules := make([]storage.PolicyRule, len(req.GetRules()))
	for i, r := range req.GetRules() {
		rules[i] = storage.PolicyRule{Name: r.GetName(), Description: r.GetDescription(), DenyUnless: r.GetDenyUnless(), ApprovalWhen: r.GetApprovalWhen()}
	}
	l := req.GetLimits()
	limits := storage.PolicyLimits{MinX509SVIDTTL: seconds(l.GetMinX509SvidTtlSeconds()), MinJWTSVIDTTL: seconds(l.GetMinJwtSvidTtlSeconds()),
		DefaultEntryTTL: seconds(l.GetDefaultEntryTtlSeconds())}
	if err := validateLimits(limits); err != nil {
		return nil, toStatus(err)
	}
	if _, err := policy.Compile(policyConfig(rules)); err != nil {
		err = fmt.Errorf("%w: the policy is refused, nothing changed: %v", ErrInvalidArgument, err)
		s.audit.Denied(ctx, admin, "policy.set", "policy", err)
		return nil, toStatus(err)
	}
	p, err := s.cfg.Store.SetPolicy(ctx, rules, limits, req.GetPrevRevision(), req.GetReason())
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("entry policy set", "revision", p.Revision, "rules", len(p.Rules), "sha256", p.SHA256, "by", admin, "reason", req.GetReason())
	return policyToAdmin(&p), nil
}

// seconds converts an API duration in seconds, refusing to overflow (a value past 290 years is kept
// past every bound, so validation refuses it).
func seconds(s int64) time.Duration {
	const most = int64(math.MaxInt64 / int64(time.Second))
	if s > most || s < -most {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s) * time.Second
}

func policyToAdmin(p *storage.Policy) *adminv1.PolicyInfo {
	out := &adminv1.PolicyInfo{Revision: p.Revision, Sha256: p.SHA256, SetBy: p.SetBy, SetAt: unixOrZero(p.SetAt), Reason: p.Reason,
		Limits: &adminv1.PolicyLimits{MinX509SvidTtlSeconds: int64(p.Limits.MinX509SVIDTTL / time.Second),
			MinJwtSvidTtlSeconds: int64(p.Limits.MinJWTSVIDTTL / time.Second), DefaultEntryTtlSeconds: int64(p.Limits.DefaultEntryTTL / time.Second)}}
	for _, r := range p.Rules {
		out.Rules = append(out.Rules, &adminv1.PolicyRule{Name: r.Name, Description: r.Description, DenyUnless: r.DenyUnless, ApprovalWhen: r.ApprovalWhen})
	}
	return out
}
