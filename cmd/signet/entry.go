package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
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

func newEntryCreateCmd() *cobra.Command {
	o := entryOptions{}
	var strict bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Register a workload identity",
		Long: `Register an entry: workloads whose attested selectors include all of --selector are issued
--spiffe-id. Every entry has an accountable --owner (see 'signet owner add') and a --purpose.
Selectors are type:key:value (unix:uid:1000, k8s:ns:payments); this command checks only that form:
the server checks the type, key and value against the attestors it is built with.`,
		Example: `  signet entry create --spiffe-id spiffe://example.org/billing/api \
    --selector unix:uid:1000 --selector unix:path:/usr/local/bin/billing-api \
    --owner alice --purpose "billing API calls the ledger service" --x509-ttl 1h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEntryCreate(cmd, &o, strict) },
	}
	addEntryFlags(cmd, &o, false)
	cmd.Flags().BoolVar(&strict, "strict", false, "refuse a --parent-id no agent, node alias, entry or unused join token has (default: warn)")
	return cmd
}

func runEntryCreate(cmd *cobra.Command, o *entryOptions, strict bool) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	// The TTL flags have defaults, which create sends; every other field only if given.
	given := func(flag string) bool { return cmd.Flags().Changed(flag) || flag == "x509-ttl" || flag == "jwt-ttl" }
	e, _, err := o.build(given, flagName, true)
	if err != nil {
		return err
	}
	client, closeFn, err := dialAdmin(o.admin)
	if err != nil {
		return err
	}
	defer closeFn()
	parentOK := true
	if e.ParentId != "" {
		if parentOK, err = parentKnown(cmd.Context(), client, e.ParentId, time.Now()); err != nil {
			return rpcError("entry create: check --parent-id", err)
		}
		if !parentOK && strict {
			return fmt.Errorf("entry create: %s; refused because of --strict", unknownParentMessage(e.ParentId))
		}
	}
	created, err := client.CreateEntry(cmd.Context(), &adminv1.CreateEntryRequest{Entry: e})
	if err != nil {
		return rpcError("entry create", err)
	}
	if !parentOK {
		fmt.Fprintf(cmd.ErrOrStderr(), "signet: warning: %s (--strict refuses such a parent)\n", unknownParentMessage(e.ParentId))
	}
	return printEntry(cmd.OutOrStdout(), created, o.output)
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
			entries, err := listEntries(cmd.Context(), client, &adminv1.ListEntriesRequest{Owner: owner, SpiffeId: spiffeID, ParentId: parentID,
				Expired: expired, Disabled: disabled, Pending: pending})
			if err != nil {
				return rpcError("entry list", err)
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
	Prefetch       bool     `json:"prefetch,omitempty"`
	FederatesWith  []string `json:"federates_with,omitempty"`
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
	// Delivered is what agents report handing to workloads: use, where Issued is only minting.
	DeliveredCount  uint64 `json:"delivered_count"`
	LastDeliveredAt string `json:"last_delivered_at"`
}

func viewEntry(e *adminv1.Entry) entryView {
	v := entryView{ID: e.Id, SPIFFEID: e.SpiffeId, ParentID: e.ParentId, Owner: e.Owner, Purpose: e.Purpose,
		X509TTL: formatSeconds(e.X509TtlSeconds), JWTTTL: formatSeconds(e.JwtTtlSeconds), DNSNames: e.DnsNames,
		ExpiresAt: formatUnix(e.ExpiresAt), CreatedAt: formatUnix(e.CreatedAt), CreatedBy: e.CreatedBy, Revision: e.Revision}
	for _, s := range e.Selectors {
		v.Selectors = append(v.Selectors, s.Type+":"+s.Value)
	}
	v.NeverExpires, v.Ticket, v.JWTUnique, v.Prefetch, v.FederatesWith = e.NeverExpires, e.Ticket, e.JwtUnique, e.Prefetch, e.FederatesWith
	v.Disabled, v.DisabledBy, v.DisabledReason = e.Disabled, e.DisabledBy, e.DisabledReason
	v.Pending, v.PendingRules, v.ApprovedBy = e.Pending, e.PendingRules, e.ApprovedBy
	v.UpdatedBy, v.UpdateReason, v.IssuedCount = e.UpdatedBy, e.UpdateReason, e.IssuedCount
	if e.UpdatedAt != 0 {
		v.UpdatedAt = formatUnix(e.UpdatedAt)
	}
	v.LastIssuedAt, v.LastDeliveredAt, v.DeliveredCount = "never", "never", e.DeliveredCount
	if e.LastIssuedAt != 0 {
		v.LastIssuedAt = formatUnixNano(e.LastIssuedAt)
	}
	if e.LastDeliveredAt != 0 {
		v.LastDeliveredAt = formatUnixNano(e.LastDeliveredAt)
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
		{"Minting", mintedWhen(v.Prefetch)}, {"Federates with", strings.Join(v.FederatesWith, ", ")},
		{"Issued", fmt.Sprintf("%d times, last %s", v.IssuedCount, v.LastIssuedAt)},
		{"Delivered", fmt.Sprintf("%d times to workloads, last %s", v.DeliveredCount, v.LastDeliveredAt)},
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
		rows[i] = []string{v.ID, v.SPIFFEID, strings.Join(v.Selectors, ","), v.Owner, v.State, v.ExpiresAt, v.LastIssuedAt, v.LastDeliveredAt, fmt.Sprint(v.DeliveredCount)}
	}
	return printTable(w, []string{"ENTRY ID", "SPIFFE ID", "SELECTORS", "OWNER", "STATE", "EXPIRES", "LAST ISSUED", "LAST DELIVERED", "DELIVERIES"}, rows)
}

// mintedWhen says when agents mint the entry's X.509-SVIDs.
func mintedWhen(prefetch bool) string {
	if prefetch {
		return "ahead of requests (prefetch)"
	}
	return "on first request"
}
