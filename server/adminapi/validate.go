package adminapi

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Input bounds. Requests beyond them are refused, never truncated.
const (
	maxSelectors  = 64
	maxDNSNames   = 64
	maxPurposeLen = 1024
	maxNameLen    = 128
	maxIDLen      = 2048
	// maxTTL is the longest SVID lifetime an entry may ask for, whatever the CA's remaining life.
	maxTTL = 30 * 24 * time.Hour
)

var ownerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]*$`)

// validateOwnerName checks an owner reference or name.
func validateOwnerName(field, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is required: %w", field, ErrInvalidArgument)
	case len(name) > maxNameLen:
		return fmt.Errorf("%s %.20q…: %w: longer than %d characters", field, name, ErrInvalidArgument, maxNameLen)
	case !ownerNameRE.MatchString(name):
		return fmt.Errorf("%s %q: %w: use letters, digits and . _ @ + - (e.g. alice@example.org)", field, name, ErrInvalidArgument)
	}
	return nil
}

// ValidateOwnerName checks an owner name given outside the admin API (configuration); the error says
// what a good name looks like.
func ValidateOwnerName(name string) error { return validateOwnerName("owner", name) }

// validateOwner checks a new owner.
func validateOwner(o *storage.Owner) error {
	if err := validateOwnerName("owner name", o.Name); err != nil {
		return err
	}
	switch o.Kind {
	case "", "person", "team":
	default:
		return fmt.Errorf("owner %q: kind %q: %w: must be person or team", o.Name, o.Kind, ErrInvalidArgument)
	}
	if o.Team != "" {
		if err := validateOwnerName("team", o.Team); err != nil {
			return fmt.Errorf("owner %q: %w", o.Name, err)
		}
	}
	if err := validateText("display_name", o.DisplayName, maxNameLen); err != nil {
		return fmt.Errorf("owner %q: %w", o.Name, err)
	}
	return nil
}

func validateText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%s: %w: longer than %d bytes", field, ErrInvalidArgument, maxLen)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s: %w: contains a control character", field, ErrInvalidArgument)
		}
	}
	return nil
}

// entryRules are what an entry is validated against.
type entryRules struct {
	TrustDomain spiffeid.TrustDomain
	// ServerID is the parent of node alias entries (entries selected by node selectors).
	ServerID string
	Now      time.Time
	// MaxTTL is the longest SVID TTL (zero: maxTTL); the default TTL is capped to it.
	MaxTTL time.Duration
	// MinX509TTL and MinJWTTTL are the shortest SVID lifetimes an entry may ask (zero: MinX509SVIDTTL
	// and MinJWTSVIDTTL).
	MinX509TTL, MinJWTTTL time.Duration
	// Selectors are the selector types this server's attestors produce.
	Selectors *selector.Registry
}

// parseID parses a SPIFFE ID that must belong to the trust domain.
func (r entryRules) parseID(field, s string) (spiffeid.ID, error) {
	if s == "" {
		return spiffeid.ID{}, fmt.Errorf("%s is required: %w", field, ErrInvalidArgument)
	}
	if len(s) > maxIDLen {
		return spiffeid.ID{}, fmt.Errorf("%s: %w: longer than %d bytes", field, ErrInvalidArgument, maxIDLen)
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%s %q: %w: %v (want spiffe://%s/path)", field, s, ErrInvalidArgument, err, r.TrustDomain.Name())
	}
	if id.TrustDomain() != r.TrustDomain {
		return spiffeid.ID{}, fmt.Errorf("%s %q: %w: not in trust domain %q", field, s, ErrInvalidArgument, r.TrustDomain.Name())
	}
	return id, nil
}

// validateEntry checks a new entry's content; state-dependent checks (owner exists, duplicates) are the
// store's. It fills in defaults (TTLs) and normalizes the selectors.
func (r entryRules) validateEntry(e *storage.Entry) error {
	id, err := r.parseID("spiffe_id", e.SPIFFEID)
	if err != nil {
		return fmt.Errorf("entry: %w", err)
	}
	name := e.SPIFFEID
	if id.Path() == "" {
		return fmt.Errorf("entry %q: spiffe_id: %w: a workload ID needs a path (X509-SVID §3.1), e.g. spiffe://%s/service", name, ErrInvalidArgument, r.TrustDomain.Name())
	}
	if strings.HasPrefix(id.Path()+"/", issuer.ReservedPathPrefix) {
		return fmt.Errorf("entry %q: spiffe_id: %w: paths under %s are reserved for Signet's own agents and servers", name, ErrInvalidArgument, issuer.ReservedPathPrefix)
	}
	if _, err := r.parseID("parent_id", e.ParentID); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	if err := validateOwnerName("owner", e.Owner); err != nil {
		return fmt.Errorf("entry %q: %w (every entry needs an accountable owner: --owner NAME)", name, err)
	}
	if strings.TrimSpace(e.Purpose) == "" {
		return fmt.Errorf("entry %q: purpose is required: %w (say why this identity exists: --purpose TEXT)", name, ErrInvalidArgument)
	}
	if err := validateText("purpose", e.Purpose, maxPurposeLen); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	if len(e.Selectors) == 0 {
		return fmt.Errorf("entry %q: selectors: %w: at least one is required (e.g. unix:uid:1000)", name, ErrInvalidArgument)
	}
	if err := r.validateFederatesWith(e); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	if len(e.Selectors) > maxSelectors {
		return fmt.Errorf("entry %q: selectors: %w: more than %d", name, ErrInvalidArgument, maxSelectors)
	}
	// A node alias (parent: the server) names a set of nodes by node selectors; any other entry names
	// workloads by workload selectors.
	want, kind := selector.Workload, "a workload selector (an entry parented to an agent or alias selects workloads)"
	if r.ServerID != "" && e.ParentID == r.ServerID {
		want, kind = selector.Node, "a node selector (an entry parented to the server is a node alias)"
	}
	for _, s := range e.Selectors {
		if err := r.Selectors.Validate(s); err != nil {
			return fmt.Errorf("entry %q: selectors: %w", name, err)
		}
		if r.Selectors.KindOf(s.Type) != want {
			return fmt.Errorf("entry %q: selector %q: %w: not %s", name, s, ErrInvalidArgument, kind)
		}
	}
	e.Selectors = selector.Normalize(e.Selectors)
	if err := r.validateTTL(name, "x509_ttl", &e.X509TTL, cmp.Or(r.MinX509TTL, MinX509SVIDTTL)); err != nil {
		return err
	}
	if err := r.validateTTL(name, "jwt_ttl", &e.JWTTTL, cmp.Or(r.MinJWTTTL, MinJWTSVIDTTL)); err != nil {
		return err
	}
	if len(e.DNSNames) > maxDNSNames {
		return fmt.Errorf("entry %q: dns_names: %w: more than %d", name, ErrInvalidArgument, maxDNSNames)
	}
	for _, d := range e.DNSNames {
		if !validDNSName(d) {
			return fmt.Errorf("entry %q: dns_name %q: %w: not a valid DNS name", name, d, ErrInvalidArgument)
		}
	}
	if !e.ExpiresAt.IsZero() && !e.ExpiresAt.After(r.Now) {
		return fmt.Errorf("entry %q: expires_at %s: %w: must be in the future", name, e.ExpiresAt.Format(time.RFC3339), ErrInvalidArgument)
	}
	if e.NeverExpires && !e.ExpiresAt.IsZero() {
		return fmt.Errorf("entry %q: never_expires: %w: cannot be set together with expires_at", name, ErrInvalidArgument)
	}
	if err := validateText("ticket", e.Ticket, maxNameLen); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	return nil
}

// DefaultSVIDTTL is the lifetime of X.509- and JWT-SVIDs for entries that do not set one.
const DefaultSVIDTTL = time.Hour

// Minimum lifetimes. Every SVID is recorded in the ledger, kept for the ledger retention (90 days by
// default): an SVID of a few seconds, re-minted at half life, would fill it with records of credentials
// that live for nothing. Agents renew at half life, so these also bound how often one entry is re-minted.
//
// MinX509SVIDTTL and MinJWTSVIDTTL are the defaults of the server's minimums (Config.MinX509SVIDTTL,
// Config.MinJWTSVIDTTL); ShortestSVIDTTL is the least those can be set to.
const (
	MinX509SVIDTTL  = time.Minute
	MinJWTSVIDTTL   = 30 * time.Second
	ShortestSVIDTTL = time.Second
)

func (r entryRules) validateTTL(name, field string, ttl *time.Duration, minTTL time.Duration) error {
	longest := r.MaxTTL
	if longest == 0 {
		longest = maxTTL
	}
	switch {
	case *ttl == 0:
		*ttl = min(DefaultSVIDTTL, longest)
	case *ttl < 0:
		return fmt.Errorf("entry %q: %s %s: %w: must be positive", name, field, *ttl, ErrInvalidArgument)
	case *ttl < minTTL:
		return fmt.Errorf("entry %q: %s %s: %w: at least %s (min_%s_svid_ttl, the cluster's policy limit if it sets one, else the server's: every SVID is kept in the ledger, shorter ones would fill it)",
			name, field, *ttl, ErrInvalidArgument, minTTL, strings.TrimSuffix(field, "_ttl"))
	case *ttl > longest:
		return fmt.Errorf("entry %q: %s %s: %w: at most %s (the longest SVID TTL of the server, ca.rotation.max_svid_ttl)", name, field, *ttl, ErrInvalidArgument, longest)
	}
	// A TTL longer than the CA's remaining life is accepted: the CA caps every SVID at its own
	// NotAfter (ca.ErrCAExpired only once it has expired), so entries outlive the CA that signs today.
	return nil
}

func validDNSName(d string) bool {
	d = strings.TrimPrefix(d, "*.")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// MaxFederatesWith bounds the trust domains one entry federates with.
const MaxFederatesWith = 16

// validateFederatesWith checks an entry's federates_with: trust domain names, not this one, no
// duplicates, at most MaxFederatesWith, sorted (so an entry has one form). A relationship need not exist
// yet: until it does, the agent has no bundle of that trust domain to deliver.
func (r entryRules) validateFederatesWith(e *storage.Entry) error {
	if len(e.FederatesWith) > MaxFederatesWith {
		return fmt.Errorf("federates_with: %w: %d trust domains, at most %d", ErrInvalidArgument, len(e.FederatesWith), MaxFederatesWith)
	}
	for _, name := range e.FederatesWith {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil || td.Name() != name {
			return fmt.Errorf("federates_with %q: %w: not a trust domain name (e.g. other.org; --federates-with)", name, ErrInvalidArgument)
		}
		if td == r.TrustDomain {
			return fmt.Errorf("federates_with %q: %w: that is this trust domain (--federates-with names other trust domains)", name, ErrInvalidArgument)
		}
	}
	slices.Sort(e.FederatesWith)
	if n := len(slices.Compact(slices.Clone(e.FederatesWith))); n != len(e.FederatesWith) {
		return fmt.Errorf("federates_with: %w: a trust domain is named twice", ErrInvalidArgument)
	}
	if len(e.FederatesWith) == 0 {
		e.FederatesWith = nil
	}
	return nil
}
