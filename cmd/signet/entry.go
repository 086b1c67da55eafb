package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/selector"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newEntryCmd() *cobra.Command {
	cmd := newGroupCmd("entry", "Manage registration entries (who gets which SPIFFE ID)")
	cmd.AddCommand(newEntryCreateCmd(), newEntryImportCmd(), newEntryListCmd(), newEntryShowCmd(), newEntryDeleteCmd(),
		newEntryUpdateCmd(),
		entryStateCmd("disable", "Stop issuing an entry at once (every agent drops its SVIDs)", "disable", true),
		entryStateCmd("enable", "Issue a disabled entry again", "enable", true),
		entryStateCmd("approve", "Approve an entry waiting for a second admin (two-person rule)", "approve", false))
	return cmd
}

type entryCreateOptions struct {
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
	output       string
}

func newEntryCreateCmd() *cobra.Command {
	o := entryCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Register a workload identity",
		Long: `Register an entry: workloads whose attested selectors include all of --selector are issued
--spiffe-id. Every entry has an accountable --owner (see 'signet owner add') and a --purpose.`,
		Example: `  signet entry create --spiffe-id spiffe://example.org/billing/api \
    --selector unix:uid:1000 --selector unix:path:/usr/local/bin/billing-api \
    --owner alice --purpose "billing API calls the ledger service" --x509-ttl 1h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEntryCreate(cmd, o) },
	}
	addEntryFlags(cmd, &o)
	return cmd
}

// addEntryFlags adds the flags describing an entry (entry create and entry update).
func addEntryFlags(cmd *cobra.Command, o *entryCreateOptions) {
	adminFlag(cmd, &o.admin)
	outputFlag(cmd, &o.output)
	f := cmd.Flags()
	f.StringVar(&o.spiffeID, "spiffe-id", "", "SPIFFE ID to issue, e.g. spiffe://example.org/billing/api (required)")
	f.StringVar(&o.parentID, "parent-id", "", "SPIFFE ID of the agent (or node alias) that may issue it (dev mode: the dev agent)")
	f.StringArrayVar(&o.selectors, "selector", nil, "selector type:key:value the workload must have; repeat for more (required)")
	f.StringVar(&o.owner, "owner", "", "accountable owner of this identity (required)")
	f.StringVar(&o.purpose, "purpose", "", "why this identity exists (required)")
	f.StringVar(&o.ticket, "ticket", "", "reference of the change request that justifies it")
	f.DurationVar(&o.x509TTL, "x509-ttl", time.Hour, "lifetime of X.509-SVIDs")
	f.DurationVar(&o.jwtTTL, "jwt-ttl", time.Hour, "lifetime of JWT-SVIDs")
	f.StringArrayVar(&o.dnsNames, "dns-name", nil, "DNS name to add to X.509-SVIDs; repeat for more")
	f.StringVar(&o.expiresAt, "expires-at", "", "when the entry stops being issued (RFC 3339); default: the server's default_entry_ttl from now")
	daysFlag(f, &o.expiresIn, "expires-in", 0, "when the entry stops being issued, from now (e.g. 90d or 2160h)")
	f.BoolVar(&o.neverExpires, "never-expires", false, "the entry never expires (access reviews flag it)")
	f.BoolVar(&o.jwtUnique, "jwt-unique", false, "give every JWT-SVID a fresh jti (agents never serve one from cache)")
}

func runEntryCreate(cmd *cobra.Command, o entryCreateOptions) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	e, err := o.toEntry()
	if err != nil {
		return err
	}
	client, closeFn, err := dialAdmin(o.admin)
	if err != nil {
		return err
	}
	defer closeFn()
	created, err := client.CreateEntry(cmd.Context(), &adminv1.CreateEntryRequest{Entry: e})
	if err != nil {
		return rpcError("entry create", err)
	}
	return printEntry(cmd.OutOrStdout(), created, o.output)
}

// toEntry checks the flags and builds the request; every error names the flag.
func (o entryCreateOptions) toEntry() (*adminv1.Entry, error) {
	if o.spiffeID == "" {
		return nil, usagef("--spiffe-id is required")
	}
	if _, err := spiffeid.FromString(o.spiffeID); err != nil {
		return nil, usagef("--spiffe-id %q: %v (want spiffe://trust-domain/path)", o.spiffeID, err)
	}
	if o.parentID != "" {
		if _, err := spiffeid.FromString(o.parentID); err != nil {
			return nil, usagef("--parent-id %q: %v", o.parentID, err)
		}
	}
	if len(o.selectors) == 0 {
		return nil, usagef("--selector is required (e.g. --selector unix:uid:1000)")
	}
	if o.owner == "" {
		return nil, usagef("--owner is required: every identity needs an accountable owner")
	}
	if strings.TrimSpace(o.purpose) == "" {
		return nil, usagef("--purpose is required: say why this identity exists")
	}
	if o.x509TTL <= 0 {
		return nil, usagef("--x509-ttl %s: must be positive", o.x509TTL)
	}
	if o.jwtTTL <= 0 {
		return nil, usagef("--jwt-ttl %s: must be positive", o.jwtTTL)
	}
	e := &adminv1.Entry{SpiffeId: o.spiffeID, ParentId: o.parentID, Owner: o.owner, Purpose: o.purpose,
		X509TtlSeconds: int64(o.x509TTL / time.Second), JwtTtlSeconds: int64(o.jwtTTL / time.Second), DnsNames: o.dnsNames,
		JwtUnique: o.jwtUnique, Ticket: o.ticket, NeverExpires: o.neverExpires}
	if n := btoi(o.expiresAt != "") + btoi(o.expiresIn != 0) + btoi(o.neverExpires); n > 1 {
		return nil, usagef("give at most one of --expires-at, --expires-in and --never-expires")
	}
	if o.expiresIn < 0 {
		return nil, usagef("--expires-in %s: must be positive", formatDays(o.expiresIn))
	}
	if o.expiresIn > 0 {
		e.ExpiresAt = time.Now().Add(o.expiresIn).Unix()
	}
	if o.x509TTL%time.Second != 0 || o.jwtTTL%time.Second != 0 {
		return nil, usagef("--x509-ttl and --jwt-ttl must be whole seconds")
	}
	for _, s := range o.selectors {
		sel, err := selector.Parse(s)
		if err != nil {
			return nil, usagef("--selector: %v", err)
		}
		e.Selectors = append(e.Selectors, &adminv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	if o.expiresAt != "" {
		t, err := time.Parse(time.RFC3339, o.expiresAt)
		if err != nil {
			return nil, usagef("--expires-at %q: not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)", o.expiresAt)
		}
		e.ExpiresAt = t.Unix()
	}
	return e, nil
}

func newEntryListCmd() *cobra.Command {
	var admin, output, owner, spiffeID, parentID string
	var expired, disabled, pending bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List registration entries",
		Example: "  signet entry list --owner alice -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			stream, err := client.ListEntries(cmd.Context(), &adminv1.ListEntriesRequest{Owner: owner, SpiffeId: spiffeID, ParentId: parentID,
				Expired: expired, Disabled: disabled, Pending: pending})
			if err != nil {
				return rpcError("entry list", err)
			}
			var entries []*adminv1.Entry
			for {
				page, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return rpcError("entry list", err)
				}
				entries = append(entries, page.Entries...)
			}
			return printEntries(cmd.OutOrStdout(), entries, output)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&owner, "owner", "", "only entries of this owner")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "only entries with this SPIFFE ID")
	cmd.Flags().StringVar(&parentID, "parent-id", "", "only entries with this parent")
	cmd.Flags().BoolVar(&expired, "expired", false, "only entries past their expiry (no longer issued)")
	cmd.Flags().BoolVar(&disabled, "disabled", false, "only disabled entries")
	cmd.Flags().BoolVar(&pending, "pending", false, "only entries waiting for approval")
	return cmd
}

func newEntryShowCmd() *cobra.Command {
	return newAdminCmd("show ID", "Show one registration entry", "  signet entry show 3f1c…", exactArgs(1, "one entry ID"),
		func(cmd *cobra.Command, c adminv1.AdminClient, args []string, output string) error {
			e, err := c.GetEntry(cmd.Context(), &adminv1.GetEntryRequest{Id: args[0]})
			if err != nil {
				return rpcError("entry show", err)
			}
			return printEntry(cmd.OutOrStdout(), e, output)
		})
}

func newEntryDeleteCmd() *cobra.Command {
	var admin string
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a registration entry (its SVIDs stop being served)",
		Args:  exactArgs(1, "one entry ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			e, err := client.DeleteEntry(cmd.Context(), &adminv1.DeleteEntryRequest{Id: args[0]})
			if err != nil {
				return rpcError("entry delete", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted entry %s (%s, owner %s)\n", e.Id, e.SpiffeId, e.Owner)
			return nil
		},
	}
	adminFlag(cmd, &admin)
	return cmd
}

// entryView is the JSON form of an entry in CLI output.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

type entryView struct {
	ID        string   `json:"id"`
	SPIFFEID  string   `json:"spiffe_id"`
	ParentID  string   `json:"parent_id"`
	Selectors []string `json:"selectors"`
	Owner     string   `json:"owner"`
	Purpose   string   `json:"purpose"`
	X509TTL   string   `json:"x509_ttl"`
	JWTTTL    string   `json:"jwt_ttl"`
	DNSNames  []string `json:"dns_names,omitempty"`
	ExpiresAt string   `json:"expires_at"`
	CreatedAt string   `json:"created_at"`
	CreatedBy string   `json:"created_by"`
	Revision  uint64   `json:"revision"`

	NeverExpires   bool     `json:"never_expires,omitempty"`
	Ticket         string   `json:"ticket,omitempty"`
	JWTUnique      bool     `json:"jwt_unique,omitempty"`
	State          string   `json:"state"` // active, expired, disabled, pending
	Disabled       bool     `json:"disabled,omitempty"`
	DisabledBy     string   `json:"disabled_by,omitempty"`
	DisabledReason string   `json:"disabled_reason,omitempty"`
	Pending        bool     `json:"pending,omitempty"`
	PendingRules   []string `json:"pending_rules,omitempty"`
	ApprovedBy     string   `json:"approved_by,omitempty"`
	UpdatedAt      string   `json:"updated_at,omitempty"`
	UpdatedBy      string   `json:"updated_by,omitempty"`
	UpdateReason   string   `json:"update_reason,omitempty"`
	IssuedCount    uint64   `json:"issued_count"`
	LastIssuedAt   string   `json:"last_issued_at"`
}

func viewEntry(e *adminv1.Entry) entryView {
	v := entryView{ID: e.Id, SPIFFEID: e.SpiffeId, ParentID: e.ParentId, Owner: e.Owner, Purpose: e.Purpose,
		X509TTL: formatSeconds(e.X509TtlSeconds), JWTTTL: formatSeconds(e.JwtTtlSeconds), DNSNames: e.DnsNames,
		ExpiresAt: formatUnix(e.ExpiresAt), CreatedAt: formatUnix(e.CreatedAt), CreatedBy: e.CreatedBy, Revision: e.Revision}
	for _, s := range e.Selectors {
		v.Selectors = append(v.Selectors, s.Type+":"+s.Value)
	}
	v.NeverExpires, v.Ticket, v.JWTUnique = e.NeverExpires, e.Ticket, e.JwtUnique
	v.Disabled, v.DisabledBy, v.DisabledReason = e.Disabled, e.DisabledBy, e.DisabledReason
	v.Pending, v.PendingRules, v.ApprovedBy = e.Pending, e.PendingRules, e.ApprovedBy
	v.UpdatedBy, v.UpdateReason, v.IssuedCount = e.UpdatedBy, e.UpdateReason, e.IssuedCount
	if e.UpdatedAt != 0 {
		v.UpdatedAt = formatUnix(e.UpdatedAt)
	}
	v.LastIssuedAt = "never"
	if e.LastIssuedAt != 0 {
		v.LastIssuedAt = formatUnixNano(e.LastIssuedAt)
	}
	switch {
	case e.Disabled:
		v.State = "disabled"
	case e.Pending:
		v.State = "pending"
	case e.ExpiresAt != 0 && time.Now().Unix() >= e.ExpiresAt:
		v.State = "expired"
	default:
		v.State = "active"
	}
	return v
}

func viewEntries(es []*adminv1.Entry) []entryView {
	out := make([]entryView, len(es))
	for i, e := range es {
		out[i] = viewEntry(e)
	}
	return out
}

func printEntry(w io.Writer, e *adminv1.Entry, format string) error {
	v := viewEntry(e)
	if format == "json" {
		return printJSON(w, v)
	}
	state := v.State
	switch {
	case v.Disabled:
		state += " (by " + v.DisabledBy + ": " + v.DisabledReason + ")"
	case v.Pending:
		state += " (approval required by " + strings.Join(v.PendingRules, ", ") + ")"
	}
	fields := [][2]string{
		{"Entry ID", v.ID}, {"SPIFFE ID", v.SPIFFEID}, {"Parent ID", v.ParentID}, {"State", state},
		{"Selectors", strings.Join(v.Selectors, ", ")}, {"Owner", v.Owner}, {"Purpose", v.Purpose}, {"Ticket", v.Ticket},
		{"X.509-SVID TTL", v.X509TTL}, {"JWT-SVID TTL", v.JWTTTL}, {"DNS names", strings.Join(v.DNSNames, ", ")},
		{"Expires at", v.ExpiresAt}, {"Created at", v.CreatedAt}, {"Created by", v.CreatedBy},
		{"Issued", fmt.Sprintf("%d times, last %s", v.IssuedCount, v.LastIssuedAt)},
	}
	if v.ApprovedBy != "" {
		fields = append(fields, [2]string{"Approved by", v.ApprovedBy})
	}
	if v.UpdatedBy != "" {
		fields = append(fields, [2]string{"Updated", v.UpdatedAt + " by " + v.UpdatedBy + ": " + v.UpdateReason})
	}
	return printFields(w, fields)
}

func printEntries(w io.Writer, entries []*adminv1.Entry, format string) error {
	views := make([]entryView, len(entries))
	for i, e := range entries {
		views[i] = viewEntry(e)
	}
	if format == "json" {
		return printJSON(w, views)
	}
	rows := make([][]string, len(views))
	for i, v := range views {
		rows[i] = []string{v.ID, v.SPIFFEID, strings.Join(v.Selectors, ","), v.Owner, v.State, v.ExpiresAt, v.LastIssuedAt}
	}
	return printTable(w, []string{"ENTRY ID", "SPIFFE ID", "SELECTORS", "OWNER", "STATE", "EXPIRES", "LAST ISSUED"}, rows)
}
