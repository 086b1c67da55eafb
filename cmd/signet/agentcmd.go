package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/jointoken/payload"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newAgentCmd() *cobra.Command {
	var configPath string
	var tokens joinTokenSources
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent, or manage agents (list, show, evict, ban)",
		Long: `Run a node agent: it attests its node to the server (the first time with a join token, or, in
Kubernetes with node_attestor.k8s_psat, with its pod's projected service account token, again whenever it
has no usable SVID or was evicted; on EC2 with node_attestor.aws_iid, with its instance identity document,
which the server accepts once per instance unless allow_reattestation or the agent was evicted), keeps its agent SVID in its data dir (0600) and renews it at half
life, syncs the entries it may issue, and serves the SPIFFE Workload API on a Unix socket. Callers are
attested by the Unix attestor and, with workload_attestors.k8s in the configuration, by the Kubernetes
one (docs/kubernetes.md); a caller gets the union of their selectors. The same socket serves Envoy's
secret discovery service (SDS v3), attested the same way (docs/envoy.md).

Trust bootstrap: the agent verifies the server with the bundle in trust_bundle_path ('signet bundle show'
on the server). insecure_bootstrap skips that verification for the first contact only; it is unsafe on
any network an attacker can reach.

Every configuration key, with its default, is in docs/configuration.md; examples/config/agent.yaml is a
commented example.`,
		Example: `  signet agent --config /etc/signet/agent.yaml --join-token-file /etc/signet/join-token
  signet token create --owner alice -o json | jq -r .token | signet agent --config agent.yaml --join-token-file -
  SIGNET_JOIN_TOKEN=3f2a… signet agent --config /etc/signet/agent.yaml
  signet agent list
  signet agent evict spiffe://example.org/signet/agent/join_token/3f2a…`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("--config is required (see examples/config/agent.yaml)")
			}
			tokens.flagSet = cmd.Flags().Changed("join-token")
			joinToken, err := tokens.resolve(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), configPath, joinToken)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "agent configuration file (YAML)")
	cmd.Flags().StringVar(&tokens.file, "join-token-file", "", "file holding the join token for the first attestation (mode 0600; - reads stdin); or set "+joinTokenEnv)
	cmd.Flags().StringVar(&tokens.flag, "join-token", "", "deprecated: the token is visible to every local user in the process list; use --join-token-file or "+joinTokenEnv)
	cmd.AddCommand(newAgentListCmd(), newAgentShowCmd(), newAgentEvictCmd(), newAgentBanCmd(), newAgentStatusCmd())
	return cmd
}

func runAgent(ctx context.Context, path, joinToken string) error {
	c, td, mode, err := loadAgentConfig(path)
	if err != nil {
		return err
	}
	log, err := newLogger(c.LogLevel)
	if err != nil {
		return err
	}
	na, reattest, err := c.NodeAttestor.attestor(joinToken)
	if err != nil {
		return err
	}
	for {
		err := runAgentOnce(ctx, path, c, td, mode, log, na)
		// An attestor that may attest again (k8s_psat: a new token each time) does so when the SVID
		// could not be renewed, or the server disowned the agent (evicted it; a banned agent's attestation
		// is refused, and the agent exits with that), instead of leaving the node without an agent.
		if reattest && (errors.Is(err, agent.ErrNoIdentity) || errors.Is(err, errDisowned)) && ctx.Err() == nil {
			log.Warn("the agent has no usable SVID; attesting the node again", "attestor", na.Type(), "error", err)
			continue
		}
		return err
	}
}

// errDisowned marks the end of an agent the server refused (evicted or banned: PermissionDenied).
var errDisowned = errors.New("disowned by the server")

// runAgentOnce attests the node if it has no SVID (with na; nil: none to attest with), then runs the
// agent until ctx ends or the agent loses its identity.
func runAgentOnce(ctx context.Context, path string, c agentFileConfig, td spiffeid.TrustDomain, mode os.FileMode, log *slog.Logger, na agent.NodeAttestor) error {
	id, err := agent.LoadIdentity(c.DataDir, td, time.Now())
	switch {
	case errors.Is(err, agent.ErrNoIdentity):
		if na == nil {
			// err says why: none yet, or the one there expired.
			return fmt.Errorf("%w: start the agent with --join-token-file FILE or %s to attest (create a token on the server with 'signet token create --owner NAME')", err, joinTokenEnv)
		}
		var bundle []*x509.Certificate
		if c.TrustBundlePath != "" {
			b, err := x509bundle.Load(td, c.TrustBundlePath)
			if err != nil {
				return fmt.Errorf("config %s: trust_bundle_path: %w", path, err)
			}
			bundle = b.X509Authorities()
		}
		id, err = agent.Attest(ctx, agent.AttestConfig{Addresses: c.servers(), TrustDomain: td, DataDir: c.DataDir,
			Attestor: na, Bundle: bundle, Insecure: c.InsecureBootstrap, Logger: log})
		if err != nil {
			return err
		}
		log.Info("node attested", "agent", id.ID(), "attestor", na.Type())
	case err != nil:
		return err
	case na != nil && na.Type() == payload.Type:
		log.Info("already attested; the join token is not needed and was not used", "agent", id.ID())
	}

	conn, err := agent.DialServers(c.servers(), id, td)
	if err != nil {
		return err
	}
	defer conn.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var revokedOnce sync.Once
	var revoked error
	onRevoked := func(err error) {
		revokedOnce.Do(func() {
			revoked = err
			if rmErr := id.Remove(); rmErr != nil {
				log.Error("could not remove the revoked agent SVID", "error", rmErr)
			}
			stop()
		})
	}
	an, err := startAgentNode(runCtx, agentNodeConfig{TrustDomain: td, Client: conn, WorkloadSocket: c.SocketPath,
		SocketDirMode: 0o755, SocketMode: mode, Logger: log, OnRevoked: onRevoked,
		JWTMintRate: c.JWTMintRate, JWTMintBurst: c.JWTMintBurst, JWTCacheSize: c.JWTCacheSize, MaxHashSize: c.MaxHashSize,
		NoUnix: !c.attestors.unix, K8s: c.k8sConfig(), SDS: c.SDS.sdsConfig(),
		OnBundle: func(roots []*x509.Certificate, revokedSigners []string) {
			if err := id.SetBundle(roots); err != nil {
				log.Error("could not persist the trust bundle", "error", err)
			}
			if conn.RenewIfUntrusted(roots, revokedSigners) {
				log.Warn("the CA key that signed this agent's SVID left the bundle (revoked): renewing the SVID now")
			}
		}})
	if err != nil {
		return err
	}
	defer an.Stop()
	go func() {
		if err := conn.RunRenewal(runCtx, log); err != nil {
			onRevoked(err)
		}
	}()
	fmt.Printf("Signet agent %s is running (servers %s).\n", id.ID(), strings.Join(c.servers(), ", "))
	fmt.Printf("export SPIFFE_ENDPOINT_SOCKET=unix://%s\n", c.SocketPath)
	<-runCtx.Done()
	switch {
	case errors.Is(revoked, agent.ErrNoIdentity):
		return fmt.Errorf("agent %s: %w (start the agent with --join-token-file FILE; create a token with 'signet token create --owner NAME')", id.ID(), revoked)
	case revoked != nil:
		return fmt.Errorf("agent %s: the server refused this agent (%v): it was evicted or banned, or its SVID expired: attest again with a new join token: %w", id.ID(), revoked, errDisowned)
	}
	log.Info("shutting down")
	return nil
}
