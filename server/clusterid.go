package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
)

// ClusterIdentity is this node's side of the cluster layer: its credentials (cluster.Identity) and the
// registration of nodes in the bundle and the ledger (cluster.Registrar).
type ClusterIdentity struct {
	s  *Server
	sc *issuer.ServerCert
}

var (
	_ cluster.Identity  = (*ClusterIdentity)(nil)
	_ cluster.Registrar = (*ClusterIdentity)(nil)
)

// ClusterIdentity returns the node's cluster identity.
func (s *Server) ClusterIdentity() (*ClusterIdentity, error) {
	sc, err := s.Issuer.ServerCert()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return &ClusterIdentity{s: s, sc: sc}, nil
}

// Certificate is the current server SVID (its record committed), or nil before there is one. From half
// its life, a renewal is started in the background (the agent API's handshakes renew it too).
func (c *ClusterIdentity) Certificate() *tls.Certificate { return c.sc.Current() }

// NewCertificate signs a server SVID whose record the leader commits when this node registers.
func (c *ClusterIdentity) NewCertificate() (*tls.Certificate, error) { return c.sc.Sign() }

// InstallCertificate makes cert, its record committed by the leader, the current server SVID.
func (c *ClusterIdentity) InstallCertificate(cert *tls.Certificate) { c.sc.Install(cert) }

// X509Authorities is the trust bundle's X.509 roots.
func (c *ClusterIdentity) X509Authorities() []*x509.Certificate {
	return c.s.cfg.Store.Bundle().X509Authorities
}

// Authorities are this node's X.509 roots (DER, concatenated: its self-signed root, or its upstream
// authority's roots) and JWT public key (PKIX DER) with its key ID.
func (c *ClusterIdentity) Authorities() (x509Roots, jwtKey []byte, jwtKeyID string) {
	authority := c.s.authority()
	pub, err := x509.MarshalPKIXPublicKey(authority.JWTPublicKey())
	if err != nil {
		panic(fmt.Sprintf("server: the CA's JWT key does not marshal: %v", err)) // the CA made it: a bug
	}
	var roots []byte
	for _, r := range authority.X509Roots() {
		roots = append(roots, r.Raw...)
	}
	return roots, pub, authority.JWTKeyID()
}

// RegisterSelf publishes this node's authorities and makes sure its server SVID is current (minted and
// recorded here: this node is the leader).
func (c *ClusterIdentity) RegisterSelf(ctx context.Context) error {
	if err := c.s.PublishAuthorities(ctx); err != nil {
		return err
	}
	if _, err := c.sc.Get(ctx); err != nil {
		return fmt.Errorf("server: server SVID: %w", err)
	}
	return nil
}

// RegisterNode publishes a joining node's authorities into the bundle and commits the ledger record of
// the server SVID it joined with (verified by the cluster layer to name it and chain to its root).
func (c *ClusterIdentity) RegisterNode(ctx context.Context, n cluster.NodeCredentials) error {
	pub, err := x509.ParsePKIXPublicKey(n.JWTKey)
	if err != nil {
		return fmt.Errorf("server: node %s: JWT authority: %w", n.NodeID, err)
	}
	if err := c.s.publish(ctx, n.NodeID, n.X509Authorities, n.X509NotAfter, pub, n.JWTKeyID); err != nil {
		return err
	}
	if err := c.s.Issuer.RecordServerSVID(ctx, n.SVID, n.NodeID); err != nil {
		return fmt.Errorf("server: node %s: record its server SVID: %w", n.NodeID, err)
	}
	return nil
}

// publish puts a node's X.509 roots and JWT key into the bundle (idempotent). notAfter is when the node's
// X.509 signing certificate and JWT key expire: a root is published with that NotAfter (its own if
// earlier), since the node's keys depend on it no longer; with an upstream authority, a root shared by
// several keys keeps the NotAfter of the first, and stays while any live key depends on it.
func (s *Server) publish(ctx context.Context, node string, roots []*x509.Certificate, notAfter time.Time, jwtKey any, kid string) error {
	now := s.cfg.Clock().UTC()
	for _, root := range roots {
		sum := sha256.Sum256(root.Raw)
		na := notAfter
		if root.NotAfter.Before(na) {
			na = root.NotAfter
		}
		if err := s.cfg.Store.PutAuthority(ctx, storage.Authority{Kind: storage.AuthorityX509, ID: hex.EncodeToString(sum[:]),
			DER: root.Raw, NotAfter: na, Node: node, AddedAt: now}); err != nil {
			return fmt.Errorf("server: publish X.509 authority of node %s: %w", node, err)
		}
	}
	pub, err := x509.MarshalPKIXPublicKey(jwtKey)
	if err != nil {
		return fmt.Errorf("server: publish JWT authority of node %s: %w", node, err)
	}
	if err := s.cfg.Store.PutAuthority(ctx, storage.Authority{Kind: storage.AuthorityJWT, ID: kid,
		DER: pub, NotAfter: notAfter, Node: node, AddedAt: now}); err != nil {
		return fmt.Errorf("server: publish JWT authority of node %s: %w", node, err)
	}
	return nil
}
