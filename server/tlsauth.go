package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// peerSVID returns the verified client certificate of the call's TLS connection.
func peerSVID(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("%w: no peer", ErrUnauthenticated)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w: %w: agents authenticate with their agent SVID (attest first with a join token)", ErrUnauthenticated, errNoClientCert)
	}
	return info.State.PeerCertificates[0], nil
}

// TLSAgentAuth authenticates agents by the SVID they present on the TLS connection (verified against
// the bundle during the handshake): the SVID must be valid now by clock (nil: time.Now), the server's
// clock, on every call — a connection opened before the SVID expired does not outlive it — and the
// agent must be registered, not banned, and present its current or previous SVID, so an evicted or
// banned agent is refused at once, whatever its certificate's expiry.
func TLSAgentAuth(st *storage.Store, clock func() time.Time) Authenticator {
	if clock == nil {
		clock = time.Now
	}
	return func(ctx context.Context) (Caller, error) {
		cert, err := peerSVID(ctx)
		if err != nil {
			return Caller{}, err
		}
		if len(cert.URIs) != 1 {
			return Caller{}, fmt.Errorf("%w: client certificate has no SPIFFE ID", ErrUnauthenticated)
		}
		id, err := spiffeid.FromURI(cert.URIs[0])
		if err != nil {
			return Caller{}, fmt.Errorf("%w: client certificate: %v", ErrUnauthenticated, err)
		}
		if err := checkSVIDTime(id, cert, clock()); err != nil {
			return Caller{}, err
		}
		a, err := st.Agent(id.String())
		if stale(a, err, cert) && st.ReadBarrier(ctx) == nil {
			// Attested or renewed through another server a moment ago, and not applied here yet: look
			// again once this server has everything committed, rather than disown a good agent.
			a, err = st.Agent(id.String())
		}
		switch {
		case errors.Is(err, storage.ErrAgentNotFound):
			return Caller{}, fmt.Errorf("agent %s: %w: not registered (evicted?); attest again with a new join token", id, ErrPermissionDenied)
		case err != nil:
			return Caller{}, err
		case a.Banned:
			return Caller{}, fmt.Errorf("agent %s: %w: banned by %s at %s", id, ErrPermissionDenied, a.BannedBy, a.BannedAt.Format(time.RFC3339))
		}
		if serial := cert.SerialNumber.Text(16); serial != a.Serial && serial != a.PrevSerial {
			return Caller{}, fmt.Errorf("agent %s: %w: this SVID was replaced or revoked; attest again with a new join token", id, ErrPermissionDenied)
		}
		return Caller{AgentID: id, NodeAttestation: a.AttestationType, Selectors: a.Selectors}, nil
	}
}

// stale reports whether the agent record read for cert may just lag the cluster: the agent is unknown,
// or cert is not its current or previous SVID.
func stale(a storage.Agent, err error, cert *x509.Certificate) bool {
	if errors.Is(err, storage.ErrAgentNotFound) {
		return true
	}
	serial := cert.SerialNumber.Text(16)
	return err == nil && serial != a.Serial && serial != a.PrevSerial
}

// checkSVIDTime refuses an agent SVID that is not valid at now: an expired one for good (the agent must
// attest again: it can no longer renew), one not yet valid as a clock problem.
func checkSVIDTime(id spiffeid.ID, cert *x509.Certificate, now time.Time) error {
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("agent %s: %w: agent SVID %s expired at %s; attest again with a new join token",
			id, ErrPermissionDenied, cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("agent %s: %w: agent SVID %s is not valid before %s (check the clocks)",
			id, ErrUnauthenticated, cert.SerialNumber.Text(16), cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// ServerTLSConfig is the TLS 1.3 configuration of the agent API listener. The server presents an SVID
// (spiffe://<td>/signet/server/<node>) signed by its own CA and re-minted at half life; client
// certificates are optional at the TLS layer (AttestAgent has none) and, when present, must chain to the
// trust bundle and be valid by clock (nil: time.Now). Which RPCs need one is decided by TLSAgentAuth.
//
// The client certificate is checked in VerifyConnection, which crypto/tls calls on every handshake,
// resumed ones included (VerifyPeerCertificate is skipped on resumption): a session resumed from a
// ticket is held to the bundle and the clock of now, not of the day the ticket was issued.
func ServerTLSConfig(ctx context.Context, iss *Issuer) (*tls.Config, error) {
	authority, st, clock := iss.cfg.CA, iss.cfg.Store, iss.cfg.Clock
	id, err := spiffeid.FromSegments(authority.TrustDomain(), "signet", "server", iss.cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("server: SPIFFE ID for node %q: %w", iss.cfg.NodeID, err)
	}
	sc := iss.serverCert(id)
	if _, err := sc.get(ctx); err != nil {
		return nil, err
	}
	td := authority.TrustDomain()
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) { return sc.get(hello.Context()) },
		ClientAuth:     tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			bundle := x509bundle.FromX509Authorities(td, st.Bundle().X509Authorities)
			if _, _, err := x509svid.Verify(cs.PeerCertificates, bundle, x509svid.WithTime(clock())); err != nil {
				return fmt.Errorf("client certificate does not verify against the trust bundle: %w", err)
			}
			return nil
		},
	}, nil
}

// SystemOwner owns the credentials Signet issues itself, such as the servers' TLS SVIDs, in the ledger.
const SystemOwner = "signet"

// serverCert mints and caches the server's TLS certificate. Like every credential it leaves the server
// only once its ledger record is committed: a certificate whose record fails is not used.
type serverCert struct {
	iss *Issuer
	id  spiffeid.ID

	mu       sync.Mutex
	cert     *tls.Certificate
	renewAt  time.Time
	notAfter time.Time
	// current is cert, read without the lock: the cluster client presents it while a renewal (whose
	// record the cluster client forwards to the leader) holds the lock.
	current atomic.Pointer[tls.Certificate]
}

// get returns the current certificate, minting (and recording) a new one from half its life. The CA
// stamps validity by the wall clock, so renewal follows the wall clock too.
func (s *serverCert) get(ctx context.Context) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && time.Now().Before(s.renewAt) {
		return s.cert, nil
	}
	cert, err := s.mint(ctx)
	if err != nil {
		if s.cert != nil && time.Now().Before(s.notAfter) {
			return s.cert, nil // keep serving the current one; retried on the next handshake
		}
		return nil, fmt.Errorf("server TLS: %w", err)
	}
	s.install(cert)
	return s.cert, nil
}

// install makes cert, its ledger record committed, the current certificate. Called with s.mu held.
func (s *serverCert) install(cert *tls.Certificate) {
	s.cert = cert
	s.notAfter = cert.Leaf.NotAfter
	s.renewAt = cert.Leaf.NotBefore.Add(cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore) / 2)
	s.current.Store(cert)
}

// mint signs a new server SVID for a new key and commits its ledger record. min_free_disk does not
// apply: it keeps workloads from filling the disk, and a node refused its own certificate could not
// start to report its disk (one record a day; a disk really full fails the record, and the certificate
// is dropped).
func (s *serverCert) mint(ctx context.Context) (*tls.Certificate, error) {
	cert, err := s.sign()
	if err != nil {
		return nil, err
	}
	if err := s.iss.cfg.Recorder.Record(ctx, serverSVIDRecord(cert.Leaf, s.iss.cfg.NodeID)); err != nil {
		return nil, err
	}
	return cert, nil
}

// sign signs a new server SVID for a new key; its ledger record is not committed yet.
func (s *serverCert) sign() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	authority := s.iss.cfg.CA
	// The CA caps the SVID at its own NotAfter; near the CA's end the certificate is shorter and is
	// re-minted at half its (shorter) life.
	cert, err := authority.SignX509SVID(ca.X509SVIDParams{SPIFFEID: s.id, PublicKey: key.Public(), TTL: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// serverSVIDRecord is the ledger record of a server SVID of node.
func serverSVIDRecord(cert *x509.Certificate, node string) storage.Issuance {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	id, _ := x509svid.IDFromCert(cert)
	return storage.Issuance{ID: cert.SerialNumber.Text(16), Kind: storage.KindX509SVID, SPIFFEID: id.String(),
		Owner: SystemOwner, PublicKeySHA256: hex.EncodeToString(sum[:]), ExpiresAt: cert.NotAfter.UTC(), Node: node}
}
