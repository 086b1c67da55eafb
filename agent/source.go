package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ workloadapi.Source = (*Agent)(nil)

// Identities implements workloadapi.Source: the caller's SVIDs and the bundle, from the cache. It is a
// fetch: each matching entry counts as used now, and one with no SVID yet is minted at once (Pending).
func (a *Agent) Identities(sels []selector.Selector) (workloadapi.Identities, <-chan struct{}) {
	now := a.cfg.Clock()
	var pending []string
	defer func() { a.want(pending) }()
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := a.bundleLocked()
	matched := a.matchLocked(sels)
	out.Federated = a.federatedLocked(matched)
	for _, e := range matched {
		if e.expired(now) {
			continue
		}
		out.Entitled = true
		e.markUsed(now)
		s := e.svid
		if s == nil || !now.Before(s.notAfter) {
			out.Pending = true
			pending = append(pending, e.entry.Id)
			continue
		}
		out.SVIDs = append(out.SVIDs, workloadapi.X509SVID{SPIFFEID: e.entry.SpiffeId, Serial: s.serial, CertChain: s.chainDER, Key: s.keyDER, ExpiresAt: s.notAfter})
	}
	return out, a.changed
}

// Bundles implements workloadapi.Source: the bundle, and whether the caller is entitled to an identity,
// without minting anything.
func (a *Agent) Bundles(sels []selector.Selector) (workloadapi.Identities, <-chan struct{}) {
	now := a.cfg.Clock()
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := a.bundleLocked()
	matched := a.matchLocked(sels)
	out.Federated = a.federatedLocked(matched)
	for _, e := range matched {
		if !e.expired(now) {
			out.Entitled = true
			break
		}
	}
	return out, a.changed
}

// bundleLocked returns the bundle in wire form, with no identity yet.
func (a *Agent) bundleLocked() workloadapi.Identities {
	return workloadapi.Identities{
		TrustDomain:    a.cfg.TrustDomain,
		X509Bundle:     a.bundle.x509DER,
		JWTBundle:      a.bundle.jwks,
		JWTAuthorities: a.bundle.jwtAuthorities,
		// Both counters only grow: the sum changes whenever either does.
		BundleSequence: a.bundle.sequence + a.federated.gen,
	}
}

// FetchJWTSVIDs implements workloadapi.Source. JWT-SVIDs are cached per (entry, audience) and reused
// until half their life has passed. Each one minted takes a token from the caller uid's rate limit
// (Config.JWTMintRate); a cache hit costs nothing. Identities that cannot be served are left out, and
// the first such error is returned with those that could be.
func (a *Agent) FetchJWTSVIDs(ctx context.Context, req workloadapi.JWTRequest) ([]workloadapi.JWTSVID, error) {
	now := a.cfg.Clock()
	a.mu.RLock()
	var entries []*agentv1.Entry
	for _, e := range a.matchLocked(req.Selectors) {
		if e.expired(now) || (req.SPIFFEID != "" && e.entry.SpiffeId != req.SPIFFEID) {
			continue
		}
		entries = append(entries, e.entry)
	}
	a.mu.RUnlock()

	aud := slices.Clone(req.Audience)
	slices.Sort(aud)
	aud = slices.Compact(aud)
	audKey := strings.Join(aud, "\x00")
	var out []workloadapi.JWTSVID
	var firstErr error
	for _, e := range entries {
		// An entry asking for a unique jti never gets a cached token.
		if !e.JwtUnique {
			if tok, jti, exp, ok := a.jwts.get(e.Id, e.Revision, audKey, now); ok {
				a.noteDelivery(jti, exp, req.Caller, now)
				out = append(out, workloadapi.JWTSVID{SPIFFEID: e.SpiffeId, Token: tok})
				continue
			}
		}
		if firstErr != nil {
			continue // one failure (server down, limit reached) is enough: serve the rest from the cache
		}
		if r, held := a.serverHolds.held(e.Id, a.cfg.Clock()); held {
			firstErr = status.Errorf(codes.ResourceExhausted, "agent: JWT-SVID for %s: not asking the server again before %s: it refused: %s",
				e.SpiffeId, r.until.UTC().Format(time.RFC3339), r.reason)
			continue
		}
		take := a.limiter.Take(req.UID, 1, a.cfg.Clock())
		if take.FirstRefusal { // once per episode: a flooding caller must not flood the log too
			a.log.Warn("caller uid reached its JWT-SVID mint limit; refusing its mints until tokens come back",
				"uid", req.UID, "rate_per_second", a.cfg.JWTMintRate, "burst", a.cfg.JWTMintBurst)
		}
		if !take.OK {
			firstErr = fmt.Errorf("agent: JWT-SVID for %s: uid %d: limit of %g mints per second (burst %d): %w",
				e.SpiffeId, req.UID, a.cfg.JWTMintRate, a.cfg.JWTMintBurst, workloadapi.ErrRateLimited)
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, signTimeout)
		resp, err := a.cfg.Client.SignJWTSVID(callCtx, &agentv1.SignJWTSVIDRequest{EntryId: e.Id, Audience: aud})
		cancel()
		if err != nil {
			// The server is unreachable or refused: the identities that need it are left out, the
			// others are still served from the cache (and the caller told why some are missing).
			firstErr = fmt.Errorf("agent: JWT-SVID for %s: %w", e.SpiffeId, err)
			if status.Code(err) == codes.ResourceExhausted {
				// The server's own limit (its issuance rate limits, its disk nearly full): stop asking it
				// for this entry a while, instead of passing every workload call on.
				if a.serverHolds.hold(e.Id, status.Convert(err).Message(), a.cfg.Clock()) {
					a.log.Warn("server refused a JWT-SVID for a limit of its own; not asking again for this entry for a while",
						"entry", e.Id, "spiffe_id", e.SpiffeId, "hold_off", serverHoldOff, "error", status.Convert(err).Message())
				}
			}
			continue
		}
		kid := jwtKeyID(resp.Token)
		a.mu.RLock()
		removed := a.removedKeys.has(kid)
		a.mu.RUnlock()
		if removed {
			// Signed by a key that has left the bundle (revoked): its server has not replaced it yet.
			firstErr = status.Errorf(codes.Unavailable, "agent: JWT-SVID for %s: signed by key %s, which is no longer in the bundle (revoked); retry", e.SpiffeId, kid)
			continue
		}
		if !e.JwtUnique {
			a.jwts.put(e.Id, e.Revision, audKey, resp.Token, resp.Id, kid, time.Unix(resp.IssuedAt, 0), time.Unix(resp.ExpiresAt, 0))
		}
		a.noteDelivery(resp.Id, time.Unix(resp.ExpiresAt, 0), req.Caller, a.cfg.Clock())
		out = append(out, workloadapi.JWTSVID{SPIFFEID: e.SpiffeId, Token: resp.Token})
	}
	return out, firstErr
}
