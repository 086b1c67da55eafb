// Package workloadapi serves the SPIFFE Workload API (the go-spiffe generated service) on a Unix
// socket: each call is attested from the caller's kernel credentials and answered from a Source.
//
//	h, _ := workloadapi.New(workloadapi.Config{Attestors: []workloadapi.Attestor{unixAttestor, k8sAttestor}, Source: agentCache})
//	srv := grpc.NewServer(grpc.Creds(peercred.Credentials()))
//	workload.RegisterSpiffeWorkloadAPIServer(srv, h)
package workloadapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Bounds on request fields. Audiences are copied into every JWT-SVID minted and into its issuance
// record, so they are bounded in number, per value and in total.
const (
	MaxAudiences     = 16   // audience values in one FetchJWTSVID request
	MaxAudienceLen   = 256  // bytes in one audience value
	MaxAudienceTotal = 1024 // bytes in all the audience values of one request
	maxTokenLen      = 64 << 10
)

// failureLogEvery and failureLogBurst bound the log lines of failed JWT-SVID fetches, and those of
// failed attestations: a workload looping on a failing call costs failureLogBurst lines per
// failureLogEvery.
const (
	failureLogEvery = 10 * time.Second
	failureLogBurst = 5
)

// rateLimitConfigKey names, in ResourceExhausted messages, where the mint limit is set.
const rateLimitConfigKey = "jwt_mint_rate and jwt_mint_burst in the agent configuration"

// Config configures the Workload API handler.
type Config struct {
	// Attestors attest every caller, in order; its selectors are the union of theirs (attestor/unix,
	// attestor/k8s). A caller is refused if any of them fails. At least one is required.
	Attestors []Attestor
	Source    Source
	Logger    *slog.Logger
}

// Handler implements workload.SpiffeWorkloadAPIServer. The WIT-SVID profile is optional in the spec and
// not offered: its RPCs return Unimplemented, as the spec requires.
type Handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	cfg Config
	log *slog.Logger
	// failures rate-limits the log lines of failed JWT-SVID fetches, refusals those of failed
	// attestations (a workload in a container the kubelet does not list retries for as long as it runs).
	failures *ratelimit.Lines
	refusals *ratelimit.Lines
}

// New validates cfg.
func New(cfg Config) (*Handler, error) {
	switch {
	case len(cfg.Attestors) == 0:
		return nil, errors.New("workloadapi: config: Attestors: at least one is required")
	case slices.Contains(cfg.Attestors, nil):
		return nil, errors.New("workloadapi: config: Attestors: a nil attestor")
	case cfg.Source == nil:
		return nil, errors.New("workloadapi: config: Source is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg, log: cfg.Logger.With("component", "workloadapi"),
		failures: &ratelimit.Lines{Every: failureLogEvery, Burst: failureLogBurst},
		refusals: &ratelimit.Lines{Every: failureLogEvery, Burst: failureLogBurst}}, nil
}

// attest checks the security header and returns the caller's selectors.
// Workload Endpoint spec §3: a request without "workload.spiffe.io: true" is rejected with
// InvalidArgument.
func (h *Handler) attest(ctx context.Context) ([]selector.Selector, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return nil, status.Error(codes.InvalidArgument, "security header missing from request: set gRPC metadata workload.spiffe.io: true")
	}
	return h.attestPeer(ctx)
}

// attestPeer returns the selectors of the process the call came from: the pid and start time pinned
// when it connected (internal/peercred), read again now.
func (h *Handler) attestPeer(ctx context.Context) ([]selector.Selector, error) {
	peer, ok := peercred.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "caller credentials unavailable: the Workload API must be served on a Unix socket with peer credentials")
	}
	if peer.PID <= 0 {
		return nil, status.Error(codes.PermissionDenied, "caller's process is not visible to the agent (another pid namespace?)")
	}
	var sels []selector.Selector
	for _, a := range h.cfg.Attestors {
		got, err := a.Attest(ctx, peer.PID, peer.StartTime)
		if err != nil {
			h.refusals.Warn(h.log, time.Now(), "workload attestation failed", "pid", peer.PID, "uid", peer.UID, "error", err)
			return nil, status.Errorf(codes.PermissionDenied, "could not attest the calling process: %v", err)
		}
		sels = append(sels, got...)
	}
	if len(h.cfg.Attestors) == 1 {
		return sels, nil // already in the attestor's normalized order
	}
	return selector.Normalize(sels), nil
}

func noIdentity(sels []selector.Selector) error {
	return status.Errorf(codes.PermissionDenied, "no identity issued: no registration entry matches this workload's selectors [%s]", joinSelectors(sels))
}

func joinSelectors(sels []selector.Selector) string {
	var b bytes.Buffer
	for i, s := range sels {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(s.String())
	}
	return b.String()
}

// watch runs the stream protocol shared by the three streaming RPCs: send a response now, then again
// whenever its content changes, each time after attesting the caller again (stillSame);
// PermissionDenied once the caller has no identity. view reads the Source (Identities for the X.509
// stream, which mints; Bundles for the bundle streams, which do not). ready reports whether a state
// can be sent (the X.509 stream waits for SVIDs being minted rather than deny). same reports whether
// two states would give the same response, so unchanged states are not resent; it runs on every
// wake-up and should not allocate.
func (h *Handler) watch(ctx context.Context, sels []selector.Selector, view func([]selector.Selector) (Identities, <-chan struct{}),
	ready func(Identities) bool, send func(Identities) error, same func(last, cur Identities) bool) error {
	var last Identities
	first := true
	attested := true // sels were read just now, at open: no wait since
	for {
		ids, changed := view(sels)
		switch {
		case !ids.Entitled:
			return noIdentity(sels)
		case !ready(ids):
			// Entries match but their SVIDs are being minted: wait for them rather than deny.
		default:
			if first || !same(last, ids) {
				if err := h.stillSame(ctx, sels, attested); err != nil {
					return err
				}
				if err := send(ids); err != nil {
					return err
				}
				last, first = ids, false
			}
		}
		select {
		case <-changed:
			attested = false
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// stillSame attests the caller again before a push (unless justAttested: the push answers the open,
// without having waited since its attestation): a stream must not keep serving the identities of
// selectors the caller no longer has (it changed its uid, or ran exec). If its selectors changed, the
// stream ends with Unavailable: the spec lets the server end a stream at any time and has the client
// reconnect at once (Workload API §4.2), and the new stream is attested afresh. PermissionDenied would
// tell the client it has no identity at all and to drop its SVIDs and back off (§5.2.1), which may
// well be untrue.
func (h *Handler) stillSame(ctx context.Context, sels []selector.Selector, justAttested bool) error {
	if justAttested {
		return nil
	}
	now, err := h.attestPeer(ctx)
	if err != nil {
		return err
	}
	if !selector.Equal(now, sels) {
		peer, _ := peercred.FromContext(ctx)
		h.log.Info("caller's selectors changed since its stream opened; ending the stream so it reconnects",
			"pid", peer.PID, "uid", peer.UID, "at_open", joinSelectors(sels), "now", joinSelectors(now))
		return status.Error(codes.Unavailable, "this process's selectors changed since the stream opened: reconnect to be attested again")
	}
	return nil
}

// FetchX509SVID streams the caller's X.509-SVIDs with the trust domain bundle.
func (h *Handler) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	ctx := stream.Context()
	sels, err := h.attest(ctx)
	if err != nil {
		return err
	}
	// While the stream is open the caller's identities are in use: minted now, and kept rotated.
	release := h.cfg.Source.KeepX509(sels)
	defer release()
	caller := callerOf(ctx, sels)
	return h.watch(ctx, sels, h.cfg.Source.Identities, hasSVIDs, func(ids Identities) error {
		resp := &workload.X509SVIDResponse{Svids: make([]*workload.X509SVID, len(ids.SVIDs))}
		for i, s := range ids.SVIDs {
			resp.Svids[i] = &workload.X509SVID{SpiffeId: s.SPIFFEID, X509Svid: s.CertChain, X509SvidKey: s.Key, Bundle: ids.X509Bundle}
		}
		if len(ids.Federated) > 0 {
			resp.FederatedBundles = make(map[string][]byte, len(ids.Federated))
			for _, f := range ids.Federated {
				resp.FederatedBundles[f.TrustDomain.IDString()] = f.X509Bundle
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		h.cfg.Source.Delivered(caller, ids.SVIDs)
		return nil
	}, sameSVIDs)
}

func hasSVIDs(ids Identities) bool { return len(ids.SVIDs) > 0 }

// entitled: the bundle streams answer any caller with an identity, minted or not.
func entitled(ids Identities) bool { return ids.Entitled }

// callerOf names the attested caller for delivery records: its peer credentials, and the executable's
// path and digest from its selectors.
func callerOf(ctx context.Context, sels []selector.Selector) Caller {
	peer, _ := peercred.FromContext(ctx) // attested: present
	c := Caller{UID: peer.UID, GID: peer.GID, PID: peer.PID, StartTime: peer.StartTime}
	for _, s := range sels {
		if s.Type != "unix" {
			continue
		}
		switch k, v, _ := strings.Cut(s.Value, ":"); k {
		case "path":
			c.Path = v
		case "sha256":
			c.SHA256 = v
		}
	}
	return c
}

// sameSVIDs reports whether last and cur hold the same bundle and the same SVIDs, in the same order.
func sameSVIDs(last, cur Identities) bool {
	return sameBundle(last, cur) &&
		slices.EqualFunc(last.SVIDs, cur.SVIDs, func(a, b X509SVID) bool { return a.Serial == b.Serial })
}

// FetchX509Bundles streams the X.509 bundle to callers that have an identity.
func (h *Handler) FetchX509Bundles(_ *workload.X509BundlesRequest, stream workload.SpiffeWorkloadAPI_FetchX509BundlesServer) error {
	ctx := stream.Context()
	sels, err := h.attest(ctx)
	if err != nil {
		return err
	}
	return h.watch(ctx, sels, h.cfg.Source.Bundles, entitled, func(ids Identities) error {
		bundles := map[string][]byte{ids.TrustDomain.IDString(): ids.X509Bundle}
		for _, f := range ids.Federated {
			bundles[f.TrustDomain.IDString()] = f.X509Bundle
		}
		return stream.Send(&workload.X509BundlesResponse{Bundles: bundles})
	}, sameBundle)
}

// FetchJWTBundles streams the JWT bundle (JWK Set) to callers that have an identity.
func (h *Handler) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream workload.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	ctx := stream.Context()
	sels, err := h.attest(ctx)
	if err != nil {
		return err
	}
	return h.watch(ctx, sels, h.cfg.Source.Bundles, entitled, func(ids Identities) error {
		bundles := map[string][]byte{ids.TrustDomain.IDString(): ids.JWTBundle}
		for _, f := range ids.Federated {
			bundles[f.TrustDomain.IDString()] = f.JWTBundle
		}
		return stream.Send(&workload.JWTBundlesResponse{Bundles: bundles})
	}, sameBundle)
}

// sameBundle reports whether last and cur hold the same bundles: their own and the same federated
// trust domains (an entry's federates_with may change while the bundles do not).
func sameBundle(last, cur Identities) bool {
	return last.BundleSequence == cur.BundleSequence &&
		slices.EqualFunc(last.Federated, cur.Federated, func(a, b FederatedBundle) bool { return a.TrustDomain == b.TrustDomain })
}

// FetchJWTSVID mints (or returns cached) JWT-SVIDs for the requested audience. When only some of the
// caller's identities can be served (the server is unreachable, or the caller's mint limit is
// reached), the response carries those that can, and the others are logged; the call fails only when
// none can be served: Unavailable when the server is unreachable (retry), ResourceExhausted when the
// limit refused (back off).
func (h *Handler) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := validateAudience(req.GetAudience()); err != nil {
		return nil, err
	}
	if id := req.GetSpiffeId(); id != "" {
		if _, err := spiffeid.FromString(id); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "spiffe_id %q: %v", id, err)
		}
	}
	sels, err := h.attest(ctx)
	if err != nil {
		return nil, err
	}
	caller := callerOf(ctx, sels)
	svids, err := h.cfg.Source.FetchJWTSVIDs(ctx, JWTRequest{UID: caller.UID, Caller: caller, Selectors: sels, Audience: req.GetAudience(), SPIFFEID: req.GetSpiffeId()})
	switch {
	case err != nil && errors.Is(err, ErrRateLimited):
		// Not logged per call: the Source logs when a caller reaches its limit.
		if len(svids) == 0 {
			return nil, status.Errorf(codes.ResourceExhausted, "fetch JWT-SVID: %v (tokens already cached are still served; the limit is set by %s)", err, rateLimitConfigKey)
		}
	case err != nil && len(svids) == 0:
		// Rate-limited: with the server down or refusing, every workload call fails the same way.
		h.failures.Log(h.log, slog.LevelError, time.Now(), "JWT-SVID fetch failed", "error", err)
		code := codes.Unavailable // the server is unreachable or failing: the client may retry
		if s, ok := status.FromError(err); ok {
			switch s.Code() {
			// Refused, wrong, or a limit of the server's (its issuance rate limits, its disk nearly
			// full: the client backs off rather than retries at once).
			case codes.PermissionDenied, codes.InvalidArgument, codes.ResourceExhausted:
				code = s.Code()
			}
		}
		return nil, status.Errorf(code, "fetch JWT-SVID: %v", err)
	case err != nil:
		h.log.Debug("JWT-SVID fetch served from the cache only; other identities left out", "served", len(svids), "error", err)
	}
	if len(svids) == 0 {
		if req.GetSpiffeId() != "" {
			return nil, status.Errorf(codes.PermissionDenied, "no identity issued: this workload is not entitled to %s", req.GetSpiffeId())
		}
		return nil, noIdentity(sels)
	}
	resp := &workload.JWTSVIDResponse{Svids: make([]*workload.JWTSVID, len(svids))}
	for i, s := range svids {
		resp.Svids[i] = &workload.JWTSVID{SpiffeId: s.SPIFFEID, Svid: s.Token}
	}
	return resp, nil
}

func validateAudience(aud []string) error {
	if len(aud) == 0 {
		return status.Error(codes.InvalidArgument, "audience is required: name the service the token is for")
	}
	if len(aud) > MaxAudiences {
		return status.Errorf(codes.InvalidArgument, "audience: %d values, at most %d allowed", len(aud), MaxAudiences)
	}
	total := 0
	for _, a := range aud {
		if a == "" || len(a) > MaxAudienceLen {
			return status.Errorf(codes.InvalidArgument, "audience: each value must be 1 to %d bytes (one has %d)", MaxAudienceLen, len(a))
		}
		total += len(a)
	}
	if total > MaxAudienceTotal {
		return status.Errorf(codes.InvalidArgument, "audience: %d bytes in all, at most %d allowed", total, MaxAudienceTotal)
	}
	return nil
}

// ValidateJWTSVID validates a JWT-SVID against the trust domain's JWT bundle (JWT-SVID spec), for the
// given audience, and returns its claims.
func (h *Handler) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if req.GetAudience() == "" {
		return nil, status.Error(codes.InvalidArgument, "audience is required")
	}
	if req.GetSvid() == "" {
		return nil, status.Error(codes.InvalidArgument, "svid is required")
	}
	if len(req.GetSvid()) > maxTokenLen || len(req.GetAudience()) > MaxAudienceLen {
		return nil, status.Error(codes.InvalidArgument, "svid or audience too large")
	}
	sels, err := h.attest(ctx)
	if err != nil {
		return nil, err
	}
	ids, _ := h.cfg.Source.Bundles(sels)
	if ids.JWTAuthorities == nil {
		return nil, status.Error(codes.Unavailable, "no JWT bundle yet: the agent has not received its trust bundle from the server")
	}
	// Tokens of the trust domains the caller's entries federate with validate against their bundles.
	var bundles jwtbundle.Source = ids.JWTAuthorities
	if len(ids.Federated) > 0 {
		set := jwtbundle.NewSet(ids.JWTAuthorities)
		for _, f := range ids.Federated {
			if f.JWTAuthorities != nil {
				set.Add(f.JWTAuthorities)
			}
		}
		bundles = set
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), bundles, []string{req.GetAudience()})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid JWT-SVID: %v", err)
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}
