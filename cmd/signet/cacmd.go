package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/signet-id/signet/proto/adminv1"
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
	cmd.AddCommand(status, rotate)
	return cmd
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
