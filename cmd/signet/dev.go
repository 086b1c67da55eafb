package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/server/oidc"
	"github.com/signet-id/signet/storage"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// The dev Workload API socket's modes: open to every local user, like the agent's defaults.
const (
	devSocketDirMode = 0o755
	devSocketMode    = 0o666
)

type devOptions struct {
	dataDir        string
	trustDomain    string
	workloadSocket string
	adminSocket    string
	logLevel       string
	caTTL          time.Duration
	// oidcListen and oidcIssuer turn on the OIDC discovery provider (plain HTTP, loopback only).
	oidcListen, oidcIssuer string
	// bundleEndpoint and bundleRefreshHint: the SPIFFE bundle endpoint (https_spiffe), off when empty.
	bundleEndpoint    string
	bundleRefreshHint time.Duration
}

func newDevCmd() *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a server and an agent in one process, with an identity for you",
		Long: `Run Signet in dev mode: one process holding a single-node server (Raft with one voter, the same
code path as a cluster) and a node agent serving the SPIFFE Workload API on a Unix socket (and
Envoy's SDS on the same socket: docs/envoy.md, make example-envoy).

Dev mode registers, idempotently, an owner for the invoking OS user and the entry
spiffe://<trust-domain>/dev/<user> selected by unix:uid:<uid>. Its state (Raft log, registry, ledger,
CA keys) is kept in --data-dir, so a restart keeps everything.

The Workload API socket is open to every local user (mode 0666 in a 0755 directory), as an agent's is:
register an entry for another uid ('signet entry create --selector unix:uid:<uid>') and that user's
processes get its SVIDs. They must also be able to enter the directories above it: $XDG_RUNTIME_DIR is
usually yours alone (0700), so to serve other users choose a --socket they can reach, such as
/tmp/signet-dev/agent.sock (dev prints a note when they cannot). The admin socket stays 0600, for you
and root.

--oidc-listen serves the OIDC discovery document and JWK Set of the JWT-SVID keys (docs/oidc.md) over
plain HTTP on a loopback address, and JWT-SVIDs then carry iss: --oidc-issuer, or http://<that address>.`,
		Example: `  signet dev
  export SPIFFE_ENDPOINT_SOCKET=unix://$XDG_RUNTIME_DIR/signet/agent.sock   # as printed; else /tmp/signet-<uid>/
  signet svid fetch
  signet dev --oidc-listen 127.0.0.1:8090   # JWT-SVIDs carry iss http://127.0.0.1:8090`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDevDataDir(), "directory for the dev server's state")
	f.StringVar(&o.trustDomain, "trust-domain", "example.org", "trust domain of the issued SPIFFE IDs")
	f.StringVar(&o.workloadSocket, "socket", defaultWorkloadSocket(), "Workload API socket path")
	f.StringVar(&o.adminSocket, "admin-socket", defaultAdminSocket(), "admin API socket path")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&o.caTTL, "ca-ttl", ca.DefaultCATTL, "lifetime of each CA key; keys rotate at half life (docs/configuration.md, ca.ttl)")
	f.StringVar(&o.oidcListen, "oidc-listen", "", "serve the OIDC discovery provider over plain HTTP on this loopback host:port (docs/oidc.md)")
	f.StringVar(&o.oidcIssuer, "oidc-issuer", "", "the iss of JWT-SVIDs and the provider's issuer URL (default http://<--oidc-listen address>)")
	f.StringVar(&o.bundleEndpoint, "bundle-endpoint-address", "", "serve the trust bundle to other trust domains (SPIFFE bundle endpoint, profile https_spiffe) on this host:port; off when empty (docs/federation.md)")
	f.DurationVar(&o.bundleRefreshHint, "bundle-refresh-hint", federation.DefaultRefreshHint, "spiffe_refresh_hint of the served bundle")
	return cmd
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

var spiffePathSegment = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func runDev(ctx context.Context, o devOptions) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	if err := (rotation.Schedule{TTL: o.caTTL}).WithDefaults().Validate(); err != nil {
		return usagef("--ca-ttl %s: at least %s (keys rotate at half life; SVIDs live at most an eighth of it, 30 days at most)", o.caTTL, rotation.MinTTL)
	}
	td, err := parseTrustDomain(o.trustDomain)
	if err != nil {
		return usagef("--trust-domain %v", err)
	}
	oidcSetup, err := devOIDC(o)
	if err != nil {
		return err
	}
	devAgentID, err := spiffeid.FromPath(td, issuer.ReservedPathPrefix+"agent/dev")
	if err != nil {
		return err
	}
	uid := uint32(os.Getuid())
	var bundleLis net.Listener
	if o.bundleEndpoint != "" {
		if err := federation.CheckRefreshHint(o.bundleRefreshHint); err != nil {
			return usagef("--bundle-refresh-hint: %v", err)
		}
		if bundleLis, err = net.Listen("tcp", o.bundleEndpoint); err != nil {
			return usagef("--bundle-endpoint-address %q: %v", o.bundleEndpoint, err)
		}
		defer bundleLis.Close()
	}
	// The Workload API socket serves every local user (attestation decides what each gets): 0666 in a
	// 0755 directory, as the agent's default. If the admin socket shares that directory, the directory
	// must stay traversable; the admin socket is 0600 and checks its callers' uid either way.
	adminDirMode := os.FileMode(0o700)
	if filepath.Dir(o.adminSocket) == filepath.Dir(o.workloadSocket) {
		adminDirMode = devSocketDirMode
	}
	node, err := startServerNode(ctx, serverNodeConfig{
		DataDir: o.dataDir, TrustDomain: td, AdminSocket: o.adminSocket, AdminSocketDirMode: adminDirMode, AdminUIDs: adminUIDs(uid),
		RaftBind: "127.0.0.1:0", Bootstrap: true, CASchedule: rotation.Schedule{TTL: o.caTTL},
		AgentAuth: func(context.Context) (agentapi.Caller, error) {
			// Only the in-process agent can reach this agent API: there is no network listener.
			return agentapi.Caller{AgentID: devAgentID, NodeAttestation: "dev"}, nil
		},
		DefaultParentID: devAgentID.String(), OIDC: oidcSetup, Logger: log,
	})
	if err != nil {
		return err
	}
	defer node.Stop()
	readyCtx, cancelReady := context.WithTimeout(ctx, 30*time.Second)
	err = node.waitReady(readyCtx)
	cancelReady()
	if err != nil {
		return err
	}

	// The agent talks to the server over the real agent API, on an in-memory connection.
	lis := bufconn.Listen(1 << 20)
	agentAPI := grpc.NewServer()
	agentv1.RegisterAgentServer(agentAPI, node.srv.Agent)
	go serveGRPC(log, "agent-api", agentAPI, lis)
	defer stopGRPC(agentAPI, time.Second)
	conn, err := grpc.NewClient("passthrough:///signet-dev-server",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dev: connect agent to server: %w", err)
	}
	defer conn.Close()

	id, owner, err := ensureDevIdentity(ctx, node, td, uid)
	if err != nil {
		return err
	}
	if bundleLis != nil {
		stop, err := startBundleEndpoint(ctx, node, td, bundleLis, bundleEndpointOptions{Profile: federation.ProfileHTTPSSPIFFE, RefreshHint: o.bundleRefreshHint}, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	an, err := startAgentNode(ctx, agentNodeConfig{TrustDomain: td, Client: agentv1.NewAgentClient(conn), WorkloadSocket: o.workloadSocket,
		SocketDirMode: devSocketDirMode, SocketMode: devSocketMode, Logger: log})
	if err != nil {
		return err
	}
	defer an.Stop()
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = an.agent.WaitReady(readyCtx)
	cancel()
	if err != nil {
		return err
	}

	fmt.Printf("Signet dev is running (trust domain %s, data in %s).\n", td.Name(), o.dataDir)
	fmt.Printf("Your identity: %s (owner %s, selector unix:uid:%d)\n", id, owner, uid)
	fmt.Printf("export SPIFFE_ENDPOINT_SOCKET=unix://%s\n", o.workloadSocket)
	fmt.Printf("export SIGNET_ADMIN_SOCKET=%s\n", o.adminSocket)
	if bundleLis != nil {
		fmt.Printf("Bundle endpoint: %s (https_spiffe, endpoint SPIFFE ID %s).\n", bundleEndpointURL(bundleLis), serverSVIDID(td, node.store.NodeID()))
	}
	if dir, mode, ok := uds.OthersCanReach(o.workloadSocket); !ok {
		fmt.Printf("Note: other local users cannot reach the Workload API socket: %s has mode %04o (chmod o+x it, or choose --socket in a directory they can enter).\n", dir, mode)
	}
	if oidcSetup.Listen != "" {
		fmt.Printf("OIDC discovery: %s/.well-known/openid-configuration (JWT-SVIDs carry iss %s)\n", node.oidcIssuer, node.oidcIssuer)
	}
	fmt.Println("Press Ctrl-C to stop.")
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// devOIDC checks --oidc-listen and --oidc-issuer: dev serves plain HTTP, so on a loopback address only.
func devOIDC(o devOptions) (oidcSetup, error) {
	if o.oidcListen == "" {
		if o.oidcIssuer != "" {
			return oidcSetup{}, usagef("--oidc-issuer needs --oidc-listen (e.g. 127.0.0.1:8090)")
		}
		return oidcSetup{}, nil
	}
	host, _, err := net.SplitHostPort(o.oidcListen)
	if err != nil {
		return oidcSetup{}, usagef("--oidc-listen %q: want host:port, e.g. 127.0.0.1:8090", o.oidcListen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return oidcSetup{}, usagef("--oidc-listen %q: dev serves plain HTTP, so only on a loopback address such as 127.0.0.1:8090 (signet server serves HTTPS: docs/oidc.md)", o.oidcListen)
	}
	if o.oidcIssuer != "" {
		if _, err := oidc.ParseIssuer(o.oidcIssuer, true); err != nil {
			return oidcSetup{}, usagef("--oidc-issuer: %v", err)
		}
	}
	return oidcSetup{Listen: o.oidcListen, ListenKey: "--oidc-listen", Issuer: o.oidcIssuer, AllowHTTP: true}, nil
}

// adminUIDs is who may use the admin socket: the invoking user and root.
func adminUIDs(uid uint32) []uint32 {
	if uid == 0 {
		return []uint32{0}
	}
	return []uint32{uid, 0}
}

// ensureDevIdentity registers the invoking user as an owner and an entry for its uid, unless present.
func ensureDevIdentity(ctx context.Context, node *serverNode, td spiffeid.TrustDomain, uid uint32) (spiffeid.ID, string, error) {
	name := "uid-" + strconv.FormatUint(uint64(uid), 10)
	if u, err := user.Current(); err == nil && spiffePathSegment.MatchString(u.Username) {
		name = u.Username
	}
	if _, err := node.store.EnsureOwner(ctx, storage.Owner{Name: name, Kind: "person", DisplayName: name,
		CreatedAt: time.Now().UTC().Truncate(time.Second), CreatedBy: "signet dev"}); err != nil {
		return spiffeid.ID{}, "", fmt.Errorf("dev: register owner %q: %w", name, err)
	}
	id, err := spiffeid.FromSegments(td, "dev", name)
	if err != nil {
		return spiffeid.ID{}, "", fmt.Errorf("dev: SPIFFE ID for %q: %w", name, err)
	}
	sel, err := selector.Parse("unix:uid:" + strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return spiffeid.ID{}, "", err
	}
	ttl := min(adminapi.DefaultSVIDTTL, node.keys.Schedule().MaxSVIDTTL) // a short --ca-ttl shortens SVIDs
	e := storage.Entry{SPIFFEID: id.String(), Selectors: []selector.Selector{sel}, Owner: name, Purpose: "dev mode",
		X509TTL: ttl, JWTTTL: ttl, NeverExpires: true}
	if _, _, err := node.srv.Admin.EnsureEntry(ctx, e, "signet dev"); err != nil {
		return spiffeid.ID{}, "", fmt.Errorf("dev: register entry %s: %w", id, err)
	}
	return id, name, nil
}
