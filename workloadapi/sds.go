package workloadapi

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/selector"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// SDSConfig configures Envoy's secret discovery service (SDS v3) on the Workload API socket.
type SDSConfig struct {
	// DisableSPIFFECertValidation sends validation contexts as trusted_ca (the caller's own trust
	// domain's CA certificates) even to an Envoy that supports the SPIFFE certificate validator. By
	// default an Envoy announcing version 1.18 or later gets the validator's configuration, which
	// checks each peer against the bundle of its own trust domain. One Envoy can override this
	// setting with the node metadata key disable_spiffe_cert_validation (as with SPIRE's agent).
	DisableSPIFFECertValidation bool
	// DefaultSVIDName, DefaultBundleName and DefaultAllBundlesName name the caller's default SVID,
	// its trust domain's bundle and all its bundles (empty: SDSDefaultSVIDName "default",
	// SDSDefaultBundleName "ROOTCA", SDSAllBundlesName "ALL"). See CheckSDSResourceName; they must
	// differ.
	DefaultSVIDName       string
	DefaultBundleName     string
	DefaultAllBundlesName string
}

// Bounds on what of a client's request is logged: its rejection message, and the nonces and versions
// it sends (ours are short; a client may send anything).
const (
	maxErrorDetailLen = 256
	maxLoggedTokenLen = 64
)

// clip is s cut to at most n bytes, marked when cut.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// SDS serves envoy.service.secret.v3.SecretDiscoveryService from the Workload API handler's Source,
// attesting each caller as the Workload API does. Envoy's SDS client sends no workload.spiffe.io
// header (SPIRE's agent does not require it on SDS either): the attestation of the calling process
// is what decides. Both xDS protocols are served: state of the world (StreamSecrets, what Envoy's SDS
// uses by default) and incremental (DeltaSecrets).
//
//	sds, _ := h.SDS(workloadapi.SDSConfig{})
//	secretv3.RegisterSecretDiscoveryServiceServer(srv, sds)
type SDS struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	h   *Handler
	cfg SDSConfig
	// nacks rate-limits the log lines of rejected responses: an Envoy that rejects every version
	// costs a bounded number of lines.
	nacks *ratelimit.Lines
}

// SDS returns the secret discovery service on h's attestors and Source.
func (h *Handler) SDS(cfg SDSConfig) (*SDS, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &SDS{h: h, cfg: cfg, nacks: &ratelimit.Lines{Every: failureLogEvery, Burst: failureLogBurst}}, nil
}

// view reads the Source for names: Identities (which mints) when they ask for a TLS certificate,
// Bundles otherwise.
func (s *SDS) view(names sdsNames) func([]selector.Selector) (Identities, <-chan struct{}) {
	if names.wantsSVIDs(s.cfg.DefaultSVIDName) {
		return s.h.cfg.Source.Identities
	}
	return s.h.cfg.Source.Bundles
}

// FetchSecrets answers one request: the secrets named, at the version a stream would give them.
// When a TLS certificate is asked for and the caller's SVIDs are still being minted, it waits for
// them (ready, within the call's deadline).
func (s *SDS) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	names, err := parseSDSRequest(req.GetTypeUrl(), "resource_names", req.GetResourceNames())
	if err != nil {
		return nil, err
	}
	sels, err := s.h.attestPeer(ctx)
	if err != nil {
		return nil, err
	}
	if names.wantsSVIDs(s.cfg.DefaultSVIDName) {
		release := s.h.cfg.Source.KeepX509(sels)
		defer release()
	}
	view := s.view(names)
	for {
		ids, changed := view(sels)
		if !ids.Entitled {
			return nil, noIdentity(sels)
		}
		if s.ready(names, ids) {
			form := formFor(req.GetNode(), s.cfg.DisableSPIFFECertValidation)
			secrets := selectSecrets(s.cfg, names, ids)
			resources, err := encodeSecrets(secrets, form)
			if err != nil {
				return nil, err
			}
			s.delivered(callerOf(ctx, sels), secrets)
			return newSDSResponse(resources, secretsVersion(secrets, ids.BundleSequence, form), ""), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// ready reports whether ids can answer names: when a TLS certificate is asked for, once every SVID
// of the caller is minted (as SPIRE's agent waits for them too), so the default is the caller's first
// SVID from the start, not the first one minted.
func (s *SDS) ready(names sdsNames, ids Identities) bool {
	return !names.wantsSVIDs(s.cfg.DefaultSVIDName) || (hasSVIDs(ids) && !ids.Pending)
}

// delivered tells the Source which SVIDs were handed to caller as TLS certificates.
func (s *SDS) delivered(caller Caller, secrets []sdsSecret) {
	var svids []X509SVID
	for _, sec := range secrets {
		if sec.svid != nil {
			svids = append(svids, *sec.svid)
		}
	}
	if len(svids) > 0 {
		s.h.cfg.Source.Delivered(caller, svids)
	}
}

// sdsSub is what every SDS stream keeps, whichever the protocol: the attested caller and what it
// subscribed to.
type sdsSub struct {
	s      *SDS
	ctx    context.Context
	sels   []selector.Selector
	caller Caller
	// subscribed is false until the first request; names and form are then the client's.
	subscribed bool
	names      sdsNames
	form       validationForm
	// dirty: the subscription changed since the last response, which must be answered even if the
	// secrets did not change.
	dirty bool
	// sent counts the responses; each one's nonce is its count.
	sent uint64
	// release ends the Source's keeping the caller's SVIDs minted; nil while none are asked for.
	release func()
}

// nonce is the last response's nonce ("" before the first).
func (sub *sdsSub) nonce() string {
	if sub.sent == 0 {
		return ""
	}
	return strconv.FormatUint(sub.sent, 10)
}

// stale reports (and logs at debug) a request acknowledging a response other than the last: the
// protocol has the server ignore it.
func (sub *sdsSub) stale(nonce string) bool {
	if sub.sent == 0 || nonce == sub.nonce() {
		return false
	}
	sub.s.h.log.Debug("SDS request with a stale nonce ignored", "pid", sub.caller.PID, "nonce", clip(nonce, maxLoggedTokenLen), "last_nonce", sub.sent)
	return true
}

// setNode takes the client's node (sent on its first request): it decides the validation form.
func (sub *sdsSub) setNode(node *corev3.Node) {
	if node == nil && sub.subscribed {
		return
	}
	form := formFor(node, sub.s.cfg.DisableSPIFFECertValidation)
	if sub.subscribed && form != sub.form {
		sub.dirty = true
	}
	sub.form = form
}

// nack logs a rejected response (rate-limited, Envoy's message bounded).
func (sub *sdsSub) nack(d *rpcstatus.Status, rejected, kept string) {
	sub.s.nacks.Warn(sub.s.h.log, time.Now(), "Envoy rejected the secrets sent over SDS; it keeps the version it had, and the next change is sent as usual",
		"pid", sub.caller.PID, "uid", sub.caller.UID, "rejected_version", rejected, "kept_version", clip(kept, maxLoggedTokenLen),
		"error", clip(d.GetMessage(), maxErrorDetailLen))
}

// subscribe takes names as the subscription, if they differ from it.
func (sub *sdsSub) subscribe(names sdsNames) {
	if sub.subscribed && names.equal(sub.names) {
		return
	}
	sub.subscribed, sub.names, sub.dirty = true, names, true
	sub.keep(names.wantsSVIDs(sub.s.cfg.DefaultSVIDName))
}

// keep has the Source keep the caller's SVIDs minted and rotated while on is true.
func (sub *sdsSub) keep(on bool) {
	switch {
	case on && sub.release == nil:
		sub.release = sub.s.h.cfg.Source.KeepX509(sub.sels)
	case !on && sub.release != nil:
		sub.release()
		sub.release = nil
	}
}

// sdsProtocol is one stream's protocol: state of the world (StreamSecrets) or delta (DeltaSecrets).
type sdsProtocol[Req any] interface {
	// onRequest takes in a request: the first subscribes, later ones acknowledge or reject the last
	// response and may change the subscription.
	onRequest(req Req) error
	// push sends what changed in ids since the last response (if anything did, or the subscription
	// did), calling attest first.
	push(ids Identities, attest func() error) error
}

// serveSDS runs the stream protocol both SDS streams share: nothing until the first request; then a
// response whenever what the subscription selects changes, each time after attesting the caller
// again (stillSame); PermissionDenied once the caller has no identity.
func serveSDS[Req any](sub *sdsSub, recv func() (Req, error), proto sdsProtocol[Req]) error {
	defer sub.keep(false)
	reqs, recvErr := receive(sub.ctx, recv)
	attested := true // sels were read just now, at open: no wait since
	attest := func() error {
		err := sub.s.h.stillSame(sub.ctx, sub.sels, attested)
		attested = err == nil
		return err
	}
	for {
		var changed <-chan struct{} // nil until subscribed: only requests wake the stream
		if sub.subscribed {
			var ids Identities
			ids, changed = sub.s.view(sub.names)(sub.sels)
			if !ids.Entitled {
				return noIdentity(sub.sels)
			}
			if sub.s.ready(sub.names, ids) {
				if err := proto.push(ids, attest); err != nil {
					return err
				}
			}
		}
		select {
		case <-changed:
			attested = false
		case req := <-reqs:
			if err := proto.onRequest(req); err != nil {
				return err
			}
		case err := <-recvErr:
			return streamEnded(err)
		case <-sub.ctx.Done():
			return status.FromContextError(sub.ctx.Err()).Err()
		}
	}
}

// newSub attests the caller of a new stream.
func (s *SDS) newSub(ctx context.Context) (*sdsSub, error) {
	sels, err := s.h.attestPeer(ctx)
	if err != nil {
		return nil, err
	}
	return &sdsSub{s: s, ctx: ctx, sels: sels, caller: callerOf(ctx, sels)}, nil
}

// receive reads a stream's requests into a channel until the stream ends (the error, io.EOF when the
// client closed its side) or ctx is done.
func receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	reqs := make(chan T)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, recvErr
}

// streamEnded is what a stream returns once its client's side ended with err: nothing when the
// client closed it or went away.
func streamEnded(err error) error {
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}

// sotw is the state-of-the-world protocol of StreamSecrets.
type sotw struct {
	*sdsSub
	stream secretv3.SecretDiscoveryService_StreamSecretsServer
	// version is that of the last response sent.
	version string
}

// StreamSecrets serves one Envoy SDS stream: nothing until the first request, then a response with
// the secrets asked for, and a new one, at a new version, whenever they change (an SVID rotated, the
// bundle changed) or the client asks for other names. The client acknowledges each response with a
// request carrying its nonce: its version_info (ACK), or error_detail (NACK). A NACK is logged and
// not answered: the client keeps the secrets it had, and the next change is pushed as usual. A
// request whose nonce is not that of the last response is stale (the protocol has the server ignore
// it). Like the X.509 stream, the caller is attested again before each push, and the stream ends
// with PermissionDenied once it has no identity.
func (s *SDS) StreamSecrets(stream secretv3.SecretDiscoveryService_StreamSecretsServer) error {
	sub, err := s.newSub(stream.Context())
	if err != nil {
		return err
	}
	return serveSDS(sub, stream.Recv, &sotw{sdsSub: sub, stream: stream})
}

func (st *sotw) push(ids Identities, attest func() error) error {
	secrets := selectSecrets(st.s.cfg, st.names, ids)
	version := secretsVersion(secrets, ids.BundleSequence, st.form)
	if version == st.version && !st.dirty {
		return nil
	}
	if err := attest(); err != nil {
		return err
	}
	resources, err := encodeSecrets(secrets, st.form)
	if err != nil {
		return err
	}
	st.sent++
	if err := st.stream.Send(newSDSResponse(resources, version, st.nonce())); err != nil {
		return err
	}
	st.s.delivered(st.caller, secrets)
	st.version, st.dirty = version, false
	return nil
}

func (st *sotw) onRequest(req *discoveryv3.DiscoveryRequest) error {
	names, err := parseSDSRequest(req.GetTypeUrl(), "resource_names", req.GetResourceNames())
	if err != nil {
		return err
	}
	if st.stale(req.GetResponseNonce()) {
		return nil
	}
	st.setNode(req.GetNode())
	if d := req.GetErrorDetail(); d != nil && st.sent > 0 {
		st.nack(d, st.version, req.GetVersionInfo())
	}
	st.subscribe(names)
	return nil
}
