package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SystemOwner owns the credentials Signet issues itself, such as the servers' TLS SVIDs, in the ledger.
const SystemOwner = "signet"

// ServerCert returns the node's server SVID (spiffe://<td>/signet/server/<node>) holder, created once and
// shared by the agent API's TLS configuration and the cluster port.
func (i *Issuer) ServerCert() (*ServerCert, error) {
	id, err := spiffeid.FromSegments(i.cfg.CA.TrustDomain(), "signet", "server", i.cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("issuer: SPIFFE ID for node %q: %w", i.cfg.NodeID, err)
	}
	i.scOnce.Do(func() { i.sc = &ServerCert{iss: i, id: id} })
	return i.sc, nil
}

// ServerCertificate returns the node's current server SVID, minting and recording one if there is none
// or the current one is past half its life.
func (i *Issuer) ServerCertificate(ctx context.Context) (*tls.Certificate, error) {
	sc, err := i.ServerCert()
	if err != nil {
		return nil, err
	}
	return sc.Get(ctx)
}

// RecordServerSVID commits the ledger record of node's server SVID cert: the leader's side of a node
// joining the cluster with a certificate it signed itself (ServerCert.Sign).
func (i *Issuer) RecordServerSVID(ctx context.Context, cert *x509.Certificate, node string) error {
	return i.cfg.Recorder.Record(ctx, serverSVIDRecord(cert, node))
}

// ServerCert mints and caches the server's TLS certificate. Like every credential it leaves the server
// only once its ledger record is committed: a certificate whose record fails is not used.
type ServerCert struct {
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

// Get returns the current certificate, minting (and recording) a new one from half its life. The CA
// stamps validity by the wall clock, so renewal follows the wall clock too.
func (s *ServerCert) Get(ctx context.Context) (*tls.Certificate, error) {
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

// Current is the current certificate (its record committed), or nil before there is one. From half its
// life, a renewal is started in the background (the agent API's handshakes renew it too).
func (s *ServerCert) Current() *tls.Certificate {
	cert := s.current.Load()
	if cert != nil && time.Now().After(halfLife(cert.Leaf)) && s.mu.TryLock() {
		s.mu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := s.Get(ctx); err != nil {
				s.iss.log.Warn("server SVID renewal failed; retried on next use", "error", err)
			}
		}()
	}
	return cert
}

// Renew mints (and records) a new certificate now, whatever the current one's age: after the node's CA
// key was revoked, the current one chains to a key out of the bundle.
func (s *ServerCert) Renew(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cert, err := s.mint(ctx)
	if err != nil {
		return fmt.Errorf("server TLS: renew: %w", err)
	}
	s.install(cert)
	return nil
}

// Install makes cert, its record committed by the leader (RecordServerSVID), the current certificate.
func (s *ServerCert) Install(cert *tls.Certificate) {
	if !s.mu.TryLock() {
		// A renewal holds the lock, and may be waiting on this very certificate (its record is
		// forwarded with it): make it current for the cluster port; the renewal installs its own.
		s.current.Store(cert)
		return
	}
	defer s.mu.Unlock()
	s.install(cert)
}

func halfLife(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// install makes cert, its ledger record committed, the current certificate. Called with s.mu held.
func (s *ServerCert) install(cert *tls.Certificate) {
	s.cert = cert
	s.notAfter = cert.Leaf.NotAfter
	s.renewAt = halfLife(cert.Leaf)
	s.current.Store(cert)
}

// mint signs a new server SVID for a new key and commits its ledger record. min_free_disk does not
// apply: it keeps workloads from filling the disk, and a node refused its own certificate could not
// start to report its disk (one record a day; a disk really full fails the record, and the certificate
// is dropped).
func (s *ServerCert) mint(ctx context.Context) (*tls.Certificate, error) {
	cert, err := s.Sign()
	if err != nil {
		return nil, err
	}
	if err := s.iss.RecordServerSVID(ctx, cert.Leaf, s.iss.cfg.NodeID); err != nil {
		return nil, err
	}
	return cert, nil
}

// Sign signs a new server SVID for a new key; its ledger record is not committed yet. It is for the
// cluster layer only, which presents it to the leader when this node joins: the leader commits its record
// (RecordServerSVID) before the node Installs it.
func (s *ServerCert) Sign() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	authority := s.iss.authority()
	// The CA caps the SVID at its own NotAfter; near the key's end the certificate is shorter and is
	// re-minted at half its (shorter) life.
	chain, err := authority.SignX509SVIDChain(ca.X509SVIDParams{SPIFFEID: s.id, PublicKey: key.Public(), TTL: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

// serverSVIDRecord is the ledger record of a server SVID of node.
func serverSVIDRecord(cert *x509.Certificate, node string) storage.Issuance {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	id, _ := x509svid.IDFromCert(cert)
	return storage.Issuance{ID: cert.SerialNumber.Text(16), Kind: storage.KindX509SVID, SPIFFEID: id.String(),
		Owner: SystemOwner, PublicKeySHA256: hex.EncodeToString(sum[:]), ExpiresAt: cert.NotAfter.UTC(), Node: node,
		SignedBy: ca.SignerKeyID(cert)}
}
