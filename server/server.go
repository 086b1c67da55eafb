// Package server wires a Signet server node from its parts: the issuer (server/issuer: authorize, sign,
// record), the agent API (server/agentapi) and the admin API (server/adminapi), each consuming the
// others through small interfaces of its own.
//
//	srv, err := server.New(server.Config{Store: st, CA: authority, TrustDomain: td, …})
//	go srv.Run(ctx)                 // the ledger recorder, pruning and the denial log
//	srv.PublishAuthorities(ctx)     // this node's root and JWT key into the bundle
//	agentv1.RegisterAgentServer(g, srv.Agent)
//	adminv1.RegisterAdminServer(g, srv.Admin)
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/denials"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config configures a server node.
type Config struct {
	Store *storage.Store
	// CA is the node's CA key; with Keys set, its first (Keys.Active() at New).
	CA *ca.CA
	// Keys, if set, rotates the node's CA keys (ca/rotation): Run publishes every prepared, active and
	// old key into the bundle, activates successors on schedule once published, and takes pruned keys
	// out of the bundle. Everything is signed by the active key.
	Keys *rotation.Manager
	// KeyCheckEvery is the longest Run waits between two looks at the key schedule (default
	// DefaultKeyCheckEvery); it also retries a failed publication or removal that often.
	KeyCheckEvery time.Duration
	TrustDomain   spiffeid.TrustDomain
	// Selectors are the selector types entries may use: the registry of the workload and node
	// attestors this server is built with (cmd/signet builds it); required.
	Selectors *selector.Registry
	// AgentAuth identifies agents calling the agent API.
	AgentAuth agentapi.Authenticator
	// AdminAuth identifies admins calling the admin API.
	AdminAuth adminapi.AdminAuthenticator
	// DefaultParentID is the parent of entries created without one (dev mode only).
	DefaultParentID string
	// NodeAttestors are the node attestors agents may attest with (agentapi.AgentServiceConfig; default:
	// join tokens only).
	NodeAttestors []agentapi.NodeAttestor
	// AgentSVIDTTL is the lifetime of agent SVIDs (default agentapi.DefaultAgentSVIDTTL), at least 10 s;
	// the configuration (cmd/signet) requires agentapi.MinAgentSVIDTTL.
	AgentSVIDTTL time.Duration
	// DefaultEntryTTL is the lifetime of entries created without an expiry (default
	// adminapi.DefaultEntryLifetime).
	DefaultEntryTTL time.Duration
	// LedgerRetention is how long issuance records are kept (default DefaultLedgerRetention; at least
	// storage.MaxCredentialLifetime, so every still-valid credential can be looked up).
	LedgerRetention time.Duration
	// Policy, if set, is this server's configured entry policy: it seeds the cluster's replicated policy
	// when there is none (AdminServiceConfig.Policy).
	Policy *policy.Config
	// MinX509SVIDTTL and MinJWTSVIDTTL are the shortest SVID lifetimes entries may ask (zero: the
	// defaults adminapi.MinX509SVIDTTL and MinJWTSVIDTTL): every SVID is kept in the ledger for its retention.
	MinX509SVIDTTL, MinJWTSVIDTTL time.Duration
	// IssuanceLimits are the per-agent and per-entry issuance rate limits (zero fields: defaults).
	IssuanceLimits issuer.IssuanceLimits
	// JWTIssuer, if set, is the iss claim of the JWT-SVIDs this node signs (issuer.IssuerConfig), the
	// issuer URL of the OIDC discovery provider (server/oidc); the same on every server of a cluster.
	JWTIssuer string
	// DataDir, if set, is the server's data directory: below MinFreeDisk bytes free on its file system
	// (default issuer.DefaultMinFreeDisk, measured by FreeDisk, default issuer.StatfsFree) the server
	// refuses to issue.
	DataDir     string
	MinFreeDisk uint64
	FreeDisk    issuer.FreeDiskFunc
	// AuditCheckpointFile, if set, is where the node keeps its latest automatic audit checkpoint (see
	// adminapi/checkpoint.go), renewed every AuditCheckpointEvery (default
	// adminapi.DefaultAuditCheckpointEvery) when the log grew, and at shutdown.
	AuditCheckpointFile  string
	AuditCheckpointEvery time.Duration
	// FederationPoll configures the fetching of federated trust domains' bundles, on the leader
	// (federation.PollerConfig; its Store is the server's, its Clock and Logger default to the server's).
	FederationPoll federation.PollerConfig
	Clock          func() time.Time
	Logger         *slog.Logger
}

// Server bundles the components of one server node.
type Server struct {
	cfg      Config
	Recorder *issuer.Recorder
	// Deliveries group-commits agents' delivery reports (run by Run).
	Deliveries *agentapi.DeliveryRecorder
	// Denials carries refused requests of both APIs to the audit log (run by Run).
	Denials *denials.DenialLog
	Issuer  *issuer.Issuer
	Agent   *agentapi.AgentService
	Admin   *adminapi.AdminService
	// retireMu serializes RetireRevoked.
	retireMu sync.Mutex
	// advanceMu serializes AdvanceKeys (the key loop's and a caller's, such as a test's).
	advanceMu sync.Mutex
	// Federation fetches federated trust domains' bundles (run by Run; on the leader only).
	Federation *federation.Poller
}

// New builds a server node's components from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Keys != nil {
		cfg.CA = cfg.Keys.Active()
	}
	if cfg.Store == nil || cfg.CA == nil {
		return nil, errors.New("server: config: Store and CA (or Keys) are required")
	}
	if cfg.KeyCheckEvery <= 0 {
		cfg.KeyCheckEvery = DefaultKeyCheckEvery
	}
	s := &Server{cfg: cfg}
	var issuerKeys issuer.ActiveKey
	var adminKeys adminapi.KeyRing
	var keyAdmin adminapi.KeyAdmin
	var revoker adminapi.KeyRevoker
	var maxSVIDTTL time.Duration
	if cfg.Keys != nil {
		issuerKeys, adminKeys, keyAdmin, revoker, maxSVIDTTL = cfg.Keys, cfg.Keys, s, s, cfg.Keys.Schedule().MaxSVIDTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AuditCheckpointEvery <= 0 {
		cfg.AuditCheckpointEvery = adminapi.DefaultAuditCheckpointEvery
	}
	rec, err := issuer.NewRecorder(issuer.RecorderConfig{Appender: cfg.Store})
	if err != nil {
		return nil, err
	}
	iss, err := issuer.NewIssuer(issuer.IssuerConfig{Store: cfg.Store, CA: cfg.CA, Keys: issuerKeys, Recorder: rec, NodeID: cfg.Store.NodeID(),
		Limits: cfg.IssuanceLimits, JWTIssuer: cfg.JWTIssuer, DataDir: cfg.DataDir, MinFreeDisk: cfg.MinFreeDisk, FreeDisk: cfg.FreeDisk, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	denialLog := denials.NewDenialLog(cfg.Store, cfg.Clock, cfg.Logger)
	deliveries := agentapi.NewDeliveryRecorder(cfg.Store)
	agent, err := agentapi.NewAgentService(agentapi.AgentServiceConfig{Store: cfg.Store, Issuer: iss, TrustDomain: cfg.TrustDomain,
		Authenticate: cfg.AgentAuth, AgentSVIDTTL: cfg.AgentSVIDTTL, NodeAttestors: cfg.NodeAttestors, Denials: denialLog, Deliveries: deliveries, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.LedgerRetention == 0:
		cfg.LedgerRetention = DefaultLedgerRetention
	case cfg.LedgerRetention < storage.MaxCredentialLifetime:
		return nil, fmt.Errorf("server: config: LedgerRetention %s: at least %s, the longest a credential can live", cfg.LedgerRetention, storage.MaxCredentialLifetime)
	}
	pc := cfg.FederationPoll
	pc.Store = cfg.Store
	if pc.Clock == nil {
		pc.Clock = cfg.Clock
	}
	if pc.Logger == nil {
		pc.Logger = cfg.Logger
	}
	poller, err := federation.NewPoller(pc)
	if err != nil {
		return nil, err
	}
	admin, err := adminapi.NewAdminService(adminapi.AdminServiceConfig{Store: cfg.Store, CA: cfg.CA, Keys: adminKeys, KeyAdmin: keyAdmin, Revoker: revoker, MaxSVIDTTL: maxSVIDTTL, TrustDomain: cfg.TrustDomain, Selectors: cfg.Selectors,
		Authenticate: cfg.AdminAuth, MinX509SVIDTTL: cfg.MinX509SVIDTTL, MinJWTSVIDTTL: cfg.MinJWTSVIDTTL, DefaultParentID: cfg.DefaultParentID, DefaultEntryTTL: cfg.DefaultEntryTTL,
		Policy: cfg.Policy, Denials: denialLog, AuditCheckpointFile: cfg.AuditCheckpointFile, Federation: poller, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s.cfg, s.Recorder, s.Deliveries, s.Denials, s.Issuer, s.Agent, s.Admin, s.Federation = cfg, rec, deliveries, denialLog, iss, agent, admin, poller
	return s, nil
}

// Health reports whether this node can do its job as far as its disk goes: the store's problem (a full
// disk, storage.ErrDiskFull), or apierr.ErrResourceExhausted while the data dir's file system is
// below MinFreeDisk and issuance is refused. A HealthService reports it.
func (s *Server) Health() error {
	if err := s.cfg.Store.Health(); err != nil {
		return err
	}
	return s.Issuer.CheckDisk()
}

// AgentTLSConfig is the TLS configuration of this node's agent API listener
// (agentapi.ServerTLSConfig): the issuer's server SVID, agents verified against the store's bundle by
// the node's clock.
func (s *Server) AgentTLSConfig(ctx context.Context) (*tls.Config, error) {
	return agentapi.ServerTLSConfig(ctx, s.Issuer, s.cfg.Store, s.cfg.Clock)
}

// DefaultLedgerRetention is how long issuance records are kept by default.
const DefaultLedgerRetention = 90 * 24 * time.Hour

// pruneEvery is how often the leader removes ledger records past retention.
const pruneEvery = time.Hour

// Run runs the ledger and delivery recorders, the denial log, automatic audit checkpoints, seeding the
// cluster's entry policy from the configuration and, on the leader, retention pruning and the fetching
// of federated bundles, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.pruneLoop(ctx) })
	wg.Go(func() { s.Denials.Run(ctx) })
	wg.Go(func() { s.checkpointLoop(ctx) })
	wg.Go(func() { s.Deliveries.Run(ctx) })
	wg.Go(func() { s.Admin.SeedPolicy(ctx) })
	wg.Go(func() { s.keysLoop(ctx) })
	wg.Go(func() { s.Federation.Run(ctx) })
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

// PublishAuthorities adds this node's X.509 root and JWT key (with rotating keys, those of every live
// slot) to the trust bundle (idempotent), so every node and agent trusts what this node signs. It must
// succeed before the node signs anything.
func (s *Server) PublishAuthorities(ctx context.Context) error {
	if s.cfg.Keys != nil {
		return s.publishSlots(ctx)
	}
	return s.publishCA(ctx, s.cfg.CA)
}

// publishCA puts one CA of this node into the bundle (idempotent).
func (s *Server) publishCA(ctx context.Context, c *ca.CA) error {
	return s.publish(ctx, s.cfg.Store.NodeID(), c.X509Roots(), c.NotAfter(), c.JWTPublicKey(), c.JWTKeyID())
}

// authority is the node's CA that signs now.
func (s *Server) authority() *ca.CA {
	if s.cfg.Keys != nil {
		return s.cfg.Keys.Active()
	}
	return s.cfg.CA
}

// checkpointLoop renews the automatic audit checkpoint at start, every AuditCheckpointEvery, and once
// more when ctx ends (the store is still open then).
func (s *Server) checkpointLoop(ctx context.Context) {
	if s.cfg.AuditCheckpointFile == "" {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Admin.RenewCheckpoint()
			return
		case <-t.C:
		}
		s.Admin.RenewCheckpoint()
		t.Reset(s.cfg.AuditCheckpointEvery)
	}
}
