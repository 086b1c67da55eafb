// Package ca is Signet's certificate authority: one self-signed root per server node (or, with an
// Upstream, an intermediate an existing PKI signed; package ca/upstream) that signs X.509-SVIDs and
// JWT-SVIDs for a single SPIFFE trust domain.
//
// The package knows nothing about Raft, registration entries or storage beyond its own key files.
// LoadOrCreate keeps the node's keys in a directory (created on first use); New turns them into a
// CA; the CA signs SVIDs; MarshalBundle and MarshalJWTBundle publish the public halves.
//
//	td := spiffeid.RequireTrustDomainFromString("example.org")
//	x509Auth, jwtAuth, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: "/var/lib/signet/ca", TrustDomain: td})
//	if err != nil {
//		return err
//	}
//	authority, err := ca.New(ca.Config{TrustDomain: td, X509: x509Auth, JWT: jwtAuth})
//	if err != nil {
//		return err
//	}
//
//	id := spiffeid.RequireFromPath(td, "/web")
//	cert, err := authority.SignX509SVID(ca.X509SVIDParams{SPIFFEID: id, PublicKey: workloadKey.Public(), TTL: time.Hour})
//	svid, err := authority.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: id, Audience: []string{"reports"}, TTL: 5 * time.Minute})
//
//	bundle, err := ca.MarshalBundle(td, []*x509.Certificate{authority.X509Authority()},
//		map[string]crypto.PublicKey{authority.JWTKeyID(): authority.JWTPublicKey()}, seq, 5*time.Minute)
//
// Errors start with "ca: ". Bad input wraps ErrInvalidParams; an SVID whose TTL reaches past the
// CA's NotAfter expires with the CA (capped, not refused), and signing with an expired CA wraps
// ErrCAExpired. A CA is immutable and safe for concurrent use. See DESIGN.md for the
// reasoning behind the layout.
package ca
