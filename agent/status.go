package agent

import (
	"context"
	"time"

	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/proto/agentv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusService serves the agent's status (agentv1.AgentStatus): the SVIDs it holds and, for each, how
// long it could keep serving it if the server became unreachable now. It tells which identities are in
// use on the node, so only callers whose peer uid allow admits may read it.
type StatusService struct {
	agentv1.UnimplementedAgentStatusServer
	a     *Agent
	allow func(uid uint32) bool
}

// NewStatusService returns the status service of a, for callers (on a Unix socket with peer
// credentials) whose uid allow admits.
func NewStatusService(a *Agent, allow func(uid uint32) bool) *StatusService {
	return &StatusService{a: a, allow: allow}
}

// Status implements agentv1.AgentStatusServer.
func (s *StatusService) Status(ctx context.Context, _ *agentv1.AgentStatusRequest) (*agentv1.AgentStatusResponse, error) {
	peer, ok := peercred.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "agent status: caller credentials unavailable: ask on the agent's Unix socket")
	}
	if !s.allow(peer.UID) {
		return nil, status.Errorf(codes.PermissionDenied, "agent status: uid %d may not read it: only the agent's own uid and root may", peer.UID)
	}
	now := s.a.cfg.Clock()
	out := &agentv1.AgentStatusResponse{Now: now.UnixNano()}
	for i, h := range s.a.Held() {
		budget := int64(max(h.ExpiresAt.Sub(now), 0) / time.Second)
		out.Svids = append(out.Svids, &agentv1.HeldSVID{EntryId: h.EntryID, SpiffeId: h.SPIFFEID, Serial: h.Serial,
			ExpiresAt: h.ExpiresAt.UnixNano(), Prefetch: h.Prefetch, OutageBudgetSeconds: budget})
		if i == 0 || budget < out.MinOutageBudgetSeconds {
			out.MinOutageBudgetSeconds = budget
		}
	}
	return out, nil
}
