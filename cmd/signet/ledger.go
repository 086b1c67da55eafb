package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
)

func newLedgerCmd() *cobra.Command {
	cmd := newGroupCmd("ledger", "Query the issuance ledger: every credential Signet issued")
	cmd.AddCommand(newLedgerQueryCmd(), newLedgerLookupCmd())
	return cmd
}

func newLedgerQueryCmd() *cobra.Command {
	var admin, output, owner, spiffeID, entryID, agentID, serial, validAt, cursor, signedBy string
	var since time.Duration
	var limit int
	var delivered, undelivered bool
	cmd := &cobra.Command{
		Use:   "query",
		Short: "List issuances, newest first",
		Long: `List issuances, newest first. Filters combine with AND.

--signed-by KEY-ID --valid-at now answers "a CA key leaked: what did it sign that is still valid?": every
live credential the key signed, with its owner, entry, SPIFFE ID, serial or JWT ID and expiry. A key ID is
an X.509 authority's Subject Key Identifier in hex (as "ledger lookup" prints it for any credential, or
openssl as "X509v3 Subject Key Identifier", colons and upper case accepted) or a JWT key's kid. A key that
is not in the trust bundle gets an empty answer with a note listing the bundle's keys.`,
		Example: `  signet ledger query --owner alice --since 24h
  signet ledger query --spiffe-id spiffe://example.org/billing/api -o json
  signet ledger query --signed-by 3f1c…e2 --valid-at now`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if since < 0 {
				return usagef("--since %s: must be positive (how far back to look, e.g. 24h or 7d)", formatDays(since))
			}
			if limit <= 0 {
				return usagef("--limit %d: must be positive", limit)
			}
			if delivered && undelivered {
				return usagef("--delivered and --undelivered cannot be given together: give at most one")
			}
			if signedBy != "" {
				var err error
				if signedBy, err = keyIDForm(signedBy); err != nil {
					return err
				}
			}
			var serials []string
			if cmd.Flags().Changed("serial") {
				var err error
				if serials, err = serialForms(serial); err != nil {
					return err
				}
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			req := &adminv1.QueryLedgerRequest{Owner: owner, SpiffeId: spiffeID, EntryId: entryID, Agent: agentID, Cursor: cursor,
				Delivered: delivered, Undelivered: undelivered, SignedBy: signedBy}
			if len(serials) > 0 {
				// A serial is one record: look up each form it may be stored under until one is found.
				var recs []*adminv1.Issuance
				for _, s := range serials {
					req.Serial = s
					resp, err := client.QueryLedger(cmd.Context(), req)
					if err != nil {
						return rpcError("ledger query", err)
					}
					if recs = resp.Issuances; len(recs) > 0 {
						break
					}
				}
				return printIssuances(cmd.OutOrStdout(), recs, output)
			}
			if since > 0 {
				req.Since = time.Now().Add(-since).UnixNano()
			}
			switch {
			case validAt == "now":
				req.ValidAt = time.Now().UnixNano()
			case validAt != "":
				t, err := time.Parse(time.RFC3339, validAt)
				if err != nil {
					return usagef("--valid-at %q: not \"now\" or an RFC 3339 time (e.g. 2026-11-24T10:00:00Z)", validAt)
				}
				req.ValidAt = t.UnixNano()
			}
			var recs []*adminv1.Issuance
			for len(recs) < limit {
				req.Limit = int32(min(limit-len(recs), 1000))
				resp, err := client.QueryLedger(cmd.Context(), req)
				if err != nil {
					return rpcError("ledger query", err)
				}
				if resp.Note != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s\n", resp.Note)
				}
				recs = append(recs, resp.Issuances...)
				if resp.NextCursor == "" {
					break
				}
				req.Cursor = resp.NextCursor
				if len(recs) >= limit {
					fmt.Fprintf(cmd.ErrOrStderr(), "more records: continue with --cursor %s\n", resp.NextCursor)
				}
			}
			return printIssuances(cmd.OutOrStdout(), recs, output)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	f := cmd.Flags()
	f.StringVar(&owner, "owner", "", "only issuances under entries of this owner")
	f.StringVar(&spiffeID, "spiffe-id", "", "only issuances of this SPIFFE ID")
	f.StringVar(&entryID, "entry", "", "only issuances allowed by this entry")
	f.StringVar(&agentID, "agent", "", "only issuances through this agent")
	daysFlag(f, &since, "since", 0, "only issuances newer than this (e.g. 24h or 7d)")
	f.IntVar(&limit, "limit", 100, "at most this many records")
	f.StringVar(&serial, "serial", "", "only the credential with this serial or JWT ID, in hex as any tool prints it (39b2…, 00:39:B2:…)")
	f.StringVar(&validAt, "valid-at", "", `only credentials valid at this time: "now" or RFC 3339`)
	f.StringVar(&signedBy, "signed-by", "", "only credentials signed by this CA key: an X.509 Subject Key Identifier (hex) or a JWT kid")
	f.StringVar(&cursor, "cursor", "", "continue a previous query (printed when more records exist)")
	f.BoolVar(&delivered, "delivered", false, "only credentials an agent reported handing to a workload")
	f.BoolVar(&undelivered, "undelivered", false, "only credentials never reported delivered to a workload (minted, unused)")
	return cmd
}

// serialForms normalizes a --serial value written as tools print serials (openssl: upper case, colons,
// a leading 00 byte, "serial=") into the forms the ledger may hold it under: first the X.509 form
// (lower-case hex without leading zeros, as big.Int.Text(16)), then, if different, the digits as given
// in lower case (a JWT ID, 32 hex digits that may start with 0).
func serialForms(v string) ([]string, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	s = strings.TrimPrefix(s, "serial=")
	s = strings.TrimPrefix(s, "0x")
	s = strings.NewReplacer(":", "", " ", "").Replace(s)
	if s == "" || strings.Trim(s, "0123456789abcdef") != "" {
		return nil, usagef("--serial %q: not a hexadecimal serial number or JWT ID (e.g. 39b2b02b… or 39:B2:B0:2B:…)", v)
	}
	canonical := strings.TrimLeft(s, "0")
	if canonical == "" {
		canonical = "0"
	}
	if canonical == s {
		return []string{s}, nil
	}
	return []string{canonical, s}, nil
}

// keyIDForm normalizes a --signed-by value: an X.509 key ID as openssl prints it (upper case, colons,
// "keyid:") becomes the ledger's lowercase hex; a JWT kid, which has no colon, is kept as given.
func keyIDForm(v string) (string, error) {
	s := strings.TrimSpace(v)
	if strings.Contains(s, ":") {
		s = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(s, "keyid:"), "KEYID:"), ":", ""))
		if s == "" || strings.Trim(s, "0123456789abcdef") != "" {
			return "", usagef("--signed-by %q: not a key ID: an X.509 Subject Key Identifier in hex (3f1c… or 3F:1C:…) or a JWT kid", v)
		}
	}
	if err := ca.CheckKeyID(s); err != nil {
		return "", usagef("--signed-by: %v: want an X.509 Subject Key Identifier in hex (3f1c… or 3F:1C:…) or a JWT kid", err)
	}
	return s, nil
}

// signedByText is how a record's signing key is shown: records committed before the ledger recorded
// signers have none.
func signedByText(id string) string {
	if id == "" {
		return "(not recorded)"
	}
	return id
}

type issuanceView struct {
	ID              string   `json:"id"`
	Kind            string   `json:"kind"`
	SPIFFEID        string   `json:"spiffe_id"`
	EntryID         string   `json:"entry_id"`
	Owner           string   `json:"owner"`
	Selectors       []string `json:"selectors,omitempty"`
	Audience        []string `json:"audience,omitempty"`
	PublicKeySHA256 string   `json:"public_key_sha256,omitempty"`
	IssuedAt        string   `json:"issued_at"`
	ExpiresAt       string   `json:"expires_at"`
	Node            string   `json:"node"`
	Agent           string   `json:"agent,omitempty"`
	NodeAttestation string   `json:"node_attestation,omitempty"`
	SignedBy        string   `json:"signed_by,omitempty"`
}

func viewIssuances(recs []*adminv1.Issuance) []issuanceView {
	views := make([]issuanceView, len(recs))
	for i, r := range recs {
		views[i] = issuanceView{ID: r.Id, Kind: r.Kind, SPIFFEID: r.SpiffeId, EntryID: r.EntryId, Owner: r.Owner,
			Selectors: r.Selectors, Audience: r.Audience, PublicKeySHA256: r.PublicKeySha256,
			IssuedAt: time.Unix(0, r.IssuedAt).UTC().Format(time.RFC3339Nano), ExpiresAt: formatUnixNano(r.ExpiresAt),
			Node: r.Node, Agent: r.Agent, NodeAttestation: r.NodeAttestation, SignedBy: r.SignedBy}
	}
	return views
}

func printIssuances(w io.Writer, recs []*adminv1.Issuance, format string) error {
	views := viewIssuances(recs)
	if format == "json" {
		return printJSON(w, views)
	}
	rows := make([][]string, len(views))
	for i, v := range views {
		rows[i] = []string{v.IssuedAt, v.Kind, v.ID, v.SPIFFEID, v.Owner, v.EntryID, strings.Join(v.Audience, ","), v.ExpiresAt}
	}
	return printTable(w, []string{"ISSUED", "KIND", "SERIAL/JTI", "SPIFFE ID", "OWNER", "ENTRY", "AUDIENCE", "EXPIRES"}, rows)
}
