package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// AdminAuthorizer decides whether the caller of the admin API is an admin (the server's
// UnixAdminAuth); it returns the admin's name.
type AdminAuthorizer func(ctx context.Context) (string, error)

// AdminService is the cluster side of the admin API (`signet cluster …`), on the admin socket.
type AdminService struct {
	clusterv1.UnimplementedClusterAdminServer
	n    *Node
	auth AdminAuthorizer
}

// NewAdminService returns the admin service of n; auth is required.
func NewAdminService(n *Node, auth AdminAuthorizer) (*AdminService, error) {
	if n == nil || auth == nil {
		return nil, errors.New("cluster: admin service: a node and an authorizer are required")
	}
	return &AdminService{n: n, auth: auth}, nil
}

func (a *AdminService) authorize(ctx context.Context) error {
	if _, err := a.auth(ctx); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// Join makes this node join the cluster of the server at the address.
func (a *AdminService) Join(ctx context.Context, req *clusterv1.AdminJoinRequest) (*clusterv1.AdminJoinResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	if req.GetAddress() == "" || len(req.GetAddress()) > maxIDBytes {
		return nil, status.Errorf(codes.InvalidArgument, "cluster join: the address must be host:port, 1 to %d bytes", maxIDBytes)
	}
	id, addr, err := a.n.Join(ctx, req.GetAddress())
	if err != nil {
		return nil, status.Error(joinCode(err), err.Error())
	}
	return &clusterv1.AdminJoinResponse{LeaderId: id, LeaderAddress: addr}, nil
}

func joinCode(err error) codes.Code {
	switch {
	case errors.Is(err, ErrAlreadyMember), errors.Is(err, ErrWrongCluster), errors.Is(err, ErrPeerRefused), errors.Is(err, ErrNoJoinSecret):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnreachable):
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// Status lists the servers of the configuration, each with the Raft status it reports (or why it did
// not answer).
func (a *AdminService) Status(ctx context.Context, _ *clusterv1.ClusterStatusRequest) (*clusterv1.ClusterStatusResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	members, err := a.n.cfg.Raft.Members()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	self := a.n.cfg.Raft.Status()
	if len(members) == 0 {
		// Not in a cluster yet: this node alone.
		return &clusterv1.ClusterStatusResponse{Nodes: []*clusterv1.NodeStatus{nodeStatus(self)}}, nil
	}
	out := make([]*clusterv1.NodeStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.ID == self.NodeID {
			out[i] = nodeStatus(self)
			out[i].Voter = m.Voter
			continue
		}
		wg.Go(func() { out[i] = a.n.peerStatus(ctx, m) })
	}
	wg.Wait()
	return &clusterv1.ClusterStatusResponse{Nodes: out}, nil
}

func (n *Node) peerStatus(ctx context.Context, m storage.Member) *clusterv1.NodeStatus {
	unreachable := &clusterv1.NodeStatus{NodeId: m.ID, Address: m.Address, Voter: m.Voter, State: "unreachable"}
	cc, err := n.clients.conn(m.Address)
	if err != nil {
		unreachable.Error = err.Error()
		return unreachable
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	st, err := clusterv1.NewClusterClient(cc).Status(ctx, &clusterv1.StatusRequest{})
	if err != nil {
		unreachable.Error = statusMessage(err)
		return unreachable
	}
	st.Voter = m.Voter
	return st
}

// Remove takes a server out of the cluster, through the leader.
func (a *AdminService) Remove(ctx context.Context, req *clusterv1.RemoveRequest) (*clusterv1.RemoveResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	if req.GetNodeId() == "" || len(req.GetNodeId()) > maxIDBytes {
		return nil, status.Errorf(codes.InvalidArgument, "cluster remove: the node ID must be 1 to %d bytes (see `signet cluster status`)", maxIDBytes)
	}
	// While the cluster elects a leader (the one this node knew may be the server being removed), try
	// again until one answers.
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	for {
		err := a.removeOnce(ctx, req)
		if status.Code(err) != codes.Unavailable {
			return &clusterv1.RemoveResponse{}, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(leaderRetry):
		}
	}
}

// removeTimeout bounds how long Remove waits for a leader; leaderRetry is how often it looks again.
const (
	removeTimeout = 30 * time.Second
	leaderRetry   = 100 * time.Millisecond
)

func (a *AdminService) removeOnce(ctx context.Context, req *clusterv1.RemoveRequest) error {
	st := a.n.cfg.Raft.Status()
	if st.LeaderID == st.NodeID {
		return removeStatus(a.n.cfg.Raft.RemoveServer(ctx, req.GetNodeId()))
	}
	if st.LeaderAddress == "" {
		return status.Error(codes.Unavailable, "cluster remove: the cluster has no leader now; a server can be removed only by a majority")
	}
	cc, err := a.n.clients.conn(st.LeaderAddress)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	_, err = clusterv1.NewClusterClient(cc).Remove(ctx, req)
	return err
}

func removeStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrMemberNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, storage.ErrLastVoter):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, storage.ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	default:
		return status.Error(codes.Internal, fmt.Sprintf("cluster remove: %v", err))
	}
}

// Remove is a follower's remove request, on the leader.
func (s *service) Remove(ctx context.Context, req *clusterv1.RemoveRequest) (*clusterv1.RemoveResponse, error) {
	if err := s.authPeer(ctx); err != nil {
		return nil, err
	}
	return &clusterv1.RemoveResponse{}, removeStatus(s.n.cfg.Raft.RemoveServer(ctx, req.GetNodeId()))
}
