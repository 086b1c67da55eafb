package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Raft's connections on the cluster port are mutual TLS 1.3 (see docs/architecture.md, "The Raft
// cluster"). The dialer sends raftHeader, then a TLS handshake in which both sides present their
// current server SVID (or, before they have one, a placeholder certificate); then each sends a
// raftProofBytes proof. A side accepts its peer if the peer's certificate is a server SVID of the trust
// domain that verifies against the bundle (naming, for the dialer, the node the Raft configuration lists
// at the address it dialed), or if the peer's proof is the HMAC of the cluster's join secret over this
// TLS session. The second path carries a cluster before any server has an SVID (bootstrap), a joining
// server until it has the bundle, and a restarted server until it registers again; it grants no more
// than the join secret already does (it lets a server join).

// raftHeader is the first byte of a Raft connection on the cluster port. Raft's own plain stream starts
// with its RPC type (0 to 4), a TLS connection with 0x16: the mux refuses the former.
const raftHeader = 'R'

// raftProofBytes is the size of the join-secret proof each side sends after the handshake (zeros from a
// side without a secret).
const raftProofBytes = sha256.Size

// Labels that bind the proof to Raft and to this TLS session.
const (
	raftProofLabel    = "signet raft v1"
	raftExporterLabel = "EXPORTER-signet-raft"
)

// RaftHandshakeTimeout bounds a Raft connection's TLS handshake and proof exchange on the accepting side
// (the dialing side uses Raft's dial timeout).
const RaftHandshakeTimeout = 10 * time.Second

// raftAuth authenticates Raft connections with this node's credentials.
type raftAuth struct {
	td          spiffeid.TrustDomain
	id          Identity
	secret      []byte
	raft        Raft
	placeholder *tls.Certificate
	// refused logs a refused incoming connection (rate limited: anyone reaching the port can cause one).
	refused func(from string, err error)
}

func (a *raftAuth) certificate() *tls.Certificate {
	if cert := a.id.Certificate(); cert != nil {
		return cert
	}
	return a.placeholder
}

func (a *raftAuth) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		GetCertificate:         func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.certificate(), nil },
		ClientAuth:             tls.RequireAnyClientCert, // verified after the handshake: SVID or join secret
		SessionTicketsDisabled: true,                     // every connection presents and checks certificates afresh
	}
}

func (a *raftAuth) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		InsecureSkipVerify:     true, // verified after the handshake: SVID against the bundle, or join secret
		GetClientCertificate:   func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return a.certificate(), nil },
		SessionTicketsDisabled: true,
	}
}

// accept authenticates a connection whose raftHeader was read, within RaftHandshakeTimeout.
func (a *raftAuth) accept(c net.Conn) (net.Conn, error) {
	tc := tls.Server(c, a.serverConfig())
	if err := a.handshake(tc, time.Now().Add(RaftHandshakeTimeout), false, ""); err != nil {
		tc.Close()
		a.refused(c.RemoteAddr().String(), err)
		return nil, err
	}
	return tc, nil
}

// dial opens an authenticated Raft connection to address.
func (a *raftAuth) dial(address string, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	c, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, a.clientConfig())
	_ = c.SetWriteDeadline(deadline)
	if _, err := c.Write([]byte{raftHeader}); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: raft connection to %s: %w", address, err)
	}
	if err := a.handshake(tc, deadline, true, address); err != nil {
		tc.Close()
		return nil, fmt.Errorf("cluster: raft connection to %s: %w", address, err)
	}
	return tc, nil
}

// handshake runs the TLS handshake and the proof exchange by deadline and checks the peer.
func (a *raftAuth) handshake(tc *tls.Conn, deadline time.Time, client bool, address string) error {
	_ = tc.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	cs := tc.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial(raftExporterLabel, nil, raftProofBytes)
	if err != nil {
		return fmt.Errorf("TLS exporter: %w", err)
	}
	mine, theirs := "server", "client"
	if client {
		mine, theirs = theirs, mine
	}
	if _, err := tc.Write(a.proof(ekm, mine)); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	got := make([]byte, raftProofBytes)
	if _, err := io.ReadFull(tc, got); err != nil {
		return fmt.Errorf("read the peer's proof (did it refuse this server?): %w", err)
	}
	if err := a.check(cs, client, address, got, a.proof(ekm, theirs)); err != nil {
		return err
	}
	_ = tc.SetDeadline(time.Time{})
	return nil
}

// check accepts the peer if it presented a server SVID that verifies against the bundle (the one the
// configuration lists at address, when this side dialed), or proved the join secret.
func (a *raftAuth) check(cs tls.ConnectionState, client bool, address string, got, want []byte) error {
	node, svidErr := verifyServerSVID(a.td, cs.PeerCertificates, a.id.X509Authorities())
	if svidErr == nil && client {
		svidErr = a.isNodeAt(node, address)
	}
	if svidErr == nil {
		return nil
	}
	if a.secret != nil && hmac.Equal(got, want) {
		return nil
	}
	if a.secret == nil {
		return fmt.Errorf("peer refused: %w (and this server has no raft.join_secret_file to accept a server without one)", svidErr)
	}
	return fmt.Errorf("peer refused: %w, and it did not prove the cluster's join secret", svidErr)
}

// isNodeAt checks that the Raft configuration lists node at address.
func (a *raftAuth) isNodeAt(node, address string) error {
	members, err := a.raft.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Address == address {
			if m.ID != node {
				return fmt.Errorf("server SVID names node %s, but the Raft configuration lists %s at %s", node, m.ID, address)
			}
			return nil
		}
	}
	return errors.New("no server of the Raft configuration is at " + address)
}

// proof is HMAC-SHA256 under the join secret of the label, the side's role and the TLS session's
// exported keying material: good for this connection and direction only. Zeros without a secret.
func (a *raftAuth) proof(ekm []byte, role string) []byte {
	if a.secret == nil {
		return make([]byte, raftProofBytes)
	}
	mac := hmac.New(sha256.New, a.secret)
	mac.Write([]byte(raftProofLabel))
	mac.Write([]byte{0})
	mac.Write([]byte(role))
	mac.Write([]byte{0})
	mac.Write(ekm)
	return mac.Sum(nil)
}
