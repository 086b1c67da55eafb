package agentapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/server/apierr"
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
		return nil, fmt.Errorf("%w: no peer", apierr.ErrUnauthenticated)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w: %w: agents authenticate with their agent SVID (attest first with a join token)", apierr.ErrUnauthenticated, errNoClientCert)
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
			return Caller{}, fmt.Errorf("%w: client certificate has no SPIFFE ID", apierr.ErrUnauthenticated)
		}
		id, err := spiffeid.FromURI(cert.URIs[0])
		if err != nil {
			return Caller{}, fmt.Errorf("%w: client certificate: %v", apierr.ErrUnauthenticated, err)
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
			return Caller{}, fmt.Errorf("agent %s: %w: not registered (evicted?); attest again with a new join token", id, apierr.ErrPermissionDenied)
		case err != nil:
			return Caller{}, err
		case a.Banned:
			return Caller{}, fmt.Errorf("agent %s: %w: banned by %s at %s", id, apierr.ErrPermissionDenied, a.BannedBy, a.BannedAt.Format(time.RFC3339))
		}
		if serial := cert.SerialNumber.Text(16); serial != a.Serial && serial != a.PrevSerial {
			return Caller{}, fmt.Errorf("agent %s: %w: this SVID was replaced or revoked; attest again with a new join token", id, apierr.ErrPermissionDenied)
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
			id, apierr.ErrPermissionDenied, cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("agent %s: %w: agent SVID %s is not valid before %s (check the clocks)",
			id, apierr.ErrUnauthenticated, cert.SerialNumber.Text(16), cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// ServerIdentity is what the agent API's TLS listener needs of the issuer (issuer.Issuer): the node's
// server SVID, its ledger record committed, and the trust domain.
type ServerIdentity interface {
	ServerCertificate(ctx context.Context) (*tls.Certificate, error)
	TrustDomain() spiffeid.TrustDomain
}

// BundleSource is the trust bundle agents' certificates must chain to (storage.Store).
type BundleSource interface {
	Bundle() storage.Bundle
}

// ServerTLSConfig is the TLS 1.3 configuration of the agent API listener. The server presents an SVID
// (spiffe://<td>/signet/server/<node>) signed by its own CA and re-minted at half life; client
// certificates are optional at the TLS layer (AttestAgent has none) and, when present, must chain to the
// trust bundle and be valid by clock (nil: time.Now). Which RPCs need one is decided by TLSAgentAuth.
//
// The client certificate is checked in VerifyConnection, which crypto/tls calls on every handshake,
// resumed ones included (VerifyPeerCertificate is skipped on resumption): a session resumed from a
// ticket is held to the bundle and the clock of now, not of the day the ticket was issued.
func ServerTLSConfig(ctx context.Context, id ServerIdentity, st BundleSource, clock func() time.Time) (*tls.Config, error) {
	if clock == nil {
		clock = time.Now
	}
	if _, err := id.ServerCertificate(ctx); err != nil {
		return nil, err
	}
	td := id.TrustDomain()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return id.ServerCertificate(hello.Context())
		},
		ClientAuth: tls.RequestClientCert,
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
