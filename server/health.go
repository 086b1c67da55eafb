package server

import (
	"context"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// StoreHealth is what the health service asks the store (storage.Store.Health).
type StoreHealth interface {
	Health() error
}

// HealthService is the gRPC health service of a server node: the statuses set on the embedded
// health.Server, except that Check fails with the store's problem (a full disk: ResourceExhausted,
// naming the data dir) while it has one, so 'signet healthcheck' says why the node cannot write.
type HealthService struct {
	*health.Server
	store StoreHealth
}

// NewHealthService wraps statuses with store's health.
func NewHealthService(statuses *health.Server, store StoreHealth) *HealthService {
	return &HealthService{Server: statuses, store: store}
}

// Check reports the store's problem, if any, before the service status.
func (h *HealthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := h.store.Health(); err != nil {
		return nil, toStatus(err)
	}
	return h.Server.Check(ctx, req)
}
