package main

import (
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/selector"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// entryOptions is an entry as 'entry create' and 'entry update' take it in flags, and 'entry import' in
// a file, before it is checked.
type entryOptions struct {
	admin        string
	spiffeID     string
	parentID     string
	selectors    []string
	owner        string
	purpose      string
	x509TTL      time.Duration
	jwtTTL       time.Duration
	dnsNames     []string
	expiresAt    string
	expiresIn    time.Duration
	neverExpires bool
	ticket       string
	jwtUnique    bool
	prefetch     bool
	federates    []string
	output       string
}

// entryField is one field of an entry, checked the same way by 'entry create', 'entry update' and
// 'entry import'.
type entryField struct {
	flag string // the flag, without "--"
	key  string // the key in an import file
	mask string // the field in an update mask
	// required, if set, makes the field required on create and import, and says why.
	required string
	// apply checks the field's value in o and sets it in e; name is how errors call the field.
	apply func(o *entryOptions, e *adminv1.Entry, name string) error
}

var entryFields = []entryField{
	{flag: "spiffe-id", key: "spiffe_id", mask: "spiffe_id", required: "the SPIFFE ID to issue, e.g. spiffe://example.org/billing/api",
		apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
			if _, err := spiffeid.FromString(o.spiffeID); err != nil {
				return usagef("%s %q: %v (want spiffe://trust-domain/path)", name, o.spiffeID, err)
			}
			e.SpiffeId = o.spiffeID
			return nil
		}},
	{flag: "parent-id", key: "parent_id", mask: "parent_id", apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
		if o.parentID != "" {
			if _, err := spiffeid.FromString(o.parentID); err != nil {
				return usagef("%s %q: %v (want spiffe://trust-domain/path)", name, o.parentID, err)
			}
		}
		e.ParentId = o.parentID
		return nil
	}},
	{flag: "selector", key: "selectors", mask: "selectors", required: "the selectors the workload must have, e.g. unix:uid:1000",
		apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
			if len(o.selectors) == 0 {
				return usagef("%s: give at least one selector, e.g. unix:uid:1000", name)
			}
			for _, s := range o.selectors {
				sel, err := selector.Parse(s)
				if err != nil {
					return usagef("%s: %v", name, err)
				}
				e.Selectors = append(e.Selectors, &adminv1.Selector{Type: sel.Type, Value: sel.Value})
			}
			return nil
		}},
	{flag: "owner", key: "owner", mask: "owner", required: "every identity needs an accountable owner",
		apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
			return setNonEmpty(&e.Owner, o.owner, name, "every identity needs an accountable owner")
		}},
	{flag: "purpose", key: "purpose", mask: "purpose", required: "say why this identity exists",
		apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
			return setNonEmpty(&e.Purpose, o.purpose, name, "say why this identity exists")
		}},
	{flag: "ticket", key: "ticket", mask: "ticket", apply: func(o *entryOptions, e *adminv1.Entry, _ string) error {
		e.Ticket = o.ticket
		return nil
	}},
	{flag: "x509-ttl", key: "x509_ttl", mask: "x509_ttl_seconds", apply: func(o *entryOptions, e *adminv1.Entry, name string) (err error) {
		e.X509TtlSeconds, err = ttlSeconds(name, o.x509TTL)
		return err
	}},
	{flag: "jwt-ttl", key: "jwt_ttl", mask: "jwt_ttl_seconds", apply: func(o *entryOptions, e *adminv1.Entry, name string) (err error) {
		e.JwtTtlSeconds, err = ttlSeconds(name, o.jwtTTL)
		return err
	}},
	{flag: "dns-name", key: "dns_names", mask: "dns_names", apply: func(o *entryOptions, e *adminv1.Entry, _ string) error {
		e.DnsNames = o.dnsNames
		return nil
	}},
	{flag: "expires-at", key: "expires_at", mask: "expires_at", apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
		t, err := time.Parse(time.RFC3339, o.expiresAt)
		if err != nil {
			return usagef("%s %q: not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)", name, o.expiresAt)
		}
		e.ExpiresAt = t.Unix()
		return nil
	}},
	{flag: "expires-in", key: "expires_in", mask: "expires_at", apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
		if o.expiresIn <= 0 {
			return usagef("%s %s: must be positive", name, formatDays(o.expiresIn))
		}
		e.ExpiresAt = time.Now().Add(o.expiresIn).Unix()
		return nil
	}},
	{flag: "never-expires", key: "never_expires", mask: "never_expires", apply: func(o *entryOptions, e *adminv1.Entry, _ string) error {
		e.NeverExpires = o.neverExpires
		return nil
	}},
	{flag: "jwt-unique", key: "jwt_unique", mask: "jwt_unique", apply: func(o *entryOptions, e *adminv1.Entry, _ string) error {
		e.JwtUnique = o.jwtUnique
		return nil
	}},
	{flag: "prefetch", key: "prefetch", mask: "prefetch", apply: func(o *entryOptions, e *adminv1.Entry, _ string) error {
		e.Prefetch = o.prefetch
		return nil
	}},
	{flag: "federates-with", key: "federates_with", mask: "federates_with", apply: func(o *entryOptions, e *adminv1.Entry, name string) error {
		for _, v := range o.federates {
			if v == "" {
				continue // --federates-with '' on update: none
			}
			td, err := parseTrustDomain(v)
			if err != nil {
				return usagef("%s %v", name, err)
			}
			e.FederatesWith = append(e.FederatesWith, td.Name())
		}
		return nil
	}},
}

func setNonEmpty(dst *string, v, name, why string) error {
	if strings.TrimSpace(v) == "" {
		return usagef("%s must not be empty: %s", name, why)
	}
	*dst = v
	return nil
}

// ttlSeconds checks an SVID lifetime's form; the server checks it against its minimum for the kind
// (min_x509_svid_ttl, min_jwt_svid_ttl in its configuration), which the client does not know.
func ttlSeconds(name string, d time.Duration) (int64, error) {
	if d <= 0 {
		return 0, usagef("%s %s: must be positive", name, d)
	}
	if d%time.Second != 0 {
		return 0, usagef("%s %s: must be whole seconds", name, d)
	}
	return int64(d / time.Second), nil
}

// flagName names a field by its flag, for create and update.
func flagName(f entryField) string { return "--" + f.flag }

// build checks the fields given (given reports it by flag name) and returns the entry and the mask of
// the fields set. With create, the required fields must be given. Every error names the field as name
// does (the flag, or the import file key).
func (o *entryOptions) build(given func(flag string) bool, name func(entryField) string, create bool) (*adminv1.Entry, []string, error) {
	byFlag := func(flag string) entryField {
		return entryFields[slices.IndexFunc(entryFields, func(f entryField) bool { return f.flag == flag })]
	}
	if create {
		for _, f := range entryFields {
			if f.required != "" && !given(f.flag) {
				return nil, nil, usagef("%s is required: %s", name(f), f.required)
			}
		}
	}
	// The expiry is given one way at most; --never-expires=false is no expiry at all.
	var expiry []string
	for _, flag := range []string{"expires-at", "expires-in", "never-expires"} {
		if given(flag) && (flag != "never-expires" || o.neverExpires) {
			expiry = append(expiry, name(byFlag(flag)))
		}
	}
	if len(expiry) > 1 {
		return nil, nil, usagef("%s cannot be given together: give at most one of %s, %s and %s", strings.Join(expiry, " and "),
			name(byFlag("expires-at")), name(byFlag("expires-in")), name(byFlag("never-expires")))
	}
	e := &adminv1.Entry{}
	var mask []string
	for _, f := range entryFields {
		if !given(f.flag) {
			continue
		}
		if err := f.apply(o, e, name(f)); err != nil {
			return nil, nil, err
		}
		if !slices.Contains(mask, f.mask) {
			mask = append(mask, f.mask)
		}
	}
	return e, mask, nil
}

// addEntryFlags adds the flags describing an entry: for 'entry create', with the required ones marked
// and the defaults shown; for 'entry update', where only the flags given change, without either.
func addEntryFlags(cmd *cobra.Command, o *entryOptions, update bool) {
	adminFlag(cmd, &o.admin)
	outputFlag(cmd, &o.output)
	required := func(usage string) string {
		if update {
			return usage
		}
		return usage + " (required)"
	}
	ttl, expiresAt := time.Hour, "when the entry stops being issued (RFC 3339)"
	if update {
		ttl = 0
	} else {
		expiresAt += "; default: the server's default_entry_ttl from now"
	}
	f := cmd.Flags()
	f.StringVar(&o.spiffeID, "spiffe-id", "", required("SPIFFE ID to issue, e.g. spiffe://example.org/billing/api"))
	parentUsage := "SPIFFE ID of the agent (or node alias) that may issue it"
	if !update {
		parentUsage += " (dev mode: the dev agent)"
	}
	f.StringVar(&o.parentID, "parent-id", "", parentUsage)
	selUsage := "selector type:key:value the workload must have; repeat for more"
	if update {
		selUsage += " (replaces every selector)"
	}
	f.StringArrayVar(&o.selectors, "selector", nil, required(selUsage))
	f.StringVar(&o.owner, "owner", "", required("accountable owner of this identity"))
	f.StringVar(&o.purpose, "purpose", "", required("why this identity exists"))
	f.StringVar(&o.ticket, "ticket", "", "reference of the change request that justifies it")
	f.DurationVar(&o.x509TTL, "x509-ttl", ttl, "lifetime of X.509-SVIDs (at least min_x509_svid_ttl: the cluster's policy limit, else the server's, 1m by default; at most the server's ca.rotation.max_svid_ttl, 720h by default)")
	f.DurationVar(&o.jwtTTL, "jwt-ttl", ttl, "lifetime of JWT-SVIDs (at least min_jwt_svid_ttl: the cluster's policy limit, else the server's, 30s by default; at most the server's ca.rotation.max_svid_ttl, 720h by default)")
	dnsUsage := "DNS name to add to X.509-SVIDs; repeat for more"
	if update {
		dnsUsage += " (replaces every DNS name)"
	}
	f.StringArrayVar(&o.dnsNames, "dns-name", nil, dnsUsage)
	f.StringVar(&o.expiresAt, "expires-at", "", expiresAt)
	daysFlag(f, &o.expiresIn, "expires-in", 0, "when the entry stops being issued, from now (e.g. 90d or 2160h)")
	f.BoolVar(&o.neverExpires, "never-expires", false, "the entry never expires (access reviews flag it)")
	f.BoolVar(&o.jwtUnique, "jwt-unique", false, "give every JWT-SVID a fresh jti (agents never serve one from cache)")
	federatesUsage := "a trust domain this one federates with (signet federation create): the workloads get its bundle, to authenticate its workloads; repeat for more"
	if update {
		federatesUsage += " (replaces the whole list; --federates-with '' clears it)"
	}
	f.StringArrayVar(&o.federates, "federates-with", nil, federatesUsage)
	f.BoolVar(&o.prefetch, "prefetch", false, "agents mint the X.509-SVID before any workload asks and keep it rotated (for workloads that must start while the server is unreachable); otherwise it is minted on first request")
}
