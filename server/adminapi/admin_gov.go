package adminapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const maxReasonLen = 1024

func requireReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("reason is required: %w (say why: --reason TEXT)", ErrInvalidArgument)
	}
	return validateText("reason", reason, maxReasonLen)
}

// updatableFields are the entry fields UpdateEntry may change (update_mask names).
var updatableFields = []string{"spiffe_id", "parent_id", "selectors", "owner", "purpose", "ticket", "x509_ttl_seconds",
	"jwt_ttl_seconds", "dns_names", "expires_at", "never_expires", "jwt_unique", "prefetch", "federates_with"}

// UpdateEntry changes the masked fields of an entry, validated like a new entry, and records who and why.
func (s *AdminService) UpdateEntry(ctx context.Context, req *adminv1.UpdateEntryRequest) (*adminv1.Entry, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if ctx, err = s.withPolicy(storage.WithActor(ctx, admin)); err != nil {
		return nil, toStatus(err)
	}
	in := req.GetEntry()
	if in == nil || in.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "entry.id is required")
	}
	if len(req.GetUpdateMask()) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "update_mask is required: name the fields to change (%s)", strings.Join(updatableFields, ", "))
	}
	if err := requireReason(req.GetReason()); err != nil {
		return nil, toStatus(err)
	}
	cur, err := s.cfg.Store.Entry(in.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	if in.Revision != 0 && in.Revision != cur.Revision {
		return nil, toStatus(fmt.Errorf("entry %q: %w (revision %d, you read %d): read it again", in.Id, storage.ErrConflict, cur.Revision, in.Revision))
	}
	patch, err := entryFromAdmin(in)
	if err != nil {
		return nil, toStatus(err)
	}
	e := cur
	for _, f := range req.GetUpdateMask() {
		switch f {
		case "spiffe_id":
			e.SPIFFEID = patch.SPIFFEID
		case "parent_id":
			e.ParentID = patch.ParentID
		case "selectors":
			e.Selectors = patch.Selectors
		case "owner":
			e.Owner = patch.Owner
		case "purpose":
			e.Purpose = patch.Purpose
		case "ticket":
			e.Ticket = patch.Ticket
		case "x509_ttl_seconds":
			e.X509TTL = patch.X509TTL
		case "jwt_ttl_seconds":
			e.JWTTTL = patch.JWTTTL
		case "dns_names":
			e.DNSNames = patch.DNSNames
		case "expires_at":
			e.ExpiresAt, e.NeverExpires = patch.ExpiresAt, false
		case "never_expires":
			e.NeverExpires = patch.NeverExpires
			if e.NeverExpires {
				e.ExpiresAt = time.Time{}
			}
		case "jwt_unique":
			e.JWTUnique = patch.JWTUnique
		case "prefetch":
			e.Prefetch = patch.Prefetch
		case "federates_with":
			e.FederatesWith = patch.FederatesWith
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: %q is not an updatable field (%s)", f, strings.Join(updatableFields, ", "))
		}
	}
	if err := s.rulesFor(ctx).validateEntry(&e); err != nil {
		return nil, toStatus(err)
	}
	if err := s.checkPolicy(ctx, &e, admin, "update"); err != nil {
		return nil, toStatus(err)
	}
	now := s.cfg.Clock().UTC()
	e.UpdatedAt, e.UpdatedBy, e.UpdateReason = now, admin, req.GetReason()
	stored, err := s.cfg.Store.UpdateEntry(ctx, e, cur.Revision, req.GetReason())
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("entry updated", "entry", stored.ID, "fields", req.GetUpdateMask(), "by", admin, "reason", req.GetReason())
	return s.entryWithStats(&stored), nil
}

// SetEntryState disables, enables or approves an entry.
func (s *AdminService) SetEntryState(ctx context.Context, req *adminv1.SetEntryStateRequest) (*adminv1.Entry, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	action := req.GetAction()
	switch action {
	case storage.EntryDisable, storage.EntryEnable:
		if err := requireReason(req.GetReason()); err != nil {
			return nil, toStatus(err)
		}
	case storage.EntryApprove:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "action %q: want disable, enable or approve", action)
	}
	e, err := s.cfg.Store.SetEntryState(ctx, req.GetId(), action, req.GetReason())
	if err != nil {
		if errors.Is(err, storage.ErrSameApprover) {
			s.audit.Denied(ctx, admin, "entry.approve", req.GetId(), err)
		}
		return nil, toStatus(err)
	}
	s.log.Info("entry state changed", "entry", e.ID, "action", action, "by", admin, "reason", req.GetReason())
	return s.entryWithStats(&e), nil
}

// GetOwner returns an owner and what it owns: entries, tokens, agents attested with its tokens, and the
// credentials issued under its entries that are still valid.
func (s *AdminService) GetOwner(ctx context.Context, req *adminv1.GetOwnerRequest) (*adminv1.OwnerDetail, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	o, err := s.cfg.Store.Owner(req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.OwnerDetail{Owner: ownerToAdmin(&o)}
	for _, e := range s.cfg.Store.Entries() {
		if e.Owner == o.Name {
			out.Entries = append(out.Entries, s.entryWithStats(&e))
		}
	}
	for _, t := range s.cfg.Store.JoinTokens() {
		if t.Owner == o.Name {
			out.Tokens = append(out.Tokens, tokenToAdmin(&t))
		}
	}
	for _, a := range s.ownerAgents(o.Name) {
		out.Agents = append(out.Agents, agentToAdmin(&a))
	}
	valid, err := s.validCredentials(o.Name, s.cfg.Clock())
	if err != nil {
		return nil, toStatus(err)
	}
	out.ValidCredentials = valid
	if out.InUse, err = s.inUse(valid); err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// inUse returns those of creds that agents reported delivering to workloads, with who received them.
func (s *AdminService) inUse(creds []*adminv1.Issuance) ([]*adminv1.CredentialUse, error) {
	var out []*adminv1.CredentialUse
	for _, c := range creds {
		ds, err := s.cfg.Store.Deliveries(c.Id)
		if err != nil {
			return nil, err
		}
		if len(ds) == 0 {
			continue
		}
		u := &adminv1.CredentialUse{Issuance: c}
		for i := range ds {
			u.Deliveries = append(u.Deliveries, deliveryToAdmin(&ds[i]))
		}
		out = append(out, u)
	}
	return out, nil
}

func (s *AdminService) ownerAgents(owner string) []storage.Agent {
	var out []storage.Agent
	for _, a := range s.cfg.Store.Agents() {
		if a.Owner == owner {
			out = append(out, a)
		}
	}
	return out
}

// maxValidListed bounds the credentials listed by owner show and offboard.
const maxValidListed = 10000

// validCredentials lists credentials issued under entries of owner that are still valid at now.
func (s *AdminService) validCredentials(owner string, now time.Time) ([]*adminv1.Issuance, error) {
	var out []*adminv1.Issuance
	q := storage.LedgerQuery{Owner: owner, ValidAt: now, Limit: 1000}
	for len(out) < maxValidListed {
		page, err := s.cfg.Store.QueryLedger(q)
		if err != nil {
			return nil, err
		}
		for i := range page.Issuances {
			if page.Issuances[i].EntryID != "" { // agent SVIDs are the node's, listed with the agents
				out = append(out, IssuanceToAdmin(&page.Issuances[i]))
			}
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	return out, nil
}

// OffboardOwner reassigns or disables everything an owner owns in one Raft write, or with dry_run
// returns the same plan and changes nothing. Either way it lists every credential that stays valid
// until it expires, so the blast radius is known.
func (s *AdminService) OffboardOwner(ctx context.Context, req *adminv1.OffboardOwnerRequest) (*adminv1.OffboardOwnerResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	mode, to := storage.OffboardDisable, ""
	switch {
	case req.GetDisable() && req.GetReassignTo() == "":
	case !req.GetDisable() && req.GetReassignTo() != "":
		mode, to = storage.OffboardReassign, req.GetReassignTo()
		if err := validateOwnerName("reassign_to", to); err != nil {
			return nil, toStatus(err)
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "exactly one of reassign_to and disable is required")
	}
	if err := validateText("reason", req.GetReason(), maxReasonLen); err != nil {
		return nil, toStatus(err)
	}
	res, violations, err := s.offboard(ctx, admin, req.GetOwner(), mode, to, req.GetReason(), req.GetDryRun())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.OffboardOwnerResponse{Owner: ownerToAdmin(&res.Owner), DryRun: req.GetDryRun(), Violations: violations}
	for i := range res.Entries {
		out.Entries = append(out.Entries, s.entryWithStats(&res.Entries[i]))
	}
	for i := range res.Tokens {
		out.Tokens = append(out.Tokens, tokenToAdmin(&res.Tokens[i]))
	}
	for _, a := range s.ownerAgents(req.GetOwner()) {
		out.Agents = append(out.Agents, agentToAdmin(&a))
	}
	if out.StillValid, err = s.validCredentials(req.GetOwner(), s.cfg.Clock()); err != nil {
		return nil, toStatus(err)
	}
	if out.InUse, err = s.inUse(out.StillValid); err != nil {
		return nil, toStatus(err)
	}
	if !req.GetDryRun() {
		s.log.Info("owner offboarded", "owner", req.GetOwner(), "mode", mode, "to", to, "entries", len(res.Entries), "tokens", len(res.Tokens), "by", admin)
	}
	return out, nil
}

// ListAudit pages through the audit log, oldest first.
func (s *AdminService) ListAudit(ctx context.Context, req *adminv1.ListAuditRequest) (*adminv1.ListAuditResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	recs, next, err := s.cfg.Store.AuditLog(storage.AuditQuery{After: req.GetAfter(), Limit: int(req.GetLimit()),
		Actor: req.GetActor(), Object: req.GetObject(), Action: req.GetAction()})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.ListAuditResponse{Next: next}
	for _, r := range recs {
		out.Records = append(out.Records, &adminv1.AuditRecord{Seq: r.Seq, Time: r.Time.UnixNano(), Actor: r.Actor, Action: r.Action,
			Object: r.Object, Outcome: r.Outcome, Reason: r.Reason, Before: r.Before, After: r.After, PrevHash: r.PrevHash, Hash: r.Hash})
	}
	return out, nil
}

// VerifyAudit recomputes the audit log's hash chain and, given a checkpoint's record number and hash,
// checks the chain still holds that record.
func (s *AdminService) VerifyAudit(ctx context.Context, req *adminv1.VerifyAuditRequest) (*adminv1.VerifyAuditResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.VerifyAuditResponse{}
	anchor := storage.AuditAnchor{Seq: req.GetCheckpointSeq(), Hash: req.GetCheckpointHash()}
	switch {
	case anchor.Seq == 0 && anchor.Hash == "":
		cp, err := s.StoredCheckpoint()
		if err != nil {
			return nil, toStatus(err)
		}
		if cp != nil {
			anchor = cp.anchor()
			out.CheckpointFile, out.CheckpointTime = s.cfg.AuditCheckpointFile, cp.Time.Unix()
		}
	case anchor.Seq == 0 || !isHexSHA256(anchor.Hash):
		return nil, status.Error(codes.InvalidArgument, "checkpoint_seq and checkpoint_hash (64 hex digits) go together")
	}
	var v storage.AuditVerification
	var err error
	if anchor.Seq == 0 {
		v, err = s.cfg.Store.VerifyAudit()
	} else {
		v, err = s.cfg.Store.VerifyAuditAgainst(anchor)
		out.CheckpointSeq = anchor.Seq
	}
	if err != nil {
		return nil, toStatus(err)
	}
	out.Records, out.BrokenAt, out.Problem = v.Records, v.BrokenAt, v.Problem
	return out, nil
}

// policyDenied is the refusal of a request the policy denies, naming each rule that denies it.
func policyDenied(d policy.Decision) error {
	msgs := make([]string, len(d.Denied))
	for i, den := range d.Denied {
		msgs[i] = den.Message
	}
	return fmt.Errorf("%w: %s", ErrPermissionDenied, strings.Join(msgs, "; "))
}

// checkPolicy evaluates the entry policy the request is decided under (withPolicy) on e; a denial is
// recorded in the audit log and returned; rules that ask for approval make e pending. (Without a policy
// every entry is allowed.)
func (s *AdminService) checkPolicy(ctx context.Context, e *storage.Entry, admin, action string) error {
	pol := policyFrom(ctx)
	if pol == nil {
		return nil
	}
	owner, _ := s.cfg.Store.Owner(e.Owner)
	d, err := pol.Evaluate(ctx, policyInput(e, &owner, admin, action, s.cfg.Clock()))
	if err != nil {
		return err
	}
	if !d.Allowed() {
		err := policyDenied(d)
		s.audit.Denied(ctx, admin, "entry."+action, e.SPIFFEID, err)
		return err
	}
	if len(d.Approval) > 0 {
		e.Pending, e.PendingRules = true, slices.Clone(d.Approval)
	}
	return nil
}
