package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
)

// ---- owner show / offboard ----

func newOwnerShowCmd() *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show an owner and everything it owns: entries, tokens, agents, credentials valid now and which processes use them",
		Example: "  signet owner show alice@example.org",
		Args:    exactArgs(1, "one owner name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			d, err := client.GetOwner(cmd.Context(), &adminv1.GetOwnerRequest{Name: args[0]})
			if err != nil {
				return rpcError("owner show", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(w, struct {
					Owner            ownerView      `json:"owner"`
					Entries          []entryView    `json:"entries"`
					Tokens           []tokenView    `json:"tokens"`
					Agents           []agentView    `json:"agents"`
					ValidCredentials []issuanceView `json:"valid_credentials"`
					InUse            []useView      `json:"in_use"`
				}{viewOwner(d.Owner), viewEntries(d.Entries), viewTokens(d.Tokens), viewAgents(d.Agents), viewIssuances(d.ValidCredentials), viewUses(d.InUse)})
			}
			if err := printOwners(w, []*adminv1.Owner{d.Owner}, "table"); err != nil {
				return err
			}
			section(w, "Entries", len(d.Entries))
			printEntries(w, d.Entries, "table")
			section(w, "Join tokens", len(d.Tokens))
			printTokens(w, d.Tokens, "table")
			section(w, "Agents attested with its tokens", len(d.Agents))
			printAgents(w, d.Agents, "table")
			section(w, "Credentials valid now", len(d.ValidCredentials))
			if err := printIssuances(w, d.ValidCredentials, "table"); err != nil {
				return err
			}
			return printUses(w, d.InUse)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	return cmd
}

func section(w io.Writer, title string, n int) { fmt.Fprintf(w, "\n%s (%d):\n", title, n) }

type violationView struct {
	EntryID  string `json:"entry_id"`
	SPIFFEID string `json:"spiffe_id"`
	Rule     string `json:"rule"`
	Message  string `json:"message"`
}

func viewViolations(vs []*adminv1.PolicyViolation) []violationView {
	out := make([]violationView, len(vs))
	for i, v := range vs {
		out[i] = violationView{EntryID: v.EntryId, SPIFFEID: v.SpiffeId, Rule: v.Rule, Message: v.Message}
	}
	return out
}

func printViolations(w io.Writer, vs []*adminv1.PolicyViolation) error {
	rows := make([][]string, len(vs))
	for i, v := range vs {
		rows[i] = []string{v.EntryId, v.SpiffeId, v.Rule, v.Message}
	}
	return printTable(w, []string{"ENTRY", "SPIFFE ID", "RULE", "MESSAGE"}, rows)
}

func newOwnerOffboardCmd() *cobra.Command {
	var admin, output, reassignTo, reason string
	var disable, dryRun bool
	cmd := &cobra.Command{
		Use:   "offboard NAME (--reassign-to OWNER | --disable) [--dry-run]",
		Short: "Reassign or disable everything an owner owns, in one write; list what stays valid",
		Long: `Offboard an owner: every entry and unused join token it owns is reassigned to another owner, or
disabled (disabled entries stop being issued at once on every agent; unused tokens are revoked), in one
Raft write, and the owner is marked offboarded. The command then lists every credential issued under
its entries that is still valid, with its expiry: the blast radius, and of those, what is actually in use:
each process (path, uid, pid) on each agent its credential was delivered to. --dry-run prints the same
plan and changes nothing.

With --reassign-to, each entry is checked against the server's entry policy as if the new owner updated
it: --dry-run lists the deny rules each would break, and the real run is refused, changing nothing,
while there is any (change those entries or the policy first, or use --disable).`,
		Example: `  signet owner offboard alice@example.org --reassign-to payments --dry-run
  signet owner offboard alice@example.org --disable --reason "left the company"`,
		Args: exactArgs(1, "one owner name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (reassignTo == "") == !disable {
				return usagef("give exactly one of --reassign-to OWNER and --disable")
			}
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			r, err := client.OffboardOwner(cmd.Context(), &adminv1.OffboardOwnerRequest{Owner: args[0], ReassignTo: reassignTo,
				Disable: disable, DryRun: dryRun, Reason: reason})
			if err != nil {
				return rpcError("owner offboard", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(w, struct {
					DryRun     bool            `json:"dry_run"`
					Owner      ownerView       `json:"owner"`
					Entries    []entryView     `json:"entries"`
					Tokens     []tokenView     `json:"tokens"`
					Agents     []agentView     `json:"agents"`
					StillValid []issuanceView  `json:"still_valid"`
					InUse      []useView       `json:"in_use"`
					Violations []violationView `json:"violations"`
				}{r.DryRun, viewOwner(r.Owner), viewEntries(r.Entries), viewTokens(r.Tokens), viewAgents(r.Agents), viewIssuances(r.StillValid), viewUses(r.InUse), viewViolations(r.Violations)})
			}
			verb := "Offboarded"
			if r.DryRun {
				verb = "Dry run (nothing changed): would offboard"
			}
			what := "disabled"
			if reassignTo != "" {
				what = "reassigned to " + reassignTo
			}
			fmt.Fprintf(w, "%s %s: %d entries and %d unused join tokens %s.\n", verb, args[0], len(r.Entries), len(r.Tokens), what)
			if len(r.Violations) > 0 {
				section(w, "Entry policy violations once reassigned (the real run is refused until there are none)", len(r.Violations))
				printViolations(w, r.Violations)
			}
			section(w, "Entries", len(r.Entries))
			printEntries(w, r.Entries, "table")
			section(w, "Join tokens", len(r.Tokens))
			printTokens(w, r.Tokens, "table")
			section(w, "Agents attested with its tokens (not changed; evict them separately if needed)", len(r.Agents))
			printAgents(w, r.Agents, "table")
			section(w, "Credentials still valid until they expire", len(r.StillValid))
			if err := printIssuances(w, r.StillValid, "table"); err != nil {
				return err
			}
			return printUses(w, r.InUse)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&reassignTo, "reassign-to", "", "owner who takes over the entries and unused tokens")
	cmd.Flags().BoolVar(&disable, "disable", false, "disable the entries and revoke the unused tokens instead")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

// ---- entry update / disable / enable / approve ----

func newEntryUpdateCmd() *cobra.Command {
	o := entryOptions{}
	var reason string
	cmd := &cobra.Command{
		Use:   "update ID --reason TEXT [flags of entry create to change]",
		Short: "Change an entry; only the flags given are changed",
		Long: `Change an entry. Only the flags given are changed; every other field keeps its value. --selector
and --dns-name replace the entry's whole list. The flags are checked as 'entry create' checks them.`,
		Example: `  signet entry update 3f1c… --owner payments --reason "team took over"
  signet entry update 3f1c… --x509-ttl 30m --reason "shorter-lived"`,
		Args: exactArgs(1, "one entry ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why the entry changes")
			}
			e, mask, err := o.build(cmd.Flags().Changed, flagName, false)
			if err != nil {
				return err
			}
			if len(mask) == 0 {
				return usagef("nothing to change: give at least one of the entry flags (see --help)")
			}
			e.Id = args[0]
			client, closeFn, err := dialAdmin(o.admin)
			if err != nil {
				return err
			}
			defer closeFn()
			updated, err := client.UpdateEntry(cmd.Context(), &adminv1.UpdateEntryRequest{Entry: e, UpdateMask: mask, Reason: reason})
			if err != nil {
				return rpcError("entry update", err)
			}
			return printEntry(cmd.OutOrStdout(), updated, o.output)
		},
	}
	addEntryFlags(cmd, &o, true)
	cmd.Flags().StringVar(&reason, "reason", "", "why the entry changes (required; recorded in the audit log)")
	return cmd
}

func entryStateCmd(use, short, action string, reasonRequired bool) *cobra.Command {
	var admin, output, reason string
	cmd := &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  exactArgs(1, "one entry ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reasonRequired && strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why")
			}
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			e, err := client.SetEntryState(cmd.Context(), &adminv1.SetEntryStateRequest{Id: args[0], Action: action, Reason: reason})
			if err != nil {
				return rpcError("entry "+use, err)
			}
			return printEntry(cmd.OutOrStdout(), e, output)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	if reasonRequired {
		cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit log)")
	}
	return cmd
}

// ---- ledger lookup ----

func newLedgerLookupCmd() *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:   "lookup FILE|-",
		Short: "What is this credential? Identify a certificate, chain or JWT from the ledger",
		Long: `Identify a credential someone found: a PEM certificate or chain, DER, or a JWT (an expired one, one
with its signature stripped, or an "Authorization: Bearer" line). Prints its SPIFFE ID, entry, owner,
purpose, the agent and node it was issued to, the CA key that signed it ("Signed by": the key ID
"ledger query --signed-by" takes), the selectors that attested the workload, when it was issued
and expires, whether it is still valid, who received it (each process its agent handed it to, with first
and last time; or "minted, never delivered"), and what other credentials its entry has live now. A credential
Signet never issued is reported as unknown, with the reason; the command then exits 1. A CA certificate
of the trust domain's bundle (a server node's root, or an upstream authority's root) or an intermediate
of the answering server under an upstream authority is reported as such, and the command exits 0.`,
		Example: `  signet ledger lookup leaked.pem
  pbpaste | signet ledger lookup -`,
		Args: exactArgs(1, "one file (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20+1))
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("ledger lookup: %w", err)
			}
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			r, err := client.LookupCredential(cmd.Context(), &adminv1.LookupCredentialRequest{Data: data})
			if err != nil {
				return rpcError("ledger lookup", err)
			}
			if err := printLookup(cmd.OutOrStdout(), r, output); err != nil {
				return err
			}
			if !r.Known && !r.Authority {
				return fmt.Errorf("ledger lookup: unknown credential: %s", r.Reason)
			}
			return nil
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	return cmd
}

func printLookup(w io.Writer, r *adminv1.LookupCredentialResponse, format string) error {
	type view struct {
		Known     bool           `json:"known"`
		Authority bool           `json:"authority,omitempty"`
		Reason    string         `json:"reason,omitempty"`
		Kind      string         `json:"kind"`
		ID        string         `json:"id"`
		SPIFFEID  string         `json:"spiffe_id"`
		ValidNow  bool           `json:"valid_now"`
		Issuance  *issuanceView  `json:"issuance,omitempty"`
		Entry     *entryView     `json:"entry,omitempty"`
		Owner     *ownerView     `json:"owner,omitempty"`
		Agent     *agentView     `json:"agent,omitempty"`
		OtherLive []issuanceView `json:"other_live"`
		// Deliveries: who received it; empty when it was minted and never delivered.
		Deliveries []deliveryView `json:"deliveries"`
	}
	v := view{Known: r.Known, Authority: r.Authority, Reason: r.Reason, Kind: r.Kind, ID: r.Id, SPIFFEID: r.SpiffeId, ValidNow: r.ValidNow, OtherLive: viewIssuances(r.OtherLive),
		Deliveries: viewDeliveries(r.Deliveries)}
	if r.Issuance != nil {
		iv := viewIssuances([]*adminv1.Issuance{r.Issuance})[0]
		v.Issuance = &iv
	}
	if r.Entry != nil {
		ev := viewEntry(r.Entry)
		v.Entry = &ev
	}
	if r.Owner != nil {
		ov := viewOwner(r.Owner)
		v.Owner = &ov
	}
	if r.Agent != nil {
		av := viewAgent(r.Agent)
		v.Agent = &av
	}
	if format == "json" {
		return printJSON(w, v)
	}
	if r.Authority {
		return printFields(w, [][2]string{{"Known", "a CA certificate of this trust domain, not an issued credential"}, {"Note", r.Reason},
			{"Serial", r.Id}, {"SPIFFE ID", r.SpiffeId}, {"Valid now", yesNo(r.ValidNow)}})
	}
	if !r.Known && r.Issuance == nil {
		return printFields(w, [][2]string{{"Known", "no"}, {"Reason", r.Reason}, {"Kind", r.Kind}, {"ID", r.Id}, {"SPIFFE ID", r.SpiffeId}})
	}
	i := v.Issuance
	fields := [][2]string{
		{"Known", yesNo(r.Known)}, {"Kind", i.Kind}, {"Serial/JTI", i.ID}, {"SPIFFE ID", i.SPIFFEID},
		{"Valid now", yesNo(r.ValidNow)}, {"Issued at", i.IssuedAt}, {"Expires at", i.ExpiresAt},
		{"Owner", i.Owner}, {"Entry", i.EntryID}, {"Selectors", strings.Join(i.Selectors, ", ")},
		{"Agent (node)", i.Agent}, {"Node attestation", i.NodeAttestation}, {"Issuing server", i.Node},
		{"Signed by", signedByText(i.SignedBy)},
	}
	if r.Reason != "" {
		fields = append([][2]string{{"Note", r.Reason}}, fields...)
	}
	if v.Entry != nil {
		state := "active"
		switch {
		case v.Entry.Disabled:
			state = "disabled: " + v.Entry.DisabledReason
		case v.Entry.Pending:
			state = "waiting for approval"
		}
		fields = append(fields, [2]string{"Purpose", v.Entry.Purpose}, [2]string{"Entry state", state})
	} else if i.EntryID != "" {
		fields = append(fields, [2]string{"Entry state", "deleted"})
	}
	if v.Owner != nil && v.Owner.Offboarded {
		fields = append(fields, [2]string{"Owner state", "offboarded"})
	}
	if len(i.Audience) > 0 {
		fields = append(fields, [2]string{"Audience", strings.Join(i.Audience, ", ")})
	}
	received := "minted, never delivered to a workload"
	if len(v.Deliveries) > 0 {
		received = fmt.Sprintf("by %d processes (below)", len(v.Deliveries))
	}
	fields = append(fields, [2]string{"Received", received})
	if err := printFields(w, fields); err != nil {
		return err
	}
	if len(v.Deliveries) > 0 {
		section(w, "Who received it", len(v.Deliveries))
		if err := printDeliveries(w, v.Deliveries); err != nil {
			return err
		}
	}
	section(w, "Other credentials of this entry valid now", len(r.OtherLive))
	return printIssuances(w, r.OtherLive, "table")
}

// deliveryView is one process that received a credential.
type deliveryView struct {
	Agent          string `json:"agent"`
	UID            uint32 `json:"uid"`
	GID            uint32 `json:"gid"`
	PID            int32  `json:"pid"`
	StartTime      uint64 `json:"start_time"`
	Path           string `json:"path,omitempty"`
	SHA256Prefix   string `json:"sha256_prefix,omitempty"`
	FirstDelivered string `json:"first_delivered"`
	LastDelivered  string `json:"last_delivered"`
	Count          uint64 `json:"count"`
}

func viewDeliveries(ds []*adminv1.Delivery) []deliveryView {
	out := make([]deliveryView, len(ds))
	for i, d := range ds {
		out[i] = deliveryView{Agent: d.Agent, UID: d.Uid, GID: d.Gid, PID: d.Pid, StartTime: d.StartTime, Path: d.Path,
			SHA256Prefix: d.Sha256Prefix, FirstDelivered: formatUnixNano(d.FirstDelivered), LastDelivered: formatUnixNano(d.LastDelivered), Count: d.Count}
	}
	return out
}

// useView is a valid credential in use: who received it.
type useView struct {
	ID         string         `json:"id"`
	SPIFFEID   string         `json:"spiffe_id"`
	ExpiresAt  string         `json:"expires_at"`
	Deliveries []deliveryView `json:"deliveries"`
}

func viewUses(us []*adminv1.CredentialUse) []useView {
	out := make([]useView, 0, len(us))
	for _, u := range us {
		out = append(out, useView{ID: u.Issuance.Id, SPIFFEID: u.Issuance.SpiffeId, ExpiresAt: formatUnixNano(u.Issuance.ExpiresAt),
			Deliveries: viewDeliveries(u.Deliveries)})
	}
	return out
}

// printUses prints what is actually in use: each process that received a valid credential, on which agent.
func printUses(w io.Writer, us []*adminv1.CredentialUse) error {
	var rows [][]string
	for _, u := range viewUses(us) {
		for _, d := range u.Deliveries {
			rows = append(rows, []string{u.SPIFFEID, u.ID, d.Agent, d.Path, fmt.Sprint(d.UID), fmt.Sprint(d.PID), d.LastDelivered})
		}
	}
	section(w, "In use: valid credentials workloads received, and by which processes on which agents", len(rows))
	return printTable(w, []string{"SPIFFE ID", "SERIAL/JTI", "AGENT", "PATH", "UID", "PID", "LAST DELIVERED"}, rows)
}

func printDeliveries(w io.Writer, ds []deliveryView) error {
	rows := make([][]string, len(ds))
	for i, d := range ds {
		rows[i] = []string{d.Path, fmt.Sprint(d.UID), fmt.Sprint(d.GID), fmt.Sprint(d.PID), d.SHA256Prefix, d.Agent, d.FirstDelivered, d.LastDelivered, fmt.Sprint(d.Count)}
	}
	return printTable(w, []string{"PATH", "UID", "GID", "PID", "SHA256", "AGENT", "FIRST", "LAST", "TIMES"}, rows)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ---- review ----

func newReviewCmd() *cobra.Command {
	var admin, output string
	var stale time.Duration
	cmd := &cobra.Command{
		Use:   "review",
		Short: "List what an access reviewer must look at",
		Long: `List what a reviewer must look at: entries never used or not used recently (--stale; use is an SVID
delivered to a workload, as agents report it, not one minted), expired or expiring
within 14 days, owned by an offboarded or unknown owner, never expiring, admin identities, identities shared
by agents of different owners or many nodes, entries whose issuance rate jumped against their own history,
entries waiting for approval, and join tokens never used. Record the outcome with 'signet review sign'.`,
		Example: `  signet review --stale 30d
  signet review -o csv > review.csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" && output != "csv" {
				return usagef("--output %q: want table, json or csv", output)
			}
			if stale <= 0 {
				return usagef("--stale %s: must be positive", formatDays(stale))
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			r, err := client.Review(cmd.Context(), &adminv1.ReviewRequest{StaleSeconds: int64(stale / time.Second)})
			if err != nil {
				return rpcError("review", err)
			}
			return printReview(cmd.OutOrStdout(), r.Items, output)
		},
	}
	adminFlag(cmd, &admin)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or csv")
	daysFlag(cmd.Flags(), &stale, "stale", 30*day, "flag entries whose SVIDs were not delivered to a workload for this long (e.g. 30d or 720h)")
	cmd.AddCommand(newReviewSignCmd())
	return cmd
}

type reviewView struct {
	Kind     string   `json:"kind"`
	ID       string   `json:"id"`
	SPIFFEID string   `json:"spiffe_id,omitempty"`
	Owner    string   `json:"owner"`
	Findings []string `json:"findings"`
}

func printReview(w io.Writer, items []*adminv1.ReviewItem, format string) error {
	views := make([]reviewView, len(items))
	for i, it := range items {
		views[i] = reviewView{Kind: it.Kind, ID: it.Id, SPIFFEID: it.SpiffeId, Owner: it.Owner, Findings: it.Findings}
	}
	switch format {
	case "json":
		return printJSON(w, views)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"kind", "id", "spiffe_id", "owner", "findings"})
		for _, v := range views {
			cw.Write([]string{v.Kind, v.ID, v.SPIFFEID, v.Owner, strings.Join(v.Findings, "; ")})
		}
		cw.Flush()
		return cw.Error()
	}
	rows := make([][]string, len(views))
	for i, v := range views {
		rows[i] = []string{v.Owner, v.Kind, v.ID, v.SPIFFEID, strings.Join(v.Findings, "; ")}
	}
	return printTable(w, []string{"OWNER", "KIND", "ID", "SPIFFE ID", "FINDINGS"}, rows)
}

func newReviewSignCmd() *cobra.Command {
	var admin, reviewer, decision, note string
	var entries []string
	var all bool
	cmd := &cobra.Command{
		Use:   "sign --reviewer NAME (--entries ID,ID… | --all) [--decision keep|disable]",
		Short: "Record an access review's outcome; disable decisions take effect at once",
		Example: `  signet review sign --reviewer bob --entries 3f1c…,9a2b… --decision disable --note "unused"
  signet review sign --reviewer bob --all --decision keep`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reviewer == "" {
				return usagef("--reviewer is required")
			}
			if all == (len(entries) > 0) {
				return usagef("give exactly one of --entries and --all")
			}
			if decision != "keep" && decision != "disable" {
				return usagef("--decision %q: want keep or disable", decision)
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			r, err := client.SignReview(cmd.Context(), &adminv1.SignReviewRequest{Reviewer: reviewer, EntryIds: entries, All: all, Decision: decision, Note: note})
			if err != nil {
				return rpcError("review sign", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Review %s signed by %s: %d decisions (%s); %d entries disabled.\n", r.ReviewId, reviewer, r.Decisions, decision, len(r.Disabled))
			return nil
		},
	}
	adminFlag(cmd, &admin)
	cmd.Flags().StringVar(&reviewer, "reviewer", "", "who reviewed (required)")
	cmd.Flags().StringSliceVar(&entries, "entries", nil, "entry IDs the decision applies to")
	cmd.Flags().BoolVar(&all, "all", false, "every entry in the current review")
	cmd.Flags().StringVar(&decision, "decision", "keep", "keep or disable")
	cmd.Flags().StringVar(&note, "note", "", "the reviewer's note")
	return cmd
}
