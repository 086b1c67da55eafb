package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func newHealthcheckCmd() *cobra.Command {
	var adminSocket, socket string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Check a server (--admin-socket) or an agent (--socket); exit 0 if serving, 1 if not",
		Example: `  signet healthcheck --admin-socket /run/signet/admin/admin.sock
  signet healthcheck --socket /run/signet/agent.sock`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, what := adminSocket, "server"
			if socket != "" {
				path, what = socket, "agent"
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("%s not healthy: socket %s: %w", what, path, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return fmt.Errorf("%s not healthy: %w", what, err)
			}
			defer conn.Close()
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				return fmt.Errorf("%s not healthy: %w", what, err)
			}
			if resp.Status != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("%s not healthy: %s", what, resp.Status)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s at %s: SERVING\n", what, path)
			if what == "agent" {
				// The outage budget, when this uid may read the agent's status.
				if st, err := agentv1.NewAgentStatusClient(conn).Status(ctx, &agentv1.AgentStatusRequest{}); err == nil && len(st.Svids) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "outage budget: %s (the soonest of %d cached SVIDs to expire; see 'signet agent status')\n",
						seconds(st.MinOutageBudgetSeconds), len(st.Svids))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&adminSocket, "admin-socket", defaultAdminSocket(), "server admin socket to check")
	cmd.Flags().StringVar(&socket, "socket", "", "agent Workload API socket to check (instead of a server)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait")
	return cmd
}
