package main

import (
	"fmt"
	"io"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newTokenCmd() *cobra.Command {
	cmd := newGroupCmd("token", "Manage join tokens (single-use credentials for attesting a node)")
	cmd.AddCommand(newTokenCreateCmd(), newTokenListCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var admin, output, owner, spiffeID string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token bound to an owner",
		Long: `Create a single-use join token. The node that uses it is vouched for by --owner; its agent gets
the SPIFFE ID spiffe://<td>/signet/agent/join_token/<token-id>, or --spiffe-id. The token is printed
once: Signet stores only a hash of it. --spiffe-id must be under spiffe://<td>/signet/agent/.

Hand the token to the agent with --join-token-file (a file of mode 0600, or - for stdin) or the
SIGNET_JOIN_TOKEN environment variable, never on its command line.`,
		Example: `  signet token create --owner alice --ttl 10m
  signet token create --owner alice --spiffe-id spiffe://example.org/signet/agent/web-1
  (umask 077; signet token create --owner alice -o json | jq -r .token > /etc/signet/join-token)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if owner == "" {
				return usagef("--owner is required: every node is vouched for by an owner")
			}
			if ttl <= 0 || ttl%time.Second != 0 {
				return usagef("--ttl %s: must be a positive number of whole seconds", ttl)
			}
			if spiffeID != "" {
				if _, err := spiffeid.FromString(spiffeID); err != nil {
					return usagef("--spiffe-id %q: %v", spiffeID, err)
				}
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			resp, err := client.CreateJoinToken(cmd.Context(), &adminv1.CreateJoinTokenRequest{Owner: owner,
				TtlSeconds: int64(ttl / time.Second), SpiffeId: spiffeID})
			if err != nil {
				return rpcError("token create", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), struct {
					Token string    `json:"token"`
					Info  tokenView `json:"info"`
				}{resp.Secret, viewToken(resp.Token)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Token: %s\nOwner: %s\nExpires: %s\n", resp.Secret, resp.Token.Owner, formatUnix(resp.Token.ExpiresAt))
			fmt.Fprintf(cmd.OutOrStdout(), `(shown once) Give it to the agent without putting it on its command line, where every local
user can read it: write it to a file only the agent's user can read and start
  signet agent --config /etc/signet/agent.yaml --join-token-file /etc/signet/join-token
or pipe it in with --join-token-file -, or set %s in the agent's environment.
`, joinTokenEnv)
			return nil
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&owner, "owner", "", "owner who vouches for the node (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "how long the token may be used")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID to give the agent instead of the token-derived one")
	return cmd
}

func newTokenListCmd() *cobra.Command {
	return newAdminCmd("list", "List join tokens (never their secrets)", "", noArgs, func(cmd *cobra.Command, c adminv1.AdminClient, _ []string, output string) error {
		resp, err := c.ListJoinTokens(cmd.Context(), &adminv1.ListJoinTokensRequest{})
		if err != nil {
			return rpcError("token list", err)
		}
		return printTokens(cmd.OutOrStdout(), resp.Tokens, output)
	})
}

type tokenView struct {
	ID        string `json:"id"`
	Owner     string `json:"owner"`
	SPIFFEID  string `json:"spiffe_id,omitempty"`
	ExpiresAt string `json:"expires_at"`
	CreatedAt string `json:"created_at"`
	CreatedBy string `json:"created_by"`
	UsedAt    string `json:"used_at"`
	UsedBy    string `json:"used_by,omitempty"`
}

func viewToken(t *adminv1.JoinToken) tokenView {
	used := "-"
	if t.UsedAt != 0 {
		used = formatUnix(t.UsedAt)
	}
	return tokenView{ID: t.Id, Owner: t.Owner, SPIFFEID: t.SpiffeId, ExpiresAt: formatUnix(t.ExpiresAt),
		CreatedAt: formatUnix(t.CreatedAt), CreatedBy: t.CreatedBy, UsedAt: used, UsedBy: t.UsedBy}
}

func viewTokens(ts []*adminv1.JoinToken) []tokenView {
	out := make([]tokenView, len(ts))
	for i, t := range ts {
		out[i] = viewToken(t)
	}
	return out
}

func printTokens(w io.Writer, tokens []*adminv1.JoinToken, format string) error {
	views := make([]tokenView, len(tokens))
	rows := make([][]string, len(tokens))
	for i, t := range tokens {
		views[i] = viewToken(t)
		rows[i] = []string{t.Id, t.Owner, views[i].ExpiresAt, views[i].UsedAt, t.UsedBy}
	}
	if format == "json" {
		return printJSON(w, views)
	}
	return printTable(w, []string{"TOKEN ID", "OWNER", "EXPIRES", "USED", "USED BY"}, rows)
}
