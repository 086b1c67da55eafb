// Package agentapi is the agent API of a server node (proto/agentv1): node attestation through the
// configured node attestors (join tokens by default) and agent SVID renewal, TLS agent authentication, pushed entry sync, X.509 and JWT signing requests
// and delivery reports. It signs nothing itself: credentials come from its Issuer (issuer.Issuer).
package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/bundlewire"
	"github.com/signet-id/signet/server/denials"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
)

// SyncPageSize is how many entries one SyncEntries message carries: far below gRPC's 4 MB default cap,
// whatever the number of entries an agent holds.
const SyncPageSize = 1000

// AgentServerParameters are the keepalive parameters of the agent API's gRPC server for agent SVIDs of
// agentSVIDTTL (0: DefaultAgentSVIDTTL). A connection is sent GOAWAY at half the SVID lifetime (plus
// gRPC's jitter of up to 10%), when its agent has renewed and dialled again anyway, and closed a tenth of
// the lifetime later: a connection opened with a fresh SVID never outlives it. Every call and every sync
// round also checks the presented SVID against the server's clock (TLSAgentAuth); this bounds what a
// connection that is never asked to re-authenticate can hold on to.
func AgentServerParameters(agentSVIDTTL time.Duration) keepalive.ServerParameters {
	if agentSVIDTTL == 0 {
		agentSVIDTTL = DefaultAgentSVIDTTL
	}
	return keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second,
		MaxConnectionAge: agentSVIDTTL / 2, MaxConnectionAgeGrace: agentSVIDTTL / 10}
}

// Issuer is what the agent API needs of the issuer (issuer.Issuer): signing, each credential recorded
// before it is returned (agent SVIDs are recorded by the attestation or renewal they come with), the
// parents an agent may issue entries of, and whether the disk has room to issue.
type Issuer interface {
	SignX509SVIDs(ctx context.Context, caller Caller, reqs []issuer.X509Request) ([]issuer.X509Result, error)
	SignJWTSVID(ctx context.Context, caller Caller, entryID string, audience []string) (*ca.JWTSVID, error)
	SignAgentSVID(req issuer.AgentSVIDRequest) ([]*x509.Certificate, storage.Issuance, error)
	Parents(caller Caller, now time.Time) []string
	CheckDisk() error
}

// Caller is an authenticated agent (issuer.Caller).
type Caller = issuer.Caller

// Authenticator establishes which agent is calling, from the call's context (its TLS peer, or the
// in-process connection of dev mode).
type Authenticator func(ctx context.Context) (Caller, error)

// AgentServiceConfig configures the agent API.
type AgentServiceConfig struct {
	Store        *storage.Store
	Issuer       Issuer
	TrustDomain  spiffeid.TrustDomain
	Authenticate Authenticator
	// AgentSVIDTTL is the lifetime of agent SVIDs (default DefaultAgentSVIDTTL), at least 10 s; the
	// configuration (cmd/signet) requires MinAgentSVIDTTL.
	AgentSVIDTTL time.Duration
	// Denials, if set, carries refused requests to the audit log (Server sets its own); without it
	// refusals are only logged.
	Denials *denials.DenialLog
	// Deliveries, if set, group-commits delivery reports (Server sets its own); without it each report
	// is its own Raft command.
	Deliveries *DeliveryRecorder
	// NodeAttestors are the node attestors agents may attest with, one per type (default: join tokens
	// only, on Store).
	NodeAttestors []NodeAttestor
	// Clock decides token expiry, alias activity and agent timestamps (default time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
}

// AgentService implements the agent API (proto/agentv1): entry sync, X.509 batch signing, JWT signing.
type AgentService struct {
	agentv1.UnimplementedAgentServer
	cfg   AgentServiceConfig
	log   *slog.Logger
	audit denials.Auditor
	// malformed rate-limits the log lines of malformed join tokens, refusals those of denied requests,
	// limited those of requests refused by a limit of the server.
	malformed, refusals, limited *ratelimit.Lines
	attestors                    map[string]NodeAttestor // by type
}

// NewAgentService validates cfg.
func NewAgentService(cfg AgentServiceConfig) (*AgentService, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("agentapi: config: Store is required")
	case cfg.Issuer == nil:
		return nil, errors.New("agentapi: config: Issuer is required")
	case cfg.Authenticate == nil:
		return nil, errors.New("agentapi: config: Authenticate is required")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("agentapi: config: TrustDomain is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.AgentSVIDTTL == 0:
		cfg.AgentSVIDTTL = DefaultAgentSVIDTTL
	case cfg.AgentSVIDTTL < minAgentSVIDTTL:
		return nil, fmt.Errorf("agentapi: config: AgentSVIDTTL %s: at least %s", cfg.AgentSVIDTTL, minAgentSVIDTTL)
	}
	if len(cfg.NodeAttestors) == 0 {
		cfg.NodeAttestors = []NodeAttestor{&jointoken.Attestor{Store: cfg.Store, TrustDomain: cfg.TrustDomain}}
	}
	attestors := make(map[string]NodeAttestor, len(cfg.NodeAttestors))
	for _, a := range cfg.NodeAttestors {
		typ := a.Type()
		if typ == "" || len(typ) > nodeattest.MaxTypeLen {
			return nil, fmt.Errorf("agentapi: config: NodeAttestors: type %q: 1 to %d bytes", typ, nodeattest.MaxTypeLen)
		}
		if _, dup := attestors[typ]; dup {
			return nil, fmt.Errorf("agentapi: config: NodeAttestors: type %q twice", typ)
		}
		attestors[typ] = a
	}
	log := cfg.Logger.With("component", "agent-api")
	refusals := apierr.NewRefusalLogLimiter()
	return &AgentService{cfg: cfg, log: log, audit: denials.Auditor{Denials: cfg.Denials, Log: log, Limit: refusals}, refusals: refusals,
		malformed: &ratelimit.Lines{Every: malformedLogEvery}, limited: apierr.NewRefusalLogLimiter(), attestors: attestors}, nil
}

// SyncEntries pushes the caller's entries: a full listing (paged) or a delta, then every change as it
// commits. There is no polling interval: a committed change wakes the stream at once.
func (s *AgentService) SyncEntries(req *agentv1.SyncEntriesRequest, stream agentv1.Agent_SyncEntriesServer) error {
	if err := checkRequest(req); err != nil {
		return apierr.ToStatus(err)
	}
	ctx := stream.Context()
	known := req.GetKnownRevision()
	var sentBundle uint64
	sentFederated := map[string]uint64{} // trust domain -> bundle revision sent
	// federates: the trust domains each of the agent's entries federates with (those that do), kept
	// from the entry messages sent, so only the bundles its entries name are sent.
	federates := map[string][]string{}
	var lastParents []string
	first := true
	expiryTimer := time.NewTimer(time.Hour)
	expiryTimer.Stop()
	defer expiryTimer.Stop()
	for {
		// Take the change signal first, then read: a change after this point wakes the wait below even
		// if it lands while messages are being sent. Read the revision before the entries: anything
		// committed in between is sent again next time.
		changed := s.cfg.Store.Changed()
		// Authenticate every round: an agent evicted or banned meanwhile ends its stream at once.
		caller, err := s.cfg.Authenticate(ctx)
		if err != nil {
			return apierr.ToStatus(err)
		}
		rev := s.cfg.Store.Revision()
		bundle := s.cfg.Store.Bundle()
		parents := s.cfg.Issuer.Parents(caller, s.cfg.Clock())
		var msgs []*agentv1.SyncEntriesResponse
		switch {
		case !first && !slices.Equal(parents, lastParents):
			// The agent joined or left a node alias: send its whole set again.
			msgs = s.entryUpdate(parents, 0, rev, true)
		case first || rev > known:
			msgs = s.entryUpdate(parents, known, rev, first)
		}
		if first || bundle.Sequence != sentBundle {
			if len(msgs) == 0 {
				msgs = []*agentv1.SyncEntriesResponse{{Revision: rev}}
			}
			if msgs[0].Bundle, err = bundlewire.ToAgent(s.cfg.TrustDomain, bundle); err != nil {
				return apierr.ToStatus(err)
			}
			sentBundle = bundle.Sequence
		}
		noteFederates(federates, msgs)
		fed, err := s.federatedUpdate(rev, sentFederated, federates)
		if err != nil {
			return apierr.ToStatus(err)
		}
		if first {
			// The agent may hold bundles of trust domains deleted while it was not connected: the first
			// round's last entry message names every one federated with now (their bundles follow).
			last := msgs[len(msgs)-1]
			last.FederatedAll, last.FederatedAllSet = slices.Sorted(maps.Keys(sentFederated)), true
		}
		for _, m := range append(msgs, fed...) {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		known, first, lastParents = rev, false, parents
		// Wake when the presented SVID expires, too: the next round's authentication ends the stream
		// then, even if nothing changes.
		var expiry <-chan time.Time
		if cert, err := peerSVID(ctx); err == nil {
			expiryTimer.Reset(max(cert.NotAfter.Sub(s.cfg.Clock())+time.Millisecond, time.Second))
			expiry = expiryTimer.C
		}
		select {
		case <-changed:
		case <-expiry:
		case <-ctx.Done():
			return apierr.ToStatus(ctx.Err())
		}
	}
}

// noteFederates keeps, per entry, the trust domains it federates with, from the entry messages of a
// round: a full listing replaces them all.
func noteFederates(federates map[string][]string, msgs []*agentv1.SyncEntriesResponse) {
	if len(msgs) > 0 && msgs[0].Full {
		clear(federates)
	}
	for _, m := range msgs {
		for _, e := range m.Entries {
			if len(e.FederatesWith) > 0 {
				federates[e.Id] = e.FederatesWith
			} else {
				delete(federates, e.Id)
			}
		}
		for _, id := range m.Deleted {
			delete(federates, id)
		}
	}
}

// federatedUpdate returns the messages that bring an agent holding the federated bundles of sent (trust
// domain -> revision) to the stored bundles of the trust domains its entries federate with (federates),
// and updates sent: one message per changed bundle (a bundle is at most storage.MaxFederatedBundleBytes,
// so no message grows past gRPC's limit), then one naming the trust domains it no longer needs (deleted,
// or named by none of its entries). They go after the round's entry messages, at its revision.
func (s *AgentService) federatedUpdate(rev uint64, sent map[string]uint64, federates map[string][]string) ([]*agentv1.SyncEntriesResponse, error) {
	if len(federates) == 0 && len(sent) == 0 {
		return nil, nil
	}
	named := map[string]bool{}
	for _, tds := range federates {
		for _, td := range tds {
			named[td] = true
		}
	}
	fs, err := s.cfg.Store.Federations()
	if err != nil {
		return nil, fmt.Errorf("agentapi: sync: federated bundles: %w", err)
	}
	var msgs []*agentv1.SyncEntriesResponse
	have := make(map[string]bool, len(fs))
	for _, f := range fs {
		if len(f.Bundle) == 0 || !named[f.TrustDomain] {
			continue
		}
		have[f.TrustDomain] = true
		if r, ok := sent[f.TrustDomain]; ok && r == f.BundleRevision {
			continue
		}
		sent[f.TrustDomain] = f.BundleRevision
		msgs = append(msgs, &agentv1.SyncEntriesResponse{Revision: rev, FederatedBundles: []*agentv1.FederatedBundle{
			{TrustDomain: f.TrustDomain, SpiffeBundle: f.Bundle, Revision: f.BundleRevision}}})
	}
	var removed []string
	for td := range sent {
		if !have[td] {
			removed = append(removed, td)
			delete(sent, td)
		}
	}
	if len(removed) > 0 {
		slices.Sort(removed)
		msgs = append(msgs, &agentv1.SyncEntriesResponse{Revision: rev, FederatedRemoved: removed})
	}
	return msgs, nil
}

// entryUpdate builds the messages that bring an agent whose parents (agent ID and aliases) are given,
// at revision known, to revision rev.
func (s *AgentService) entryUpdate(parents []string, known, rev uint64, first bool) []*agentv1.SyncEntriesResponse {
	mine := func(parentID string) bool { _, ok := slices.BinarySearch(parents, parentID); return ok }
	if known > 0 {
		if changes, _, ok := s.cfg.Store.ChangedEntries(known); ok {
			m := &agentv1.SyncEntriesResponse{Revision: rev}
			for _, c := range changes {
				if !slices.ContainsFunc(c.Parents, mine) {
					continue // another agent's entry
				}
				e, err := s.cfg.Store.Entry(c.ID)
				if err == nil && mine(e.ParentID) && !e.Disabled && !e.Pending {
					m.Entries = append(m.Entries, entryToAgent(&e))
				} else {
					// Deleted, disabled, pending, or moved to another parent: the agent drops it.
					m.Deleted = append(m.Deleted, c.ID)
				}
			}
			if len(m.Entries) == 0 && len(m.Deleted) == 0 && !first {
				return nil
			}
			return pageDelta(m)
		}
	}
	var entries []storage.Entry
	for _, p := range parents {
		for _, e := range s.cfg.Store.EntriesByParent(p) {
			if !e.Disabled && !e.Pending {
				entries = append(entries, e)
			}
		}
	}
	var msgs []*agentv1.SyncEntriesResponse
	for start := 0; start == 0 || start < len(entries); start += SyncPageSize {
		end := min(start+SyncPageSize, len(entries))
		m := &agentv1.SyncEntriesResponse{Revision: rev, Full: true, More: end < len(entries)}
		for i := start; i < end; i++ {
			m.Entries = append(m.Entries, entryToAgent(&entries[i]))
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// pageDelta splits a large delta into messages of at most SyncPageSize entries.
func pageDelta(m *agentv1.SyncEntriesResponse) []*agentv1.SyncEntriesResponse {
	if len(m.Entries) <= SyncPageSize {
		return []*agentv1.SyncEntriesResponse{m}
	}
	var msgs []*agentv1.SyncEntriesResponse
	for start := 0; start < len(m.Entries); start += SyncPageSize {
		end := min(start+SyncPageSize, len(m.Entries))
		msgs = append(msgs, &agentv1.SyncEntriesResponse{Revision: m.Revision, Entries: m.Entries[start:end], More: true})
	}
	msgs[len(msgs)-1].Deleted = m.Deleted
	msgs[len(msgs)-1].More = false
	return msgs
}

func entryToAgent(e *storage.Entry) *agentv1.Entry {
	out := &agentv1.Entry{
		Id: e.ID, SpiffeId: e.SPIFFEID, Selectors: selector.Strings(e.Selectors),
		X509TtlSeconds: int64(e.X509TTL / time.Second), JwtTtlSeconds: int64(e.JWTTTL / time.Second),
		DnsNames: e.DNSNames, Revision: e.Revision, JwtUnique: e.JWTUnique,
		Prefetch: e.Prefetch, FederatesWith: e.FederatesWith,
	}
	if !e.ExpiresAt.IsZero() {
		out.ExpiresAt = e.ExpiresAt.Unix()
	}
	return out
}

// SignX509SVIDs signs a batch of CSRs for the calling agent.
func (s *AgentService) SignX509SVIDs(ctx context.Context, req *agentv1.SignX509SVIDsRequest) (*agentv1.SignX509SVIDsResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, apierr.ToStatus(err)
	}
	caller, err := s.cfg.Authenticate(ctx)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	reqs := make([]issuer.X509Request, len(req.GetRequests()))
	for i, r := range req.GetRequests() {
		reqs[i] = issuer.X509Request{EntryID: r.GetEntryId(), CSR: r.GetCsr()}
	}
	results, err := s.cfg.Issuer.SignX509SVIDs(ctx, caller, reqs)
	if err != nil {
		s.refused(ctx, caller, "svid.x509", "", err)
		return nil, apierr.ToStatus(err)
	}
	resp := &agentv1.SignX509SVIDsResponse{Results: make([]*agentv1.X509SVIDResult, len(results))}
	for i, r := range results {
		out := &agentv1.X509SVIDResult{EntryId: r.EntryID}
		if r.Err != nil {
			out.ErrorCode = int32(apierr.Code(r.Err))
			out.ErrorMessage = r.Err.Error()
			s.refused(ctx, caller, "svid.x509", r.EntryID, r.Err)
		}
		for _, c := range r.Chain {
			out.CertChain = append(out.CertChain, c.Raw)
		}
		resp.Results[i] = out
	}
	return resp, nil
}

// SignJWTSVID mints a JWT-SVID for the calling agent.
func (s *AgentService) SignJWTSVID(ctx context.Context, req *agentv1.SignJWTSVIDRequest) (*agentv1.SignJWTSVIDResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, apierr.ToStatus(err)
	}
	caller, err := s.cfg.Authenticate(ctx)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	svid, err := s.cfg.Issuer.SignJWTSVID(ctx, caller, req.GetEntryId(), req.GetAudience())
	if err != nil {
		s.refused(ctx, caller, "svid.jwt", req.GetEntryId(), err)
		return nil, apierr.ToStatus(fmt.Errorf("sign JWT-SVID: %w", err))
	}
	return &agentv1.SignJWTSVIDResponse{Token: svid.Token, Id: svid.ID, IssuedAt: svid.IssuedAt.Unix(), ExpiresAt: svid.ExpiresAt.Unix()}, nil
}

// refused logs, rate-limited, a signing request of caller refused with err: a denial (PermissionDenied,
// also audited) or a limit of the server (ResourceExhausted: issuance rate limits, disk nearly full),
// which operators must see in the server's log, not only in the agent's. Other errors are the
// caller's (InvalidArgument) or the server's own, reported elsewhere.
func (s *AgentService) refused(ctx context.Context, caller Caller, action, entryID string, err error) {
	switch apierr.Code(err) {
	case codes.PermissionDenied:
		s.refusals.Warn(s.log, s.cfg.Clock(), "denied SVID request", "action", action, "agent", caller.AgentID, "entry", entryID, "error", err)
		s.audit.Denied(ctx, "agent:"+caller.AgentID.String(), action, entryID, err)
	case codes.ResourceExhausted:
		s.limited.Warn(s.log, s.cfg.Clock(), "SVID request refused by a server limit", "action", action, "agent", caller.AgentID, "entry", entryID, "error", err)
	}
}
