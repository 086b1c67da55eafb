package main

import (
	"io"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
)

func newOwnerCmd() *cobra.Command {
	cmd := newGroupCmd("owner", "Manage owners: the people and teams accountable for identities")
	cmd.AddCommand(newOwnerAddCmd(), newOwnerListCmd(), newOwnerShowCmd(), newOwnerOffboardCmd())
	return cmd
}

func newOwnerAddCmd() *cobra.Command {
	var admin, output, displayName, kind, team string
	cmd := &cobra.Command{
		Use:     "add NAME",
		Short:   "Add an owner",
		Example: `  signet owner add alice@example.org --name "Alice" --kind person --team payments`,
		Args:    exactArgs(1, "one owner name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if kind != "person" && kind != "team" {
				return usagef("--kind %q: want person or team", kind)
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			o, err := client.CreateOwner(cmd.Context(), &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{
				Name: args[0], DisplayName: displayName, Kind: kind, Team: team}})
			if err != nil {
				return rpcError("owner add", err)
			}
			return printOwners(cmd.OutOrStdout(), []*adminv1.Owner{o}, output)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&displayName, "name", "", "display name")
	cmd.Flags().StringVar(&kind, "kind", "person", "person or team")
	cmd.Flags().StringVar(&team, "team", "", "team the owner belongs to")
	return cmd
}

func newOwnerListCmd() *cobra.Command {
	return newAdminCmd("list", "List owners", "", noArgs, func(cmd *cobra.Command, c adminv1.AdminClient, _ []string, output string) error {
		resp, err := c.ListOwners(cmd.Context(), &adminv1.ListOwnersRequest{})
		if err != nil {
			return rpcError("owner list", err)
		}
		return printOwners(cmd.OutOrStdout(), resp.Owners, output)
	})
}

type ownerView struct {
	Name         string `json:"name"`
	DisplayName  string `json:"display_name,omitempty"`
	Kind         string `json:"kind,omitempty"`
	Team         string `json:"team,omitempty"`
	CreatedAt    string `json:"created_at"`
	CreatedBy    string `json:"created_by,omitempty"`
	Offboarded   bool   `json:"offboarded,omitempty"`
	OffboardedAt string `json:"offboarded_at,omitempty"`
	ReassignedTo string `json:"reassigned_to,omitempty"`
}

func viewOwner(o *adminv1.Owner) ownerView {
	v := ownerView{Name: o.Name, DisplayName: o.DisplayName, Kind: o.Kind, Team: o.Team, CreatedAt: formatUnix(o.CreatedAt),
		CreatedBy: o.CreatedBy, Offboarded: o.Offboarded, ReassignedTo: o.ReassignedTo}
	if o.OffboardedAt != 0 {
		v.OffboardedAt = formatUnix(o.OffboardedAt)
	}
	return v
}

func printOwners(w io.Writer, owners []*adminv1.Owner, format string) error {
	views := make([]ownerView, len(owners))
	rows := make([][]string, len(owners))
	for i, o := range owners {
		views[i] = viewOwner(o)
		state := "active"
		if o.Offboarded {
			state = "offboarded"
			if o.ReassignedTo != "" {
				state += " (to " + o.ReassignedTo + ")"
			}
		}
		rows[i] = []string{o.Name, o.DisplayName, o.Kind, o.Team, views[i].CreatedAt, state}
	}
	if format == "json" {
		return printJSON(w, views)
	}
	return printTable(w, []string{"NAME", "DISPLAY NAME", "KIND", "TEAM", "CREATED", "STATE"}, rows)
}
