package adminapi

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Revoking under an upstream authority (upstream_authority): each key slot's X.509 CA is an intermediate
// the upstream signed, in no bundle; the bundle holds the upstream's root, which is not Signet's key.

// findIntermediate returns the upstream intermediate id names (its Subject Key Identifier in hex, or
// its x509_id, the hex SHA-256 of its certificate, on the server that owns it): one of this node's
// live key slots, or, of another node, a key that is no root of the bundle and signed an X.509-SVID
// still valid (the ledger's signed_by): only an upstream intermediate can. ok is false when it is none.
func (s *AdminService) findIntermediate(id string) (in storage.Intermediate, ok bool, err error) {
	if s.cfg.KeyAdmin != nil {
		for _, sl := range s.cfg.KeyAdmin.KeySlots() {
			if sl.State != rotation.Pruned && sl.CA != nil && sl.CA.Upstream() && sl.Holds(id) {
				return storage.Intermediate{ID: sl.CA.X509KeyID(), Node: s.cfg.Store.NodeID(), NotAfter: sl.NotAfter}, true, nil
			}
		}
	}
	page, err := s.cfg.Store.QueryLedger(storage.LedgerQuery{SignedBy: id, ValidAt: s.cfg.Clock(), Limit: 1})
	if err != nil {
		return storage.Intermediate{}, false, fmt.Errorf("key %s: look for an upstream intermediate that signed: %w", id, err)
	}
	for _, r := range page.Issuances {
		if r.Kind == storage.KindX509SVID && r.Node != "" {
			return storage.Intermediate{ID: id, Node: r.Node}, true, nil
		}
	}
	return storage.Intermediate{}, false, nil
}

// checkNotUpstreamRoot refuses to revoke an upstream authority's root: it is the upstream's key, not
// Signet's, every key of the trust domain chains to it, and Signet cannot replace it. A root of the
// bundle is an upstream root when one of this node's keys chains to it, or when it is not a Signet root
// (those carry the single URI SAN spiffe://<trust domain>).
func (s *AdminService) checkNotUpstreamRoot(a storage.Authority) error {
	if a.Kind != storage.AuthorityX509 {
		return nil
	}
	upstream := false
	if s.cfg.KeyAdmin != nil {
		for _, sl := range s.cfg.KeyAdmin.KeySlots() {
			if sl.CA != nil && sl.CA.Upstream() && slices.Contains(upstreamRootIDs(sl), a.ID) {
				upstream = true
			}
		}
	}
	if c, err := x509.ParseCertificate(a.DER); err == nil && !signetRoot(c, s.cfg.TrustDomain) {
		upstream = true
	}
	if !upstream {
		return nil
	}
	return fmt.Errorf("key %s: %w: it is the root of the upstream authority (upstream_authority), not a key of Signet: "+
		"taking it out of the bundle would make every SVID of the trust domain fail to verify, and Signet cannot make a new one. "+
		"Revoke the compromised intermediate instead (its x509_key_id in signet ca status, the ledger's signed_by); "+
		"if the upstream root's key is compromised, make a new upstream CA, point upstream_authority at it, run signet ca rotate on every server, "+
		"and have the upstream's operator revoke the old root", a.ID, ErrInvalidArgument)
}

// signetRoot reports whether c is a root Signet made: it carries exactly the URI SAN spiffe://<td>.
func signetRoot(c *x509.Certificate, td spiffeid.TrustDomain) bool {
	if len(c.URIs) != 1 {
		return false
	}
	id, err := spiffeid.FromURI(c.URIs[0])
	return err == nil && id == td.ID()
}

// intermediateNote is what a revocation of an upstream intermediate cannot do, and the operator's next
// steps.
func intermediateNote(r storage.RevokedKey) string {
	until := "they expire"
	if !r.NotAfter.IsZero() {
		until += " (at the latest " + r.NotAfter.UTC().Format(time.RFC3339) + ", the intermediate's NotAfter)"
	}
	return fmt.Sprintf("upstream intermediate %s: Signet agents drop and re-mint what it signed, but the upstream root stays in the bundle, "+
		"so any peer that trusts that root still accepts the SVIDs it signed until %s: there is no CRL. "+
		"Have the upstream authority revoke the intermediate (Subject Key Identifier %s) where its relying parties look, "+
		"rotate the upstream root if its key may be exposed (docs/governance.md, After a key compromise), and keep ca.max_svid_ttl short", r.ID, until, r.ID)
}

// revokedSignerNote says that rec's signing key was revoked, and what that means for the credential
// ("" when it was not, or the revocations cannot be read).
func (s *AdminService) revokedSignerNote(rec storage.Issuance) string {
	if rec.SignedBy == "" {
		return ""
	}
	revoked, err := s.cfg.Store.RevokedKeys()
	if err != nil {
		return ""
	}
	for _, r := range revoked {
		if r.SignerID != rec.SignedBy {
			continue
		}
		note := fmt.Sprintf("signed by %s key %s, revoked by %s at %s (%s): ", r.Kind, r.SignerID, r.By, r.At.UTC().Format(time.RFC3339), r.Reason)
		if r.Kind == storage.AuthorityX509Intermediate {
			return note + "Signet agents no longer hand it out, but it chains to the upstream root, so peers that trust that root accept it until it expires at " +
				rec.ExpiresAt.UTC().Format(time.RFC3339) + " (no CRL)"
		}
		return note + "the key is out of the trust bundle, so peers with the current bundle refuse it"
	}
	return ""
}

// x509KeyID is the ID the ledger records an X.509 authority by (its Subject Key Identifier in hex).
func x509KeyID(a storage.Authority) string {
	if c, err := x509.ParseCertificate(a.DER); err == nil {
		return ca.X509KeyID(c)
	}
	return a.ID
}
