package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serverNodeConfig is what a server node is started from (by 'signet dev' now, 'signet server' later).
type serverNodeConfig struct {
	DataDir     string
	TrustDomain spiffeid.TrustDomain
	AdminSocket string
	// AdminSocketDirMode is the mode of the admin socket's directory if it is created; 0 means 0700.
	// The socket itself is always 0600.
	AdminSocketDirMode os.FileMode
	AdminUIDs          []uint32
	NodeID             string
	RaftBind           string
	RaftAdvertise      string
	Bootstrap          bool
	FastElection       bool // single-node dev: elect within a few hundred ms
	CATTL              time.Duration
	// AgentAuth identifies agents; nil means by their TLS client SVID (server.TLSAgentAuth).
	AgentAuth    server.Authenticator
	AgentSVIDTTL time.Duration
	// MinX509SVIDTTL and MinJWTSVIDTTL: zero for the server's defaults.
	MinX509SVIDTTL, MinJWTSVIDTTL time.Duration
	DefaultEntryTTL               time.Duration
	LedgerRetention               time.Duration
	Policy                        server.EntryPolicy
	IssuanceLimits                server.IssuanceLimits
	// MinFreeDisk is the free space under DataDir below which issuance stops (0: the server's default).
	MinFreeDisk     uint64
	DefaultParentID string
	Logger          *slog.Logger
}

// auditCheckpointFile is the node's automatic audit checkpoint, in its data dir's server/.
const auditCheckpointFile = "audit-checkpoint.json"

// serverNode is a running server node: store, CA, server components and the admin API.
type serverNode struct {
	store  *storage.Store
	ca     *ca.CA
	srv    *server.Server
	admin  *grpc.Server
	health *health.Server
	cancel context.CancelFunc
	done   chan struct{}
}

func startServerNode(ctx context.Context, cfg serverNodeConfig) (_ *serverNode, err error) {
	log := cfg.Logger
	scfg := storage.Config{Dir: filepath.Join(cfg.DataDir, "server"), NodeID: cfg.NodeID, RaftBind: cfg.RaftBind,
		RaftAdvertise: cfg.RaftAdvertise, Bootstrap: cfg.Bootstrap, Logger: log}
	if cfg.FastElection {
		scfg.HeartbeatTimeout, scfg.ElectionTimeout = 150*time.Millisecond, 150*time.Millisecond
	}
	st, err := storage.Open(scfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	err = st.WaitLeader(waitCtx)
	cancelWait()
	if err != nil {
		return nil, err
	}

	x509a, jwta, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: filepath.Join(cfg.DataDir, "ca"), TrustDomain: cfg.TrustDomain, TTL: cfg.CATTL})
	if err != nil {
		return nil, err
	}
	authority, err := ca.New(ca.Config{TrustDomain: cfg.TrustDomain, X509: x509a, JWT: jwta})
	if err != nil {
		return nil, err
	}
	agentAuth := cfg.AgentAuth
	if agentAuth == nil {
		agentAuth = server.TLSAgentAuth(st, nil)
	}
	srv, err := server.New(server.Config{Store: st, CA: authority, TrustDomain: cfg.TrustDomain,
		AgentAuth: agentAuth, AdminAuth: server.UnixAdminAuth(cfg.AdminUIDs...), AgentSVIDTTL: cfg.AgentSVIDTTL,
		MinX509SVIDTTL: cfg.MinX509SVIDTTL, MinJWTSVIDTTL: cfg.MinJWTSVIDTTL,
		DefaultEntryTTL: cfg.DefaultEntryTTL, LedgerRetention: cfg.LedgerRetention, Policy: cfg.Policy,
		IssuanceLimits: cfg.IssuanceLimits, DataDir: cfg.DataDir, MinFreeDisk: cfg.MinFreeDisk,
		DefaultParentID: cfg.DefaultParentID, AuditCheckpointFile: filepath.Join(cfg.DataDir, "server", auditCheckpointFile), Logger: log})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n := &serverNode{store: st, ca: authority, srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); srv.Run(runCtx) }()
	defer func() {
		if err != nil {
			cancel()
			<-n.done
		}
	}()
	if err := srv.PublishAuthorities(ctx); err != nil {
		return nil, err
	}

	dirMode := cfg.AdminSocketDirMode
	if dirMode == 0 {
		dirMode = 0o700
	}
	lis, err := uds.Listen(cfg.AdminSocket, dirMode, 0o600)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	n.admin = grpc.NewServer(grpc.Creds(peercred.Credentials()))
	adminv1.RegisterAdminServer(n.admin, srv.Admin)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.admin, server.NewHealthService(n.health, srv))
	go serveGRPC(log, "admin", n.admin, lis)
	log.Info("server node ready", "node", st.NodeID(), "trust_domain", cfg.TrustDomain.Name(), "admin_socket", cfg.AdminSocket,
		"ca_expires", authority.NotAfter().Format(time.RFC3339))
	return n, nil
}

func serveGRPC(log *slog.Logger, name string, s *grpc.Server, lis net.Listener) {
	if err := s.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		log.Error("gRPC server stopped", "server", name, "error", err)
	}
}

// stopGRPC stops gracefully, or hard after a grace period (streams never end on their own).
func stopGRPC(s *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.Stop()
		<-done
	}
}

// Stop shuts the node down: API first, then the ledger recorder, then the store.
func (n *serverNode) Stop() {
	if n.health != nil {
		n.health.Shutdown()
	}
	if n.admin != nil {
		stopGRPC(n.admin, time.Second)
	}
	n.cancel()
	<-n.done
	n.store.Close()
}
