package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
)

func newAgentListCmd() *cobra.Command {
	return newAdminCmd("list", "List attested agents", "", noArgs, func(cmd *cobra.Command, c adminv1.AdminClient, _ []string, output string) error {
		resp, err := c.ListAgents(cmd.Context(), &adminv1.ListAgentsRequest{})
		if err != nil {
			return rpcError("agent list", err)
		}
		return printAgents(cmd.OutOrStdout(), resp.Agents, output)
	})
}

func newAgentShowCmd() *cobra.Command {
	return newAdminCmd("show ID", "Show one agent", "", exactArgs(1, "one agent SPIFFE ID"), func(cmd *cobra.Command, c adminv1.AdminClient, args []string, output string) error {
		a, err := c.GetAgent(cmd.Context(), &adminv1.GetAgentRequest{Id: args[0]})
		if err != nil {
			return rpcError("agent show", err)
		}
		v := viewAgent(a)
		if output == "json" {
			return printJSON(cmd.OutOrStdout(), v)
		}
		return printFields(cmd.OutOrStdout(), [][2]string{
			{"Agent ID", v.ID}, {"Attestation", v.AttestationType}, {"Selectors", strings.Join(v.Selectors, ", ")},
			{"Owner", v.Owner}, {"Join token", v.TokenID}, {"SVID serial", v.Serial}, {"SVID expires", v.SVIDExpiresAt},
			{"Attested at", v.AttestedAt}, {"Renewed at", v.RenewedAt}, {"Banned", fmt.Sprint(v.Banned)},
		})
	})
}

// agentActionCmd builds 'agent evict' and 'agent ban'.
func agentActionCmd(use, short, done string, call func(cmd *cobra.Command, c adminv1.AdminClient, id string) (*adminv1.AgentInfo, error)) *cobra.Command {
	var admin string
	cmd := &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  exactArgs(1, "one agent SPIFFE ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			a, err := call(cmd, client, args[0])
			if err != nil {
				return rpcError("agent "+use, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s agent %s (owner %s)\n", done, a.Id, a.Owner)
			return nil
		},
	}
	adminFlag(cmd, &admin)
	return cmd
}

func newAgentEvictCmd() *cobra.Command {
	return agentActionCmd("evict", "Evict an agent: its SVID stops working at once and it must attest again", "Evicted",
		func(cmd *cobra.Command, c adminv1.AdminClient, id string) (*adminv1.AgentInfo, error) {
			return c.EvictAgent(cmd.Context(), &adminv1.EvictAgentRequest{Id: id})
		})
}

func newAgentBanCmd() *cobra.Command {
	return agentActionCmd("ban", "Ban an agent: its SVID stops working at once and it can never attest again", "Banned",
		func(cmd *cobra.Command, c adminv1.AdminClient, id string) (*adminv1.AgentInfo, error) {
			return c.BanAgent(cmd.Context(), &adminv1.BanAgentRequest{Id: id})
		})
}

type agentView struct {
	ID              string   `json:"id"`
	AttestationType string   `json:"attestation_type"`
	Selectors       []string `json:"selectors"`
	Owner           string   `json:"owner"`
	TokenID         string   `json:"token_id,omitempty"`
	Serial          string   `json:"serial,omitempty"`
	SVIDExpiresAt   string   `json:"svid_expires_at"`
	AttestedAt      string   `json:"attested_at"`
	RenewedAt       string   `json:"renewed_at"`
	Banned          bool     `json:"banned"`
	BannedBy        string   `json:"banned_by,omitempty"`
}

func viewAgent(a *adminv1.AgentInfo) agentView {
	v := agentView{ID: a.Id, AttestationType: a.AttestationType, Owner: a.Owner, TokenID: a.TokenId, Serial: a.Serial,
		SVIDExpiresAt: formatUnix(a.SvidExpiresAt), AttestedAt: formatUnix(a.AttestedAt), RenewedAt: formatUnix(a.RenewedAt),
		Banned: a.Banned, BannedBy: a.BannedBy}
	for _, s := range a.Selectors {
		v.Selectors = append(v.Selectors, s.Type+":"+s.Value)
	}
	return v
}

func viewAgents(as []*adminv1.AgentInfo) []agentView {
	out := make([]agentView, len(as))
	for i, a := range as {
		out[i] = viewAgent(a)
	}
	return out
}

func printAgents(w io.Writer, agents []*adminv1.AgentInfo, format string) error {
	views := make([]agentView, len(agents))
	rows := make([][]string, len(agents))
	for i, a := range agents {
		views[i] = viewAgent(a)
		state := "active"
		if a.Banned {
			state = "banned"
		}
		rows[i] = []string{a.Id, a.AttestationType, a.Owner, views[i].SVIDExpiresAt, state}
	}
	if format == "json" {
		return printJSON(w, views)
	}
	return printTable(w, []string{"AGENT ID", "ATTESTATION", "OWNER", "SVID EXPIRES", "STATE"}, rows)
}
