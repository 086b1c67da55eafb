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
		if !e.JwtUnique {
			if tok, ok := a.jwts.get(e.Id, e.Revision, audKey, now); ok {
				out = append(out, workloadapi.JWTSVID{SPIFFEID: e.SpiffeId, Token: tok})
				continue
			}
		}
		callCtx, cancel := context.WithTimeout(ctx, signTimeout)
		resp, err := a.cfg.Client.SignJWTSVID(callCtx, &agentv1.SignJWTSVIDRequest{EntryId: e.Id, Audience: aud})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("agent: JWT-SVID for %s: %w", e.SpiffeId, err)
		}
		if !e.JwtUnique {
			a.jwts.put(e.Id, e.Revision, audKey, resp.Token, time.Unix(resp.IssuedAt, 0), time.Unix(resp.ExpiresAt, 0), now)
		}
		out = append(out, workloadapi.JWTSVID{SPIFFEID: e.SpiffeId, Token: resp.Token})
	}
	return out, nil
}

// jwtCacheMax bounds the JWT cache; past it, expired tokens are evicted, then everything.
const jwtCacheMax = 10000

// jwtCache holds JWT-SVIDs per entry revision and audience. Keying by the revision the token was
// minted for means a token never outlives a change of its entry (SPIFFE ID, TTL, jwt_unique, ...):
// once the agent has the new revision, tokens of the old one are not returned, even one stored by a
// fetch that raced with the update.
type jwtCache struct {
	mu sync.Mutex
	m  map[string]*entryJWTs // by entry ID
	n  int                   // tokens held
}

type entryJWTs struct {
	revision uint64
	byAud    map[string]cachedJWT
}

type cachedJWT struct {
	token    string
	reuseEnd time.Time // half life
}

func newJWTCache() *jwtCache { return &jwtCache{m: map[string]*entryJWTs{}} }

func (c *jwtCache) get(entryID string, revision uint64, audience string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[entryID]
	if e == nil || e.revision != revision {
		return "", false
	}
	v, ok := e.byAud[audience]
	if !ok || !now.Before(v.reuseEnd) {
		return "", false
	}
	return v.token, true
}

func (c *jwtCache) put(entryID string, revision uint64, audience, token string, issued, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= jwtCacheMax {
		c.evictLocked(now)
	}
	e := c.m[entryID]
	switch {
	case e != nil && e.revision > revision:
		return // minted for a revision the agent has already replaced
	case e == nil || e.revision < revision:
		c.dropLocked(entryID)
		e = &entryJWTs{revision: revision, byAud: map[string]cachedJWT{}}
		c.m[entryID] = e
	}
	if _, ok := e.byAud[audience]; !ok {
		c.n++
	}
	e.byAud[audience] = cachedJWT{token: token, reuseEnd: issued.Add(expires.Sub(issued) / 2)}
}

// evictLocked drops tokens past their reuse time, then, if the cache is still full, everything.
func (c *jwtCache) evictLocked(now time.Time) {
	for id, e := range c.m {
		for aud, v := range e.byAud {
			if !now.Before(v.reuseEnd) {
				delete(e.byAud, aud)
				c.n--
			}
		}
		if len(e.byAud) == 0 {
			delete(c.m, id)
		}
	}
	if c.n >= jwtCacheMax {
		clear(c.m)
		c.n = 0
	}
}

func (c *jwtCache) dropEntry(entryID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(entryID)
}

func (c *jwtCache) dropLocked(entryID string) {
	if e := c.m[entryID]; e != nil {
		c.n -= len(e.byAud)
		delete(c.m, entryID)
	}
}
