package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/signet-id/signet/attestor/awsiid"
	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/k8spsat"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/signet-id/signet/attestor/k8s"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/issuer"
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
	// BootstrapExpect, RetryJoin and ClusterID: see cluster.Config.
	BootstrapExpect int
	RetryJoin       []string
	ClusterID       string
	// JoinSecret is raft.join_secret_file's secret (cluster.Config.JoinSecret); nil for none.
	JoinSecret []byte
	// SnapshotThreshold, SnapshotInterval and TrailingLogs: see storage.Config (zero for its defaults).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// CAKeys is where the CA's private keys live; a zero Kind (or disk) means files in DataDir/ca.
	CAKeys keymanager.Config
	// CASchedule is the node's key rotation schedule (ca.ttl, ca.rotation; zero fields: defaults).
	// Keys in a cloud KMS (CAKeys) do not rotate: they use only its TTL.
	CASchedule rotation.Schedule
	// CAUpstream, if set, signs each key slot's X.509 CA as an intermediate (upstream_authority).
	CAUpstream ca.Upstream
	// KeyCheckEvery is server.Config.KeyCheckEvery (zero: the default).
	KeyCheckEvery time.Duration
	// AgentAuth identifies agents; nil means by their TLS client SVID (agentapi.TLSAgentAuth).
	AgentAuth    agentapi.Authenticator
	AgentSVIDTTL time.Duration
	// MinX509SVIDTTL and MinJWTSVIDTTL: zero for the server's defaults.
	MinX509SVIDTTL, MinJWTSVIDTTL time.Duration
	DefaultEntryTTL               time.Duration
	LedgerRetention               time.Duration
	Policy                        *policy.Config
	IssuanceLimits                issuer.IssuanceLimits
	// MinFreeDisk is the free space under DataDir below which issuance stops (0: the server's default).
	MinFreeDisk uint64
	// StateMmapSize is storage.Config.StateMmapSize (0: the storage default).
	StateMmapSize   int64
	DefaultParentID string
	// FederationPoll is server.Config.FederationPoll (zero fields: defaults).
	FederationPoll federation.PollerConfig
	// NodeAttestors are node attestors besides join tokens (which are always on).
	NodeAttestors []agentapi.NodeAttestor
	// OIDC is the OIDC discovery provider and the iss of JWT-SVIDs (zero: off).
	OIDC   oidcSetup
	Logger *slog.Logger
}

// auditCheckpointFile is the node's automatic audit checkpoint, in its data dir's server/.
const auditCheckpointFile = "audit-checkpoint.json"

// serverNode is a running server node: store, CA, server components and the admin API.
type serverNode struct {
	store   *storage.Store
	ca      *ca.CA
	kms     *keymanager.Manager // nil for disk keys
	keys    *rotation.Manager   // nil for keys in a cloud KMS: they do not rotate
	srv     *server.Server
	cluster *cluster.Node
	mux     *cluster.Mux
	admin   *grpc.Server
	health  *health.Server
	// oidcIssuer is the iss of the JWT-SVIDs the node signs ("" for none).
	oidcIssuer string
	cancel     context.CancelFunc
	done       chan struct{}
}

// startServerNode opens the store, starts the cluster port and the admin API, and brings the node into
// its cluster in the background: it never waits to be leader. The node serves credentials once it is
// registered in the cluster (n.cluster.Ready()): its authorities in the bundle and its server SVID
// recorded, through the leader.
func startServerNode(ctx context.Context, cfg serverNodeConfig) (_ *serverNode, err error) {
	log := cfg.Logger
	// The key manager opens first: a wrong PIN or a KMS that does not resolve fails before anything
	// is created in the data dir.
	caDir := filepath.Join(cfg.DataDir, "ca")
	var kms *keymanager.Manager
	if kind := cfg.CAKeys.Kind; kind != "" && kind != keymanager.Disk {
		kc := cfg.CAKeys
		kc.Dir = caDir
		if kms, err = keymanager.Open(ctx, kc); err != nil {
			return nil, fmt.Errorf("ca.key_manager: %w", err)
		}
		defer func() {
			if err != nil {
				kms.Close()
			}
		}()
	}
	oidcLn, err := listenOIDC(&cfg.OIDC)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && oidcLn != nil {
			oidcLn.Close()
		}
	}()
	mux, err := cluster.Listen(cfg.RaftBind, cfg.RaftAdvertise)
	if err != nil {
		return nil, err
	}
	scfg := storage.Config{Dir: filepath.Join(cfg.DataDir, "server"), NodeID: cfg.NodeID, StreamLayer: mux.RaftLayer(),
		Bootstrap: cfg.Bootstrap, Logger: log, StateMmapSize: cfg.StateMmapSize,
		SnapshotThreshold: cfg.SnapshotThreshold, SnapshotInterval: cfg.SnapshotInterval, TrailingLogs: cfg.TrailingLogs}
	st, err := storage.Open(scfg)
	if err != nil {
		mux.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
			mux.Close()
		}
	}()

	var authority *ca.CA
	var rot *rotation.Manager
	if kms == nil || keymanager.Rotates(kms.Kind()) {
		sched := cfg.CASchedule.WithDefaults()
		rc := rotation.Config{Dir: caDir, Schedule: sched, New: rotation.UpstreamFactory(cfg.TrustDomain, sched.TTL, nil, cfg.CAUpstream), Logger: log,
			// The key store of a signet before keys rotated becomes the first slot (with a key manager,
			// its keys keep their names in the module: keymanager.Manager.SlotKeys).
			AdoptFiles: []string{ca.X509KeyFile, ca.JWTKeyFile, ca.X509CertFile, ca.JWTKeyIDFile}}
		if kms != nil {
			rc.New = rotation.KeyManagerFactory(cfg.TrustDomain, sched.TTL, nil, kms.SlotKeys(st.NodeID()))
			rc.Destroy = kms.DestroySlot
		}
		if rot, err = rotation.Open(rc); err != nil {
			return nil, err
		}
		authority = rot.Active()
	} else {
		// Keys in a cloud KMS live under the fixed names of ca.x509_key and ca.jwt_key: one key pair,
		// which does not rotate (Signet creates no cloud keys; docs/configuration.md).
		x509a, jwta, lerr := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: caDir, TrustDomain: cfg.TrustDomain,
			TTL: cfg.CASchedule.WithDefaults().TTL, Keys: kms})
		if lerr != nil {
			return nil, lerr
		}
		if authority, err = ca.New(ca.Config{TrustDomain: cfg.TrustDomain, X509: x509a, JWT: jwta}); err != nil {
			return nil, err
		}
	}
	agentAuth := cfg.AgentAuth
	if agentAuth == nil {
		agentAuth = agentapi.TLSAgentAuth(st, nil)
	}
	adminAuth := adminapi.UnixAdminAuth(cfg.AdminUIDs...)
	selectors, err := selectorRegistry()
	if err != nil {
		return nil, err
	}
	srv, err := server.New(server.Config{Store: st, CA: authority, Keys: rot, KeyCheckEvery: cfg.KeyCheckEvery,
		TrustDomain: cfg.TrustDomain, Selectors: selectors,
		AgentAuth: agentAuth, AdminAuth: adminAuth, AgentSVIDTTL: cfg.AgentSVIDTTL,
		MinX509SVIDTTL: cfg.MinX509SVIDTTL, MinJWTSVIDTTL: cfg.MinJWTSVIDTTL,
		DefaultEntryTTL: cfg.DefaultEntryTTL, LedgerRetention: cfg.LedgerRetention, Policy: cfg.Policy,
		IssuanceLimits: cfg.IssuanceLimits, DataDir: cfg.DataDir, MinFreeDisk: cfg.MinFreeDisk, JWTIssuer: cfg.OIDC.Issuer,
		NodeAttestors:   append([]agentapi.NodeAttestor{&jointoken.Attestor{Store: st, TrustDomain: cfg.TrustDomain}}, cfg.NodeAttestors...),
		FederationPoll:  cfg.FederationPoll,
		DefaultParentID: cfg.DefaultParentID, AuditCheckpointFile: filepath.Join(cfg.DataDir, "server", auditCheckpointFile), Logger: log})
	if err != nil {
		return nil, err
	}
	ident, err := srv.ClusterIdentity()
	if err != nil {
		return nil, err
	}
	cn, err := cluster.New(cluster.Config{Raft: st, Identity: ident, Registrar: ident, TrustDomain: cfg.TrustDomain,
		ClusterID: cfg.ClusterID, BootstrapExpect: cfg.BootstrapExpect, RetryJoin: cfg.RetryJoin, JoinSecret: cfg.JoinSecret, JWTIssuer: cfg.OIDC.Issuer,
		Mux: mux, Logger: log})
	if err != nil {
		return nil, err
	}
	var runOIDC func(context.Context)
	if oidcLn != nil {
		if runOIDC, err = newOIDCProvider(st, cfg.OIDC, oidcLn, log); err != nil {
			return nil, err
		}
	}
	st.SetForwarder(cn)
	go func() {
		if err := cn.Serve(mux.APIListener()); err != nil {
			log.Error("cluster API stopped", "error", err)
		}
	}()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n := &serverNode{store: st, ca: authority, kms: kms, keys: rot, srv: srv, cluster: cn, mux: mux, oidcIssuer: cfg.OIDC.Issuer, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Run(runCtx) })
	wg.Go(func() { _ = cn.Run(runCtx) })
	if runOIDC != nil {
		wg.Go(func() { runOIDC(runCtx) })
	}
	go func() { wg.Wait(); close(n.done) }()
	defer func() {
		if err != nil {
			cancel()
			cn.Close()
			<-n.done
		}
	}()

	dirMode := cfg.AdminSocketDirMode
	if dirMode == 0 {
		dirMode = 0o700
	}
	lis, err := uds.Listen(cfg.AdminSocket, dirMode, 0o600)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	clusterAdmin, err := cluster.NewAdminService(cn, cluster.AdminAuthorizer(adminAuth))
	if err != nil {
		return nil, err
	}
	n.admin = grpc.NewServer(grpc.Creds(peercred.Credentials()))
	adminv1.RegisterAdminServer(n.admin, srv.Admin)
	clusterv1.RegisterClusterAdminServer(n.admin, clusterAdmin)
	n.health = health.NewServer()
	// SERVING once the node can issue: registered in its cluster (a node started alone waits for
	// 'signet cluster join'; a follower for a leader).
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	go func() {
		select {
		case <-cn.Ready():
			n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		case <-runCtx.Done():
		}
	}()
	healthpb.RegisterHealthServer(n.admin, server.NewHealthService(n.health, srv))
	go serveGRPC(log, "admin", n.admin, lis)
	log.Info("server node started", "node", st.NodeID(), "trust_domain", cfg.TrustDomain.Name(), "admin_socket", cfg.AdminSocket,
		"cluster_address", st.Address(), "ca_expires", authority.NotAfter().Format(time.RFC3339),
		"ca_key_manager", cmp.Or(string(cfg.CAKeys.Kind), string(keymanager.Disk)))
	return n, nil
}

// waitReady waits until the node is registered in its cluster (see startServerNode).
func (n *serverNode) waitReady(ctx context.Context) error {
	select {
	case <-n.cluster.Ready():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server node %s: not registered in a cluster: %w", n.store.NodeID(), ctx.Err())
	}
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

// Stop shuts the node down: API first, then the ledger recorder, then (leadership handed over) the
// cluster API and the store.
func (n *serverNode) Stop() {
	if n.health != nil {
		n.health.Shutdown()
	}
	if n.admin != nil {
		stopGRPC(n.admin, time.Second)
	}
	n.cancel()
	<-n.done
	n.store.HandOverLeadership() // while the cluster API still answers the writes forwarded to it
	n.cluster.Close()
	n.store.Close()
	n.mux.Close()
	if n.kms != nil {
		n.kms.Close()
	}
}

// selectorRegistry is every selector type this build's attestors produce: the server validates
// entries against it (the CLI and agents pass on types they do not know).
func selectorRegistry() (*selector.Registry, error) {
	return selector.NewRegistry(unix.SelectorType(), k8s.SelectorType(), jointoken.SelectorType(), k8spsat.SelectorType(), awsiid.SelectorType())
}
