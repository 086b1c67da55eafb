package unix

import (
	"context"
	"errors"
	"os/user"
	"strconv"
	"sync"
	"time"
)

// fileKey identifies one version of one file: a file rewritten in place changes size, mtime or
// ctime, and a file replaced by another changes device or inode.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the Unix epoch
}

// digestCache maps file versions to hex sha256 digests. It keeps two generations of at most max
// entries each: when the current generation fills up it becomes the old one and the previous old
// generation is dropped; a hit in the old generation moves the entry back to the current one.
// Recently used digests therefore survive, and memory stays bounded by 2*max entries.
//
// It also keeps the hashes in progress (see digest), so that a file version is read once however
// many callers miss the cache for it at the same time.
type digestCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[fileKey]string
	hashing  map[fileKey]*hashing
}

// errHashPanicked is what callers waiting for a hash get when it panicked.
var errHashPanicked = errors.New("hashing the executable panicked")

// hashing is one hash of a file version in progress; done is closed when digest and err are set.
// waiters counts the callers that have come to wait for it (guarded by digestCache.mu), so that a
// test can tell when a caller has reached its wait.
type hashing struct {
	done    chan struct{}
	digest  string
	err     error
	waiters int
}

func newDigestCache(max int) *digestCache {
	return &digestCache{max: max, cur: make(map[fileKey]string), hashing: make(map[fileKey]*hashing)}
}

// digest returns the digest of k from the cache or else from hash, which is never run twice at the
// same time for one k: a caller that misses the cache while another is hashing k waits for that
// result (or for ctx to end) and shares it. If that hash failed because its caller's context ended,
// a waiter whose own ctx is still live hashes the file itself; other errors are shared too, since
// they concern the same file version. A successful result is cached.
func (c *digestCache) digest(ctx context.Context, k fileKey, hash func() (string, error)) (string, error) {
	for {
		c.mu.Lock()
		if d, ok := c.getLocked(k); ok {
			c.mu.Unlock()
			return d, nil
		}
		h, busy := c.hashing[k]
		if !busy {
			h = &hashing{done: make(chan struct{})}
			c.hashing[k] = h
			c.mu.Unlock()
			return c.run(k, h, hash)
		}
		h.waiters++
		c.mu.Unlock()
		select {
		case <-h.done:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if h.err == nil {
			return h.digest, nil
		}
		if !errors.Is(h.err, context.Canceled) && !errors.Is(h.err, context.DeadlineExceeded) {
			return "", h.err
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
}

// cached returns the digest of k if the cache has it, without waiting for a hash in progress.
func (c *digestCache) cached(k fileKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(k)
}

// run runs hash as the one hashing k, publishes the result to the waiters and caches it.
func (c *digestCache) run(k fileKey, h *hashing, hash func() (string, error)) (string, error) {
	h.err = errHashPanicked // what waiters see if hash panics
	defer func() {
		c.mu.Lock()
		delete(c.hashing, k)
		if h.err == nil {
			c.putLocked(k, h.digest)
		}
		c.mu.Unlock()
		close(h.done)
	}()
	h.digest, h.err = hash()
	return h.digest, h.err
}

func (c *digestCache) getLocked(k fileKey) (string, bool) {
	if d, ok := c.cur[k]; ok {
		return d, true
	}
	if d, ok := c.old[k]; ok {
		delete(c.old, k)
		c.putLocked(k, d)
		return d, true
	}
	return "", false
}

func (c *digestCache) putLocked(k fileKey, digest string) {
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[fileKey]string, c.max)
	}
	c.cur[k] = digest
}

// nameKey is a numeric user id (group false) or group id (group true).
type nameKey struct {
	group bool
	id    uint32
}

type nameEntry struct {
	name    string // "" if the id has no name
	expires time.Time
}

// nameCache remembers the names of user and group ids, and ids without a name, for ttl. It holds
// at most max entries; when full, expired entries are dropped, and if none had expired, all are.
type nameCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	now     func() time.Time
	entries map[nameKey]nameEntry
	lookup  func(nameKey) (string, error) // resolves an id; replaced in tests
}

func newNameCache(max int, ttl time.Duration, now func() time.Time) *nameCache {
	return &nameCache{max: max, ttl: ttl, now: now, entries: make(map[nameKey]nameEntry), lookup: lookupName}
}

// name returns the name of k, or "" if it has none or the look-up failed. A failed look-up is
// remembered for the TTL like a successful one, so a broken name service does not slow every
// attestation down; err reports why a name is missing the first time it is looked up.
func (c *nameCache) name(k nameKey) (name string, cached bool, err error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.name, true, nil
	}

	// Look up without holding the lock: the name service may be slow.
	name, err = c.lookup(k)

	c.mu.Lock()
	defer c.mu.Unlock()
	if _, present := c.entries[k]; !present && len(c.entries) >= c.max {
		for key, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, key)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = nameEntry{name: name, expires: now.Add(c.ttl)}
	return name, false, err
}

// lookupName resolves k with os/user. An id that simply has no name is not an error.
func lookupName(k nameKey) (string, error) {
	id := strconv.FormatUint(uint64(k.id), 10)
	if k.group {
		g, err := user.LookupGroupId(id)
		if errors.As(err, new(user.UnknownGroupIdError)) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return g.Name, nil
	}
	u, err := user.LookupId(id)
	if errors.As(err, new(user.UnknownUserIdError)) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return u.Username, nil
}
