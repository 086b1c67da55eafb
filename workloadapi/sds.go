package workloadapi

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/selector"
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
}

// maxErrorDetailLen bounds the part of an Envoy's rejection message that is logged.
const maxErrorDetailLen = 256

// SDS serves envoy.service.secret.v3.SecretDiscoveryService from the Workload API handler's Source,
// attesting each caller as the Workload API does. Envoy's SDS client sends no workload.spiffe.io
// header (SPIRE's agent does not require it on SDS either): the attestation of the calling process
// is what decides. Incremental (delta) xDS is not offered: DeltaSecrets returns Unimplemented, and
// Envoy's SDS uses the state-of-the-world protocol unless told otherwise.
//
//	secretv3.RegisterSecretDiscoveryServiceServer(srv, h.SDS(workloadapi.SDSConfig{}))
type SDS struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	h   *Handler
	cfg SDSConfig
	// nacks rate-limits the log lines of rejected responses: an Envoy that rejects every version
	// costs a bounded number of lines.
	nacks *ratelimit.Lines
}

// SDS returns the secret discovery service on h's attestors and Source.
func (h *Handler) SDS(cfg SDSConfig) *SDS {
	return &SDS{h: h, cfg: cfg, nacks: &ratelimit.Lines{Every: failureLogEvery, Burst: failureLogBurst}}
}

// view reads the Source for names: Identities (which mints) when they ask for a TLS certificate,
// Bundles otherwise.
func (s *SDS) view(names sdsNames) func([]selector.Selector) (Identities, <-chan struct{}) {
	if names.wantsSVIDs() {
		return s.h.cfg.Source.Identities
	}
	return s.h.cfg.Source.Bundles
}

// FetchSecrets answers one request: the secrets named, at the version a stream would give them.
// When a TLS certificate is asked for and the caller's SVIDs are still being minted, it waits for
// them (sdsReady, within the call's deadline).
func (s *SDS) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	names, err := parseSDSRequest(req.GetTypeUrl(), req.GetResourceNames())
	if err != nil {
		return nil, err
	}
	sels, err := s.h.attestPeer(ctx)
	if err != nil {
		return nil, err
	}
	if names.wantsSVIDs() {
		release := s.h.cfg.Source.KeepX509(sels)
		defer release()
	}
	view := s.view(names)
	for {
		ids, changed := view(sels)
		if !ids.Entitled {
			return nil, noIdentity(sels)
		}
		if sdsReady(names, ids) {
			form := formFor(req.GetNode(), s.cfg.DisableSPIFFECertValidation)
			secrets := selectSecrets(names, ids)
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

// sdsReady reports whether ids can answer names: when a TLS certificate is asked for, once every SVID
// of the caller is minted (as SPIRE's agent waits for them too), so the default is the caller's first
// SVID from the start, not the first one minted.
func sdsReady(names sdsNames, ids Identities) bool {
	return !names.wantsSVIDs() || (hasSVIDs(ids) && !ids.Pending)
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

// sdsStream is the state of one StreamSecrets stream (state-of-the-world xDS).
type sdsStream struct {
	s      *SDS
	stream secretv3.SecretDiscoveryService_StreamSecretsServer
	sels   []selector.Selector
	caller Caller
	// subscribed is false until the first request; names and form are then the client's.
	subscribed bool
	names      sdsNames
	form       validationForm
	// dirty: the subscription changed since the last response, which must be answered even if the
	// secrets did not change.
	dirty bool
	// version is that of the last response sent, sent the number of responses (each one's nonce).
	version string
	sent    uint64
	// release ends the Source's keeping the caller's SVIDs minted; nil while none are asked for.
	release func()
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
	ctx := stream.Context()
	sels, err := s.h.attestPeer(ctx)
	if err != nil {
		return err
	}
	st := &sdsStream{s: s, stream: stream, sels: sels, caller: callerOf(ctx, sels)}
	defer st.keep(false)

	reqs := make(chan *discoveryv3.DiscoveryRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
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

	attested := true // sels were read just now, at open: no wait since
	for {
		var changed <-chan struct{} // nil until subscribed: only requests wake the stream
		if st.subscribed {
			var ids Identities
			ids, changed = s.view(st.names)(sels)
			if !ids.Entitled {
				return noIdentity(sels)
			}
			if sdsReady(st.names, ids) {
				if err := st.push(ids, attested); err != nil {
					return err
				}
			}
		}
		select {
		case <-changed:
			attested = false
		case req := <-reqs:
			if err := st.onRequest(req); err != nil {
				return err
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// push sends the secrets of ids if they differ from the last response, or if the subscription
// changed since; justAttested as in stillSame.
func (st *sdsStream) push(ids Identities, justAttested bool) error {
	secrets := selectSecrets(st.names, ids)
	version := secretsVersion(secrets, ids.BundleSequence, st.form)
	if version == st.version && !st.dirty {
		return nil
	}
	if err := st.s.h.stillSame(st.stream.Context(), st.sels, justAttested); err != nil {
		return err
	}
	resources, err := encodeSecrets(secrets, st.form)
	if err != nil {
		return err
	}
	st.sent++
	nonce := strconv.FormatUint(st.sent, 10)
	if err := st.stream.Send(newSDSResponse(resources, version, nonce)); err != nil {
		return err
	}
	st.s.delivered(st.caller, secrets)
	st.version, st.dirty = version, false
	return nil
}

// onRequest takes in a request: the first subscribes, later ones acknowledge or reject the last
// response and may change the names asked for.
func (st *sdsStream) onRequest(req *discoveryv3.DiscoveryRequest) error {
	names, err := parseSDSRequest(req.GetTypeUrl(), req.GetResourceNames())
	if err != nil {
		return err
	}
	if st.sent > 0 && req.GetResponseNonce() != strconv.FormatUint(st.sent, 10) {
		st.s.h.log.Debug("SDS request with a stale nonce ignored", "pid", st.caller.PID, "nonce", req.GetResponseNonce(), "last_nonce", st.sent)
		return nil
	}
	if req.GetNode() != nil || !st.subscribed {
		form := formFor(req.GetNode(), st.s.cfg.DisableSPIFFECertValidation)
		if st.subscribed && form != st.form {
			st.dirty = true
		}
		st.form = form
	}
	if d := req.GetErrorDetail(); d != nil && st.sent > 0 {
		msg := d.GetMessage()
		if len(msg) > maxErrorDetailLen {
			msg = msg[:maxErrorDetailLen] + "..."
		}
		st.s.nacks.Warn(st.s.h.log, time.Now(), "Envoy rejected the secrets sent over SDS; it keeps the version it had, and the next change is sent as usual",
			"pid", st.caller.PID, "uid", st.caller.UID, "rejected_version", st.version, "kept_version", req.GetVersionInfo(), "error", msg)
	}
	if !st.subscribed || !names.equal(st.names) {
		st.subscribed, st.names, st.dirty = true, names, true
		st.keep(names.wantsSVIDs())
	}
	return nil
}

// keep has the Source keep the caller's SVIDs minted and rotated while on is true.
func (st *sdsStream) keep(on bool) {
	switch {
	case on && st.release == nil:
		st.release = st.s.h.cfg.Source.KeepX509(st.sels)
	case !on && st.release != nil:
		st.release()
		st.release = nil
	}
}
