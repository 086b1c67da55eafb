package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcstatus "google.golang.org/grpc/status"
)

func newHealthcheckCmd() *cobra.Command {
	var adminSocket, socket string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Check a server (--admin-socket) or an agent (--socket); exit 0 if serving, 1 if not",
		Long: `Check a server (its admin socket) or an agent (its Workload API socket). It waits up to --timeout
for the socket to be served and report SERVING (an agent does once its first SVIDs are in; a server once
it is in a cluster and registered with its leader, so one started alone waits for 'signet cluster
join'), so it also
serves to wait for a process that is starting. A socket the caller may not use fails at once. Both a
path and the unix:// form the agent prints are accepted. A server whose data dir is on a full disk (less
than 16 MiB free, or a write failed for lack of space) is not healthy: it serves reads but takes no
writes, and the message says "disk full". Nor is one below its min_free_disk, where it stops issuing:
the message says "disk nearly full".`,
		Example: `  signet healthcheck --admin-socket /run/signet/admin/admin.sock
  signet healthcheck --socket unix:///run/signet/agent.sock --timeout 30s`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usagef("--timeout %s: must be positive", timeout)
			}
			flag, raw, what, hint := "--admin-socket", adminSocket, "server", adminSocketHint
			if socket != "" {
				flag, raw, what, hint = "--socket", socket, "agent", workloadSocketHint
			}
			path, err := socketPath(flag, raw)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// Errors that waiting cannot fix come at once; a socket that is missing or not served yet is
			// waited for.
			diagnose := func(ctx context.Context) error {
				fi, err := statSocket(path, what+" socket", hint)
				if err != nil {
					return err
				}
				if what == "server" {
					if err := trustAdminSocket(path, fi); err != nil {
						return err
					}
				}
				return probeSocket(ctx, path, fi, what+" socket", hint)
			}
			if err := diagnose(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("%s not healthy: %w", what, err)
			}
			status, err := watchHealth(ctx, path)
			if status == healthpb.HealthCheckResponse_SERVING {
				if err := checkHealth(ctx, path); err != nil {
					return fmt.Errorf("%s not healthy: %w", what, err) // e.g. the server's disk is full
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s at %s: SERVING\n", what, path)
				if what == "agent" {
					printOutageBudget(ctx, cmd.OutOrStdout(), path)
				}
				return nil
			}
			// The wait is over; say why with a last look at the socket, on a context of its own.
			lastCtx, lastCancel := context.WithTimeout(cmd.Context(), time.Second)
			defer lastCancel()
			if derr := diagnose(lastCtx); derr != nil {
				return fmt.Errorf("%s not healthy after %s: %w", what, timeout, derr)
			}
			if status != healthpb.HealthCheckResponse_UNKNOWN {
				return fmt.Errorf("%s not healthy after %s: %s", what, timeout, status)
			}
			return fmt.Errorf("%s not healthy after %s: %w", what, timeout, err)
		},
	}
	cmd.Flags().StringVar(&adminSocket, "admin-socket", defaultAdminSocket(), "server admin socket to check (a path or unix://path)")
	cmd.Flags().StringVar(&socket, "socket", "", "agent Workload API socket to check instead of a server (a path or unix://path)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for SERVING")
	return cmd
}

// socketPath takes a socket given as a path or as a unix:// URI (as SPIFFE_ENDPOINT_SOCKET holds it).
func socketPath(flag, s string) (string, error) {
	if p, ok := strings.CutPrefix(s, "unix://"); ok {
		s = p
	} else if strings.Contains(s, "://") {
		return "", usagef("%s %q: want a Unix socket path or unix:///path", flag, s)
	}
	if !strings.HasPrefix(s, "/") {
		return "", usagef("%s %q: want an absolute path (or unix:///path)", flag, s)
	}
	return s, nil
}

// watchHealth watches the health service at path until it reports SERVING or ctx ends, (re)connecting
// as needed; it returns the last status seen and the last error.
func watchHealth(ctx context.Context, path string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	status := healthpb.HealthCheckResponse_UNKNOWN
	for {
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		for err == nil {
			var resp *healthpb.HealthCheckResponse
			if resp, err = stream.Recv(); err == nil {
				if status = resp.Status; status == healthpb.HealthCheckResponse_SERVING {
					return status, nil
				}
			}
		}
		// Unavailable: the server went away mid-stream; the next Watch waits for it to come back.
		if ctx.Err() != nil || grpcstatus.Code(err) != codes.Unavailable {
			return status, err
		}
	}
}

// checkHealth asks the health service at path once: besides the service status that Watch reports, a
// server's Check fails with the node's own problem (a full disk), which is returned as code and message.
func checkHealth(ctx context.Context, path string) error {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if s, ok := grpcstatus.FromError(err); ok && err != nil {
		return fmt.Errorf("%s: %s", s.Code(), s.Message())
	}
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// printOutageBudget prints the agent's outage budget, when this uid may read the agent's status.
func printOutageBudget(ctx context.Context, w io.Writer, path string) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	if st, err := agentv1.NewAgentStatusClient(conn).Status(ctx, &agentv1.AgentStatusRequest{}); err == nil && len(st.Svids) > 0 {
		fmt.Fprintf(w, "outage budget: %s (the soonest of %d cached SVIDs to expire; see 'signet agent status')\n",
			seconds(st.MinOutageBudgetSeconds), len(st.Svids))
	}
}
