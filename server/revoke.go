package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/storage"
)

// ReplaceKey prepares the revocation of this node's key id (adminapi.KeyAdmin): when the active slot
// holds it, a successor is prepared, published and activated now, and the server SVID renewed with it, so
// that the trust domain keeps a key in the bundle (even when id was its only one) and the node presents a
// certificate that still verifies once id is out. It returns the slot activated, or nil when id is not
// the active key (a prepared or old one, or not this node's).
func (s *Server) ReplaceKey(ctx context.Context, id string) (*rotation.Slot, error) {
	if !slices.ContainsFunc(s.cfg.Keys.Slots(), func(sl rotation.Slot) bool { return sl.State == rotation.Active && sl.Holds(id) }) {
		return nil, nil
	}
	sl, err := s.RotateKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: replace key %s: %w", id, err)
	}
	if err := s.renewServerCert(ctx); err != nil {
		return &sl, fmt.Errorf("server: replace key %s: %w", id, err)
	}
	return &sl, nil
}

// RetireRevoked takes this node's revoked keys out of service (adminapi.KeyAdmin, and the key loop on
// every change of the store): a revoked key still live here is replaced at once by a successor that
// signs before it has spent any time in the bundle (the compromise outweighs the propagation gap), its
// slot pruned with its key files, the successor published and the server SVID renewed. Audited as
// ca.rotate by node:<id>.
func (s *Server) RetireRevoked(ctx context.Context) error {
	s.retireMu.Lock() // the key loop and the admin API both retire
	defer s.retireMu.Unlock()
	revoked, err := s.cfg.Store.RevokedKeys()
	if err != nil {
		return err
	}
	node := s.cfg.Store.NodeID()
	var errs []error
	retired := false
	for _, r := range revoked {
		if r.Node != node || !slices.ContainsFunc(s.cfg.Keys.Slots(), func(sl rotation.Slot) bool { return sl.State != rotation.Pruned && sl.Holds(r.ID) }) {
			continue
		}
		act, sl, err := s.cfg.Keys.Revoke(r.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("server: retire revoked key %s: %w", r.ID, err))
			continue
		}
		retired = true
		reason := fmt.Sprintf("%s key %s revoked by %s: slot %s pruned, its key files deleted", r.Kind, r.ID, r.By, sl.ID)
		if act != nil {
			reason += fmt.Sprintf("; slot %s active at once (x509 %s, jwt %s)", act.ID, act.X509ID, act.JWTKeyID)
		}
		s.cfg.Logger.Warn("revoked CA key retired", "kind", r.Kind, "id", r.ID, "by", r.By, "slot", sl.ID)
		actor := "node:" + node
		if err := s.cfg.Store.AppendAudit(storage.WithActor(ctx, actor), storage.AuditRecord{Time: s.cfg.Clock(), Actor: actor, Action: "ca.rotate",
			Object: node, Reason: reason}); err != nil {
			errs = append(errs, fmt.Errorf("server: retire revoked key %s: audit: %w", r.ID, err))
		}
	}
	if !retired {
		return errors.Join(errs...)
	}
	if err := s.publishSlots(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, s.renewServerCert(ctx))...)
}

// renewServerCert re-mints the node's server SVID with the active key.
func (s *Server) renewServerCert(ctx context.Context) error {
	sc, err := s.Issuer.ServerCert()
	if err != nil {
		return err
	}
	return sc.Renew(ctx)
}
