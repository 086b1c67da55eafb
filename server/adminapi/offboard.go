package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
)

// maxOffboardAttempts bounds how often an offboarding is planned again because the owner's entries or
// the entry policy changed between the policy check and the write.
const maxOffboardAttempts = 3

// maxViolationsInError bounds the violations an offboarding refusal spells out (a dry run lists all).
const maxViolationsInError = 20

// offboard plans an offboarding, checks reassigned entries against the entry policy and, unless dryRun,
// carries it out. Reassigning is refused (ErrPolicyViolation, audited) while any entry would break a
// deny rule as its new owner's; the write then carries the entries it checked and the policy revision it
// checked them against, so an entry or the policy changed meanwhile makes it plan and check again.
// approval_when rules are not asked again: the entries exist, and offboarding changes only their owner.
func (s *AdminService) offboard(actx context.Context, admin, owner, mode, to, reason string, dryRun bool) (storage.OffboardResult, []*adminv1.PolicyViolation, error) {
	for attempt := 1; ; attempt++ {
		ctx, err := s.withPolicy(actx)
		if err != nil {
			return storage.OffboardResult{}, nil, err
		}
		checked := mode == storage.OffboardReassign && policyFrom(ctx) != nil
		if !dryRun && !checked {
			res, err := s.cfg.Store.OffboardOwner(ctx, owner, mode, to, reason)
			if errors.Is(err, storage.ErrConflict) && attempt < maxOffboardAttempts {
				continue // a policy was set meanwhile
			}
			return res, nil, err
		}
		plan, err := s.cfg.Store.PlanOffboard(ctx, owner, mode, to, reason)
		if err != nil {
			return plan, nil, err
		}
		var violations []*adminv1.PolicyViolation
		if checked {
			if violations, err = s.reassignViolations(ctx, plan.Entries, to, admin); err != nil {
				return plan, nil, err
			}
		}
		switch {
		case dryRun:
			return plan, violations, nil
		case len(violations) > 0:
			err := violationsError(owner, to, violations)
			s.audit.Denied(ctx, admin, "owner.offboard", owner, err)
			return plan, nil, err
		}
		res, err := s.cfg.Store.OffboardOwnerChecked(ctx, owner, mode, to, reason, plan.Revisions)
		if errors.Is(err, storage.ErrConflict) && attempt < maxOffboardAttempts {
			continue
		}
		return res, nil, err
	}
}

// reassignViolations evaluates the entry policy on each entry as reassigned to owner to, as an update
// by admin, and lists the deny rules it breaks.
func (s *AdminService) reassignViolations(ctx context.Context, entries []storage.Entry, to, admin string) ([]*adminv1.PolicyViolation, error) {
	o, err := s.cfg.Store.Owner(to)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock()
	var out []*adminv1.PolicyViolation
	for i := range entries {
		e := &entries[i]
		d, err := policyFrom(ctx).Evaluate(ctx, policyInput(e, &o, admin, "update", now))
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.ID, err)
		}
		for _, den := range d.Denied {
			out = append(out, &adminv1.PolicyViolation{EntryId: e.ID, SpiffeId: e.SPIFFEID, Rule: den.Rule, Message: den.Message})
		}
	}
	return out, nil
}

// violationsError names the entries and the rules they would break.
func violationsError(owner, to string, violations []*adminv1.PolicyViolation) error {
	var b strings.Builder
	for i, v := range violations {
		if i == maxViolationsInError {
			fmt.Fprintf(&b, "; and %d more", len(violations)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "entry %s (%s): %s", v.EntryId, v.SpiffeId, v.Message)
	}
	return fmt.Errorf("%w: reassigning the entries of %s to %s breaks the entry policy: %s (change those entries or the policy first, or offboard with --disable; --dry-run lists every violation)",
		ErrPolicyViolation, owner, to, b.String())
}
