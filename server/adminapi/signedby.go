package adminapi

import (
	"fmt"
	"slices"
	"strings"

	"github.com/signet-id/signet/ca"
)

// checkSignedBy validates a ledger query's signing key ID (QueryLedgerRequest.signed_by).
func checkSignedBy(id string) error {
	if err := ca.CheckKeyID(id); err != nil {
		return fmt.Errorf("signed_by: %w: %w (an X.509 authority's Subject Key Identifier in hex, or a JWT key's kid)", ErrInvalidArgument, err)
	}
	return nil
}

// bundleKeyIDs returns the key IDs of the trust bundle's authorities, as "x509 ID" and "jwt KID".
func (s *AdminService) bundleKeyIDs() []string {
	b := s.cfg.Store.Bundle()
	out := make([]string, 0, len(b.X509Authorities)+len(b.JWTAuthorities))
	for _, root := range b.X509Authorities {
		out = append(out, "x509 "+ca.X509KeyID(root))
	}
	kids := make([]string, 0, len(b.JWTAuthorities))
	for kid := range b.JWTAuthorities {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	for _, kid := range kids {
		out = append(out, "jwt "+kid)
	}
	return out
}

// signedByNote explains an empty answer to a query by signing key: if the key is none of the trust
// bundle's, it says so and lists the bundle's keys (a mistyped ID is told apart from a key that signed
// nothing); a key removed from the bundle is still found by its ID. "" if the key is in the bundle.
func (s *AdminService) signedByNote(id string) string {
	keys := s.bundleKeyIDs()
	for _, k := range keys {
		if strings.HasSuffix(k, " "+id) {
			return ""
		}
	}
	return fmt.Sprintf("key %q is not in the trust bundle (the ledger still finds keys removed from it); the bundle's keys: %s",
		id, strings.Join(keys, ", "))
}
