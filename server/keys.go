package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/storage"
)

// DefaultKeyCheckEvery is the longest the key rotation loop waits between two looks at the schedule.
const DefaultKeyCheckEvery = time.Minute

// keysLoop runs AdvanceKeys at every event of the key schedule, and at least every KeyCheckEvery (which
// retries a publication or removal that failed, for example while the cluster had no leader); and it
// retires this node's revoked keys (signet ca revoke-key) and handles a rotation request for this node
// (signet ca rotate --node) as soon as they are applied.
func (s *Server) keysLoop(ctx context.Context) {
	if s.cfg.Keys == nil {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		changed := s.cfg.Store.Changed()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
			if err := s.AdvanceKeys(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("CA key rotation: will retry", "error", err)
			}
			wait := s.cfg.KeyCheckEvery
			if next := s.cfg.Keys.NextEvent(); !next.IsZero() {
				wait = min(wait, max(next.Sub(s.cfg.Clock()), time.Second))
			}
			t.Reset(wait)
		}
		if err := s.RetireRevoked(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("revoked CA key: will retry", "error", err)
		}
		if err := s.handleRotationRequest(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("CA key rotation requested by an admin: will retry", "error", err)
		}
	}
}

// handleRotationRequest rotates the node's keys if a rotation request newer than the last one handled
// names this node, and records it handled (in slots.json) and audited (ca.rotate by node:<id>).
func (s *Server) handleRotationRequest(ctx context.Context) error {
	node := s.cfg.Store.NodeID()
	req, err := s.cfg.Store.LatestRotationRequest(node)
	if err != nil || req.Seq <= s.cfg.Keys.HandledRequest() {
		return err
	}
	sl, err := s.RotateKeys(ctx)
	if err != nil {
		return fmt.Errorf("server: rotation request %d: %w", req.Seq, err)
	}
	if err := s.cfg.Keys.SetHandledRequest(req.Seq); err != nil {
		return fmt.Errorf("server: rotation request %d: rotated, but recording it: %w", req.Seq, err)
	}
	actor := "node:" + node
	reason := fmt.Sprintf("request %d by %s: %s (slot %s active: x509 %s, jwt %s)", req.Seq, req.By, req.Reason, sl.ID, sl.X509ID, sl.JWTKeyID)
	s.cfg.Logger.Info("CA keys rotated on request", "request", req.Seq, "by", req.By, "slot", sl.ID)
	return s.cfg.Store.AppendAudit(storage.WithActor(ctx, actor), storage.AuditRecord{Time: s.cfg.Clock(), Actor: actor, Action: "ca.rotate",
		Object: node, Reason: reason})
}

// AdvanceKeys brings the node's keys and the bundle in line with the schedule, once: every live slot is
// published, the schedule is applied (a successor is activated only once both its keys are in the
// bundle), and this node's keys that are no longer live and past their NotAfter leave the bundle. A
// publication that fails (no leader now) does not hold back the local steps; the loop retries it.
func (s *Server) AdvanceKeys(ctx context.Context) error {
	if s.cfg.Keys == nil {
		return fmt.Errorf("server: %w", apierr.ErrKeysDoNotRotate)
	}
	s.advanceMu.Lock()
	defer s.advanceMu.Unlock()
	errPublish := s.publishSlots(ctx)
	if _, err := s.cfg.Keys.Advance(s.published); err != nil {
		return errors.Join(errPublish, err)
	}
	if errPublish == nil {
		errPublish = s.publishSlots(ctx) // a successor prepared just now
	}
	if errPublish == nil {
		errPublish = s.retainUpstreamRoots(ctx)
	}
	return errors.Join(errPublish, s.removePruned(ctx))
}

// retainUpstreamRoots makes the bundle keep each upstream root at least as long as this node's live keys
// that chain to it (storage.RetainAuthority) where it holds the root with an earlier NotAfter: published
// for an earlier key, or by another node, which removes it only after that time. During a rolling upgrade
// (a server that does not understand command version 8) it waits: the root stays until its first NotAfter.
func (s *Server) retainUpstreamRoots(ctx context.Context) error {
	have := map[string]time.Time{}
	for _, a := range s.cfg.Store.Authorities() {
		if a.Kind == storage.AuthorityX509 {
			have[a.ID] = a.NotAfter
		}
	}
	for _, slot := range s.cfg.Keys.Slots() {
		if slot.CA == nil || !slot.CA.Upstream() {
			continue
		}
		for _, root := range slot.CA.X509Roots() {
			sum := sha256.Sum256(root.Raw)
			id, want := hex.EncodeToString(sum[:]), slot.NotAfter
			if root.NotAfter.Before(want) {
				want = root.NotAfter
			}
			if got, ok := have[id]; !ok || !got.Before(want) {
				continue
			}
			err := s.cfg.Store.RetainAuthority(ctx, storage.AuthorityX509, id, want)
			if errors.Is(err, storage.ErrUpgradeInProgress) {
				s.cfg.Logger.Debug("upstream root not retained yet: a server does not understand it", "id", id, "error", err)
				return nil
			}
			if err != nil {
				return fmt.Errorf("server: CA key slot %s: keep its upstream root in the bundle: %w", slot.ID, err)
			}
			have[id] = want
		}
	}
	return nil
}

// RotateKeys prepares a successor key now if there is none, publishes it, and activates it: the early
// rotation of `signet ca rotate`. It returns the slot activated.
func (s *Server) RotateKeys(ctx context.Context) (rotation.Slot, error) {
	if s.cfg.Keys == nil {
		return rotation.Slot{}, fmt.Errorf("server: %w", apierr.ErrKeysDoNotRotate)
	}
	// The first call prepares a successor (or activates one prepared and published before); the second,
	// once it is published, activates it.
	for range 2 {
		act, err := s.cfg.Keys.Rotate(s.published)
		if err != nil {
			return rotation.Slot{}, err
		}
		if act != nil {
			return *act, nil
		}
		if err := s.publishSlots(ctx); err != nil {
			return rotation.Slot{}, err
		}
	}
	return rotation.Slot{}, errors.New("server: rotate: the prepared key did not reach the bundle; try again")
}

// KeySlots are the node's key slots (adminapi.KeyAdmin).
func (s *Server) KeySlots() []rotation.Slot { return s.cfg.Keys.Slots() }

// KeySchedule is the node's key schedule (adminapi.KeyAdmin).
func (s *Server) KeySchedule() rotation.Schedule { return s.cfg.Keys.Schedule() }

// publishSlots puts every live slot's keys into the bundle (no proposal for those already there).
func (s *Server) publishSlots(ctx context.Context) error {
	for _, slot := range s.cfg.Keys.Slots() {
		if slot.CA == nil || s.published(slot) {
			continue
		}
		if err := s.publishCA(ctx, slot.CA); err != nil {
			return fmt.Errorf("server: CA key slot %s (%s): %w", slot.ID, slot.State, err)
		}
	}
	return nil
}

// published reports whether both keys of slot are in this node's view of the bundle: its JWT key, and
// its X.509 roots (the slot's own root, or its upstream authority's roots, which another node may have
// published first).
func (s *Server) published(slot rotation.Slot) bool {
	if slot.CA == nil {
		return false
	}
	want := map[string]bool{}
	for _, id := range slot.BundleRootIDs() {
		want[id] = true
	}
	var j bool
	node := s.cfg.Store.NodeID()
	for _, a := range s.cfg.Store.Authorities() {
		switch {
		case a.Kind == storage.AuthorityX509:
			delete(want, a.ID)
		case a.Kind == storage.AuthorityJWT && a.Node == node && a.ID == slot.JWTKeyID:
			j = true
		}
	}
	return len(want) == 0 && j
}

// removePruned takes this node's authorities out of the bundle that belong to no live slot and are past
// their NotAfter: nothing they signed can still be valid. An upstream authority's root stays while any
// live slot's chain leads to it.
func (s *Server) removePruned(ctx context.Context) error {
	live := map[string]bool{}
	for _, slot := range s.cfg.Keys.Slots() {
		if slot.State != rotation.Pruned {
			live[string(storage.AuthorityX509)+"/"+slot.X509ID] = true
			live[string(storage.AuthorityJWT)+"/"+slot.JWTKeyID] = true
			for _, id := range slot.BundleRootIDs() {
				live[string(storage.AuthorityX509)+"/"+id] = true
			}
		}
	}
	node, now := s.cfg.Store.NodeID(), s.cfg.Clock()
	for _, a := range s.cfg.Store.Authorities() {
		if a.Node != node || live[string(a.Kind)+"/"+a.ID] || now.Before(a.NotAfter) {
			continue
		}
		if err := s.cfg.Store.RemoveAuthority(ctx, a.Kind, a.ID, node); err != nil {
			return fmt.Errorf("server: remove pruned CA key %s: %w", a.ID, err)
		}
		s.cfg.Logger.Info("pruned CA key removed from the bundle", "kind", a.Kind, "id", a.ID, "not_after", a.NotAfter.Format(time.RFC3339))
	}
	return nil
}
