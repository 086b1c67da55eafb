// Package server is a Signet server node: the agent API (entry sync, SVID signing), the admin API, and
// the issuance path that ties the registry, the CA and the ledger together.
//
//	srv, err := server.New(server.Config{Store: st, CA: authority, TrustDomain: td, …})
//	go srv.Run(ctx)                 // the ledger recorder, pruning and the denial log
//	srv.PublishAuthorities(ctx)     // this node's root and JWT key into the bundle
//	agentv1.RegisterAgentServer(g, srv.Agent)
//	adminv1.RegisterAdminServer(g, srv.Admin)
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config configures a server node.
type Config struct {
	Store       *storage.Store
	CA          *ca.CA
	TrustDomain spiffeid.TrustDomain
	// Selectors are the selector types entries may use: the registry of the workload and node
	// attestors this server is built with (cmd/signet builds it); required.
	Selectors *selector.Registry
	// AgentAuth identifies agents calling the agent API.
	AgentAuth Authenticator
	// AdminAuth identifies admins calling the admin API.
	AdminAuth AdminAuthenticator
	// DefaultParentID is the parent of entries created without one (dev mode only).
	DefaultParentID string
	// AgentSVIDTTL is the lifetime of agent SVIDs (default DefaultAgentSVIDTTL), at least 10 s; the
	// configuration (cmd/signet) requires MinAgentSVIDTTL.
	AgentSVIDTTL time.Duration
	// DefaultEntryTTL is the lifetime of entries created without an expiry (default DefaultEntryLifetime).
	DefaultEntryTTL time.Duration
	// LedgerRetention is how long issuance records are kept (default DefaultLedgerRetention; at least
	// storage.MaxCredentialLifetime, so every still-valid credential can be looked up).
	LedgerRetention time.Duration
	// Policy, if set, is evaluated on every entry create and update.
	Policy EntryPolicy
	// MinX509SVIDTTL and MinJWTSVIDTTL are the shortest SVID lifetimes entries may ask (zero: the
	// defaults MinX509SVIDTTL and MinJWTSVIDTTL): every SVID is kept in the ledger for its retention.
	MinX509SVIDTTL, MinJWTSVIDTTL time.Duration
	// IssuanceLimits are the per-agent and per-entry issuance rate limits (zero fields: defaults).
	IssuanceLimits IssuanceLimits
	// DataDir, if set, is the server's data directory: below MinFreeDisk bytes free on its file system
	// (default DefaultMinFreeDisk, measured by FreeDisk, default StatfsFree) the server refuses to issue.
	DataDir     string
	MinFreeDisk uint64
	FreeDisk    FreeDiskFunc
	// AuditCheckpointFile, if set, is where the node keeps its latest automatic audit checkpoint (see
	// checkpoint.go), renewed every AuditCheckpointEvery (default DefaultAuditCheckpointEvery) when the
	// log grew, and at shutdown.
	AuditCheckpointFile  string
	AuditCheckpointEvery time.Duration
	Clock                func() time.Time
	Logger               *slog.Logger
}

// Server bundles the components of one server node.
type Server struct {
	cfg      Config
	Recorder *Recorder
	// Deliveries group-commits agents' delivery reports (run by Run).
	Deliveries *DeliveryRecorder
	// Denials carries refused requests of both APIs to the audit log (run by Run).
	Denials *DenialLog
	Issuer  *Issuer
	Agent   *AgentService
	Admin   *AdminService
}

// New builds a server node's components from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.CA == nil {
		return nil, errors.New("server: config: Store and CA are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AuditCheckpointEvery <= 0 {
		cfg.AuditCheckpointEvery = DefaultAuditCheckpointEvery
	}
	rec, err := NewRecorder(RecorderConfig{Appender: cfg.Store})
	if err != nil {
		return nil, err
	}
	iss, err := NewIssuer(IssuerConfig{Store: cfg.Store, CA: cfg.CA, Recorder: rec, NodeID: cfg.Store.NodeID(),
		Limits: cfg.IssuanceLimits, DataDir: cfg.DataDir, MinFreeDisk: cfg.MinFreeDisk, FreeDisk: cfg.FreeDisk, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	denials := NewDenialLog(cfg.Store, cfg.Clock, cfg.Logger)
	deliveries := NewDeliveryRecorder(cfg.Store)
	agent, err := NewAgentService(AgentServiceConfig{Store: cfg.Store, Issuer: iss, TrustDomain: cfg.TrustDomain,
		Authenticate: cfg.AgentAuth, AgentSVIDTTL: cfg.AgentSVIDTTL, Denials: denials, Deliveries: deliveries, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.LedgerRetention == 0:
		cfg.LedgerRetention = DefaultLedgerRetention
	case cfg.LedgerRetention < storage.MaxCredentialLifetime:
		return nil, fmt.Errorf("server: config: LedgerRetention %s: at least %s, the longest a credential can live", cfg.LedgerRetention, storage.MaxCredentialLifetime)
	}
	admin, err := NewAdminService(AdminServiceConfig{Store: cfg.Store, CA: cfg.CA, TrustDomain: cfg.TrustDomain, Selectors: cfg.Selectors,
		Authenticate: cfg.AdminAuth, MinX509SVIDTTL: cfg.MinX509SVIDTTL, MinJWTSVIDTTL: cfg.MinJWTSVIDTTL, DefaultParentID: cfg.DefaultParentID, DefaultEntryTTL: cfg.DefaultEntryTTL,
		Policy: cfg.Policy, Denials: denials, AuditCheckpointFile: cfg.AuditCheckpointFile, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, Recorder: rec, Deliveries: deliveries, Denials: denials, Issuer: iss, Agent: agent, Admin: admin}, nil
}

// Health reports whether this node can do its job as far as its disk goes: the store's problem (a full
// disk, storage.ErrDiskFull), or ErrResourceExhausted while the data dir's file system is below
// MinFreeDisk and issuance is refused. A HealthService reports it.
func (s *Server) Health() error {
	if err := s.cfg.Store.Health(); err != nil {
		return err
	}
	return s.Issuer.disk.check()
}

// DefaultLedgerRetention is how long issuance records are kept by default.
const DefaultLedgerRetention = 90 * 24 * time.Hour

// pruneEvery is how often the leader removes ledger records past retention.
const pruneEvery = time.Hour

// Run runs the ledger and delivery recorders, the denial log, automatic audit checkpoints and, on the
// leader, retention pruning, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.pruneLoop(ctx) })
	wg.Go(func() { s.Denials.Run(ctx) })
	wg.Go(func() { s.checkpointLoop(ctx) })
	wg.Go(func() { s.Deliveries.Run(ctx) })
	s.Recorder.Run(ctx)
	wg.Wait()
}

// pruneLoop removes ledger records older than the retention, through Raft (so every node prunes the
// same records), in bounded commands.
func (s *Server) pruneLoop(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(pruneEvery)
		if !s.cfg.Store.IsLeader() {
			continue
		}
		before := s.cfg.Clock().Add(-s.cfg.LedgerRetention)
		total := 0
		for {
			n, err := s.cfg.Store.PruneLedger(ctx, before, 500)
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Logger.Warn("ledger pruning failed; will retry", "error", err)
				}
				break
			}
			total += n
			if n < 500 {
				break
			}
		}
		if total > 0 {
			s.cfg.Logger.Info("ledger pruned", "batches", total, "before", before.Format(time.RFC3339))
		}
	}
}

// PublishAuthorities adds this node's X.509 root and JWT key to the trust bundle (idempotent), so every
// node and agent trusts what this node signs. It must succeed before the node signs anything.
func (s *Server) PublishAuthorities(ctx context.Context) error {
	root := s.cfg.CA.X509Authority()
	return s.publish(ctx, s.cfg.Store.NodeID(), root, s.cfg.CA.JWTPublicKey(), s.cfg.CA.JWTKeyID(), s.cfg.CA.NotAfter())
}
