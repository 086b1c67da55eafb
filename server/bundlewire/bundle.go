// Package bundlewire is the trust bundle in the wire forms of the agent and admin APIs, sent alike by
// both: X.509 authorities in the store's order (oldest first), JWT keys sorted by key ID.
package bundlewire

import (
	"crypto/x509"
	"fmt"
	"maps"
	"slices"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// bundleWire is the trust bundle as both APIs send it: the X.509 authorities' certificate DER in the
// store's order (oldest first), and the JWT keys' PKIX DER sorted by key ID, so the same bundle is
// always sent the same way.
type bundleWire struct {
	x509 [][]byte
	jwt  []jwtKeyWire
}

type jwtKeyWire struct {
	id  string
	der []byte
}

func toBundleWire(b storage.Bundle) (bundleWire, error) {
	w := bundleWire{x509: make([][]byte, 0, len(b.X509Authorities)), jwt: make([]jwtKeyWire, 0, len(b.JWTAuthorities))}
	for _, c := range b.X509Authorities {
		w.x509 = append(w.x509, c.Raw)
	}
	for _, kid := range slices.Sorted(maps.Keys(b.JWTAuthorities)) {
		der, err := x509.MarshalPKIXPublicKey(b.JWTAuthorities[kid])
		if err != nil {
			return bundleWire{}, fmt.Errorf("bundle: JWT key %q: %w", kid, err)
		}
		w.jwt = append(w.jwt, jwtKeyWire{id: kid, der: der})
	}
	return w, nil
}

// ToAgent is the trust bundle in the agent API's form.
func ToAgent(td spiffeid.TrustDomain, b storage.Bundle) (*agentv1.Bundle, error) {
	w, err := toBundleWire(b)
	if err != nil {
		return nil, err
	}
	out := &agentv1.Bundle{TrustDomain: td.Name(), Sequence: b.Sequence, X509Authorities: w.x509, RevokedSigners: b.RevokedSigners}
	for _, k := range w.jwt {
		out.JwtAuthorities = append(out.JwtAuthorities, &agentv1.JWTKey{KeyId: k.id, PublicKey: k.der})
	}
	return out, nil
}

// ToAdmin is the trust bundle in the admin API's form (without the SPIFFE bundle document).
func ToAdmin(td spiffeid.TrustDomain, b storage.Bundle) (*adminv1.Bundle, error) {
	w, err := toBundleWire(b)
	if err != nil {
		return nil, err
	}
	out := &adminv1.Bundle{TrustDomain: td.Name(), Sequence: b.Sequence, X509Authorities: w.x509}
	for _, k := range w.jwt {
		out.JwtAuthorities = append(out.JwtAuthorities, &adminv1.JWTKey{KeyId: k.id, PublicKey: k.der})
	}
	return out, nil
}
