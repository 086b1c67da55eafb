package agent

import (
	"container/list"
	"sync"
	"time"
)

// jwtCache holds JWT-SVIDs per entry revision and audience, at most max of them; when full, the least
// recently used token is evicted, so a caller that floods the cache with new audiences pushes out its
// own old tokens first, not the ones other workloads keep using.
//
// Keying by the revision the token was minted for means a token never outlives a change of its entry
// (SPIFFE ID, TTL, jwt_unique, ...): once the agent has the new revision, tokens of the old one are not
// returned, even one stored by a fetch that raced with the update.
type jwtCache struct {
	mu      sync.Mutex
	max     int
	lru     *list.List            // of *cachedJWT, most recently used first
	entries map[string]*entryJWTs // by entry ID
}

type entryJWTs struct {
	revision uint64
	byAud    map[string]*list.Element
}

type cachedJWT struct {
	entryID, audience string
	token, id         string    // id: the JWT ID, the token's ledger record
	kid               string    // the key that signed it
	expires           time.Time // the token's expiry
	reuseEnd          time.Time // half life
}

func newJWTCache(max int) *jwtCache {
	return &jwtCache{max: max, lru: list.New(), entries: map[string]*entryJWTs{}}
}

// get returns the token cached for (entry revision, audience), its JWT ID and expiry.
func (c *jwtCache) get(entryID string, revision uint64, audience string, now time.Time) (token, id string, expires time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[entryID]
	if e == nil || e.revision != revision {
		return "", "", time.Time{}, false
	}
	el, ok := e.byAud[audience]
	if !ok {
		return "", "", time.Time{}, false
	}
	v := el.Value.(*cachedJWT)
	if !now.Before(v.reuseEnd) {
		c.removeLocked(el)
		return "", "", time.Time{}, false
	}
	c.lru.MoveToFront(el)
	return v.token, v.id, v.expires, true
}

func (c *jwtCache) put(entryID string, revision uint64, audience, token, id, kid string, issued, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[entryID]
	switch {
	case e != nil && e.revision > revision:
		return // minted for a revision the agent has already replaced
	case e == nil || e.revision < revision:
		c.dropLocked(entryID)
		e = &entryJWTs{revision: revision, byAud: map[string]*list.Element{}}
		c.entries[entryID] = e
	}
	v := &cachedJWT{entryID: entryID, audience: audience, token: token, id: id, kid: kid, expires: expires, reuseEnd: issued.Add(expires.Sub(issued) / 2)}
	if el, ok := e.byAud[audience]; ok {
		el.Value = v
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		c.removeLocked(c.lru.Back())
	}
	c.entries[entryID] = e // evicting this entry's last token above removed it from the map
	e.byAud[audience] = c.lru.PushFront(v)
}

// removeLocked removes one token.
func (c *jwtCache) removeLocked(el *list.Element) {
	v := c.lru.Remove(el).(*cachedJWT)
	e := c.entries[v.entryID]
	delete(e.byAud, v.audience)
	if len(e.byAud) == 0 {
		delete(c.entries, v.entryID)
	}
}

// dropSignedBy removes every token signed by a key not in keep (a key that left the bundle), and
// reports how many.
func (c *jwtCache) dropSignedBy(keep map[string]bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		if !keep[el.Value.(*cachedJWT).kid] {
			c.removeLocked(el)
			n++
		}
		el = next
	}
	return n
}

func (c *jwtCache) dropEntry(entryID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(entryID)
}

func (c *jwtCache) dropLocked(entryID string) {
	if e := c.entries[entryID]; e != nil {
		for _, el := range e.byAud {
			c.lru.Remove(el)
		}
		delete(c.entries, entryID)
	}
}
