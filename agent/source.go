package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/workloadapi"
)

var _ workloadapi.Source = (*Agent)(nil)

// Identities implements workloadapi.Source: the caller's SVIDs and the bundle, from the cache.
func (a *Agent) Identities(sels []selector.Selector) (workloadapi.Identities, <-chan struct{}) {
	now := a.cfg.Clock()
	var pending []string
	defer func() { a.want(pending) }()
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := workloadapi.Identities{
		TrustDomain:    a.cfg.TrustDomain,
		X509Bundle:     a.bundle.x509DER,
		JWTBundle:      a.bundle.jwks,
		JWTAuthorities: a.bundle.jwtAuthorities,
		BundleSequence: a.bundle.sequence,
	}
	for _, e := range a.matchLocked(sels) {
		if e.expired(now) {
			continue
		}
		s := e.svid
		if s == nil || !now.Before(s.notAfter) {
			out.Pending = true
			pending = append(pending, e.entry.Id)
			continue
		}
		out.SVIDs = append(out.SVIDs, workloadapi.X509SVID{SPIFFEID: e.entry.SpiffeId, Serial: s.serial, CertChain: s.chainDER, Key: s.keyDER})
	}
	return out, a.changed
}

// FetchJWTSVIDs implements workloadapi.Source. JWT-SVIDs are cached per (entry, audience) and reused
// until half their life has passed.
func (a *Agent) FetchJWTSVIDs(ctx context.Context, sels []selector.Selector, audience []string, spiffeID string) ([]workloadapi.JWTSVID, error) {
	now := a.cfg.Clock()
	a.mu.RLock()
	var entries []*agentv1.Entry
	for _, e := range a.matchLocked(sels) {
		if e.expired(now) || (spiffeID != "" && e.entry.SpiffeId != spiffeID) {
			continue
		}
		entries = append(entries, e.entry)
	}
	a.mu.RUnlock()

	aud := slices.Clone(audience)
	slices.Sort(aud)
	aud = slices.Compact(aud)
	audKey := strings.Join(aud, "\x00")
	var out []workloadapi.JWTSVID
	for _, e := range entries {
		// An entry asking for a unique jti never gets a cached token.
		if tok, ok := a.jwts.get(e.Id, audKey, now); ok && !e.JwtUnique {
			out = append(out, workloadapi.JWTSVID{SPIFFEID: e.SpiffeId, Token: tok})
			continue
		}
		resp, err := a.cfg.Client.SignJWTSVID(ctx, &agentv1.SignJWTSVIDRequest{EntryId: e.Id, Audience: aud})
		if err != nil {
			return nil, fmt.Errorf("agent: JWT-SVID for %s: %w", e.SpiffeId, err)
		}
		if !e.JwtUnique {
			a.jwts.put(e.Id, audKey, resp.Token, time.Unix(resp.IssuedAt, 0), time.Unix(resp.ExpiresAt, 0))
		}
		out = append(out, workloadapi.JWTSVID{SPIFFEID: e.SpiffeId, Token: resp.Token})
	}
	return out, nil
}

// jwtCacheMax bounds the JWT cache; past it, expired tokens are evicted, then everything.
const jwtCacheMax = 10000

type jwtKey struct {
	entryID  string
	audience string
}

type cachedJWT struct {
	token    string
	reuseEnd time.Time // half life
}

type jwtCache struct {
	mu sync.Mutex
	m  map[jwtKey]cachedJWT
}

func newJWTCache() *jwtCache { return &jwtCache{m: map[jwtKey]cachedJWT{}} }

func (c *jwtCache) get(entryID, audience string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[jwtKey{entryID, audience}]
	if !ok || !now.Before(v.reuseEnd) {
		return "", false
	}
	return v.token, true
}

func (c *jwtCache) put(entryID, audience, token string, issued, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= jwtCacheMax {
		now := time.Now()
		for k, v := range c.m {
			if !now.Before(v.reuseEnd) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= jwtCacheMax {
			clear(c.m)
		}
	}
	c.m[jwtKey{entryID, audience}] = cachedJWT{token: token, reuseEnd: issued.Add(expires.Sub(issued) / 2)}
}

func (c *jwtCache) dropEntry(entryID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.entryID == entryID {
			delete(c.m, k)
		}
	}
}
