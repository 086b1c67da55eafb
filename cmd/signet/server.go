package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/issuer"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

func newServerCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Signet server node",
		Long: `Run a server node: the registry, the CA and the issuance ledger in Raft, the agent API on TCP
(TLS 1.3; agents authenticate with their agent SVID) and the admin API on a local Unix socket. With
the oidc section, JWT-SVIDs carry oidc.issuer as iss and the server can serve the OIDC discovery
document and JWK Set of the trust domain's JWT keys on a listener of its own (docs/oidc.md).

Every configuration key, with its default, is in docs/configuration.md; examples/config/server.yaml is a
commented example.`,
		Example: `  signet server --config /etc/signet/server.yaml
  signet bundle show > bundle.pem          # the trust bundle agents bootstrap with
  signet token create --owner alice --ttl 10m`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("--config is required (see examples/config/server.yaml)")
			}
			return runServer(cmd.Context(), configPath)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "server configuration file (YAML)")
	return cmd
}

func runServer(ctx context.Context, path string) error {
	c, td, err := loadServerConfig(path)
	if err != nil {
		return err
	}
	log, err := newLogger(c.LogLevel)
	if err != nil {
		return err
	}
	uids := c.AdminUIDs
	if len(uids) == 0 {
		uids = adminUIDs(uint32(os.Getuid()))
	}
	// Bind the agent API first: a taken port fails before any state is touched.
	lis, err := net.Listen("tcp", c.BindAddress)
	if err != nil {
		return fmt.Errorf("config %s: bind_address %q: %w", path, c.BindAddress, err)
	}
	defer lis.Close()
	var bundleLis net.Listener
	if be := c.Federation.BundleEndpoint; be.ListenAddress != "" {
		if bundleLis, err = net.Listen("tcp", be.ListenAddress); err != nil {
			return fmt.Errorf("config %s: federation.bundle_endpoint.listen_address %q: %w", path, be.ListenAddress, err)
		}
		defer bundleLis.Close()
	}
	var pol *policy.Config // validated by loadServerConfig; it only seeds a cluster that has no policy
	if len(c.Policy.Rules) > 0 {
		pol = &c.Policy
	}
	node, err := startServerNode(ctx, serverNodeConfig{
		DataDir: c.DataDir, TrustDomain: td, AdminSocket: c.AdminSocket, AdminUIDs: uids,
		DefaultEntryTTL: c.DefaultEntryTTL, LedgerRetention: c.LedgerRetention, Policy: pol,
		NodeID: c.Raft.NodeID, RaftBind: c.Raft.BindAddress, RaftAdvertise: c.Raft.AdvertiseAddress,
		Bootstrap: *c.Raft.Bootstrap, BootstrapExpect: c.Raft.BootstrapExpect, RetryJoin: c.Raft.RetryJoin, ClusterID: c.Raft.ClusterID,
		JoinSecret:        c.Raft.joinSecret,
		SnapshotThreshold: c.Raft.SnapshotThreshold, SnapshotInterval: c.Raft.SnapshotInterval, TrailingLogs: c.Raft.TrailingLogs,
		CASchedule: c.caSchedule, CAKeys: c.caKeys(), CAUpstream: c.upstream, AgentSVIDTTL: c.AgentSVIDTTL, Logger: log,
		MinX509SVIDTTL: c.MinX509SVIDTTL, MinJWTSVIDTTL: c.MinJWTSVIDTTL,
		IssuanceLimits: issuer.IssuanceLimits{AgentRate: c.IssuanceLimits.AgentRate, AgentBurst: c.IssuanceLimits.AgentBurst,
			EntryRate: c.IssuanceLimits.EntryRate, EntryBurst: c.IssuanceLimits.EntryBurst},
		MinFreeDisk: c.minFreeDisk, StateMmapSize: c.stateMmapSize, NodeAttestors: c.NodeAttestors.built,
		OIDC:           c.OIDC.setup,
		FederationPoll: c.Federation.pollerConfig(),
	})
	if err != nil {
		return err
	}
	defer node.Stop()
	fmt.Printf("Signet server %s is running (trust domain %s). Cluster address: %s. Admin socket: %s\n", node.store.NodeID(), td.Name(), node.store.Address(), c.AdminSocket)
	// Credentials are served once this node is registered in its cluster: as leader at once; as a
	// follower when a leader answers (or, for a node started alone, after 'signet cluster join').
	if node.waitReady(ctx) != nil {
		log.Info("stopped before this node was registered in a cluster")
		return nil
	}
	tlsConf, err := node.srv.AgentTLSConfig(ctx)
	if err != nil {
		return err
	}
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(agentapi.AgentServerParameters(c.AgentSVIDTTL)),
	)
	agentv1.RegisterAgentServer(g, node.srv.Agent)
	go serveGRPC(log, "agent-api", g, lis)
	defer stopGRPC(g, 2*time.Second)
	fmt.Printf("Agent API: %s (TLS 1.3).\n", lis.Addr())
	if bundleLis != nil {
		be := c.Federation.BundleEndpoint
		stop, err := startBundleEndpoint(ctx, node, td, bundleLis, bundleEndpointOptions{Profile: be.Profile, CertFile: be.CertFile, KeyFile: be.KeyFile, RefreshHint: be.RefreshHint}, log)
		if err != nil {
			return fmt.Errorf("config %s: federation.bundle_endpoint: %w", path, err)
		}
		defer stop()
		if be.Profile == federation.ProfileHTTPSSPIFFE {
			fmt.Printf("Bundle endpoint: %s (https_spiffe, endpoint SPIFFE ID %s).\n", bundleEndpointURL(bundleLis), serverSVIDID(td, node.store.NodeID()))
		} else {
			fmt.Printf("Bundle endpoint: %s (%s).\n", bundleEndpointURL(bundleLis), be.Profile)
		}
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
