package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// maxPolicyFileSize bounds a policy file: MaxRules rules of two expressions and a description at most
// fit in it.
const maxPolicyFileSize = 4 << 20

func newPolicyCmd() *cobra.Command {
	cmd := newGroupCmd("policy", "Show or change the cluster's entry policy (replicated: the same on every server)")
	cmd.AddCommand(newPolicyShowCmd(), newPolicySetCmd())
	return cmd
}

// policyRuleView is a rule as 'policy show' prints it and 'policy set' reads it (docs/policy.md).
type policyRuleView struct {
	Name         string `yaml:"name" json:"name"`
	Description  string `yaml:"description,omitempty" json:"description,omitempty"`
	DenyUnless   string `yaml:"deny_unless,omitempty" json:"deny_unless,omitempty"`
	ApprovalWhen string `yaml:"approval_when,omitempty" json:"approval_when,omitempty"`
}

// policyLimits are the cluster's limits on entries as a policy file and 'policy show' write them; a
// limit left out (zero) leaves each server's configured value in force.
type policyLimits struct {
	MinX509SVIDTTL  time.Duration `yaml:"min_x509_svid_ttl,omitempty" json:"min_x509_svid_ttl,omitempty"`
	MinJWTSVIDTTL   time.Duration `yaml:"min_jwt_svid_ttl,omitempty" json:"min_jwt_svid_ttl,omitempty"`
	DefaultEntryTTL time.Duration `yaml:"default_entry_ttl,omitempty" json:"default_entry_ttl,omitempty"`
}

// policyFile is what 'policy set' reads.
type policyFile struct {
	Limits policyLimits  `yaml:"limits"`
	Rules  []policy.Rule `yaml:"rules"`
}

type policyView struct {
	Revision uint64            `json:"revision"`
	Limits   map[string]string `json:"limits"` // durations, as in a policy file
	Rules    []policyRuleView  `json:"rules"`
	SHA256   string            `json:"sha256,omitempty"`
	SetBy    string            `json:"set_by,omitempty"`
	SetAt    string            `json:"set_at,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	limits   policyLimits
}

func viewPolicy(p *adminv1.PolicyInfo) policyView {
	l := p.GetLimits()
	v := policyView{Revision: p.Revision, Rules: []policyRuleView{}, SHA256: p.Sha256, SetBy: p.SetBy, Reason: p.Reason, Limits: map[string]string{},
		limits: policyLimits{MinX509SVIDTTL: time.Duration(l.GetMinX509SvidTtlSeconds()) * time.Second,
			MinJWTSVIDTTL: time.Duration(l.GetMinJwtSvidTtlSeconds()) * time.Second, DefaultEntryTTL: time.Duration(l.GetDefaultEntryTtlSeconds()) * time.Second}}
	for k, d := range map[string]time.Duration{"min_x509_svid_ttl": v.limits.MinX509SVIDTTL, "min_jwt_svid_ttl": v.limits.MinJWTSVIDTTL, "default_entry_ttl": v.limits.DefaultEntryTTL} {
		if d != 0 {
			v.Limits[k] = d.String()
		}
	}
	if p.SetAt != 0 {
		v.SetAt = time.Unix(p.SetAt, 0).UTC().Format(time.RFC3339)
	}
	for _, r := range p.Rules {
		v.Rules = append(v.Rules, policyRuleView{Name: r.Name, Description: r.Description, DenyUnless: r.DenyUnless, ApprovalWhen: r.ApprovalWhen})
	}
	return v
}

func newPolicyShowCmd() *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the cluster's entry policy, with its revision, who set it and when",
		Long: `Print the cluster's entry policy as this server has applied it (the policy is replicated: every server
holds the same once it has caught up). -o yaml (the default) prints the revision, set_by, set_at, sha256
and reason as comments above the rules, in the form 'signet policy set' reads: edit the output and set it
back. -o json prints one object. Revision 0 means no policy was ever set: every request is allowed.`,
		Example: `  signet policy show > policy.yaml
  signet policy show -o json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return usagef("--output %q: want yaml or json", output)
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			p, err := client.GetPolicy(cmd.Context(), &adminv1.GetPolicyRequest{})
			if err != nil {
				return rpcError("policy show", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), viewPolicy(p))
			}
			return printPolicyYAML(cmd.OutOrStdout(), viewPolicy(p))
		},
	}
	adminFlag(cmd, &admin)
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}

func printPolicyYAML(w io.Writer, v policyView) error {
	var b bytes.Buffer
	if v.Revision == 0 {
		b.WriteString("# No entry policy was ever set: every request is allowed.\n")
	} else {
		fmt.Fprintf(&b, "# revision: %d\n# set_by: %s\n# set_at: %s\n# sha256: %s\n", v.Revision, v.SetBy, v.SetAt, v.SHA256)
		if v.Reason != "" {
			fmt.Fprintf(&b, "# reason: %s\n", strings.ReplaceAll(v.Reason, "\n", " "))
		}
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(struct {
		Limits policyLimits     `yaml:"limits,omitempty"`
		Rules  []policyRuleView `yaml:"rules"`
	}{v.limits, v.Rules}); err != nil {
		return fmt.Errorf("policy show: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func newPolicySetCmd() *cobra.Command {
	var admin, reason string
	var ifRevision uint64
	cmd := &cobra.Command{
		Use:   "set FILE|-",
		Short: "Replace the cluster's entry policy with the rules in FILE",
		Long: `Replace the cluster's entry policy with the one in FILE (or standard input): YAML with the key rules,
a list of rules as in docs/policy.md (as in a server configuration's policy: section), and optionally
limits, the cluster's limits on entries, which then decide on every server instead of each server's
configuration: min_x509_svid_ttl, min_jwt_svid_ttl, default_entry_ttl (durations; one left out keeps
each server's configured value). 'signet policy show' prints this form. The server checks the policy
first: a rule that does not compile, or a limit out of its bounds, is refused, naming it, and nothing
changes. The policy is replicated through Raft: it takes effect on
every server, whichever one you ask. The change is recorded in the audit log ("policy.set", with the
policy and its SHA-256 before and after) with --reason.

The new policy replaces the revision read just before (or --if-revision N): if another admin changed the
policy in between, the set is refused (exit 1) and nothing changes; read it again.`,
		Example: `  signet policy show > policy.yaml
  $EDITOR policy.yaml
  signet policy set policy.yaml --reason "CHG-1234: X.509-SVIDs live at most a day"

  # policy.yaml
  limits:
    min_x509_svid_ttl: 5m
    default_entry_ttl: 720h
  rules:
    - name: max-ttl
      description: X.509-SVIDs live at most a day
      deny_unless: entry.x509_ttl <= duration("24h")`,
		Args: exactArgs(1, "one file (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usagef("policy set: --reason is required: say why the policy changes")
			}
			rules, limits, err := readPolicyFile(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			if !cmd.Flags().Changed("if-revision") {
				cur, err := client.GetPolicy(cmd.Context(), &adminv1.GetPolicyRequest{})
				if err != nil {
					return rpcError("policy set", err)
				}
				ifRevision = cur.Revision
			}
			p, err := client.SetPolicy(cmd.Context(), &adminv1.SetPolicyRequest{Rules: rules, Limits: limits, PrevRevision: ifRevision, Reason: reason})
			if err != nil {
				return rpcError("policy set", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Entry policy set: revision %d, %d rules, sha256 %s.\n", p.Revision, len(p.Rules), p.Sha256)
			return nil
		},
	}
	adminFlag(cmd, &admin)
	cmd.Flags().StringVar(&reason, "reason", "", "why the policy changes (required; recorded in the audit log)")
	cmd.Flags().Uint64Var(&ifRevision, "if-revision", 0, "replace only this revision of the policy (default: the one read just before; 0: the cluster has none)")
	return cmd
}

// readPolicyFile parses a policy file strictly; errors name the file, the line and the key.
func readPolicyFile(path string, stdin io.Reader) ([]*adminv1.PolicyRule, *adminv1.PolicyLimits, error) {
	b, err := readBounded("policy set", path, stdin, maxPolicyFileSize)
	if err != nil {
		return nil, nil, err
	}
	var f policyFile
	if err := decodeYAML("policy set", path, b, &f, " (see 'signet policy set --help')"); err != nil {
		return nil, nil, usageError{err}
	}
	out := make([]*adminv1.PolicyRule, len(f.Rules))
	for i, r := range f.Rules {
		out[i] = &adminv1.PolicyRule{Name: r.Name, Description: r.Description, DenyUnless: r.DenyUnless, ApprovalWhen: r.ApprovalWhen}
	}
	l := f.Limits
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"limits.min_x509_svid_ttl", l.MinX509SVIDTTL}, {"limits.min_jwt_svid_ttl", l.MinJWTSVIDTTL}, {"limits.default_entry_ttl", l.DefaultEntryTTL}} {
		if d.v%time.Second != 0 || d.v < 0 {
			return nil, nil, usagef("policy set %s: %s %s: want a positive whole number of seconds", path, d.key, d.v)
		}
	}
	return out, &adminv1.PolicyLimits{MinX509SvidTtlSeconds: int64(l.MinX509SVIDTTL / time.Second), MinJwtSvidTtlSeconds: int64(l.MinJWTSVIDTTL / time.Second),
		DefaultEntryTtlSeconds: int64(l.DefaultEntryTTL / time.Second)}, nil
}
