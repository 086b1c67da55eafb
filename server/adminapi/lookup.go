package adminapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/credential"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxOtherLive bounds the other live credentials a lookup lists.
const maxOtherLive = 100

// LookupCredential identifies a credential someone found (a PEM certificate or chain, or a JWT; expired
// or with its signature stripped) and answers from the ledger: what it is, whose, issued where, still
// valid, and what else that entry has live now. A credential Signet never issued is reported unknown,
// with the reason.
func (s *AdminService) LookupCredential(ctx context.Context, req *adminv1.LookupCredentialRequest) (*adminv1.LookupCredentialResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	c, err := credential.Parse(req.GetData())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "lookup: %v", err)
	}
	// Linearizable, like QueryLedger: a credential any server handed out is known here.
	if err := s.cfg.Store.ReadBarrier(ctx); err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.LookupCredentialResponse{Kind: string(c.Kind), Id: c.ID, SpiffeId: c.SPIFFEID}
	if c.Kind == credential.KindX509 && c.Leaf != nil && c.Leaf.IsCA {
		// A CA certificate is no issued credential: the ledger cannot know it, and a self-signed root
		// verifies against itself, which would make it look like a forgery under our own key.
		s.describeCA(out, c.Leaf)
		return out, nil
	}
	ours, issuerNote := s.issuedHere(&c)
	if c.ID == "" {
		out.Reason = "the credential carries no serial or JWT ID (jti), so no ledger record can match it: " + issuerNote
		return out, nil
	}
	rec, err := s.cfg.Store.LookupIssuance(c.ID)
	switch {
	case errors.Is(err, storage.ErrIssuanceNotFound):
		if !ours {
			out.Reason = "other issuer: " + issuerNote
		} else {
			out.Reason = fmt.Sprintf("unknown serial: signed by this trust domain's CA, but the ledger has no record of %s (issued before the ledger's retention, or forged with a CA key that leaked)", c.ID)
		}
		return out, nil
	case err != nil:
		return nil, toStatus(err)
	}
	out.Known = true
	out.Issuance = IssuanceToAdmin(&rec)
	// The record must describe this very credential: a forger can copy a serial, not the ledger.
	switch {
	case c.SPIFFEID != "" && c.SPIFFEID != rec.SPIFFEID:
		out.Known = false
		out.Reason = fmt.Sprintf("serial %s belongs to a credential for %s, but this one names %s: forged or altered", c.ID, rec.SPIFFEID, c.SPIFFEID)
	case c.Kind == credential.KindX509 && rec.PublicKeySHA256 != "" && c.PublicKeySHA256 != rec.PublicKeySHA256:
		out.Known = false
		out.Reason = fmt.Sprintf("serial %s was issued for another key: this certificate is forged or altered", c.ID)
	case s.revokedSignerNote(rec) != "":
		out.Reason = s.revokedSignerNote(rec)
	case !ours:
		out.Reason = "the ledger knows this ID, but " + issuerNote + " (the authority may have been rotated out of the bundle)"
	}
	now := s.cfg.Clock()
	valid := now.Before(rec.ExpiresAt)
	if rec.EntryID != "" {
		if e, err := s.cfg.Store.Entry(rec.EntryID); err == nil {
			out.Entry = s.entryWithStats(&e)
			valid = valid && e.Active(now)
		} else {
			valid = false
		}
		if others, err := s.otherLive(rec.EntryID, rec.ID, now); err == nil {
			out.OtherLive = others
		}
	}
	if o, err := s.cfg.Store.Owner(rec.Owner); err == nil {
		out.Owner = ownerToAdmin(&o)
	}
	if rec.Agent != "" {
		if a, err := s.cfg.Store.Agent(rec.Agent); err == nil {
			out.Agent = agentToAdmin(&a)
		}
	}
	out.ValidNow = valid && out.Known
	ds, err := s.cfg.Store.Deliveries(rec.ID)
	if err != nil {
		return nil, toStatus(err)
	}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, deliveryToAdmin(&d))
	}
	return out, nil
}

// describeCA fills out for a CA certificate: one of this trust domain's X.509 authorities, or not.
func (s *AdminService) describeCA(out *adminv1.LookupCredentialResponse, cert *x509.Certificate) {
	td := s.cfg.TrustDomain.Name()
	for _, root := range s.cfg.Store.Bundle().X509Authorities {
		if bytes.Equal(root.Raw, cert.Raw) {
			now := s.cfg.Clock()
			out.Authority = true
			out.ValidNow = !now.Before(cert.NotBefore) && now.Before(cert.NotAfter)
			out.Reason = fmt.Sprintf("a CA certificate of trust domain %s: the X.509 root of one of its server nodes, in its trust bundle until %s; Signet issues SVIDs under it, it is not itself an issued credential (so the ledger has no record of it)",
				td, cert.NotAfter.UTC().Format(time.RFC3339))
			return
		}
	}
	for _, inter := range s.ownIntermediates() {
		if bytes.Equal(inter.Raw, cert.Raw) {
			now := s.cfg.Clock()
			out.Authority = true
			out.ValidNow = !now.Before(cert.NotBefore) && now.Before(cert.NotAfter)
			out.Reason = fmt.Sprintf("a CA certificate of trust domain %s: an intermediate of this server node under its upstream authority, valid until %s; Signet issues SVIDs under it (the bundle holds the upstream root), it is not itself an issued credential",
				td, cert.NotAfter.UTC().Format(time.RFC3339))
			return
		}
	}
	out.Reason = fmt.Sprintf("a CA certificate (%q), but not an X.509 authority in the current bundle of trust domain %s: another CA's, a root rotated out of the bundle, or forged", cert.Subject.String(), td)
}

// ownIntermediates are this server's live keys' intermediates under an upstream authority (none without
// one).
func (s *AdminService) ownIntermediates() []*x509.Certificate {
	if s.cfg.KeyAdmin == nil {
		return nil
	}
	var out []*x509.Certificate
	for _, sl := range s.cfg.KeyAdmin.KeySlots() {
		if sl.CA != nil && sl.CA.Upstream() {
			out = append(out, sl.CA.X509Authority())
		}
	}
	return out
}

func deliveryToAdmin(d *storage.Delivery) *adminv1.Delivery {
	return &adminv1.Delivery{Agent: d.Agent, Uid: d.Caller.UID, Gid: d.Caller.GID, Pid: d.Caller.PID, StartTime: d.Caller.StartTime,
		Path: d.Caller.Path, Sha256Prefix: d.Caller.SHA256, FirstDelivered: d.FirstAt.UnixNano(), LastDelivered: d.LastAt.UnixNano(), Count: d.Count}
}

// issuedHere reports whether c was signed by one of this trust domain's authorities (by AKI or JWT key
// ID), and describes the issuer when it was not.
func (s *AdminService) issuedHere(c *credential.Credential) (bool, string) {
	b := s.cfg.Store.Bundle()
	switch c.Kind {
	case credential.KindX509:
		// Under an upstream authority this server's own intermediates sign its SVIDs (other servers'
		// intermediates are not in the bundle: their SVIDs are told by the ledger record's signed_by).
		for _, root := range append(s.ownIntermediates(), b.X509Authorities...) {
			if len(c.AuthorityKeyID) > 0 && bytes.Equal(root.SubjectKeyId, c.AuthorityKeyID) {
				return true, ""
			}
			if c.Leaf != nil && c.Leaf.CheckSignatureFrom(root) == nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("signed by %q, which is not an X.509 authority of trust domain %s", c.Issuer, s.cfg.TrustDomain.Name())
	case credential.KindJWT:
		if _, ok := b.JWTAuthorities[c.KeyID]; ok && c.KeyID != "" {
			return true, ""
		}
		return false, fmt.Sprintf("signed with key ID %q, which is not a JWT authority of trust domain %s", c.KeyID, s.cfg.TrustDomain.Name())
	}
	return false, "not a credential kind Signet issues"
}

// otherLive lists the entry's credentials other than exclude that are valid at now.
func (s *AdminService) otherLive(entryID, exclude string, now time.Time) ([]*adminv1.Issuance, error) {
	var out []*adminv1.Issuance
	page, err := s.cfg.Store.QueryLedger(storage.LedgerQuery{EntryID: entryID, ValidAt: now, Limit: maxOtherLive + 1})
	if err != nil {
		return nil, err
	}
	for i := range page.Issuances {
		if page.Issuances[i].ID != exclude && len(out) < maxOtherLive {
			out = append(out, IssuanceToAdmin(&page.Issuances[i]))
		}
	}
	return out, nil
}
