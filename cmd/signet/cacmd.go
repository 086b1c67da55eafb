package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
	"github.com/spf13/cobra"
)

func newCACmd() *cobra.Command {
	cmd := newGroupCmd("ca", "Show and rotate the servers' CA keys")
	status := newAdminCmd("status", "List every node's CA keys: this server's with their rotation state and dates, other nodes' as in the bundle",
		`  signet ca status
  signet ca status -o json`, noArgs, func(cmd *cobra.Command, c adminv1.AdminClient, _ []string, output string) error {
			resp, err := c.CAStatus(cmd.Context(), &adminv1.CAStatusRequest{})
			if err != nil {
				return rpcError("ca status", err)
			}
			return printCAStatus(cmd.OutOrStdout(), resp, output)
		})
	var reason, node string
	rotate := newAdminCmd("rotate", "Rotate a server's CA keys now (this one, or --node): prepare a successor, publish it in the bundle and activate it",
		`  signet ca rotate --reason "yearly drill"
  signet ca rotate --node node-3f2a9c1b7d40 --reason "yearly drill"`, noArgs, func(cmd *cobra.Command, c adminv1.AdminClient, _ []string, output string) error {
			resp, err := c.RotateCA(cmd.Context(), &adminv1.RotateCARequest{Reason: reason, Node: node})
			if err != nil {
				return rpcError("ca rotate", err)
			}
			if resp.Activated == nil { // another server was asked
				if output == "json" {
					return printJSON(cmd.OutOrStdout(), struct {
						Node    string `json:"node"`
						Request uint64 `json:"request"`
					}{resp.Node, resp.Request})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "asked node %s to rotate its CA keys (request %d): it rotates as soon as it applies the request (signet audit list --action ca.rotate --object %s)\n",
					resp.Node, resp.Request, resp.Node)
				return nil
			}
			v := viewCAKey(resp.Activated)
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s: slot %s active (x509 %s, jwt %s, expires %s); the previous key stays in the bundle until it expires\n",
				v.Node, v.Slot, v.X509ID, v.JWTKeyID, v.NotAfter)
			return nil
		})
	rotate.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit log (at most 1024 bytes)")
	rotate.Flags().StringVar(&node, "node", "", "the server to rotate, by node ID (signet cluster status); default: this one. Another server is asked through Raft")
	cmd.AddCommand(status, rotate, newRevokeKeyCmd())
	return cmd
}

func newRevokeKeyCmd() *cobra.Command {
	var reason string
	var approve bool
	cmd := newAdminCmd("revoke-key KEY-ID", "Revoke a CA key after a compromise: out of every bundle at once and for good; its server activates a fresh key",
		`  signet ca revoke-key 9f2c41d07a3be815 --reason "root key file copied off node-3 (INC-4211)"
  signet ca revoke-key Q2hhbmdlTWUtandrLWtpZA --reason "JWT key leaked in a log"
  signet ca revoke-key 9f2c41d07a3be815 --approve      # a second admin, when the policy asks for one
  signet ledger query --signed-by 9f2c41d07a3be815 --valid-at now   # then: what it signed, with owners`,
		exactArgs(1, "one key ID (signet bundle show --format keys, signet ca status -o json)"),
		func(cmd *cobra.Command, c adminv1.AdminClient, args []string, output string) error {
			if !approve && strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why the key is revoked (it is recorded in the audit log)")
			}
			resp, err := c.RevokeKey(cmd.Context(), &adminv1.RevokeKeyRequest{KeyId: args[0], Reason: reason, Approve: approve})
			if err != nil {
				return rpcError("ca revoke-key", err)
			}
			return printRevokeKey(cmd.OutOrStdout(), args[0], resp, output)
		})
	cmd.Long = `Revoke a CA key after a compromise. KEY-ID is an X.509 authority's key ID (its Subject Key Identifier
in hex, as "signet bundle show --format keys" and the ledger's signed_by print it, or its SHA-256 ID as
"signet ca status -o json" prints it) or a JWT key's kid.

The key leaves the trust bundle everywhere at once (agents get the new bundle pushed, and re-mint every
SVID it signed), and can never be published again. The server that owns it activates a fresh key at
once, without the usual prepare period: SVIDs of the new key may fail for a moment at peers whose bundle
has not updated yet. When the key is this server's active key, the fresh key is in the bundle before the
revoked one leaves it, so revoking the trust domain's only key is safe.

Under an upstream authority (upstream_authority) KEY-ID is a server's intermediate: its x509_key_id in
"signet ca status -o json" (or its x509_id on the server that owns it), the ledger's signed_by. The
bundle holds the upstream's root, which stays: the revocation is recorded, agents drop and re-mint every
SVID the intermediate signed, and its server gets a new intermediate from the upstream at once and never
uses the revoked one again. But any peer that trusts the upstream root still accepts what the revoked
intermediate signed until it expires (there is no CRL): have the upstream revoke the intermediate too,
rotate the upstream root if its key may be exposed, and keep ca.max_svid_ttl short. The upstream root
itself is refused: it is the upstream's key, not Signet's (docs/governance.md, "After a key compromise").

A node's X.509 root and JWT key are one slot, on the same disk: revoke both when the disk was exposed.
When the entry policy asks a second admin (approval_when on action "ca.revoke-key", docs/policy.md), the
revocation waits until another admin runs this command again with --approve.

Then list what the key signed that is still valid, with owners:
  signet ledger query --signed-by KEY-ID --valid-at now`
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit log (required, at most 1024 bytes)")
	cmd.Flags().BoolVar(&approve, "approve", false, "approve the pending revocation of KEY-ID that another admin asked for (no --reason)")
	return cmd
}

func printRevokeKey(w io.Writer, id string, resp *adminv1.RevokeKeyResponse, output string) error {
	type revokedView struct {
		Kind        string `json:"kind"`
		ID          string `json:"id"`
		SignerID    string `json:"signer_id"`
		Node        string `json:"node"`
		NotAfter    string `json:"not_after"`
		RevokedAt   string `json:"revoked_at"`
		RevokedBy   string `json:"revoked_by"`
		RequestedBy string `json:"requested_by,omitempty"`
		Reason      string `json:"reason"`
	}
	var v struct {
		Revoked      *revokedView `json:"revoked,omitempty"`
		PendingRules []string     `json:"pending_rules,omitempty"`
		Activated    *caKeyView   `json:"activated,omitempty"`
		Note         string       `json:"note,omitempty"`
	}
	v.PendingRules, v.Note = resp.PendingRules, resp.Note
	if r := resp.Revoked; r != nil {
		notAfter := formatUnix(r.NotAfter)
		if r.NotAfter == 0 {
			notAfter = "unknown" // another server's upstream intermediate, found through the ledger
		}
		v.Revoked = &revokedView{Kind: r.Kind, ID: r.Id, SignerID: r.SignerId, Node: r.Node, NotAfter: notAfter,
			RevokedAt: formatUnix(r.RevokedAt), RevokedBy: r.RevokedBy, RequestedBy: r.RequestedBy, Reason: r.Reason}
	}
	if resp.Activated != nil {
		k := viewCAKey(resp.Activated)
		v.Activated = &k
	}
	if output == "json" {
		return printJSON(w, v)
	}
	if v.Revoked == nil {
		fmt.Fprintf(w, "revocation of key %s waits for a second admin (policy rules: %s): another admin runs\n  signet ca revoke-key %s --approve\n",
			id, strings.Join(v.PendingRules, ", "), id)
		return nil
	}
	r := v.Revoked
	if r.Kind == string(storage.AuthorityX509Intermediate) {
		fmt.Fprintf(w, "%s key %s of node %s revoked by %s: its node never signs with it again\n", r.Kind, r.SignerID, r.Node, r.RevokedBy)
	} else {
		fmt.Fprintf(w, "%s key %s of node %s revoked by %s: out of the bundle for good\n", r.Kind, r.SignerID, r.Node, r.RevokedBy)
	}
	if a := v.Activated; a != nil {
		fmt.Fprintf(w, "node %s: slot %s active (x509 %s, jwt %s, expires %s)\n", a.Node, a.Slot, a.X509ID, a.JWTKeyID, a.NotAfter)
	}
	if v.Note != "" {
		fmt.Fprintln(w, v.Note)
	}
	fmt.Fprintf(w, "what it signed that is still valid: signet ledger query --signed-by %s --valid-at now\n", r.SignerID)
	return nil
}

type caKeyView struct {
	Node       string `json:"node"`
	Slot       string `json:"slot,omitempty"`
	State      string `json:"state"`
	X509ID     string `json:"x509_id"`
	JWTKeyID   string `json:"jwt_key_id"`
	CreatedAt  string `json:"created_at"`
	ActivateAt string `json:"activate_at,omitempty"`
	OldSince   string `json:"old_since,omitempty"`
	PrunedAt   string `json:"pruned_at,omitempty"`
	NotAfter   string `json:"not_after"`
	InBundle   bool   `json:"in_bundle"`
	// X509KeyID is the signing certificate's key ID (the ledger's signed_by); UpstreamRootIDs the
	// upstream roots it chains to (upstream_authority).
	X509KeyID       string   `json:"x509_key_id,omitempty"`
	UpstreamRootIDs []string `json:"upstream_root_ids,omitempty"`
}

func viewCAKey(k *adminv1.CAKey) caKeyView {
	opt := func(sec int64) string {
		if sec == 0 {
			return ""
		}
		return formatUnix(sec)
	}
	return caKeyView{Node: k.Node, Slot: k.Slot, State: k.State, X509ID: k.X509Id, JWTKeyID: k.JwtKeyId, CreatedAt: formatUnix(k.CreatedAt),
		ActivateAt: opt(k.ActivateAt), OldSince: opt(k.OldSince), PrunedAt: opt(k.PrunedAt), NotAfter: formatUnix(k.NotAfter), InBundle: k.InBundle,
		X509KeyID: k.X509KeyId, UpstreamRootIDs: k.UpstreamRootIds}
}

func printCAStatus(w io.Writer, resp *adminv1.CAStatusResponse, output string) error {
	keys := make([]caKeyView, 0, len(resp.Keys))
	for _, k := range resp.Keys {
		keys = append(keys, viewCAKey(k))
	}
	sched := struct {
		TTL           string `json:"ca_ttl"`
		MaxSVIDTTL    string `json:"max_svid_ttl"`
		PrepareBefore string `json:"prepare_before"`
	}{seconds(resp.CaTtlSeconds), seconds(resp.MaxSvidTtlSeconds), seconds(resp.PrepareBeforeSeconds)}
	if output == "json" {
		return printJSON(w, struct {
			Node     string      `json:"node"`
			Schedule any         `json:"schedule"`
			Keys     []caKeyView `json:"keys"`
		}{resp.Node, sched, keys})
	}
	fmt.Fprintf(w, "node %s: keys live %s, SVIDs at most %s, successors in the bundle %s before they sign\n",
		resp.Node, sched.TTL, sched.MaxSVIDTTL, sched.PrepareBefore)
	rows := make([][]string, 0, len(keys))
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	header := []string{"NODE", "SLOT", "STATE", "X509 ID", "JWT KEY ID", "CREATED", "ACTIVE FROM", "OLD SINCE", "EXPIRES"}
	upstream := slices.ContainsFunc(keys, func(k caKeyView) bool { return len(k.UpstreamRootIDs) > 0 })
	if upstream {
		// Under an upstream authority, X509 ID is the key's intermediate; the bundle holds its root.
		header = append(header, "UPSTREAM ROOT")
	}
	for _, k := range keys {
		row := []string{k.Node, dash(k.Slot), k.State, short(k.X509ID), k.JWTKeyID, k.CreatedAt, dash(k.ActivateAt), dash(k.OldSince), k.NotAfter}
		if upstream {
			roots := make([]string, len(k.UpstreamRootIDs))
			for i, id := range k.UpstreamRootIDs {
				roots[i] = short(id)
			}
			row = append(row, dash(strings.Join(roots, ",")))
		}
		rows = append(rows, row)
	}
	return printTable(w, header, rows)
}

// short is the first 16 hex digits of an ID (enough to tell keys apart; -o json has it whole).
func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
