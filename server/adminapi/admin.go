// Package adminapi is the admin API of a server node (proto/adminv1): entries and owners with their
// validation and policy, governance (updates, disabling, approval, offboarding, reviews), the ledger
// and credential lookup, the audit log and its checkpoints, join tokens, agents and snapshots. Every
// write goes through the store's proposal seam.
package adminapi

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/bundlewire"
	"github.com/signet-id/signet/server/denials"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// KeyRing is the node's rotating CA keys: the one that signs now, and every root of the node still in
// the bundle.
type KeyRing interface {
	Active() *ca.CA
	Roots() []*x509.Certificate
}

// authority is the CA that signs now.
func (s *AdminService) authority() *ca.CA {
	if s.cfg.Keys != nil {
		return s.cfg.Keys.Active()
	}
	return s.cfg.CA
}

// ownRoots are the roots a checkpoint of this node may be signed by.
func (s *AdminService) ownRoots() []*x509.Certificate {
	if s.cfg.Keys != nil {
		return s.cfg.Keys.Roots()
	}
	return []*x509.Certificate{s.cfg.CA.X509Authority()}
}

// AdminAuthenticator names the admin making a call (for example "uid:1000(alice)"), or refuses it.
type AdminAuthenticator func(ctx context.Context) (string, error)

// AdminServiceConfig configures the admin API.
type AdminServiceConfig struct {
	Store *storage.Store
	// CA signs checkpoints and bounds entry TTLs by its life, unless Keys is set.
	CA *ca.CA
	// Keys, if set, are the node's rotating CA keys (ca/rotation.Manager): the active one signs
	// checkpoints and bounds entry TTLs, and a checkpoint signed by any of the node's roots verifies.
	Keys KeyRing
	// KeyAdmin, if set, is the node's key rotation, for CAStatus and RotateCA (server.Server).
	KeyAdmin KeyAdmin
	// Revoker, if set, replaces and retires this node's revoked keys (server.Server); without it the
	// node's keys do not rotate and a revocation of one only takes it out of the bundle.
	Revoker KeyRevoker
	// MaxSVIDTTL is the longest SVID TTL an entry may ask (zero: 30 days); with rotating keys, the
	// schedule's MaxSVIDTTL (ca.rotation.max_svid_ttl), which every active key outlives.
	MaxSVIDTTL  time.Duration
	TrustDomain spiffeid.TrustDomain
	// Selectors are the selector types entries may use: those of the attestors this server is built
	// with (a registry built in main); required.
	Selectors *selector.Registry
	// Authenticate identifies the admin; required.
	Authenticate AdminAuthenticator
	// MinX509SVIDTTL and MinJWTSVIDTTL are the shortest SVID lifetimes entries may ask (zero: the
	// defaults MinX509SVIDTTL and MinJWTSVIDTTL; at least ShortestSVIDTTL).
	MinX509SVIDTTL, MinJWTSVIDTTL time.Duration
	// DefaultParentID is used for entries created without a parent (dev mode: the dev agent). Empty
	// means a parent is required.
	DefaultParentID string
	// Policy, if set, is this server's configured entry policy. The cluster's policy is in the
	// replicated state and decides every entry create and update on every server; Policy seeds it when
	// the cluster has none (SeedPolicy), and until then decides this server's writes. A configured
	// policy that differs from the cluster's is only warned about.
	Policy *policy.Config
	// PolicySeedRetry is how long SeedPolicy waits after a failed attempt (default DefaultPolicySeedRetry).
	PolicySeedRetry time.Duration
	// DefaultEntryTTL is how long entries created without an expiry live (default DefaultEntryLifetime);
	// an entry that must never expire has to say so (never_expires), and reviews flag it.
	DefaultEntryTTL time.Duration
	// Denials, if set, carries refused requests to the audit log (Server sets its own); without it
	// refusals are only logged.
	Denials *denials.DenialLog
	// AuditCheckpointFile, if set, holds the node's latest automatic audit checkpoint: VerifyAudit
	// checks the chain against it when the caller brings none, and no checkpoint is signed of a chain
	// that no longer holds it.
	AuditCheckpointFile string
	// Federation, if set, fetches federated bundles now (RefreshFederation; server.Server's poller).
	Federation FederationRefresher
	// MaxSnapshotSize is the largest state SaveSnapshot serves (zero: DefaultMaxSnapshotSize).
	MaxSnapshotSize int64
	Clock           func() time.Time
	Logger          *slog.Logger
}

// DefaultEntryLifetime is how long an entry created without an expiry lives.
const DefaultEntryLifetime = 90 * 24 * time.Hour

// AdminService implements the admin API (proto/adminv1).
type AdminService struct {
	adminv1.UnimplementedAdminServer
	cfg   AdminServiceConfig
	log   *slog.Logger
	audit denials.Auditor
	// seed is the configured policy, compiled; compiled caches the cluster's.
	seed     *policy.Policy
	compiled compiledPolicy
}

// NewAdminService validates cfg.
func NewAdminService(cfg AdminServiceConfig) (*AdminService, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("adminapi: config: Store is required")
	case cfg.CA == nil:
		return nil, errors.New("adminapi: config: CA is required")
	case cfg.Authenticate == nil:
		return nil, errors.New("adminapi: config: Authenticate is required")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("adminapi: config: TrustDomain is required")
	case cfg.Selectors == nil:
		return nil, errors.New("adminapi: config: Selectors is required (the registry of the attestors' selector types)")
	}
	switch {
	case cfg.MaxSVIDTTL == 0:
		cfg.MaxSVIDTTL = maxTTL
	case cfg.MaxSVIDTTL < ShortestSVIDTTL || cfg.MaxSVIDTTL > maxTTL:
		return nil, fmt.Errorf("adminapi: config: MaxSVIDTTL %s: want between %s and %s", cfg.MaxSVIDTTL, ShortestSVIDTTL, maxTTL)
	}
	for _, m := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"MinX509SVIDTTL", &cfg.MinX509SVIDTTL, MinX509SVIDTTL}, {"MinJWTSVIDTTL", &cfg.MinJWTSVIDTTL, MinJWTSVIDTTL}} {
		switch {
		case *m.v == 0:
			*m.v = min(m.def, cfg.MaxSVIDTTL) // the default gives way to a shorter longest TTL
		case *m.v < ShortestSVIDTTL || *m.v > cfg.MaxSVIDTTL:
			return nil, fmt.Errorf("adminapi: config: %s %s: want between %s and %s (MaxSVIDTTL)", m.name, *m.v, ShortestSVIDTTL, cfg.MaxSVIDTTL)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultEntryTTL <= 0 {
		cfg.DefaultEntryTTL = DefaultEntryLifetime
	}
	if cfg.PolicySeedRetry <= 0 {
		cfg.PolicySeedRetry = DefaultPolicySeedRetry
	}
	var seed *policy.Policy
	if cfg.Policy != nil {
		var err error
		if seed, err = policy.Compile(*cfg.Policy); err != nil {
			return nil, fmt.Errorf("server: admin service config: Policy: %w", err)
		}
	}
	log := cfg.Logger.With("component", "admin-api")
	return &AdminService{cfg: cfg, log: log, audit: denials.Auditor{Denials: cfg.Denials, Log: log, Limit: newRefusalLogLimiter()}, seed: seed}, nil
}

func (s *AdminService) rules() entryRules {
	return entryRules{TrustDomain: s.cfg.TrustDomain, ServerID: issuer.ServerID(s.cfg.TrustDomain).String(), Now: s.cfg.Clock(),
		MaxTTL: s.cfg.MaxSVIDTTL, MinX509TTL: s.cfg.MinX509SVIDTTL, MinJWTTTL: s.cfg.MinJWTSVIDTTL, Selectors: s.cfg.Selectors}
}

// NewEntryID returns a random entry ID (128 bits, hex).
func NewEntryID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate entry ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CreateEntry validates and stores a new entry, recording which admin created it.
func (s *AdminService) CreateEntry(ctx context.Context, req *adminv1.CreateEntryRequest) (*adminv1.Entry, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if ctx, err = s.withPolicy(storage.WithActor(ctx, admin)); err != nil {
		return nil, toStatus(err)
	}
	e, err := s.prepareEntry(ctx, req.GetEntry(), s.rulesFor(ctx), admin, s.cfg.Clock().UTC().Truncate(time.Second))
	if err != nil {
		return nil, toStatus(err)
	}
	stored, err := s.cfg.Store.CreateEntry(ctx, e)
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("entry created", "entry", stored.ID, "spiffe_id", stored.SPIFFEID, "owner", stored.Owner, "by", admin)
	return entryToAdmin(&stored), nil
}

// GetEntry returns one entry.
func (s *AdminService) GetEntry(ctx context.Context, req *adminv1.GetEntryRequest) (*adminv1.Entry, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	e, err := s.cfg.Store.Entry(req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return s.entryWithStats(&e), nil
}

// ListPageSize is how many entries one ListEntries message carries: far below gRPC's 4 MB default cap.
const ListPageSize = 1000

// ListEntries streams entries matching the filters, a page at a time.
func (s *AdminService) ListEntries(req *adminv1.ListEntriesRequest, stream adminv1.Admin_ListEntriesServer) error {
	if err := checkRequest(req); err != nil {
		return toStatus(err)
	}
	if _, err := s.authenticate(stream.Context()); err != nil {
		return toStatus(err)
	}
	var entries []storage.Entry
	if req.GetParentId() != "" {
		entries = s.cfg.Store.EntriesByParent(req.GetParentId())
	} else {
		entries = s.cfg.Store.Entries()
	}
	page := &adminv1.ListEntriesResponse{}
	now := s.cfg.Clock()
	activity, err := s.cfg.Store.Activity(now) // one read for every entry's usage
	if err != nil {
		return toStatus(err)
	}
	for i := range entries {
		e := &entries[i]
		if (req.GetOwner() != "" && e.Owner != req.GetOwner()) || (req.GetSpiffeId() != "" && e.SPIFFEID != req.GetSpiffeId()) ||
			(req.GetExpired() && !e.Expired(now)) || (req.GetDisabled() && !e.Disabled) || (req.GetPending() && !e.Pending) {
			continue
		}
		out := entryToAdmin(e)
		if a := activity[e.ID]; a != nil {
			setUse(out, a.Stats, a.Deliveries)
		}
		page.Entries = append(page.Entries, out)
		if len(page.Entries) == ListPageSize {
			if err := stream.Send(page); err != nil {
				return err
			}
			page = &adminv1.ListEntriesResponse{}
		}
	}
	if len(page.Entries) > 0 {
		return stream.Send(page)
	}
	return nil
}

// DeleteEntry removes an entry; agents drop its SVIDs on the next push.
func (s *AdminService) DeleteEntry(ctx context.Context, req *adminv1.DeleteEntryRequest) (*adminv1.Entry, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	e, err := s.cfg.Store.DeleteEntry(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("entry deleted", "entry", e.ID, "spiffe_id", e.SPIFFEID, "by", admin)
	return entryToAdmin(&e), nil
}

// CreateOwner adds an owner.
func (s *AdminService) CreateOwner(ctx context.Context, req *adminv1.CreateOwnerRequest) (*adminv1.Owner, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	in := req.GetOwner()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "owner is required")
	}
	o := storage.Owner{Name: in.Name, DisplayName: in.DisplayName, Kind: in.Kind, Team: in.Team,
		CreatedAt: s.cfg.Clock().UTC().Truncate(time.Second), CreatedBy: admin}
	if err := validateOwner(&o); err != nil {
		return nil, toStatus(err)
	}
	stored, err := s.cfg.Store.CreateOwner(ctx, o)
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("owner created", "owner", stored.Name, "by", admin)
	return ownerToAdmin(&stored), nil
}

// ListOwners returns every owner.
func (s *AdminService) ListOwners(ctx context.Context, _ *adminv1.ListOwnersRequest) (*adminv1.ListOwnersResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	resp := &adminv1.ListOwnersResponse{}
	for _, o := range s.cfg.Store.Owners() {
		resp.Owners = append(resp.Owners, ownerToAdmin(&o))
	}
	return resp, nil
}

// GetBundle returns the trust bundle.
func (s *AdminService) GetBundle(ctx context.Context, _ *adminv1.GetBundleRequest) (*adminv1.Bundle, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	b := s.cfg.Store.Bundle()
	out, err := bundlewire.ToAdmin(s.cfg.TrustDomain, b)
	if err != nil {
		return nil, toStatus(err)
	}
	doc, err := ca.MarshalBundle(s.cfg.TrustDomain, b.X509Authorities, b.JWTAuthorities, b.Sequence, 5*time.Minute)
	if err != nil {
		return nil, toStatus(fmt.Errorf("bundle: %w", err))
	}
	out.SpiffeBundle = doc
	for _, c := range s.ownIntermediates() {
		out.X509Intermediates = append(out.X509Intermediates, c.Raw)
	}
	return out, nil
}

// QueryLedger pages through issuance records.
func (s *AdminService) QueryLedger(ctx context.Context, req *adminv1.QueryLedgerRequest) (*adminv1.QueryLedgerResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	// Linearizable: an issuance acknowledged by any server is in the answer (see docs/architecture.md).
	if err := s.cfg.Store.ReadBarrier(ctx); err != nil {
		return nil, toStatus(err)
	}
	if id := req.GetSerial(); id != "" {
		rec, err := s.cfg.Store.LookupIssuance(id)
		if errors.Is(err, storage.ErrIssuanceNotFound) {
			return &adminv1.QueryLedgerResponse{}, nil
		}
		if err != nil {
			return nil, toStatus(err)
		}
		return &adminv1.QueryLedgerResponse{Issuances: []*adminv1.Issuance{IssuanceToAdmin(&rec)}}, nil
	}
	q := storage.LedgerQuery{Owner: req.GetOwner(), SPIFFEID: req.GetSpiffeId(), EntryID: req.GetEntryId(),
		Agent: req.GetAgent(), SignedBy: req.GetSignedBy(), Limit: int(req.GetLimit()), Cursor: req.GetCursor()}
	if q.SignedBy != "" {
		if err := checkSignedBy(q.SignedBy); err != nil {
			return nil, toStatus(err)
		}
	}
	switch {
	case req.GetDelivered() && req.GetUndelivered():
		return nil, status.Error(codes.InvalidArgument, "delivered and undelivered: give at most one")
	case req.GetDelivered():
		q.Delivered = storage.DeliveredOnly
	case req.GetUndelivered():
		q.Delivered = storage.UndeliveredOnly
	}
	if req.GetValidAt() != 0 {
		q.ValidAt = time.Unix(0, req.GetValidAt())
	}
	if req.GetSince() != 0 {
		q.Since = time.Unix(0, req.GetSince())
	}
	if req.GetUntil() != 0 {
		q.Until = time.Unix(0, req.GetUntil())
	}
	page, err := s.cfg.Store.QueryLedger(q)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &adminv1.QueryLedgerResponse{NextCursor: page.Next}
	for i := range page.Issuances {
		resp.Issuances = append(resp.Issuances, IssuanceToAdmin(&page.Issuances[i]))
	}
	if len(resp.Issuances) == 0 && q.SignedBy != "" {
		resp.Note = s.signedByNote(q.SignedBy)
	}
	return resp, nil
}

func entryFromAdmin(in *adminv1.Entry) (storage.Entry, error) {
	e := storage.Entry{
		SPIFFEID: in.SpiffeId, ParentID: in.ParentId, Owner: in.Owner, Purpose: in.Purpose,
		X509TTL: time.Duration(in.X509TtlSeconds) * time.Second, JWTTTL: time.Duration(in.JwtTtlSeconds) * time.Second,
		DNSNames: in.DnsNames, JWTUnique: in.JwtUnique, Prefetch: in.Prefetch, NeverExpires: in.NeverExpires, Ticket: in.Ticket,
		FederatesWith: in.FederatesWith,
	}
	for _, ttl := range []struct {
		field string
		secs  int64
	}{{"x509_ttl_seconds", in.X509TtlSeconds}, {"jwt_ttl_seconds", in.JwtTtlSeconds}} {
		switch {
		case ttl.secs < 0:
			return e, fmt.Errorf("entry %q: %s %d: %w: must be positive", in.SpiffeId, ttl.field, ttl.secs, ErrInvalidArgument)
		case ttl.secs > int64(maxTTL/time.Second):
			// Checked before converting to a Duration, which would overflow.
			return e, fmt.Errorf("entry %q: %s %d: %w: at most %s", in.SpiffeId, ttl.field, ttl.secs, ErrInvalidArgument, maxTTL)
		}
	}
	if len(in.Selectors) > maxSelectors {
		return e, fmt.Errorf("entry %q: selectors: %w: more than %d", in.SpiffeId, ErrInvalidArgument, maxSelectors)
	}
	for _, s := range in.Selectors {
		e.Selectors = append(e.Selectors, selector.Selector{Type: s.Type, Value: s.Value})
	}
	if in.ExpiresAt != 0 {
		e.ExpiresAt = time.Unix(in.ExpiresAt, 0).UTC()
	}
	return e, nil
}

func entryToAdmin(e *storage.Entry) *adminv1.Entry {
	out := &adminv1.Entry{
		Id: e.ID, SpiffeId: e.SPIFFEID, ParentId: e.ParentID, Owner: e.Owner, Purpose: e.Purpose,
		X509TtlSeconds: int64(e.X509TTL / time.Second), JwtTtlSeconds: int64(e.JWTTTL / time.Second),
		DnsNames: e.DNSNames, CreatedAt: e.CreatedAt.Unix(), CreatedBy: e.CreatedBy, Revision: e.Revision,
		JwtUnique: e.JWTUnique, Prefetch: e.Prefetch, NeverExpires: e.NeverExpires, Ticket: e.Ticket,
		Disabled: e.Disabled, DisabledAt: unixOrZero(e.DisabledAt), DisabledBy: e.DisabledBy, DisabledReason: e.DisabledReason,
		Pending: e.Pending, PendingRules: e.PendingRules, ApprovedBy: e.ApprovedBy,
		UpdatedAt: unixOrZero(e.UpdatedAt), UpdatedBy: e.UpdatedBy, UpdateReason: e.UpdateReason, FederatesWith: e.FederatesWith,
	}
	for _, s := range e.Selectors {
		out.Selectors = append(out.Selectors, &adminv1.Selector{Type: s.Type, Value: s.Value})
	}
	if !e.ExpiresAt.IsZero() {
		out.ExpiresAt = e.ExpiresAt.Unix()
	}
	return out
}

// entryWithStats adds what the ledger knows about the entry's use.
func (s *AdminService) entryWithStats(e *storage.Entry) *adminv1.Entry {
	out := entryToAdmin(e)
	st, err := s.cfg.Store.EntryStats(e.ID)
	if err != nil {
		return out
	}
	ds, err := s.cfg.Store.EntryDeliveries(e.ID)
	if err != nil {
		return out
	}
	setUse(out, st, ds)
	return out
}

// setUse fills in what the ledger knows of the entry's use: minted (issued) and delivered.
func setUse(out *adminv1.Entry, st storage.EntryStats, ds storage.DeliveryStats) {
	out.IssuedCount, out.DeliveredCount = st.Count, ds.Count
	if !st.LastIssuedAt.IsZero() {
		out.LastIssuedAt = st.LastIssuedAt.UnixNano()
	}
	if !ds.LastDeliveredAt.IsZero() {
		out.LastDeliveredAt = ds.LastDeliveredAt.UnixNano()
	}
}

func ownerToAdmin(o *storage.Owner) *adminv1.Owner {
	return &adminv1.Owner{Name: o.Name, DisplayName: o.DisplayName, Kind: o.Kind, Team: o.Team,
		CreatedAt: o.CreatedAt.Unix(), CreatedBy: o.CreatedBy, Offboarded: o.Offboarded,
		OffboardedAt: unixOrZero(o.OffboardedAt), OffboardedBy: o.OffboardedBy, ReassignedTo: o.ReassignedTo}
}

// IssuanceToAdmin converts a ledger record to its API form.
func IssuanceToAdmin(r *storage.Issuance) *adminv1.Issuance {
	return &adminv1.Issuance{
		Id: r.ID, Kind: r.Kind.String(), SpiffeId: r.SPIFFEID, EntryId: r.EntryID, Owner: r.Owner,
		Selectors: r.Selectors, Audience: r.Audience, PublicKeySha256: r.PublicKeySHA256,
		IssuedAt: r.IssuedAt.UnixNano(), ExpiresAt: r.ExpiresAt.UnixNano(), Node: r.Node, Agent: r.Agent,
		NodeAttestation: r.NodeAttestation, SignedBy: r.SignedBy,
	}
}

// EnsureEntry creates e (validated like an admin request, by the named admin) unless an entry with the
// same SPIFFE ID, parent and selectors exists, and returns the stored entry and whether it was created.
// Dev mode uses it to register the invoking user idempotently.
func (s *AdminService) EnsureEntry(ctx context.Context, e storage.Entry, by string) (storage.Entry, bool, error) {
	if e.ParentID == "" {
		e.ParentID = s.cfg.DefaultParentID
	}
	ctx, err := s.withPolicy(ctx)
	if err != nil {
		return storage.Entry{}, false, err
	}
	if err := s.rulesFor(ctx).validateEntry(&e); err != nil {
		return storage.Entry{}, false, err
	}
	if err := s.checkPolicy(ctx, &e, by, "create"); err != nil {
		return storage.Entry{}, false, err
	}
	for _, existing := range s.cfg.Store.EntriesByParent(e.ParentID) {
		if existing.SPIFFEID == e.SPIFFEID && selector.Equal(existing.Selectors, e.Selectors) {
			return existing, false, nil
		}
	}
	id, err := NewEntryID()
	if err != nil {
		return storage.Entry{}, false, err
	}
	e.ID, e.CreatedAt, e.CreatedBy = id, s.cfg.Clock().UTC().Truncate(time.Second), by
	stored, err := s.cfg.Store.CreateEntry(ctx, e)
	if err != nil {
		return storage.Entry{}, false, err
	}
	return stored, true, nil
}
