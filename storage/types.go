package storage

import (
	"crypto"
	"crypto/x509"
	"strings"
	"time"

	"github.com/signet-id/signet/selector"
)

// Owner is an accountable person or team. Every entry has exactly one owner.
type Owner struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name,omitempty"`
	Kind        string    `json:"kind,omitempty"`
	Team        string    `json:"team,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by,omitempty"`
	// Offboarded owners own nothing active: their entries and unused tokens were reassigned or disabled.
	Offboarded   bool      `json:"offboarded,omitempty"`
	OffboardedAt time.Time `json:"offboarded_at,omitzero"`
	OffboardedBy string    `json:"offboarded_by,omitempty"`
	ReassignedTo string    `json:"reassigned_to,omitempty"`
}

// Entry is a registration entry: the workloads whose attested selectors include Selectors, on a node whose
// agent is ParentID, are issued SPIFFEID.
type Entry struct {
	ID        string              `json:"id"`
	SPIFFEID  string              `json:"spiffe_id"`
	ParentID  string              `json:"parent_id"`
	Selectors []selector.Selector `json:"selectors"`
	Owner     string              `json:"owner"`
	Purpose   string              `json:"purpose"`
	X509TTL   time.Duration       `json:"x509_ttl"`
	JWTTTL    time.Duration       `json:"jwt_ttl"`
	DNSNames  []string            `json:"dns_names,omitempty"`
	ExpiresAt time.Time           `json:"expires_at,omitzero"`
	// NeverExpires is set when an admin explicitly asked for no expiry (ExpiresAt is then zero).
	NeverExpires bool `json:"never_expires,omitempty"`
	// Ticket references the change request that justified the entry.
	Ticket string `json:"ticket,omitempty"`
	// JWTUnique asks for a fresh jti on every JWT-SVID: agents never serve one from cache.
	JWTUnique bool `json:"jwt_unique,omitempty"`
	// Prefetch asks agents to mint the entry's X.509-SVID ahead of any request and keep it rotated,
	// for workloads that must start while the server is unreachable. Other entries are minted when a
	// matching workload first asks, and dropped once unused for a whole SVID lifetime.
	Prefetch bool `json:"prefetch,omitempty"`
	// FederatesWith names trust domains (federation relationships) whose bundles the agent delivers to
	// the entry's workloads, so they can authenticate peers of those trust domains.
	FederatesWith []string  `json:"federates_with,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	CreatedBy     string    `json:"created_by,omitempty"`
	// Disabled entries are not issued (and not sent to agents) until enabled again.
	Disabled       bool      `json:"disabled,omitempty"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	DisabledBy     string    `json:"disabled_by,omitempty"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	// Pending entries wait for a second admin's approval (the policy's two-person rule); PendingRules
	// names the rules that asked for it.
	Pending      bool      `json:"pending,omitempty"`
	PendingRules []string  `json:"pending_rules,omitempty"`
	ApprovedBy   string    `json:"approved_by,omitempty"`
	ApprovedAt   time.Time `json:"approved_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
	UpdatedBy    string    `json:"updated_by,omitempty"`
	UpdateReason string    `json:"update_reason,omitempty"`
	// Revision is the registry revision at which this entry last changed; set by the store.
	Revision uint64 `json:"revision"`
}

// Expired reports whether the entry has an expiry at or before now.
func (e *Entry) Expired(now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}

// Active reports whether the entry may be issued now: not disabled, not pending approval, not expired.
func (e *Entry) Active(now time.Time) bool {
	return !e.Disabled && !e.Pending && !e.Expired(now)
}

// identityKey is what makes two entries duplicates: same SPIFFE ID, parent and selectors.
func (e *Entry) identityKey() string {
	var b strings.Builder
	b.WriteString(e.SPIFFEID)
	b.WriteByte(0)
	b.WriteString(e.ParentID)
	for _, s := range selector.Normalize(e.Selectors) {
		b.WriteByte(0)
		b.WriteString(s.String())
	}
	return b.String()
}

// AuthorityKind says which SVID type an authority signs.
type AuthorityKind string

// Authority kinds.
const (
	AuthorityX509 AuthorityKind = "x509"
	AuthorityJWT  AuthorityKind = "jwt"
	// AuthorityX509Intermediate is an upstream authority's intermediate that signs a node's X.509-SVIDs
	// (upstream_authority). It is in no bundle; it appears only as a revoked key (RevokedKey.Kind).
	AuthorityX509Intermediate AuthorityKind = "x509-intermediate"
)

// Authority is one public trust anchor of the trust domain: a server node's X.509 root certificate or
// JWT signing key. The bundle is the set of all authorities. Private keys never enter the store.
type Authority struct {
	Kind AuthorityKind `json:"kind"`
	// ID is the JWT key ID, or for X.509 the hex SHA-256 of the certificate DER.
	ID string `json:"id"`
	// DER is the certificate (X.509) or the PKIX public key (JWT).
	DER      []byte    `json:"der"`
	NotAfter time.Time `json:"not_after"`
	Node     string    `json:"node"`
	AddedAt  time.Time `json:"added_at"`
}

// Bundle is the trust domain's current set of authorities, parsed.
type Bundle struct {
	X509Authorities []*x509.Certificate
	JWTAuthorities  map[string]crypto.PublicKey
	// Sequence increases whenever the set of authorities changes, or an intermediate is revoked.
	Sequence uint64
	// RevokedSigners are the key IDs (Subject Key Identifiers in hex) of the upstream intermediates
	// revoked with signet ca revoke-key, the most recent MaxRevokedSigners, oldest first: the bundle's
	// roots still verify what they signed, so agents drop what chains through them.
	RevokedSigners []string
}

// IssuanceKind is the kind of credential an issuance record describes.
type IssuanceKind uint8

// Issuance kinds.
const (
	KindX509SVID IssuanceKind = 1
	KindJWTSVID  IssuanceKind = 2
)

func (k IssuanceKind) String() string {
	switch k {
	case KindX509SVID:
		return "x509-svid"
	case KindJWTSVID:
		return "jwt-svid"
	default:
		return "unknown"
	}
}

// Issuance is one ledger record: a credential Signet issued, and on whose authority.
type Issuance struct {
	// ID is the X.509 serial number in lowercase hex, or the JWT ID (jti).
	ID              string       `json:"id"`
	Kind            IssuanceKind `json:"kind"`
	SPIFFEID        string       `json:"spiffe_id"`
	EntryID         string       `json:"entry_id"`
	Owner           string       `json:"owner"`
	Selectors       []string     `json:"selectors,omitempty"`
	Audience        []string     `json:"audience,omitempty"`
	PublicKeySHA256 string       `json:"public_key_sha256,omitempty"`
	IssuedAt        time.Time    `json:"issued_at"`
	ExpiresAt       time.Time    `json:"expires_at"`
	// Node is the server node that signed the credential.
	Node string `json:"node"`
	// Agent is the SPIFFE ID of the agent the credential was issued through.
	Agent string `json:"agent,omitempty"`
	// NodeAttestation is how the agent's node was attested ("dev", "join_token", …).
	NodeAttestation string `json:"node_attestation,omitempty"`
	// SignedBy is the ID of the CA key that signed the credential: an X.509 authority's Subject Key
	// Identifier in lowercase hex, or a JWT key's kid. Empty in records committed before the ledger
	// recorded signers, or while a server of the cluster did not understand it yet (a rolling upgrade).
	SignedBy string `json:"signed_by,omitempty"`
}
