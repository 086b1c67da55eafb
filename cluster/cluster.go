// Package cluster is Signet's cluster layer on hashicorp/raft: membership (bootstrap_expect and
// retry_join, cluster join, remove, status) and the servers' own API, which forwards a follower's
// writes to the leader. It knows Raft, not entries: a write crosses as storage.Proposal bytes and its
// outcome as storage.Outcome.
//
//	mux, _ := cluster.Listen(bind, advertise)           // one port: Raft and the cluster API
//	st, _ := storage.Open(storage.Config{StreamLayer: mux.RaftLayer(), …})
//	node, _ := cluster.New(cluster.Config{Raft: st, Identity: id, Registrar: reg, Mux: mux, …})
//	st.SetForwarder(node)                                // follower writes go to the leader
//	go node.Serve(mux.APIListener())
//	node.Run(ctx)                                        // join or bootstrap, then register this node
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

// Raft is the node's replicated store as the cluster layer uses it (storage.Store).
type Raft interface {
	NodeID() string
	Address() string
	Status() storage.RaftStatus
	Members() ([]storage.Member, error)
	HasClusterState() bool
	BootstrapCluster([]storage.Member) error
	AddVoter(ctx context.Context, id, address string) error
	// RecordNodeVersion records, through the leader, the command version server id understands.
	RecordNodeVersion(ctx context.Context, id string, version uint32) error
	RemoveServer(ctx context.Context, id string) error
	ApplyProposal(ctx context.Context, p storage.Proposal) storage.Outcome
	// ApplyImport installs a snapshot export on the leader (a follower's restore).
	ApplyImport(ctx context.Context, r io.Reader, want storage.ExportInfo) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) error
}

// Identity is this node's credentials (the server package's).
type Identity interface {
	// Certificate is the node's current server SVID, its ledger record committed; nil before it has one.
	Certificate() *tls.Certificate
	// NewCertificate signs a server SVID whose ledger record is not committed yet: the leader commits it
	// when this node joins or registers again (Join), and InstallCertificate then makes it current.
	NewCertificate() (*tls.Certificate, error)
	InstallCertificate(*tls.Certificate)
	// X509Authorities is the trust bundle peers' certificates are verified against.
	X509Authorities() []*x509.Certificate
	// Authorities are this node's X.509 roots (DER, concatenated: its self-signed root, or the roots of
	// its upstream authority) and JWT key (PKIX DER) and its key ID.
	Authorities() (x509Roots, jwtKey []byte, jwtKeyID string)
}

// Registrar is the leader's side of Join: it publishes a node's authorities into the bundle and commits
// the ledger record of its server SVID. RegisterSelf does the same for the leader's own node.
type Registrar interface {
	RegisterNode(ctx context.Context, n NodeCredentials) error
	RegisterSelf(ctx context.Context) error
}

// NodeCredentials is what a joining node registers.
type NodeCredentials struct {
	NodeID string
	// X509Authorities are the roots its server SVID verified against: what the bundle carries for it.
	X509Authorities []*x509.Certificate
	// X509NotAfter is when its signing certificate (the SVID's issuer) expires.
	X509NotAfter time.Time
	JWTKey       []byte
	JWTKeyID     string
	SVID         *x509.Certificate
}

// Config configures a Node.
type Config struct {
	Raft        Raft
	Identity    Identity
	Registrar   Registrar
	TrustDomain spiffeid.TrustDomain
	// ClusterID names the cluster: a node configured with another one is refused (default DefaultClusterID).
	ClusterID string
	// BootstrapExpect is the number of servers that form a new cluster together (1, 3 or 5; 0 means the
	// node does not bootstrap: it joins through RetryJoin or `signet cluster join`).
	BootstrapExpect int
	// RetryJoin are other servers' cluster addresses, tried until this node is in a cluster.
	RetryJoin []string
	// RetryInterval is how often Run retries joining, bootstrapping and registering (default 1s).
	RetryInterval time.Duration
	// DialTimeout bounds reaching another server (default 5s).
	DialTimeout time.Duration
	// JoinSecret is the secret the cluster's servers share (raft.join_secret_file; ReadJoinSecretFile
	// reads it): a joining node proves it in Join, and the leader refuses a Join without the proof.
	// Required with BootstrapExpect above 1 or RetryJoin, and for Join; without it this node accepts
	// no servers.
	JoinSecret []byte
	// JWTIssuer is the iss of the JWT-SVIDs this node signs (oidc.issuer; empty: none). It is
	// configuration on each server, not replicated: a registration (Join) compares the joining node's
	// with the leader's, and both log a warning when they differ (not a refusal, so that a rolling
	// restart can change it).
	JWTIssuer string
	// Mux is this node's cluster port: its Raft connections, both ways, are authenticated with this
	// node's server SVID or the join secret (see rafttls.go). Without it the port refuses Raft.
	Mux    *Mux
	Logger *slog.Logger
}

// DefaultClusterID is the cluster ID of a node configured without one.
const DefaultClusterID = "signet"

// Errors the cluster layer returns; the admin API maps them to gRPC codes.
var (
	// ErrWrongCluster: the other node is of another trust domain or cluster ID.
	ErrWrongCluster = errors.New("of another cluster")
	// ErrUnreachable: the other node did not answer on its cluster address.
	ErrUnreachable = errors.New("unreachable")
	// ErrAlreadyMember: this node is part of a cluster already.
	ErrAlreadyMember = errors.New("already part of a cluster")
	// ErrPeerRefused: the other node refused the request (its message says why).
	ErrPeerRefused = errors.New("refused")
	// ErrNoJoinSecret: this node has no join secret, so it can neither join nor accept servers.
	ErrNoJoinSecret = errors.New("no join secret")
)

// Node is this server's membership in the cluster and its cluster API.
type Node struct {
	cfg     Config
	log     *slog.Logger
	clients *clients
	ready   chan struct{}
	readyMu sync.Once
	joinMu  sync.Mutex // one join or registration at a time
	// refusedLog bounds the log lines of refused Joins (anyone reaching the port can send them), and
	// raftRefusedLog those of refused Raft connections.
	refusedLog     ratelimit.Lines
	raftRefusedLog ratelimit.Lines
	// lastRegister is when registerAgain last registered (guarded by joinMu).
	lastRegister time.Time
	grpc         *grpc.Server
}

// New returns a Node; Serve its API and Run it.
func New(cfg Config) (*Node, error) {
	switch {
	case cfg.Raft == nil:
		return nil, errors.New("cluster: config: Raft is required")
	case cfg.Identity == nil:
		return nil, errors.New("cluster: config: Identity is required")
	case cfg.Registrar == nil:
		return nil, errors.New("cluster: config: Registrar is required")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("cluster: config: TrustDomain is required")
	}
	switch cfg.BootstrapExpect {
	case 0, 1, 3, 5:
	default:
		return nil, fmt.Errorf("cluster: config: BootstrapExpect %d: use 1, 3 or 5 (an even count tolerates no more failures than the odd one below it)", cfg.BootstrapExpect)
	}
	if cfg.JoinSecret != nil {
		if err := checkJoinSecret(cfg.JoinSecret); err != nil {
			return nil, fmt.Errorf("cluster: config: JoinSecret: %w", err)
		}
		cfg.JoinSecret = bytes.Clone(cfg.JoinSecret)
	} else if cfg.BootstrapExpect > 1 || len(cfg.RetryJoin) > 0 {
		return nil, errors.New("cluster: config: JoinSecret is required for a node that forms or joins a cluster (set raft.join_secret_file)")
	}
	if cfg.ClusterID == "" {
		cfg.ClusterID = DefaultClusterID
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "cluster"), ready: make(chan struct{}),
		refusedLog: ratelimit.Lines{Every: time.Minute, Burst: 10}, raftRefusedLog: ratelimit.Lines{Every: time.Minute, Burst: 10}}
	n.clients = newClients(cfg.TrustDomain, cfg.Identity, cfg.DialTimeout)
	placeholder, err := placeholderCert()
	if err != nil {
		return nil, err
	}
	n.grpc = n.newGRPCServer(placeholder)
	if cfg.Mux != nil {
		cfg.Mux.auth.Store(&raftAuth{td: cfg.TrustDomain, id: cfg.Identity, secret: cfg.JoinSecret, raft: cfg.Raft, placeholder: placeholder,
			refused: func(from string, err error) {
				n.raftRefusedLog.Warn(n.log, time.Now(), "raft connection refused", "from", from, "error", err)
			}})
	}
	return n, nil
}

// Ready is closed once this node is registered in a cluster: its authorities are in the bundle and its
// server SVID is recorded and current.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// CloseGrace bounds how long Close lets the API's calls in progress finish.
const CloseGrace = 5 * time.Second

// Close stops the API, letting the calls in progress finish (for at most CloseGrace): a forwarded
// write broken off mid-call is one the follower cannot know the fate of, so it fails its caller. Then
// it closes the connections to other servers. A leader hands leadership over first
// (storage.Store.HandOverLeadership), so the calls it still answers do not wait for a commit it
// cannot make.
func (n *Node) Close() {
	done := make(chan struct{})
	go func() { n.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(CloseGrace):
		n.grpc.Stop()
		<-done
	}
	n.clients.close()
}

// Run brings this node into a cluster — bootstrapping one with BootstrapExpect servers found through
// RetryJoin, or joining the one they belong to — and registers it with the leader (its authorities and
// server SVID); it retries every RetryInterval until that is done or ctx ends. A node with neither
// setting waits for `signet cluster join`.
func (n *Node) Run(ctx context.Context) error {
	for {
		done, err := n.step(ctx)
		if done {
			return nil
		}
		wait := n.cfg.RetryInterval
		if err == errNoLeaderYet {
			wait = leaderPoll // an election takes milliseconds to seconds: look again soon
		} else if err != nil && ctx.Err() == nil {
			n.log.Warn("not in a cluster yet; retrying", "every", n.cfg.RetryInterval, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// leaderPoll is how often Run looks for a leader while its cluster elects one.
const leaderPoll = 5 * time.Millisecond

// errNoLeaderYet: this node is in a cluster that has no leader now.
var errNoLeaderYet = errors.New("cluster: no leader yet")

// step makes one attempt; done once the node is registered.
func (n *Node) step(ctx context.Context) (bool, error) {
	if n.isReady() {
		return true, nil
	}
	if !n.cfg.Raft.HasClusterState() {
		if len(n.cfg.RetryJoin) == 0 {
			return false, nil // waits for `signet cluster join`
		}
		return false, n.discover(ctx)
	}
	st := n.cfg.Raft.Status()
	switch {
	case st.LeaderAddress == "":
		return false, errNoLeaderYet // an election, or a cluster without a majority yet
	case st.LeaderID == n.cfg.Raft.NodeID():
		if err := n.cfg.Registrar.RegisterSelf(ctx); err != nil {
			return false, err
		}
	default:
		if err := n.register(ctx, st.LeaderAddress); err != nil {
			return false, err
		}
	}
	n.markReady()
	return true, nil
}

func (n *Node) isReady() bool {
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

func (n *Node) markReady() {
	n.readyMu.Do(func() {
		close(n.ready)
		n.log.Info("registered in the cluster", "node", n.cfg.Raft.NodeID())
	})
}

// discover looks up the RetryJoin servers: if one is in a cluster, this node joins it; if none is and
// BootstrapExpect servers (this one included) are found, they form a new cluster together, each
// bootstrapping with the same list.
func (n *Node) discover(ctx context.Context) error {
	self := storage.Member{ID: n.cfg.Raft.NodeID(), Address: n.cfg.Raft.Address(), Voter: true}
	found := map[string]storage.Member{self.ID: self}
	var errs []error
	for _, addr := range n.cfg.RetryJoin {
		info, err := n.peerInfo(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if info.GetHasState() {
			if info.GetLeaderAddress() == "" {
				errs = append(errs, fmt.Errorf("cluster: server %s (%s) is in a cluster without a leader now", info.GetNodeId(), addr))
				continue
			}
			return n.join(ctx, info.GetLeaderAddress())
		}
		if info.GetNodeId() != self.ID {
			found[info.GetNodeId()] = storage.Member{ID: info.GetNodeId(), Address: info.GetAddress(), Voter: true}
		}
	}
	if n.cfg.BootstrapExpect == 0 || len(found) < n.cfg.BootstrapExpect {
		errs = append(errs, fmt.Errorf("cluster: found %d of the %d servers raft.bootstrap_expect asks for", len(found), n.cfg.BootstrapExpect))
		return errors.Join(errs...)
	}
	if len(found) > n.cfg.BootstrapExpect {
		return fmt.Errorf("cluster: found %d servers without a cluster, more than raft.bootstrap_expect (%d): make bootstrap_expect the number of servers", len(found), n.cfg.BootstrapExpect)
	}
	members := make([]storage.Member, 0, len(found))
	for _, m := range found {
		members = append(members, m)
	}
	n.log.Info("forming a new cluster", "servers", len(members))
	return n.cfg.Raft.BootstrapCluster(members)
}

// Join makes this node, not yet in a cluster, join the cluster of the server at addr (`signet cluster
// join`). The leader checks the trust domain and cluster ID, that the node ID and address are not taken
// and that it can reach this node, publishes this node's authorities, records its server SVID and adds
// it as a voter. Nothing changes if any check fails.
func (n *Node) Join(ctx context.Context, addr string) (leaderID, leaderAddr string, err error) {
	if n.cfg.JoinSecret == nil {
		return "", "", fmt.Errorf("cluster: join %s: %w: this server has no raft.join_secret_file; set it to the cluster's join secret file and restart it", addr, ErrNoJoinSecret)
	}
	if n.cfg.Raft.HasClusterState() {
		return "", "", fmt.Errorf("cluster: join %s: this node is %w (see `signet cluster status`); to move it, remove it there and start it with a fresh data dir", addr, ErrAlreadyMember)
	}
	info, err := n.peerInfo(ctx, addr)
	if err != nil {
		return "", "", fmt.Errorf("cluster: join %s: %w", addr, err)
	}
	if info.GetLeaderAddress() == "" {
		return "", "", fmt.Errorf("cluster: join %s: server %s %w: its cluster has no leader now (start it with raft.bootstrap: true, or wait for a majority)", addr, info.GetNodeId(), ErrPeerRefused)
	}
	if err := n.join(ctx, info.GetLeaderAddress()); err != nil {
		return "", "", err
	}
	return info.GetLeaderId(), info.GetLeaderAddress(), nil
}

// join registers this node with the leader at addr (adding it to the cluster if it is not a member)
// and waits until this node has applied the change.
func (n *Node) join(ctx context.Context, leaderAddr string) error {
	if err := n.register(ctx, leaderAddr); err != nil {
		return err
	}
	n.markReady()
	return nil
}
