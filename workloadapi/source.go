package workloadapi

import (
	"context"
	"errors"
	"time"

	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Attestor names the selectors of the process with the given pid and start time (attestor/unix,
// attestor/k8s), in selector.Normalize order; it must refuse a pid that no longer names the process
// with that start time. An attestor with nothing to say about a process (k8s, for a process outside
// any container) returns no selectors and no error. The handler runs several and unions their
// selectors.
type Attestor interface {
	Attest(ctx context.Context, pid int32, startTime uint64) ([]selector.Selector, error)
}

// Source is where the Workload API gets identities from (the node agent's cache).
type Source interface {
	// Identities returns what a caller with these selectors is entitled to now, and a channel that is
	// closed when that may have changed. It is a fetch of the caller's X.509-SVIDs: identities not
	// minted yet are minted now (reported Pending until they are).
	Identities(selectors []selector.Selector) (Identities, <-chan struct{})
	// Bundles is Identities without the SVIDs (and without minting any): the bundles, and whether
	// the caller is entitled to an identity.
	Bundles(selectors []selector.Selector) (Identities, <-chan struct{})
	// KeepX509 tells the Source an X.509 stream for these selectors is open: until release is called,
	// its identities are kept minted and rotated.
	KeepX509(selectors []selector.Selector) (release func())
	// Delivered tells the Source these X.509-SVIDs were just handed to caller. It must not block.
	Delivered(caller Caller, svids []X509SVID)
	// FetchJWTSVIDs returns a JWT-SVID for req.Audience for each identity of the caller (or only
	// req.SPIFFEID, if set). No identity is an empty result, not an error. When only some identities
	// can be served, it returns those with a non-nil error saying why the others could not; an error
	// wraps ErrRateLimited when the caller's limit refused a mint.
	FetchJWTSVIDs(ctx context.Context, req JWTRequest) ([]JWTSVID, error)
}

// ErrRateLimited is returned (wrapped, naming the limit) by a Source that refused to mint for a caller
// who has used up its rate limit. The handler answers ResourceExhausted when nothing could be served.
var ErrRateLimited = errors.New("rate limit reached")

// JWTRequest is one FetchJWTSVID call, attested.
type JWTRequest struct {
	// UID is the caller's uid from its peer credentials: the unit rate limits are kept per.
	UID uint32
	// Caller is who asks, for the delivery records of the tokens it is handed.
	Caller    Caller
	Selectors []selector.Selector
	Audience  []string
	// SPIFFEID, if set, asks for that identity only.
	SPIFFEID string
}

// Identities is a caller's view of the cache, ready to be put on the wire.
type Identities struct {
	SVIDs []X509SVID
	// Entitled is true when entries match the caller: it has identities, minted or not.
	Entitled bool
	// Pending is true when entries match the caller but their SVIDs are still being minted.
	Pending     bool
	TrustDomain spiffeid.TrustDomain
	// X509Bundle is the trust domain's X.509 authorities, concatenated DER.
	X509Bundle []byte
	// JWTBundle is the trust domain's JWT authorities as a JWK Set (use "jwt-svid").
	JWTBundle []byte
	// JWTAuthorities is the same JWT bundle, ready to validate tokens with; nil until the Source has
	// one. It is built once per bundle change and shared: callers must not modify it.
	JWTAuthorities *jwtbundle.Bundle
	// BundleSequence changes whenever the bundle does (or any of Federated).
	BundleSequence uint64
	// Federated are the bundles of the other trust domains the caller's entries federate with, in
	// trust domain order; each is delivered beside the caller's own (FetchX509SVID federated_bundles,
	// FetchX509Bundles, FetchJWTBundles, ValidateJWTSVID).
	Federated []FederatedBundle
}

// FederatedBundle is another trust domain's bundle, as delivered to a workload.
type FederatedBundle struct {
	TrustDomain spiffeid.TrustDomain
	// X509Bundle is that domain's X.509 authorities, concatenated DER.
	X509Bundle []byte
	// JWTBundle is that domain's JWT authorities as a JWK Set; JWTAuthorities the same, parsed (shared:
	// callers must not modify it).
	JWTBundle      []byte
	JWTAuthorities *jwtbundle.Bundle
}

// Caller is the attested process a credential is handed to, as delivery records name it.
type Caller struct {
	UID, GID uint32
	PID      int32
	// StartTime is the process's start time (clock ticks since boot): with PID, one process.
	StartTime uint64
	// Path and SHA256 are the executable's path and digest (hex) from its selectors; empty when the
	// attestor did not produce them.
	Path, SHA256 string
}

// X509SVID is one X.509 identity in wire form.
type X509SVID struct {
	SPIFFEID string
	// Serial identifies the certificate (lowercase hex); a new serial means a rotated SVID.
	Serial string
	// CertChain is the SVID and any intermediates, concatenated DER, leaf first.
	CertChain []byte
	// Key is the private key, PKCS#8 DER.
	Key []byte
	// ExpiresAt is the SVID's expiry.
	ExpiresAt time.Time
}

// JWTSVID is one JWT identity.
type JWTSVID struct {
	SPIFFEID string
	Token    string
}
