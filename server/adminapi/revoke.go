package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
)

// ActionRevokeKey is the policy action and audit action of a CA key revocation.
const ActionRevokeKey = "ca.revoke-key"

// KeyRevoker is what a revocation needs of the node's key rotation (server.Server): replacing this node's
// active key before it leaves the bundle, and retiring the revoked key's slot once it has.
type KeyRevoker interface {
	ReplaceKey(ctx context.Context, id string) (*rotation.Slot, error)
	RetireRevoked(ctx context.Context) error
}

// RevokeKey revokes a CA key of the bundle after a compromise (signet ca revoke-key): when it is this
// node's active key, a successor is activated and published first (so the trust domain is never left
// without a key, even if it was its only one); then the key leaves the bundle everywhere in one Raft
// command, for good, and the node that owns it retires it. When the policy asks a second admin for it,
// the revocation waits until another admin approves it (approve).
func (s *AdminService) RevokeKey(ctx context.Context, req *adminv1.RevokeKeyRequest) (*adminv1.RevokeKeyResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	id := req.GetKeyId()
	switch {
	case id == "":
		return nil, toStatus(fmt.Errorf("key_id is required: %w (an X.509 authority's or JWT key's ID, as signet bundle show --format keys or signet ca status print it)", ErrInvalidArgument))
	case req.GetApprove() && req.GetReason() != "":
		return nil, toStatus(fmt.Errorf("reason: %w: an approval keeps the reason of the request it approves; leave --reason out", ErrInvalidArgument))
	case !req.GetApprove():
		if err := requireReason(req.GetReason()); err != nil {
			return nil, toStatus(err)
		}
	}
	a, signer, err := s.findKey(id)
	if err != nil {
		return nil, toStatus(err)
	}
	own := a.Node == s.cfg.Store.NodeID()
	out := &adminv1.RevokeKeyResponse{}
	var res storage.KeyRevokeResult
	if req.GetApprove() {
		// Checked here too (the state decides), so that no successor is activated for nothing.
		if err := s.checkApproval(a, admin); err != nil {
			if errors.Is(err, storage.ErrSameApprover) {
				s.audit.Denied(ctx, admin, ActionRevokeKey, id, err)
			}
			return nil, toStatus(err)
		}
		if err := s.replaceOwnKey(ctx, own, a.ID, out); err != nil {
			return nil, toStatus(err)
		}
		res, err = s.storeRevoke(ctx, a, "", nil, true)
		if errors.Is(err, storage.ErrSameApprover) {
			s.audit.Denied(ctx, admin, ActionRevokeKey, id, err)
		}
	} else {
		var rules []string
		if ctx, rules, err = s.revocationApproval(ctx, admin, a, signer); err != nil {
			return nil, toStatus(err)
		}
		if len(rules) == 0 {
			if err := s.replaceOwnKey(ctx, own, a.ID, out); err != nil {
				return nil, toStatus(err)
			}
		}
		res, err = s.storeRevoke(ctx, a, req.GetReason(), rules, false)
	}
	if err != nil {
		return nil, toStatus(fmt.Errorf("revoke %s key %s: %w", a.Kind, id, err))
	}
	if p := res.Pending; p != nil {
		s.log.Warn("CA key revocation waits for a second admin", "kind", a.Kind, "id", a.ID, "by", admin, "rules", p.Rules)
		out.PendingRules = p.Rules
		return out, nil
	}
	r := res.Revoked
	s.log.Warn("CA key revoked", "kind", r.Kind, "id", r.ID, "node", r.Node, "by", r.By, "requested_by", r.RequestedBy, "reason", r.Reason)
	out.Revoked = &adminv1.RevokedKey{Kind: string(r.Kind), Id: r.ID, SignerId: r.SignerID, Node: r.Node, NotAfter: unixOrZero(r.NotAfter),
		RevokedAt: r.At.Unix(), RevokedBy: r.By, Reason: r.Reason, RequestedBy: r.RequestedBy}
	switch {
	case !own && r.Kind == storage.AuthorityX509Intermediate:
		out.Note = fmt.Sprintf("node %s replaces the intermediate with a new one from the upstream as soon as it applies the revocation (signet audit list --action ca.rotate --object %s)", r.Node, r.Node)
	case !own:
		out.Note = fmt.Sprintf("node %s replaces the key as soon as it applies the revocation (signet audit list --action ca.rotate --object %s)", r.Node, r.Node)
	case s.cfg.Revoker == nil:
		out.Note = "this server's CA keys do not rotate (they are in a cloud KMS): it signs nothing that verifies until it is given a new key; destroy the revoked key in the key manager"
	default:
		if err := s.cfg.Revoker.RetireRevoked(ctx); err != nil {
			s.log.Warn("revoked CA key: retiring it failed; the key loop retries", "error", err)
			out.Note = "retiring the key on this server failed and is retried: " + err.Error()
		}
	}
	if r.Kind == storage.AuthorityX509Intermediate {
		out.Note = strings.TrimPrefix(out.Note+"\n"+intermediateNote(*r), "\n")
	}
	return out, nil
}

// storeRevoke proposes the revocation of a (a key of the bundle, or an upstream intermediate), or with
// approve carries out its pending revocation.
func (s *AdminService) storeRevoke(ctx context.Context, a storage.Authority, reason string, rules []string, approve bool) (storage.KeyRevokeResult, error) {
	switch {
	case a.Kind == storage.AuthorityX509Intermediate:
		return s.cfg.Store.RevokeIntermediate(ctx, storage.Intermediate{ID: a.ID, Node: a.Node, NotAfter: a.NotAfter}, reason, rules, approve)
	case approve:
		return s.cfg.Store.ApproveKeyRevocation(ctx, a.Kind, a.ID)
	}
	return s.cfg.Store.RevokeKey(ctx, a.Kind, a.ID, reason, rules)
}

// findKey returns the authority of the bundle id names (its ID, an X.509 root's SKI in hex, or a kid),
// or the upstream intermediate it names (kind x509-intermediate, by its SKI), and the ID the ledger
// records it by. A revoked key is ErrKeyRevoked, an upstream root ErrInvalidArgument, any other
// ErrKeyNotFound.
func (s *AdminService) findKey(id string) (storage.Authority, string, error) {
	for _, a := range s.cfg.Store.Authorities() {
		signer := a.ID
		if a.Kind == storage.AuthorityX509 {
			signer = x509KeyID(a)
		}
		if a.ID == id || signer == id {
			return a, signer, s.checkNotUpstreamRoot(a)
		}
	}
	if err := s.checkNotRevoked(id); err != nil {
		return storage.Authority{}, "", err
	}
	in, ok, err := s.findIntermediate(id)
	switch {
	case err != nil:
		return storage.Authority{}, "", err
	case ok:
		if err := s.checkNotRevoked(in.ID); err != nil {
			return storage.Authority{}, "", err
		}
		return storage.Authority{Kind: storage.AuthorityX509Intermediate, ID: in.ID, Node: in.Node, NotAfter: in.NotAfter}, in.ID, nil
	}
	return storage.Authority{}, "", fmt.Errorf("key %s: %w: no X.509 authority or JWT key of the bundle has this ID (see signet bundle show --format keys), "+
		"nor an upstream intermediate of this server or one that signed an X.509-SVID still valid (see signet ca status on the server that owns it)", id, ErrKeyNotFound)
}

// checkNotRevoked is ErrKeyRevoked when id names a revoked key.
func (s *AdminService) checkNotRevoked(id string) error {
	revoked, err := s.cfg.Store.RevokedKeys()
	if err != nil {
		return err
	}
	for _, r := range revoked {
		if r.ID == id || r.SignerID == id {
			return fmt.Errorf("key %s: %w: by %s at %s (%s)", id, ErrKeyRevoked, r.By, r.At.UTC().Format(time.RFC3339), r.Reason)
		}
	}
	return nil
}

// checkApproval refuses an approval of a's revocation when none waits or admin asked for it.
func (s *AdminService) checkApproval(a storage.Authority, admin string) error {
	pending, err := s.cfg.Store.PendingRevocations()
	if err != nil {
		return err
	}
	for _, p := range pending {
		if p.Kind == a.Kind && p.ID == a.ID {
			if p.By == admin {
				return fmt.Errorf("%s key %s: %w: %s asked for the revocation; another admin approves it", a.Kind, a.ID, storage.ErrSameApprover, p.By)
			}
			return nil
		}
	}
	return fmt.Errorf("%s key %s: %w: no revocation of it waits for approval", a.Kind, a.ID, storage.ErrNotPending)
}

// revocationApproval decides a revocation under the entry policy (withPolicy): the approval rules that
// ask a second admin for it. A rule that fails to evaluate refuses it (the policy fails closed).
func (s *AdminService) revocationApproval(ctx context.Context, admin string, a storage.Authority, signer string) (context.Context, []string, error) {
	ctx, err := s.withPolicy(ctx)
	if err != nil {
		return ctx, nil, err
	}
	pol := policyFrom(ctx)
	if pol == nil {
		return ctx, nil, nil
	}
	d, err := pol.Evaluate(ctx, policy.Input{Admin: admin, Action: ActionRevokeKey, Now: s.cfg.Clock(),
		Key: &policy.KeyInput{Kind: string(a.Kind), ID: a.ID, SignerID: signer, Node: a.Node}})
	if err != nil {
		return ctx, nil, err
	}
	if !d.Allowed() {
		err := policyDenied(d)
		s.audit.Denied(ctx, admin, ActionRevokeKey, a.ID, err)
		return ctx, nil, err
	}
	return ctx, d.Approval, nil
}

// replaceOwnKey activates and publishes a successor first when id is this node's active key.
func (s *AdminService) replaceOwnKey(ctx context.Context, own bool, id string, out *adminv1.RevokeKeyResponse) error {
	if !own || s.cfg.Revoker == nil {
		return nil
	}
	sl, err := s.cfg.Revoker.ReplaceKey(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke key %s: activate a successor first: %w", id, err)
	}
	if sl != nil {
		out.Activated = slotToAdmin(s.cfg.Store.NodeID(), *sl, true)
	}
	return nil
}
