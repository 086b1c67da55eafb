package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/attestor/jointoken/payload"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// serverAuthorizer accepts only Signet servers of the trust domain (spiffe://<td>/signet/server/…).
func serverAuthorizer(td spiffeid.TrustDomain) tlsconfig.Authorizer {
	return tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if id.TrustDomain() != td || !strings.HasPrefix(id.Path(), "/signet/server/") {
			return fmt.Errorf("%s is not a Signet server of trust domain %q", id, td.Name())
		}
		return nil
	})
}

func dialOptions(tlsConf *tls.Config) []grpc.DialOption {
	tlsConf.MinVersion = tls.VersionTLS13
	return []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		// Notice a dead server (or network) within seconds, not at the next write.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}
}

// spreadConfig makes gRPC's pick_first balancer shuffle the servers' addresses per connection: each
// agent sticks to one server, agents spread over all of them, and when the server an agent talks to
// dies its connection moves to the next one that answers.
const spreadConfig = `{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": true}}]}`

// serverTarget is the gRPC target and options for a connection to any of the servers at addrs: one
// host:port (a DNS name may resolve to several servers), or several.
func serverTarget(addrs []string) (string, []grpc.DialOption) {
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(spreadConfig)}
	if len(addrs) == 1 {
		return addrs[0], opts
	}
	r := manual.NewBuilderWithScheme("signet-servers")
	state := resolver.State{}
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	return r.Scheme() + ":///servers", append(opts, grpc.WithResolvers(r))
}

// ServerConn is an agent's mTLS connection to one of its servers, authenticated with its Identity. It is
// an agentv1.AgentClient; after the agent SVID is renewed the connection is replaced, so every connection
// presents a current SVID.
type ServerConn struct {
	addrs []string
	id    *Identity
	td    spiffeid.TrustDomain

	mu     sync.RWMutex
	conn   *grpc.ClientConn
	client agentv1.AgentClient
	// renewNow wakes RunRenewal to renew before half life (RenewIfUntrusted).
	renewNow chan struct{}
}

var _ agentv1.AgentClient = (*ServerConn)(nil)

// Dial connects to the agent API at addr (host:port) with the identity's SVID and bundle.
func Dial(addr string, id *Identity, td spiffeid.TrustDomain) (*ServerConn, error) {
	return DialServers([]string{addr}, id, td)
}

// DialServers connects to the agent API of one of the servers at addrs (see serverTarget), moving to
// another when it fails.
func DialServers(addrs []string, id *Identity, td spiffeid.TrustDomain) (*ServerConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("agent: no server address")
	}
	c := &ServerConn{addrs: addrs, id: id, td: td, renewNow: make(chan struct{}, 1)}
	if err := c.reconnect(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *ServerConn) reconnect() error {
	conf := tlsconfig.MTLSClientConfig(c.id, c.id, serverAuthorizer(c.td))
	target, opts := serverTarget(c.addrs)
	conn, err := grpc.NewClient(target, append(dialOptions(conf), opts...)...)
	if err != nil {
		return fmt.Errorf("agent: server addresses %q: %w", c.addrs, err)
	}
	c.mu.Lock()
	old := c.conn
	c.conn, c.client = conn, agentv1.NewAgentClient(conn)
	c.mu.Unlock()
	if old != nil {
		// Streams on the old connection end; their owners reconnect on the new one.
		old.Close()
	}
	return nil
}

func (c *ServerConn) current() agentv1.AgentClient {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.client
}

// Close closes the connection.
func (c *ServerConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.Close()
}

func (c *ServerConn) AttestAgent(ctx context.Context, in *agentv1.AttestAgentRequest, opts ...grpc.CallOption) (*agentv1.AttestAgentResponse, error) {
	return c.current().AttestAgent(ctx, in, opts...)
}

func (c *ServerConn) RenewAgent(ctx context.Context, in *agentv1.RenewAgentRequest, opts ...grpc.CallOption) (*agentv1.RenewAgentResponse, error) {
	return c.current().RenewAgent(ctx, in, opts...)
}

func (c *ServerConn) SyncEntries(ctx context.Context, in *agentv1.SyncEntriesRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[agentv1.SyncEntriesResponse], error) {
	return c.current().SyncEntries(ctx, in, opts...)
}

func (c *ServerConn) SignX509SVIDs(ctx context.Context, in *agentv1.SignX509SVIDsRequest, opts ...grpc.CallOption) (*agentv1.SignX509SVIDsResponse, error) {
	return c.current().SignX509SVIDs(ctx, in, opts...)
}

func (c *ServerConn) SignJWTSVID(ctx context.Context, in *agentv1.SignJWTSVIDRequest, opts ...grpc.CallOption) (*agentv1.SignJWTSVIDResponse, error) {
	return c.current().SignJWTSVID(ctx, in, opts...)
}

func (c *ServerConn) ReportDeliveries(ctx context.Context, in *agentv1.ReportDeliveriesRequest, opts ...grpc.CallOption) (*agentv1.ReportDeliveriesResponse, error) {
	return c.current().ReportDeliveries(ctx, in, opts...)
}

// RunRenewal renews the agent SVID at half life until ctx ends, replacing the connection after each
// renewal. A refusal that means the agent was evicted or banned (PermissionDenied) is returned; other
// failures are retried with backoff while the current SVID is still valid. Once it has expired (the
// server was unreachable for the second half of its life), no server accepts it any more: RunRenewal
// returns an error wrapping ErrNoIdentity that says so, instead of retrying for ever.
func (c *ServerConn) RunRenewal(ctx context.Context, log *slog.Logger) error {
	for attempt := 0; ; {
		_, renewAt := c.id.NotAfter()
		wait := max(time.Until(renewAt), time.Second) // a floor: never a tight renewal loop
		if attempt > 0 {
			wait = backoff(attempt)
		}
		select {
		case <-time.After(wait):
		case <-c.renewNow:
		case <-ctx.Done():
			return nil
		}
		err := c.renew(ctx)
		switch {
		case err == nil:
			attempt = 0
			notAfter, _ := c.id.NotAfter()
			log.Info("agent SVID renewed", "expires_at", notAfter.Format(time.RFC3339))
		case status.Code(err) == codes.PermissionDenied:
			return err
		case ctx.Err() != nil:
			return nil
		default:
			attempt++
			notAfter, _ := c.id.NotAfter()
			if !time.Now().Before(notAfter) {
				return fmt.Errorf("agent: SVID %s expired at %s before it could be renewed (last attempt: %v): %w; attest again with a new join token",
					c.id.ID(), notAfter.UTC().Format(time.RFC3339), err, ErrNoIdentity)
			}
			log.Warn("agent SVID renewal failed; retrying", "error", err, "svid_expires_at", notAfter.Format(time.RFC3339))
		}
	}
}

// RenewIfUntrusted has RunRenewal renew the agent SVID at once when no authority of roots (a bundle
// the server just pushed) signed it, or a revoked upstream intermediate (revokedSigners) signed it: its
// CA key was revoked, and a new connection presenting it would be refused (or should be). The renewal
// goes over the current connection, authenticated when the key was still trusted. It reports whether a
// renewal was asked.
func (c *ServerConn) RenewIfUntrusted(roots []*x509.Certificate, revokedSigners []string) bool {
	svid, err := c.id.GetX509SVID()
	if err != nil || len(svid.Certificates) == 0 {
		return false
	}
	signer := ca.SignerKeyID(svid.Certificates[len(svid.Certificates)-1])
	if slices.ContainsFunc(roots, func(r *x509.Certificate) bool { return ca.X509KeyID(r) == signer }) &&
		!slices.Contains(revokedSigners, ca.SignerKeyID(svid.Certificates[0])) {
		return false
	}
	select {
	case c.renewNow <- struct{}{}:
	default:
	}
	return true
}

func (c *ServerConn) renew(ctx context.Context) error {
	key, csr, err := newKeyAndCSR(c.id.ID())
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.RenewAgent(callCtx, &agentv1.RenewAgentRequest{Csr: csr})
	if err != nil {
		return fmt.Errorf("agent: renew SVID: %w", err)
	}
	if err := c.id.setSVID(key, resp.SvidChain); err != nil {
		return err
	}
	return c.reconnect()
}

// NodeAttestor is the agent side of a node attestor: it produces the payload the server's attestor of
// the same type checks (a join token; a projected service account token and the cluster's name).
type NodeAttestor interface {
	Type() string
	Payload(ctx context.Context) ([]byte, error)
}

// AttestConfig configures node attestation.
type AttestConfig struct {
	// Address is the server's agent API (host:port); Addresses, several servers' (see DialServers).
	Address     string
	Addresses   []string
	TrustDomain spiffeid.TrustDomain
	DataDir     string
	// Attestor produces the attestation payload; JoinToken is the shorthand for a join-token attestor.
	Attestor  NodeAttestor
	JoinToken string
	// Bundle verifies the server. Nil only with Insecure.
	Bundle []*x509.Certificate
	// Insecure skips verifying the server during attestation (the bundle it returns is then trusted).
	Insecure bool
	Logger   *slog.Logger
}

// Attest proves the node to the server with its node attestor and stores the agent SVID it receives.
// While the server is unreachable, or refuses for a limit of its own (ResourceExhausted: its disk
// nearly full; a refused attestation consumes nothing), it retries with backoff, logging each failure;
// any other refusal is returned at once.
func Attest(ctx context.Context, cfg AttestConfig) (*Identity, error) {
	if cfg.Attestor == nil {
		if cfg.JoinToken == "" {
			return nil, errors.New("agent: a join token is required to attest (create one with: signet token create --owner NAME)")
		}
		cfg.Attestor = payload.JoinToken{Token: cfg.JoinToken}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Bundle) == 0 && !cfg.Insecure {
		return nil, errors.New("agent: no trust bundle to verify the server with: set trust_bundle_path (signet bundle show > bundle.pem) or insecure_bootstrap")
	}
	var conf *tls.Config
	if cfg.Insecure {
		cfg.Logger.Warn("insecure bootstrap: the server is not verified during attestation; anyone able to intercept this connection can impersonate it")
		conf = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // documented, opt-in
	} else {
		conf = tlsconfig.TLSClientConfig(x509bundle.FromX509Authorities(cfg.TrustDomain, cfg.Bundle), serverAuthorizer(cfg.TrustDomain))
	}
	addrs := cfg.Addresses
	if cfg.Address != "" {
		addrs = append([]string{cfg.Address}, addrs...)
	}
	if len(addrs) == 0 {
		return nil, errors.New("agent: attest: no server address")
	}
	target, opts := serverTarget(addrs)
	conn, err := grpc.NewClient(target, append(dialOptions(conf), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("agent: server addresses %q: %w", addrs, err)
	}
	defer conn.Close()
	client := agentv1.NewAgentClient(conn)
	key, csr, err := newKeyAndCSR("")
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		// A new payload for every attempt: a projected token file is rotated by the kubelet.
		p, err := cfg.Attestor.Payload(ctx)
		if err != nil {
			return nil, fmt.Errorf("agent: %s attestation: %w", cfg.Attestor.Type(), err)
		}
		callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := client.AttestAgent(callCtx, &agentv1.AttestAgentRequest{AttestationType: cfg.Attestor.Type(), AttestationPayload: p, Csr: csr})
		cancel()
		if err == nil {
			return installAttestation(cfg, key, resp)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent: attest: %w", ctx.Err())
		}
		msg := status.Convert(err).Message()
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded:
			if strings.Contains(msg, "authentication handshake failed") {
				// The server answered but could not be verified: retrying cannot help.
				return nil, fmt.Errorf("agent: cannot verify server %s with the trust bundle (is trust_bundle_path this trust domain's current 'signet bundle show'?): %s", strings.Join(addrs, ", "), msg)
			}
			wait := backoff(attempt)
			cfg.Logger.Error("server unreachable; retrying attestation", "server", strings.Join(addrs, ", "), "error", msg, "retry_in", wait.Round(time.Millisecond))
			if err := sleepCtx(ctx, wait); err != nil {
				return nil, fmt.Errorf("agent: attest: %w", err)
			}
		case codes.ResourceExhausted:
			// Exiting would leave a restart loop (systemd gives up after a few) to retry; the server
			// frees up by itself once its disk has room.
			wait := max(backoff(attempt), mintRetry)
			cfg.Logger.Error("server refused attestation for a limit of its own; retrying", "server", strings.Join(addrs, ", "), "error", msg, "retry_in", wait.Round(time.Millisecond))
			if err := sleepCtx(ctx, wait); err != nil {
				return nil, fmt.Errorf("agent: attest: %w", err)
			}
		default:
			return nil, fmt.Errorf("agent: attestation refused by %s: %s", strings.Join(addrs, ", "), msg)
		}
	}
}

func installAttestation(cfg AttestConfig, key *ecdsa.PrivateKey, resp *agentv1.AttestAgentResponse) (*Identity, error) {
	var roots []*x509.Certificate
	if b := resp.GetBundle(); b != nil {
		for i, der := range b.X509Authorities {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("agent: bundle authority %d from server: %w", i, err)
			}
			roots = append(roots, c)
		}
	}
	if len(roots) == 0 {
		return nil, errors.New("agent: server returned no trust bundle")
	}
	id := NewIdentity(cfg.DataDir, cfg.TrustDomain, roots)
	want, err := spiffeid.FromString(resp.SpiffeId)
	if err != nil {
		return nil, fmt.Errorf("agent: server announced agent ID %q: %w", resp.SpiffeId, err)
	}
	// The SVID must be for key, carry the ID the server announced and chain to the bundle it came with;
	// nothing is written before that is known.
	svid, err := id.checkSVID(key, resp.SvidChain, want)
	if err != nil {
		return nil, err
	}
	// The bundle first: a crash before the SVID is written leaves no identity, and the agent attests again.
	if err := id.saveBundle(); err != nil {
		return nil, err
	}
	if err := id.install(svid); err != nil {
		return nil, err
	}
	return id, nil
}

// sleepCtx waits for d, or returns ctx's error if it ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
