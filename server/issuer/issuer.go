// Package issuer turns an authorized request into credentials: it checks that the calling agent may
// issue the entry (authorize), applies the issuance limits (rate, free disk), signs with the node's CA,
// has the ledger record committed (the group-commit Recorder) and only then returns the credential.
// Every credential a server node hands out is signed here: workload X.509- and JWT-SVIDs, agent SVIDs
// (recorded by the agent API with the attestation or renewal they belong to) and the node's own server
// SVID.
package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bounds on what one agent request may carry. A JWT-SVID's audiences are copied into its issuance
// record, kept for the ledger's retention: they are bounded in number, per value and in total, as the
// Workload API bounds them (workloadapi.MaxAudiences, MaxAudienceLen, MaxAudienceTotal), so that a
// compromised agent cannot make each record larger than an honest one.
const (
	MaxCSRBatch      = 1000
	MaxCSRSize       = 16 << 10
	MaxAudiences     = 16
	MaxAudienceLen   = 256
	MaxAudienceTotal = 1024
)

// Caller is an authenticated agent: who asks, how its node was attested, and its node selectors.
type Caller struct {
	AgentID         spiffeid.ID
	NodeAttestation string
	Selectors       []selector.Selector
}

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	Store *storage.Store
	// CA signs everything, unless Keys is set.
	CA *ca.CA
	// Keys, if set, are the node's rotating CA keys (ca/rotation.Manager): every credential is signed
	// by the key active at the time. CA is then the node's first key (its trust domain is the same).
	Keys     ActiveKey
	Recorder *Recorder
	// NodeID names this server node in the ledger.
	NodeID string
	// Limits are the issuance rate limits (zero fields take the defaults).
	Limits IssuanceLimits
	// JWTIssuer, if set, is the iss claim of every JWT-SVID this node signs: the OIDC issuer URL
	// (server/oidc) relying parties that federate over OIDC discovery check. Every server of a cluster
	// must be configured with the same one (docs/oidc.md).
	JWTIssuer string
	// DataDir, if set, is the directory whose file system must keep MinFreeDisk bytes (default
	// DefaultMinFreeDisk) free for the server to issue, as measured by FreeDisk (default StatfsFree).
	DataDir     string
	MinFreeDisk uint64
	FreeDisk    FreeDiskFunc
	Clock       func() time.Time
	Logger      *slog.Logger
}

// ActiveKey is the node's CA key that signs now.
type ActiveKey interface{ Active() *ca.CA }

// Issuer turns an authorized request into credentials: it checks that the calling agent may issue the
// entry, signs, records the issuance through the ledger, and only then returns the credential.
type Issuer struct {
	cfg IssuerConfig
	log *slog.Logger
	// serverID is the parent of node aliases, spiffe://<td>/signet/server.
	serverID string
	// agents and entries are the issuance token buckets, keyed by agent and by agent and entry.
	agents, entries *ratelimit.Buckets[string]
	disk            *diskGuard
	// refusals rate-limits the log lines of refused requests.
	refusals *ratelimit.Lines
	// sc is the node's server SVID, shared by the agent API and the cluster port.
	scOnce sync.Once
	sc     *ServerCert
}

// NewIssuer validates cfg and returns an Issuer.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("issuer: config: Store is required")
	case cfg.CA == nil:
		return nil, errors.New("issuer: config: CA is required")
	case cfg.Recorder == nil:
		return nil, errors.New("issuer: config: Recorder is required")
	case cfg.NodeID == "":
		return nil, errors.New("issuer: config: NodeID is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	limits, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("issuer: config: %w", err)
	}
	cfg.Limits = limits
	if cfg.MinFreeDisk == 0 {
		cfg.MinFreeDisk = DefaultMinFreeDisk
	}
	if cfg.FreeDisk == nil {
		cfg.FreeDisk = StatfsFree
	}
	return &Issuer{cfg: cfg, log: cfg.Logger.With("component", "issuer"), serverID: ServerID(cfg.CA.TrustDomain()).String(),
		agents:   ratelimit.NewBuckets[string](limits.AgentRate, limits.AgentBurst, 0),
		entries:  ratelimit.NewBuckets[string](limits.EntryRate, limits.EntryBurst, 0),
		disk:     &diskGuard{dir: cfg.DataDir, min: cfg.MinFreeDisk, free: cfg.FreeDisk, clock: cfg.Clock},
		refusals: apierr.NewRefusalLogLimiter()}, nil
}

// authority is the CA to sign with now.
func (i *Issuer) authority() *ca.CA {
	if i.cfg.Keys != nil {
		return i.cfg.Keys.Active()
	}
	return i.cfg.CA
}

// TrustDomain is the trust domain of the node's CA.
func (i *Issuer) TrustDomain() spiffeid.TrustDomain { return i.cfg.CA.TrustDomain() }

// CheckDisk returns nil while the data dir's file system has room to issue, or an error wrapping
// apierr.ErrResourceExhausted naming the free space and min_free_disk.
func (i *Issuer) CheckDisk() error { return i.disk.check() }

// admit lets caller have n SVIDs signed, or says which limit refuses them: the server's free disk space
// or the agent's issuance rate.
func (i *Issuer) admit(caller Caller, n int) error {
	if err := i.disk.check(); err != nil {
		return err
	}
	if r := i.agents.Take(caller.AgentID.String(), n, i.cfg.Clock()); !r.OK {
		l := i.cfg.Limits
		return fmt.Errorf("agent %s: %w: issuance rate limit per agent reached (%g SVIDs/s, burst %d: issuance_limits.agent_rate, agent_burst; %d asked): retry in %s",
			caller.AgentID, apierr.ErrResourceExhausted, l.AgentRate, l.AgentBurst, n, r.Wait)
	}
	return nil
}

// admitEntry lets caller have one SVID of entry e signed, or refuses it by the per-entry rate limit.
func (i *Issuer) admitEntry(caller Caller, e *storage.Entry) error {
	if r := i.entries.Take(caller.AgentID.String()+" "+e.ID, 1, i.cfg.Clock()); !r.OK {
		l := i.cfg.Limits
		return fmt.Errorf("entry %q: %w: issuance rate limit per entry and agent reached (%g SVIDs/s, burst %d: issuance_limits.entry_rate, entry_burst): retry in %s",
			e.ID, apierr.ErrResourceExhausted, l.EntryRate, l.EntryBurst, r.Wait)
	}
	return nil
}

// authorize returns the entry if caller may issue it now: it is parented to the caller's agent ID or to
// one of its node aliases (parents), and has not expired.
func (i *Issuer) authorize(caller Caller, parents []string, entryID string) (storage.Entry, error) {
	e, err := i.cfg.Store.Entry(entryID)
	if err != nil {
		// Do not tell an agent whether an entry it does not parent exists.
		return storage.Entry{}, fmt.Errorf("entry %q: %w: not an entry of agent %s", entryID, apierr.ErrPermissionDenied, caller.AgentID)
	}
	if _, ok := slices.BinarySearch(parents, e.ParentID); !ok {
		i.refusals.Warn(i.log, i.cfg.Clock(), "agent asked for an entry it does not parent", "agent", caller.AgentID, "entry", entryID, "spiffe_id", e.SPIFFEID)
		return storage.Entry{}, fmt.Errorf("entry %q: %w: not an entry of agent %s", entryID, apierr.ErrPermissionDenied, caller.AgentID)
	}
	switch now := i.cfg.Clock(); {
	case e.Expired(now):
		return storage.Entry{}, fmt.Errorf("entry %q: %w: expired at %s", entryID, apierr.ErrPermissionDenied, e.ExpiresAt.Format(time.RFC3339))
	case e.Disabled:
		return storage.Entry{}, fmt.Errorf("entry %q: %w: disabled (%s)", entryID, apierr.ErrPermissionDenied, e.DisabledReason)
	case e.Pending:
		return storage.Entry{}, fmt.Errorf("entry %q: %w: waiting for approval", entryID, apierr.ErrPermissionDenied)
	}
	return e, nil
}

// Parents returns the parent IDs caller may issue entries of, sorted: its agent ID and the node aliases
// it belongs to at now.
func (i *Issuer) Parents(caller Caller, now time.Time) []string {
	return parentsOf(i.cfg.Store, i.serverID, caller, now)
}

// record builds the ledger record of an issuance. Its IssuedAt is stamped by the store when the record
// is committed: the moment the credential may leave the server.
func (i *Issuer) record(e *storage.Entry, caller Caller, kind storage.IssuanceKind, id string, expires time.Time) storage.Issuance {
	return storage.Issuance{
		ID: id, Kind: kind, SPIFFEID: e.SPIFFEID, EntryID: e.ID, Owner: e.Owner,
		Selectors: selector.Strings(e.Selectors), ExpiresAt: expires.UTC(),
		Node: i.cfg.NodeID, Agent: caller.AgentID.String(), NodeAttestation: caller.NodeAttestation,
	}
}

// X509Request asks for an X.509-SVID for an entry, for the key in CSR (PKCS#10 DER).
type X509Request struct {
	EntryID string
	CSR     []byte
}

// X509Result is the outcome of one X509Request: a certificate chain (leaf first) or an error.
type X509Result struct {
	EntryID string
	Chain   []*x509.Certificate
	Err     error
}

// SignX509SVIDs signs each request the caller is entitled to. Every signed certificate's ledger record
// is committed (in one group commit for the whole batch) before any certificate is returned; if that
// commit fails, every result fails.
func (i *Issuer) SignX509SVIDs(ctx context.Context, caller Caller, reqs []X509Request) ([]X509Result, error) {
	if len(reqs) > MaxCSRBatch {
		return nil, fmt.Errorf("requests: %w: %d CSRs in one batch, at most %d", apierr.ErrInvalidArgument, len(reqs), MaxCSRBatch)
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	if err := i.admit(caller, len(reqs)); err != nil {
		return nil, err
	}
	results := make([]X509Result, len(reqs))
	recs := make([]storage.Issuance, 0, len(reqs))
	parents := i.Parents(caller, i.cfg.Clock())
	for n, req := range reqs {
		results[n].EntryID = req.EntryID
		chain, rec, err := i.signOne(caller, parents, req)
		if err != nil {
			results[n].Err = err
			continue
		}
		results[n].Chain = chain
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return results, nil
	}
	if err := i.cfg.Recorder.Record(ctx, recs...); err != nil {
		// Signed but not recorded: drop every certificate.
		return nil, err
	}
	return results, nil
}

func (i *Issuer) signOne(caller Caller, parents []string, req X509Request) ([]*x509.Certificate, storage.Issuance, error) {
	e, err := i.authorize(caller, parents, req.EntryID)
	if err != nil {
		return nil, storage.Issuance{}, err
	}
	if err := i.admitEntry(caller, &e); err != nil {
		return nil, storage.Issuance{}, err
	}
	csr, err := parseCSR(req.CSR, e.SPIFFEID)
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("entry %q: %w", e.ID, err)
	}
	return i.signForKey(&e, caller, csr.PublicKey)
}

// signForKey signs an X.509-SVID of an authorized entry for pub and builds its ledger record. It returns
// the chain to deliver, leaf first (then the node's intermediate, under an upstream authority).
func (i *Issuer) signForKey(e *storage.Entry, caller Caller, pub crypto.PublicKey) ([]*x509.Certificate, storage.Issuance, error) {
	id, err := spiffeid.FromString(e.SPIFFEID)
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("entry %q: stored SPIFFE ID: %w", e.ID, err)
	}
	chain, err := i.authority().SignX509SVIDChain(ca.X509SVIDParams{SPIFFEID: id, PublicKey: pub, TTL: e.X509TTL, DNSNames: e.DNSNames})
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("entry %q: %w", e.ID, err)
	}
	cert := chain[0]
	rec := i.record(e, caller, storage.KindX509SVID, cert.SerialNumber.Text(16), cert.NotAfter)
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	rec.PublicKeySHA256 = hex.EncodeToString(sum[:])
	rec.SignedBy = ca.SignerKeyID(cert)
	return chain, rec, nil
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// parseCSR checks a CSR from an agent: well-formed, self-signed, no CA request, a strong key, and no
// SPIFFE ID other than the entry's.
func parseCSR(der []byte, spiffeID string) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("csr is required: %w", apierr.ErrInvalidArgument)
	}
	if len(der) > MaxCSRSize {
		return nil, fmt.Errorf("csr: %w: larger than %d bytes", apierr.ErrInvalidArgument, MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("csr: %w: %v", apierr.ErrInvalidArgument, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: %w: signature does not verify: %v", apierr.ErrInvalidArgument, err)
	}
	for _, u := range csr.URIs {
		if u.String() != spiffeID {
			return nil, fmt.Errorf("csr: %w: asks for %q, the entry is %q", apierr.ErrInvalidArgument, u, spiffeID)
		}
	}
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(oidBasicConstraints) {
			var bc struct {
				IsCA bool `asn1:"optional"`
			}
			if _, err := asn1.Unmarshal(ext.Value, &bc); err != nil || bc.IsCA {
				return nil, fmt.Errorf("csr: %w: requests a CA certificate", apierr.ErrInvalidArgument)
			}
		}
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("csr: %w: ECDSA curve %s not accepted (use P-256 or P-384)", apierr.ErrInvalidArgument, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("csr: %w: RSA key of %d bits is too weak (at least 2048)", apierr.ErrInvalidArgument, k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("csr: %w: key type %T not accepted (use ECDSA P-256)", apierr.ErrInvalidArgument, csr.PublicKey)
	}
	return csr, nil
}

// SignJWTSVID mints a JWT-SVID for an entry the caller parents and records it before returning it.
func (i *Issuer) SignJWTSVID(ctx context.Context, caller Caller, entryID string, audience []string) (*ca.JWTSVID, error) {
	if len(audience) == 0 {
		return nil, fmt.Errorf("audience is required: %w", apierr.ErrInvalidArgument)
	}
	if len(audience) > MaxAudiences {
		return nil, fmt.Errorf("audience: %w: more than %d values", apierr.ErrInvalidArgument, MaxAudiences)
	}
	total := 0
	for _, a := range audience {
		if a == "" || len(a) > MaxAudienceLen {
			return nil, fmt.Errorf("audience %.40q: %w: must be 1 to %d bytes", a, apierr.ErrInvalidArgument, MaxAudienceLen)
		}
		total += len(a)
	}
	if total > MaxAudienceTotal {
		return nil, fmt.Errorf("audience: %w: %d bytes in all, at most %d", apierr.ErrInvalidArgument, total, MaxAudienceTotal)
	}
	if err := i.admit(caller, 1); err != nil {
		return nil, err
	}
	e, err := i.authorize(caller, i.Parents(caller, i.cfg.Clock()), entryID)
	if err != nil {
		return nil, err
	}
	if err := i.admitEntry(caller, &e); err != nil {
		return nil, err
	}
	id, err := spiffeid.FromString(e.SPIFFEID)
	if err != nil {
		return nil, fmt.Errorf("entry %q: stored SPIFFE ID: %w", e.ID, err)
	}
	authority := i.authority() // the key that signs is the key the record names
	svid, err := authority.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: id, Audience: audience, TTL: e.JWTTTL, Issuer: i.cfg.JWTIssuer})
	if err != nil {
		return nil, fmt.Errorf("entry %q: %w", e.ID, err)
	}
	rec := i.record(&e, caller, storage.KindJWTSVID, svid.ID, svid.ExpiresAt)
	rec.Audience, rec.SignedBy = audience, authority.JWTKeyID()
	if err := i.cfg.Recorder.Record(ctx, rec); err != nil {
		return nil, err
	}
	return svid, nil
}

// AgentSVIDRequest asks for an agent SVID: the agent's ID, its CSR (PKCS#10 DER), the lifetime asked
// (capped by the CA's remaining life) and what its ledger record says of it.
type AgentSVIDRequest struct {
	ID          spiffeid.ID
	CSR         []byte
	TTL         time.Duration
	Owner       string
	Selectors   []selector.Selector
	Attestation string
}

// SignAgentSVID signs an agent SVID for the CSR's key and builds its ledger record. The record is not
// committed here: the caller commits it in the same Raft command as the attestation or renewal it
// belongs to (storage.Store.AttestAgent, RenewAgent), and hands the certificate out only once that
// command committed. It returns the chain to deliver, leaf first.
func (i *Issuer) SignAgentSVID(req AgentSVIDRequest) ([]*x509.Certificate, storage.Issuance, error) {
	id := req.ID
	csr, err := parseCSR(req.CSR, id.String())
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("agent %s: %w", id, err)
	}
	// Capped at the active key's NotAfter by the CA; the agent renews at half the SVID's actual life.
	chain, err := i.authority().SignX509SVIDChain(ca.X509SVIDParams{SPIFFEID: id, PublicKey: csr.PublicKey, TTL: req.TTL})
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("agent %s: %w", id, err)
	}
	cert := chain[0]
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	rec := storage.Issuance{ID: cert.SerialNumber.Text(16), Kind: storage.KindX509SVID, SPIFFEID: id.String(),
		Owner: req.Owner, Selectors: selector.Strings(req.Selectors), PublicKeySHA256: hex.EncodeToString(sum[:]),
		ExpiresAt: cert.NotAfter.UTC(), Node: i.cfg.NodeID, Agent: id.String(), NodeAttestation: req.Attestation,
		SignedBy: ca.SignerKeyID(cert)}
	return chain, rec, nil
}
