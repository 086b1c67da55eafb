package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/spf13/cobra"
)

func newAuditCmd() *cobra.Command {
	cmd := newGroupCmd("audit", "The hash-chained audit log of every admin action and refused request")
	cmd.AddCommand(newAuditListCmd(), newAuditVerifyCmd(), newAuditCheckpointCmd())
	return cmd
}

func newAuditListCmd() *cobra.Command {
	var admin, output, actor, object, action string
	var after uint64
	var limit int
	list := &cobra.Command{
		Use:     "list",
		Short:   "List audit records, oldest first",
		Example: "  signet audit list --object 3f1c… -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usagef("--limit %d: must be positive", limit)
			}
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			var recs []*adminv1.AuditRecord
			for len(recs) < limit {
				r, err := client.ListAudit(cmd.Context(), &adminv1.ListAuditRequest{After: after, Limit: int32(min(limit-len(recs), 1000)),
					Actor: actor, Object: object, Action: action})
				if err != nil {
					return rpcError("audit list", err)
				}
				recs = append(recs, r.Records...)
				if r.Next == 0 {
					break
				}
				after = r.Next
			}
			return printAudit(cmd.OutOrStdout(), recs, output)
		},
	}
	adminFlag(list, &admin)
	outputFlag(list, &output)
	list.Flags().Uint64Var(&after, "after", 0, "start after this record number")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many records")
	list.Flags().StringVar(&actor, "actor", "", "only records of this actor")
	list.Flags().StringVar(&object, "object", "", "only records about this object (entry ID, owner, agent…)")
	list.Flags().StringVar(&action, "action", "", "only records of this action (e.g. entry.disable)")
	return list
}

func newAuditVerifyCmd() *cobra.Command {
	var admin, checkpoint, bundle string
	verify := &cobra.Command{
		Use:   "verify [--checkpoint FILE [--bundle FILE]]",
		Short: "Recompute the audit log's hash chain; exit 1 at the first broken link",
		Long: `Recompute the audit log's hash chain and exit 1 at the first broken link.

The chain alone shows records altered in place, but not a record removed or altered by someone who then
re-hashed every record after it: that takes a checkpoint. Without --checkpoint, the chain is checked
against the server's automatic checkpoint (<data_dir>/server/audit-checkpoint.json), which whoever can
write the data dir can also remove; so keep checkpoints outside the server too. With --checkpoint FILE
(written earlier by 'signet audit checkpoint --out FILE'), the checkpoint's signature is verified against
the trust bundle's X.509 roots (--bundle FILE, PEM as 'signet bundle show' prints it; default: the
server's bundle), and the chain must still hold the checkpoint's record with the checkpoint's hash.`,
		Example: `  signet audit verify
  signet audit verify --checkpoint /backup/audit-2026-12-01.json --bundle /backup/bundle.pem`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bundle != "" && checkpoint == "" {
				return usagef("--bundle needs --checkpoint: the bundle is only used to check a checkpoint's signature")
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			req := &adminv1.VerifyAuditRequest{}
			var cp adminapi.AuditCheckpoint
			if checkpoint != "" {
				if cp, err = loadCheckpoint(cmd, client, checkpoint, bundle); err != nil {
					return err
				}
				req.CheckpointSeq, req.CheckpointHash = cp.Seq, cp.HeadHash
			}
			v, err := client.VerifyAudit(cmd.Context(), req)
			if err != nil {
				return rpcError("audit verify", err)
			}
			if v.BrokenAt != 0 {
				against := ""
				if v.CheckpointFile != "" {
					against = fmt.Sprintf("; checked against the server's automatic checkpoint %s", v.CheckpointFile)
				}
				return fmt.Errorf("audit verify: the chain is broken at record %d: %s (%d records before it verify%s)", v.BrokenAt, v.Problem, v.Records, against)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Audit log intact: %d records, every link verifies.\n", v.Records)
			switch {
			case checkpoint != "":
				fmt.Fprintf(w, "Checkpoint of record %d (signed by node %s at %s) matches.\n", cp.Seq, cp.Node, cp.Time.UTC().Format(time.RFC3339))
			case v.CheckpointSeq != 0:
				fmt.Fprintf(w, "The server's automatic checkpoint of record %d (%s, %s) matches; records after it, and a rewrite by\n"+
					"someone who can also write that file, need a checkpoint kept elsewhere: use --checkpoint FILE.\n",
					v.CheckpointSeq, v.CheckpointFile, time.Unix(v.CheckpointTime, 0).UTC().Format(time.RFC3339))
			default:
				fmt.Fprintln(w, "Without a checkpoint this cannot show records removed or altered with the rest re-hashed: use --checkpoint FILE.")
			}
			return nil
		},
	}
	adminFlag(verify, &admin)
	verify.Flags().StringVar(&checkpoint, "checkpoint", "", "a checkpoint file from 'signet audit checkpoint'; the chain must still hold its record")
	verify.Flags().StringVar(&bundle, "bundle", "", "PEM file of the trust bundle's X.509 roots to check the checkpoint's signature with (default: the server's bundle)")
	return verify
}

// loadCheckpoint reads a checkpoint file and verifies its signature against the roots in bundlePath,
// or the server's bundle when it is empty.
func loadCheckpoint(cmd *cobra.Command, client adminv1.AdminClient, path, bundlePath string) (adminapi.AuditCheckpoint, error) {
	data, err := fsutil.ReadFileMax(path, adminapi.MaxCheckpointFileSize)
	if err != nil {
		return adminapi.AuditCheckpoint{}, fmt.Errorf("audit verify: --checkpoint: %w", err)
	}
	b, err := client.GetBundle(cmd.Context(), &adminv1.GetBundleRequest{})
	if err != nil {
		return adminapi.AuditCheckpoint{}, rpcError("audit verify", err)
	}
	var roots []*x509.Certificate
	if bundlePath != "" {
		if roots, err = readPEMCerts(bundlePath, "write one with 'signet bundle show > FILE'"); err != nil {
			return adminapi.AuditCheckpoint{}, fmt.Errorf("audit verify: --bundle: %w", err)
		}
	} else {
		for i, der := range b.X509Authorities {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return adminapi.AuditCheckpoint{}, fmt.Errorf("audit verify: the server's X.509 authority %d: %w", i, err)
			}
			roots = append(roots, c)
		}
	}
	cp, _, err := adminapi.ParseCheckpoint(data, roots, b.TrustDomain)
	if err != nil {
		return cp, fmt.Errorf("audit verify: %s: %w", path, err)
	}
	return cp, nil
}

// maxBundleFileSize bounds a --bundle file.
const maxBundleFileSize = 1 << 20

// readPEMCerts reads the PEM certificates of a file (at most maxBundleFileSize); hint says how to
// write one, for a file without any.
func readPEMCerts(path, hint string) ([]*x509.Certificate, error) {
	data, err := fsutil.ReadFileMax(path, maxBundleFileSize)
	if err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(roots)+1, err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it (%s)", path, hint)
	}
	return roots, nil
}

func newAuditCheckpointCmd() *cobra.Command {
	var admin, out string
	cp := &cobra.Command{
		Use:   "checkpoint [--out FILE]",
		Short: "Sign the audit chain's head with this node's CA key; keep the file off the server",
		Long: `Verify the audit chain and write its head (the newest record's number and hash, the trust domain,
the node and the time) signed with the node's X.509 root key. Keep the file where whoever can write the
server's data dir cannot (a backup, a ticket, another machine): 'signet audit verify --checkpoint FILE'
then detects any record at or before it that was removed or altered, even if the chain was re-hashed.
The signature is checked offline against the trust bundle's roots.`,
		Example: `  signet audit checkpoint --out /backup/audit-$(date +%F).json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			r, err := client.AuditCheckpoint(cmd.Context(), &adminv1.AuditCheckpointRequest{})
			if err != nil {
				return rpcError("audit checkpoint", err)
			}
			b, err := adminapi.CheckpointFile{Statement: r.Statement, Signature: r.Signature, Signer: r.SignerCertificate}.Marshal()
			if err != nil {
				return err
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return fmt.Errorf("audit checkpoint: --out: %w", err)
			}
			var st adminapi.AuditCheckpoint
			if err := json.Unmarshal(r.Statement, &st); err != nil {
				return fmt.Errorf("audit checkpoint: the server's statement: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Checkpoint of audit record %d written to %s.\n", st.Seq, out)
			return nil
		},
	}
	adminFlag(cp, &admin)
	cp.Flags().StringVar(&out, "out", "", "write the checkpoint to this file (default: standard output)")
	return cp
}

func printAudit(w io.Writer, recs []*adminv1.AuditRecord, format string) error {
	type view struct {
		Seq     uint64 `json:"seq"`
		Time    string `json:"time"`
		Actor   string `json:"actor"`
		Action  string `json:"action"`
		Object  string `json:"object"`
		Outcome string `json:"outcome"`
		Reason  string `json:"reason,omitempty"`
		Before  any    `json:"before,omitempty"`
		After   any    `json:"after,omitempty"`
		Hash    string `json:"hash"`
	}
	views := make([]view, len(recs))
	rows := make([][]string, len(recs))
	for i, r := range recs {
		views[i] = view{Seq: r.Seq, Time: time.Unix(0, r.Time).UTC().Format(time.RFC3339), Actor: r.Actor, Action: r.Action,
			Object: r.Object, Outcome: r.Outcome, Reason: r.Reason, Hash: r.Hash}
		if len(r.Before) > 0 {
			views[i].Before = rawJSON(r.Before)
		}
		if len(r.After) > 0 {
			views[i].After = rawJSON(r.After)
		}
		rows[i] = []string{fmt.Sprint(r.Seq), views[i].Time, r.Actor, r.Action, r.Object, r.Outcome, r.Reason}
	}
	if format == "json" {
		return printJSON(w, views)
	}
	return printTable(w, []string{"SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "REASON"}, rows)
}
