package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
)

func newClusterCmd() *cobra.Command {
	cmd := newGroupCmd("cluster", "The servers of the Raft cluster: status, join, remove")
	cmd.AddCommand(newClusterStatusCmd(), newClusterJoinCmd(), newClusterRemoveCmd())
	return cmd
}

// clusterCmd builds a cluster command: connects to the admin socket, then runs call.
func clusterCmd(use, short, long, example string, args cobra.PositionalArgs, withOutput bool,
	call func(cmd *cobra.Command, c clusterv1.ClusterAdminClient, args []string, output string) error) *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example, Args: args,
		RunE: func(cmd *cobra.Command, a []string) error {
			if withOutput {
				if err := checkOutput(output); err != nil {
					return err
				}
			}
			conn, err := dialAdminConn(admin)
			if err != nil {
				return err
			}
			defer conn.Close()
			return call(cmd, clusterv1.NewClusterAdminClient(conn), a, output)
		},
	}
	adminFlag(cmd, &admin)
	if withOutput {
		outputFlag(cmd, &output)
	}
	return cmd
}

// clusterError shapes an error of the cluster admin API: its message says what is wrong and what to do.
func clusterError(op string, err error) error {
	return fmt.Errorf("%s: %s", op, status.Convert(err).Message())
}

func newClusterStatusCmd() *cobra.Command {
	return clusterCmd("status", "Show every server of the cluster with its Raft state",
		`Show every server of the Raft configuration: node ID, cluster address, voter or not, Raft state
(Leader, Follower, Candidate, or "unreachable" when it does not answer), term, last log index, commit
index, applied index and the leader it knows of. The server this command talks to asks each other server
over the cluster port.`,
		"  signet cluster status\n  signet cluster status -o json", noArgs, true,
		func(cmd *cobra.Command, c clusterv1.ClusterAdminClient, _ []string, output string) error {
			resp, err := c.Status(cmd.Context(), &clusterv1.ClusterStatusRequest{})
			if err != nil {
				return clusterError("cluster status", err)
			}
			return printClusterStatus(cmd.OutOrStdout(), resp.GetNodes(), output)
		})
}

// clusterNodeView is one server in 'cluster status -o json'.
type clusterNodeView struct {
	NodeID        string `json:"node_id"`
	Address       string `json:"address"`
	Voter         bool   `json:"voter"`
	State         string `json:"state"`
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"last_index"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LeaderID      string `json:"leader_id"`
	LeaderAddress string `json:"leader_address"`
	Error         string `json:"error,omitempty"`
}

func printClusterStatus(w io.Writer, nodes []*clusterv1.NodeStatus, output string) error {
	views := make([]clusterNodeView, len(nodes))
	rows := make([][]string, len(nodes))
	for i, n := range nodes {
		views[i] = clusterNodeView{NodeID: n.GetNodeId(), Address: n.GetAddress(), Voter: n.GetVoter(), State: n.GetState(),
			Term: n.GetTerm(), LastIndex: n.GetLastIndex(), CommitIndex: n.GetCommitIndex(), AppliedIndex: n.GetAppliedIndex(),
			LeaderID: n.GetLeaderId(), LeaderAddress: n.GetLeaderAddress(), Error: n.GetError()}
		v := views[i]
		rows[i] = []string{v.NodeID, v.Address, strconv.FormatBool(v.Voter), v.State, strconv.FormatUint(v.Term, 10),
			strconv.FormatUint(v.LastIndex, 10), strconv.FormatUint(v.AppliedIndex, 10), v.LeaderID}
	}
	if output == "json" {
		return printJSON(w, views)
	}
	return printTable(w, []string{"NODE", "ADDRESS", "VOTER", "STATE", "TERM", "LAST INDEX", "APPLIED", "LEADER"}, rows)
}

func newClusterJoinCmd() *cobra.Command {
	return clusterCmd("join ADDRESS", "Make this server (started alone) join the cluster of the server at ADDRESS",
		`Make the server behind the admin socket — started without raft.bootstrap, so in no cluster yet — join
the cluster of the server whose cluster address (raft.advertise_address, or raft.bind_address) is
ADDRESS. The server proves the join secret of its raft.join_secret_file (the cluster's, the same file on
every server; nothing secret is passed on the command line). The cluster's leader checks that proof, that
the trust domain and raft.cluster_id match, that the node ID and address are not taken and that it can
reach this server, then adds it as a voter. On any failure nothing changes.`,
		"  signet cluster join 10.0.0.1:8300", exactArgs(1, "the cluster address (host:port) of a server of the cluster"), false,
		func(cmd *cobra.Command, c clusterv1.ClusterAdminClient, args []string, _ string) error {
			resp, err := c.Join(cmd.Context(), &clusterv1.AdminJoinRequest{Address: args[0]})
			if err != nil {
				return clusterError("cluster join", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Joined the cluster; its leader is %s at %s.\n", resp.GetLeaderId(), resp.GetLeaderAddress())
			return nil
		})
}

func newClusterRemoveCmd() *cobra.Command {
	return clusterCmd("remove NODE", "Remove a server (a dead one, usually) from the cluster",
		`Remove the server with node ID NODE from the Raft configuration (see 'signet cluster status'). The last
voter, or a node ID that is not in the cluster, is refused.`,
		"  signet cluster remove node-3f1c0a9e22b1", exactArgs(1, "one node ID (see 'signet cluster status')"), false,
		func(cmd *cobra.Command, c clusterv1.ClusterAdminClient, args []string, _ string) error {
			if _, err := c.Remove(cmd.Context(), &clusterv1.RemoveRequest{NodeId: args[0]}); err != nil {
				return clusterError("cluster remove", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed server %s from the cluster.\n", args[0])
			return nil
		})
}
