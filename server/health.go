package server

import (
	"context"

	"github.com/signet-id/signet/server/apierr"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// NodeHealth is what the health service asks the node (Server.Health, or storage.Store.Health).
type NodeHealth interface {
	Health() error
}

// HealthService is the gRPC health service of a server node: the statuses set on the embedded
// health.Server, except that Check fails with the node's problem while it has one — a full disk, or a
// disk below min_free_disk where issuance stops (ResourceExhausted, naming the data dir) — so 'signet
// healthcheck' says why the node cannot write or issue.
type HealthService struct {
	*health.Server
	store NodeHealth
}

// NewHealthService wraps statuses with node's health.
func NewHealthService(statuses *health.Server, node NodeHealth) *HealthService {
	return &HealthService{Server: statuses, store: node}
}

// Check reports the node's problem, if any, before the service status.
func (h *HealthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := h.store.Health(); err != nil {
		return nil, apierr.ToStatus(err)
	}
	return h.Server.Check(ctx, req)
}
