package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func newAgentStatusCmd() *cobra.Command {
	var wf workloadFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "The SVIDs a running agent holds, and how long it could serve each with its server unreachable",
		Long: `Ask a running agent, on its Workload API socket, which X.509-SVIDs it holds (identities workloads
use, and prefetch entries) and, for each, its outage budget: how long the agent could keep serving it if
its server became unreachable now (until the cached SVID expires). The minimum over them is what a server
outage may last before some workload goes without. Only the agent's own uid and root may ask.`,
		Example: "  signet agent status --socket /run/signet/agent.sock",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(wf.output); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wf.timeout)
			defer cancel()
			r, err := agentStatus(ctx, wf.addr())
			if err != nil {
				return rpcError("agent status", err)
			}
			return printAgentStatus(cmd.OutOrStdout(), r, wf.output)
		},
	}
	wf.add(cmd)
	return cmd
}

// agentStatus asks the agent at addr (unix://…) for its status.
func agentStatus(ctx context.Context, addr string) (*agentv1.AgentStatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("agent status: %s: %w", addr, err)
	}
	defer conn.Close()
	return agentv1.NewAgentStatusClient(conn).Status(ctx, &agentv1.AgentStatusRequest{})
}

type heldView struct {
	SPIFFEID     string `json:"spiffe_id"`
	EntryID      string `json:"entry_id"`
	Serial       string `json:"serial"`
	ExpiresAt    string `json:"expires_at"`
	Prefetch     bool   `json:"prefetch,omitempty"`
	OutageBudget string `json:"outage_budget"`
	// OutageBudgetSeconds is the same, for scripts.
	OutageBudgetSeconds int64 `json:"outage_budget_seconds"`
}

type agentStatusView struct {
	SVIDs                  []heldView `json:"svids"`
	MinOutageBudget        string     `json:"min_outage_budget"`
	MinOutageBudgetSeconds int64      `json:"min_outage_budget_seconds"`
}

func viewAgentStatus(r *agentv1.AgentStatusResponse) agentStatusView {
	v := agentStatusView{SVIDs: []heldView{}, MinOutageBudgetSeconds: r.MinOutageBudgetSeconds, MinOutageBudget: "none held"}
	for _, h := range r.Svids {
		v.SVIDs = append(v.SVIDs, heldView{SPIFFEID: h.SpiffeId, EntryID: h.EntryId, Serial: h.Serial, ExpiresAt: formatUnixNano(h.ExpiresAt),
			Prefetch: h.Prefetch, OutageBudget: seconds(h.OutageBudgetSeconds), OutageBudgetSeconds: h.OutageBudgetSeconds})
	}
	if len(r.Svids) > 0 {
		v.MinOutageBudget = seconds(r.MinOutageBudgetSeconds)
	}
	return v
}

func seconds(s int64) string { return (time.Duration(s) * time.Second).String() }

func printAgentStatus(w io.Writer, r *agentv1.AgentStatusResponse, format string) error {
	v := viewAgentStatus(r)
	if format == "json" {
		return printJSON(w, v)
	}
	rows := make([][]string, len(v.SVIDs))
	for i, h := range v.SVIDs {
		why := "in use"
		if h.Prefetch {
			why = "prefetch"
		}
		rows[i] = []string{h.SPIFFEID, h.Serial, why, h.ExpiresAt, h.OutageBudget}
	}
	if err := printTable(w, []string{"SPIFFE ID", "SERIAL", "HELD", "EXPIRES", "SERVED WITHOUT SERVER FOR"}, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nOutage budget (minimum): %s\n", strings.TrimSpace(v.MinOutageBudget))
	return err
}
