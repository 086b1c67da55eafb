package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Bounds of the cluster API's messages.
const (
	// MaxMessageBytes bounds a forwarded write (a ledger batch of the recorder's largest size fits).
	MaxMessageBytes = 64 << 20
	maxIDBytes      = 256
	maxAuthority    = 16 << 10
	// maxIssuerBytes bounds jwt_issuer (as ca.MaxIssuerLen bounds the iss claim).
	maxIssuerBytes = 512
)

// newGRPCServer is the cluster API's server: TLS 1.3, presenting the node's server SVID.
func (n *Node) newGRPCServer(placeholder *tls.Certificate) *grpc.Server {
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if cert := n.cfg.Identity.Certificate(); cert != nil {
				return cert, nil
			}
			// Not registered yet: no SVID to present (it would be an unrecorded credential); peers
			// only ask such a node for Info.
			return placeholder, nil
		},
		ClientAuth: tls.RequestClientCert, // Info needs none; Join, Forward and Status check theirs
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConf)), grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}))
	clusterv1.RegisterClusterServer(g, &service{n: n})
	return g
}

// Serve serves the cluster API on lis (the Mux's APIListener) until Close.
func (n *Node) Serve(lis net.Listener) error {
	if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("cluster: serve: %w", err)
	}
	return nil
}

// placeholderCert is a self-signed certificate naming nothing, for the TLS handshake of a node that has
// no server SVID yet.
func placeholderCert() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster: placeholder key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signet server (not registered)"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(100 * 365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("cluster: placeholder certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

type service struct {
	clusterv1.UnimplementedClusterServer
	n *Node
}

func peerChain(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return info.State.PeerCertificates
}

// authPeer checks that the caller presents a server SVID of this trust domain that verifies against
// the bundle, and names a server of the cluster's configuration (a removed server's SVID still
// verifies until it expires, but it may no longer write).
func (s *service) authPeer(ctx context.Context) error {
	node, err := verifyServerSVID(s.n.cfg.TrustDomain, peerChain(ctx), s.n.cfg.Identity.X509Authorities())
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "cluster: caller: %v", err)
	}
	members, err := s.n.cfg.Raft.Members()
	if err != nil {
		return status.Errorf(codes.Unavailable, "cluster: %v", err)
	}
	for _, m := range members {
		if m.ID == node {
			return nil
		}
	}
	return status.Errorf(codes.PermissionDenied, "cluster: server %s is not in this cluster (removed?); to bring it back, start it with a fresh data dir and join it", node)
}

func (s *service) Info(context.Context, *clusterv1.InfoRequest) (*clusterv1.NodeInfo, error) {
	st := s.n.cfg.Raft.Status()
	return &clusterv1.NodeInfo{NodeId: st.NodeID, Address: st.Address, TrustDomain: s.n.cfg.TrustDomain.Name(), ClusterId: s.n.cfg.ClusterID,
		HasState: s.n.cfg.Raft.HasClusterState(), LeaderId: st.LeaderID, LeaderAddress: st.LeaderAddress}, nil
}

func (s *service) Status(ctx context.Context, _ *clusterv1.StatusRequest) (*clusterv1.NodeStatus, error) {
	if err := s.authPeer(ctx); err != nil {
		return nil, err
	}
	return nodeStatus(s.n.cfg.Raft.Status()), nil
}

func nodeStatus(st storage.RaftStatus) *clusterv1.NodeStatus {
	return &clusterv1.NodeStatus{NodeId: st.NodeID, Address: st.Address, State: st.State, Term: st.Term, LastIndex: st.LastIndex,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LeaderId: st.LeaderID, LeaderAddress: st.LeaderAddress}
}

func (s *service) Forward(ctx context.Context, req *clusterv1.ForwardRequest) (*clusterv1.ForwardResponse, error) {
	if err := s.authPeer(ctx); err != nil {
		return nil, err
	}
	if len(req.GetCommand()) > MaxMessageBytes || len(req.GetLedger()) > MaxMessageBytes {
		return nil, status.Errorf(codes.InvalidArgument, "cluster: forwarded write over %d bytes", MaxMessageBytes)
	}
	out := s.n.cfg.Raft.ApplyProposal(ctx, storage.Proposal{Command: req.GetCommand(), Ledger: req.GetLedger()})
	resp := &clusterv1.ForwardResponse{Index: out.Index, Result: out.Result, ErrorCode: uint32(out.Code), ErrorMessage: out.Message}
	if !out.IssuedAt.IsZero() {
		resp.IssuedAtUnixNano = out.IssuedAt.UnixNano()
	}
	return resp, nil
}

// Join adds or registers again the calling node (see the proto). Every check runs before anything
// changes.
func (s *service) Join(ctx context.Context, req *clusterv1.JoinRequest) (*clusterv1.JoinResponse, error) {
	n := s.n
	st := n.cfg.Raft.Status()
	if st.LeaderID != st.NodeID {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster: %s is not the leader; the leader is %q at %q", st.NodeID, st.LeaderID, st.LeaderAddress)
	}
	for field, v := range map[string]string{"node_id": req.GetNodeId(), "address": req.GetAddress(), "cluster_id": req.GetClusterId(), "jwt_key_id": req.GetJwtKeyId()} {
		if v == "" || len(v) > maxIDBytes {
			return nil, status.Errorf(codes.InvalidArgument, "cluster: join: %s must be 1 to %d bytes", field, maxIDBytes)
		}
	}
	if err := s.checkJoinProof(ctx, req); err != nil {
		return nil, err
	}
	if req.GetTrustDomain() != n.cfg.TrustDomain.Name() {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster: join: node %s is of trust domain %q; this cluster serves %q", req.GetNodeId(), req.GetTrustDomain(), n.cfg.TrustDomain.Name())
	}
	if req.GetClusterId() != n.cfg.ClusterID {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster: join: node %s has raft.cluster_id %q; this cluster's is %q", req.GetNodeId(), req.GetClusterId(), n.cfg.ClusterID)
	}
	if len(req.GetX509Authority()) > maxAuthority || len(req.GetJwtAuthority()) > maxAuthority {
		return nil, status.Errorf(codes.InvalidArgument, "cluster: join: an authority over %d bytes", maxAuthority)
	}
	if len(req.GetJwtIssuer()) > maxIssuerBytes {
		return nil, status.Errorf(codes.InvalidArgument, "cluster: join: jwt_issuer over %d bytes", maxIssuerBytes)
	}
	creds, err := s.joinCredentials(ctx, req)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "cluster: join: node %s: %v", req.GetNodeId(), err)
	}
	members, err := n.cfg.Raft.Members()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "cluster: join: %v", err)
	}
	member := false
	for _, m := range members {
		switch {
		case m.ID == req.GetNodeId() && m.Address == req.GetAddress():
			member = true
		case m.ID == req.GetNodeId():
			return nil, status.Errorf(codes.AlreadyExists, "cluster: join: node ID %s is taken by the server at %s; give the new node its own raft.node_id (or remove %s first if it is gone)", m.ID, m.Address, m.ID)
		case m.Address == req.GetAddress():
			return nil, status.Errorf(codes.AlreadyExists, "cluster: join: address %s is server %s's; if that server was started again with a fresh data dir, remove %s first ('signet cluster remove %s')", m.Address, m.ID, m.ID, m.ID)
		}
	}
	if !member {
		// The new voter must be reachable, and be who it says, before it counts toward the majority.
		info, err := n.peerInfo(ctx, req.GetAddress())
		if err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "cluster: join: node %s: %v", req.GetNodeId(), err)
		}
		if info.GetNodeId() != req.GetNodeId() {
			return nil, status.Errorf(codes.FailedPrecondition, "cluster: join: the server at %s is node %s, not %s", req.GetAddress(), info.GetNodeId(), req.GetNodeId())
		}
	}
	// Registering writes protobuf commands, gated by every server's command version: record the
	// joining node's first, as it cannot forward its own report before it is registered.
	if v := req.GetCommandVersion(); v != 0 {
		if err := n.cfg.Raft.RecordNodeVersion(ctx, req.GetNodeId(), v); err != nil {
			return nil, status.Errorf(codes.Unavailable, "cluster: join: node %s: %v", req.GetNodeId(), err)
		}
	}
	if err := n.cfg.Registrar.RegisterNode(ctx, creds); err != nil {
		return nil, status.Errorf(codes.Unavailable, "cluster: join: register node %s: %v", req.GetNodeId(), err)
	}
	if !member {
		if err := n.cfg.Raft.AddVoter(ctx, req.GetNodeId(), req.GetAddress()); err != nil {
			return nil, status.Errorf(codes.Unavailable, "cluster: join: %v", err)
		}
		n.log.Info("node joined", "joined", req.GetNodeId(), "address", req.GetAddress())
	}
	if !n.isReady() {
		// This leader's own registration waits for every server's command version (its writes are
		// gated): with the joiner's recorded, it may pass now, before the joiner calls this node over
		// mutual TLS. Run retries it otherwise.
		if err := n.cfg.Registrar.RegisterSelf(ctx); err == nil {
			n.markReady()
		}
	}
	n.warnIssuer(req.GetJwtIssuer(), "server "+req.GetNodeId())
	return &clusterv1.JoinResponse{Index: n.cfg.Raft.Status().LastIndex, JwtIssuer: n.cfg.JWTIssuer}, nil
}

// warnIssuer logs a warning when another server (who) signs JWT-SVIDs with another iss than this one:
// relying parties that check iss refuse one server's tokens or the other's.
func (n *Node) warnIssuer(theirs, who string) {
	if theirs == n.cfg.JWTIssuer {
		return
	}
	n.log.Warn("another server signs JWT-SVIDs with another oidc.issuer: set the same oidc.issuer on every server",
		"this_server", describeIssuer(n.cfg.JWTIssuer), "other", who, "other_issuer", describeIssuer(theirs))
}

// describeIssuer is an issuer as a log shows it.
func describeIssuer(iss string) string {
	if iss == "" {
		return "(none: tokens carry no iss)"
	}
	return iss
}

// Join refusals for want of the cluster's join secret.
const (
	msgNoJoinSecret  = "cluster: join: this server has no raft.join_secret_file: it accepts no servers"
	msgBadJoinSecret = "cluster: join: join secret does not match raft.join_secret_file of the cluster"
)

// checkJoinProof refuses a Join whose join_proof is not the HMAC of the cluster's join secret over this
// join (see joinProof), before anything else is looked at; the refusal is logged, rate limited, without
// the proof.
func (s *service) checkJoinProof(ctx context.Context, req *clusterv1.JoinRequest) error {
	n := s.n
	msg := msgBadJoinSecret
	if n.cfg.JoinSecret == nil {
		msg = msgNoJoinSecret
	} else if chain := peerChain(ctx); len(chain) > 0 {
		want := joinProof(n.cfg.JoinSecret, req.GetNodeId(), chain[0].RawSubjectPublicKeyInfo, req.GetTrustDomain(), req.GetClusterId())
		if hmac.Equal(req.GetJoinProof(), want) {
			return nil
		}
	}
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	n.refusedLog.Warn(n.log, time.Now(), "join refused: no valid join secret proof", "node", req.GetNodeId(), "address", req.GetAddress(), "from", from, "reason", msg)
	return status.Error(codes.PermissionDenied, msg)
}

// joinCredentials checks that the caller's certificate is the server SVID of the node it says it is,
// signed by the X.509 authority it registers (so it holds that authority's key).
func (s *service) joinCredentials(ctx context.Context, req *clusterv1.JoinRequest) (NodeCredentials, error) {
	roots, err := x509.ParseCertificates(req.GetX509Authority())
	if err != nil {
		return NodeCredentials{}, fmt.Errorf("x509_authority: %w", err)
	}
	if len(roots) == 0 || len(roots) > maxJoinRoots {
		return NodeCredentials{}, fmt.Errorf("x509_authority: %d certificates, want 1 to %d", len(roots), maxJoinRoots)
	}
	if _, err := x509.ParsePKIXPublicKey(req.GetJwtAuthority()); err != nil {
		return NodeCredentials{}, fmt.Errorf("jwt_authority: %w", err)
	}
	chain := peerChain(ctx)
	if len(chain) == 0 {
		return NodeCredentials{}, errors.New("no client certificate: a joining node presents its new server SVID")
	}
	td := s.n.cfg.TrustDomain
	id, verified, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, roots))
	if err != nil {
		return NodeCredentials{}, fmt.Errorf("its server SVID does not verify against the authority it registers: %w", err)
	}
	want, err := spiffeid.FromSegments(td, "signet", "server", req.GetNodeId())
	if err != nil {
		return NodeCredentials{}, fmt.Errorf("node_id: %w", err)
	}
	if id != want {
		return NodeCredentials{}, fmt.Errorf("its server SVID is %s, want %s", id, want)
	}
	// The SVID's issuer: the node's root, or its intermediate under an upstream authority.
	issuer := verified[0][1]
	return NodeCredentials{NodeID: req.GetNodeId(), X509Authorities: roots, X509NotAfter: issuer.NotAfter, JWTKey: req.GetJwtAuthority(),
		JWTKeyID: req.GetJwtKeyId(), SVID: chain[0]}, nil
}

// maxJoinRoots bounds the X.509 roots a joining node registers (an upstream authority's roots).
const maxJoinRoots = 16

func statusMessage(err error) string { return status.Convert(err).Message() }
