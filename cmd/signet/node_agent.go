package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/k8s"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// agentNodeConfig is what a node agent is started from.
type agentNodeConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Client reaches the server's agent API.
	Client         agentv1.AgentClient
	WorkloadSocket string
	// SocketDirMode and SocketMode are the Workload API socket's directory and file modes.
	SocketDirMode os.FileMode
	SocketMode    os.FileMode
	// OnBundle and OnRevoked are passed to the agent (see agent.Config).
	OnBundle  func(roots []*x509.Certificate, revokedSigners []string)
	OnRevoked func(err error)
	// JWTMintRate, JWTMintBurst and JWTCacheSize are passed to the agent, MaxHashSize to the Unix
	// attestor (0: their defaults).
	JWTMintRate  float64
	JWTMintBurst int
	JWTCacheSize int
	MaxHashSize  int64
	// NoUnix turns the unix workload attestor off (workload_attestors without unix); K8s, if set,
	// turns the Kubernetes one on. The Workload API unions their selectors.
	NoUnix bool
	K8s    *k8s.Config
	// SDS configures Envoy's secret discovery service, served on the Workload API socket.
	SDS    workloadapi.SDSConfig
	Logger *slog.Logger
}

// agentNode is a running agent: cache and sync, and the Workload API on its socket.
type agentNode struct {
	agent    *agent.Agent
	workload *grpc.Server
	health   *health.Server
	cancel   context.CancelFunc
	done     chan struct{}
}

func startAgentNode(ctx context.Context, cfg agentNodeConfig) (*agentNode, error) {
	a, err := agent.New(agent.Config{Client: cfg.Client, TrustDomain: cfg.TrustDomain, Logger: cfg.Logger,
		OnBundle: cfg.OnBundle, OnRevoked: cfg.OnRevoked,
		JWTMintRate: cfg.JWTMintRate, JWTMintBurst: cfg.JWTMintBurst, JWTCacheSize: cfg.JWTCacheSize})
	if err != nil {
		return nil, err
	}
	attestors, err := workloadAttestors(cfg, a)
	if err != nil {
		return nil, err
	}
	h, err := workloadapi.New(workloadapi.Config{Attestors: attestors, Source: a, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	sds, err := h.SDS(cfg.SDS)
	if err != nil {
		return nil, err
	}
	lis, err := uds.Listen(cfg.WorkloadSocket, cfg.SocketDirMode, cfg.SocketMode)
	if err != nil {
		return nil, fmt.Errorf("workload API socket: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n := &agentNode{agent: a, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); a.Run(runCtx) }()
	n.workload = grpc.NewServer(grpc.Creds(peercred.Credentials()))
	workload.RegisterSpiffeWorkloadAPIServer(n.workload, h)
	// Envoy's SDS on the same socket, attested the same way (docs/envoy.md).
	secretv3.RegisterSecretDiscoveryServiceServer(n.workload, sds)
	// A separate gRPC service on the same endpoint, as the Workload Endpoint spec allows: 'signet
	// healthcheck' asks it. NOT_SERVING until the first entry update and its prefetch SVIDs are in.
	n.health = health.NewServer()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(n.workload, n.health)
	// The agent's status (held SVIDs, outage budget) for its own uid and root: 'signet agent status'.
	self := uint32(os.Getuid())
	agentv1.RegisterAgentStatusServer(n.workload, agent.NewStatusService(a, func(uid uint32) bool { return uid == self || uid == 0 }))
	go serveGRPC(cfg.Logger, "workload", n.workload, lis)
	go func() {
		if a.WaitReady(runCtx) == nil {
			n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		}
	}()
	return n, nil
}

// Stop closes the Workload API and stops syncing.
func (n *agentNode) Stop() {
	n.health.Shutdown()
	stopGRPC(n.workload, time.Second)
	n.cancel()
	<-n.done
}

// workloadAttestors builds the workload attestors the configuration turns on.
func workloadAttestors(cfg agentNodeConfig, a *agent.Agent) ([]workloadapi.Attestor, error) {
	var out []workloadapi.Attestor
	if !cfg.NoUnix {
		// Executables are hashed only while some entry has a unix:sha256 selector.
		att, err := unix.New(unix.Config{Logger: cfg.Logger, MaxHashSize: cfg.MaxHashSize,
			DigestWanted: func() bool { return a.UsesSelector("unix", "sha256") }})
		if err != nil {
			return nil, err
		}
		out = append(out, att)
	}
	if cfg.K8s != nil {
		kc := *cfg.K8s
		kc.Logger = cfg.Logger
		att, err := k8s.New(kc)
		if err != nil {
			return nil, fmt.Errorf("workload_attestors.k8s: %w", err)
		}
		out = append(out, att)
	}
	return out, nil
}
