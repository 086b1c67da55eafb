package adminapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
)

// KeyAdmin is the node's CA key rotation as the admin API drives it (server.Server).
type KeyAdmin interface {
	KeySlots() []rotation.Slot
	KeySchedule() rotation.Schedule
	RotateKeys(ctx context.Context) (rotation.Slot, error)
}

// CAStatus lists this node's keys with their states (when they rotate) and every other node's keys as
// the bundle holds them.
func (s *AdminService) CAStatus(ctx context.Context, req *adminv1.CAStatusRequest) (*adminv1.CAStatusResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	node := s.cfg.Store.NodeID()
	auths := s.cfg.Store.Authorities()
	inBundle := make(map[string]bool, len(auths))
	for _, a := range auths {
		inBundle[string(a.Kind)+"/"+a.ID] = true
	}
	out := &adminv1.CAStatusResponse{Node: node}
	own := map[string]bool{}
	if s.cfg.KeyAdmin != nil {
		sched := s.cfg.KeyAdmin.KeySchedule()
		out.CaTtlSeconds, out.MaxSvidTtlSeconds, out.PrepareBeforeSeconds = secs(sched.TTL), secs(sched.MaxSVIDTTL), secs(sched.PrepareBefore)
		for _, sl := range s.cfg.KeyAdmin.KeySlots() {
			k := slotToAdmin(node, sl, slotInBundle(sl, inBundle))
			out.Keys = append(out.Keys, k)
			own[sl.X509ID], own[sl.JWTKeyID] = true, true
			for _, id := range k.UpstreamRootIds {
				own[id] = true
			}
		}
	}
	// Every other key of the bundle, X.509 root and JWT key paired by node and expiry (created together).
	type pair struct {
		node     string
		notAfter time.Time
	}
	byPair := map[pair]*adminv1.CAKey{}
	for _, a := range auths {
		if a.Node == node && own[a.ID] {
			continue
		}
		p := pair{a.Node, a.NotAfter.UTC()}
		k := byPair[p]
		if k == nil {
			k = &adminv1.CAKey{Node: a.Node, State: "published", CreatedAt: a.AddedAt.Unix(), NotAfter: a.NotAfter.Unix(), InBundle: true}
			byPair[p] = k
			out.Keys = append(out.Keys, k)
		}
		switch a.Kind {
		case storage.AuthorityX509:
			k.X509Id = a.ID
		case storage.AuthorityJWT:
			k.JwtKeyId = a.ID
		}
	}
	return out, nil
}

// RotateCA rotates this node's keys now (audited as "ca.rotate", with the key activated).
func (s *AdminService) RotateCA(ctx context.Context, req *adminv1.RotateCARequest) (*adminv1.RotateCAResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	node := s.cfg.Store.NodeID()
	if req.Node != "" && req.Node != node {
		r, err := s.cfg.Store.RequestRotation(storage.WithActor(ctx, admin), req.Node, req.Reason)
		if err != nil {
			return nil, toStatus(fmt.Errorf("ca rotate --node %s: %w", req.Node, err))
		}
		s.log.Info("CA key rotation of another server requested", "admin", admin, "node", req.Node, "request", r.Seq)
		return &adminv1.RotateCAResponse{Request: r.Seq, Node: req.Node}, nil
	}
	if s.cfg.KeyAdmin == nil {
		return nil, toStatus(fmt.Errorf("ca rotate: %w", ErrKeysDoNotRotate))
	}
	sl, err := s.cfg.KeyAdmin.RotateKeys(ctx)
	if err != nil {
		return nil, toStatus(fmt.Errorf("ca rotate: %w", err))
	}
	reason := fmt.Sprintf("slot %s active: x509 %s, jwt %s", sl.ID, sl.X509ID, sl.JWTKeyID)
	if req.Reason != "" {
		reason = req.Reason + " (" + reason + ")"
	}
	if err := s.cfg.Store.AppendAudit(storage.WithActor(ctx, admin), storage.AuditRecord{Time: s.cfg.Clock(), Actor: admin, Action: "ca.rotate",
		Object: node, Reason: reason}); err != nil {
		return nil, toStatus(fmt.Errorf("ca rotate: rotated, but the audit record failed: %w", err))
	}
	s.log.Info("CA keys rotated by an admin", "admin", admin, "slot", sl.ID, "x509_id", sl.X509ID, "jwt_key_id", sl.JWTKeyID)
	return &adminv1.RotateCAResponse{Activated: slotToAdmin(node, sl, true), Node: node}, nil
}

// slotToAdmin is a slot as ca status shows it; a slot pruned because its key was revoked is in state
// "revoked".
func slotToAdmin(node string, sl rotation.Slot, inBundle bool) *adminv1.CAKey {
	state := string(sl.State)
	if sl.Revoked {
		state = "revoked"
	}
	k := &adminv1.CAKey{Node: node, Slot: sl.ID, State: state, X509Id: sl.X509ID, JwtKeyId: sl.JWTKeyID,
		CreatedAt: unixOrZero(sl.CreatedAt), ActivateAt: unixOrZero(sl.ActivateAt), OldSince: unixOrZero(sl.OldSince),
		PrunedAt: unixOrZero(sl.PrunedAt), NotAfter: unixOrZero(sl.NotAfter), InBundle: inBundle}
	if sl.CA != nil {
		k.X509KeyId = sl.CA.X509KeyID()
		k.UpstreamRootIds = upstreamRootIDs(sl)
	}
	return k
}

// upstreamRootIDs are the bundle IDs of the upstream roots sl's intermediate chains to (none for a
// self-signed root).
func upstreamRootIDs(sl rotation.Slot) []string {
	if sl.CA == nil || !sl.CA.Upstream() {
		return nil
	}
	return sl.BundleRootIDs()
}

// slotInBundle reports whether the bundle holds sl's X.509 root or, under an upstream authority, every
// upstream root its intermediate chains to.
func slotInBundle(sl rotation.Slot, inBundle map[string]bool) bool {
	if sl.CA == nil || !sl.CA.Upstream() {
		return inBundle[string(storage.AuthorityX509)+"/"+sl.X509ID]
	}
	for _, r := range sl.CA.X509Roots() {
		sum := sha256.Sum256(r.Raw)
		if !inBundle[string(storage.AuthorityX509)+"/"+hex.EncodeToString(sum[:])] {
			return false
		}
	}
	return true
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }
