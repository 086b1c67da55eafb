package server

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"syscall"
	"time"
)

// ErrResourceExhausted marks a request refused because a limit of the server was reached: an issuance
// rate limit, or the free space of the server's disk. The message names the limit.
var ErrResourceExhausted = errors.New("resource exhausted")

// Default issuance rate limits (token buckets; one SVID costs one token, a batch of N costs N).
//
// The per-agent bucket bounds how fast one agent can make the server sign and record anything. Its
// burst is sized for an agent that starts (or restarts) with a large entry set and mints one SVID for
// each at once: 10,000 SVIDs, ten full CSR batches. Its rate is what an agent with 100,000 one-hour
// entries needs to rotate them at half life (56/s), with room to spare.
//
// The per-entry bucket is kept per agent and entry: an entry parented to a node alias is legitimately
// issued by every agent of the alias, so a fleet-wide per-entry bucket would throttle honest agents.
// It bounds how fast one agent mints one identity: X.509-SVIDs are minted once per half life, JWT-SVIDs
// once per (audience, half life), or on every fetch for jwt_unique entries.
const (
	DefaultAgentIssueRate  = 100.0
	DefaultAgentIssueBurst = 10000
	DefaultEntryIssueRate  = 10.0
	DefaultEntryIssueBurst = 100
)

// IssuanceLimits are the token buckets of issuance. Zero fields take the defaults above.
type IssuanceLimits struct {
	// AgentRate is the sustained SVIDs per second one agent may have signed; AgentBurst how many at once
	// (at least MaxCSRBatch, so that a full batch can pass).
	AgentRate  float64
	AgentBurst int
	// EntryRate and EntryBurst bound the SVIDs of one entry signed for one agent.
	EntryRate  float64
	EntryBurst int
}

func (l *IssuanceLimits) withDefaults() (IssuanceLimits, error) {
	out := *l
	if out.AgentRate == 0 {
		out.AgentRate = DefaultAgentIssueRate
	}
	if out.AgentBurst == 0 {
		out.AgentBurst = DefaultAgentIssueBurst
	}
	if out.EntryRate == 0 {
		out.EntryRate = DefaultEntryIssueRate
	}
	if out.EntryBurst == 0 {
		out.EntryBurst = DefaultEntryIssueBurst
	}
	switch {
	case out.AgentRate < 0 || out.EntryRate < 0:
		return out, fmt.Errorf("issuance limits: rates %g and %g: must be positive", out.AgentRate, out.EntryRate)
	case out.AgentBurst < MaxCSRBatch:
		return out, fmt.Errorf("issuance limits: AgentBurst %d: at least %d, the largest CSR batch", out.AgentBurst, MaxCSRBatch)
	case out.EntryBurst < 1:
		return out, fmt.Errorf("issuance limits: EntryBurst %d: at least 1", out.EntryBurst)
	}
	return out, nil
}

// tokenBuckets is a set of token buckets with the same rate and burst, one per key. A bucket idle long
// enough to have refilled is the same as no bucket: those are swept, so memory follows the keys active
// within the last two refill periods, never the keys ever seen.
type tokenBuckets struct {
	rate  float64
	burst float64
	// idle is how long an empty bucket takes to refill; swept every idle.
	idle time.Duration

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newTokenBuckets(rate float64, burst int) *tokenBuckets {
	idle := time.Duration(float64(burst) / rate * float64(time.Second))
	return &tokenBuckets{rate: rate, burst: float64(burst), idle: max(idle, time.Second), buckets: map[string]*bucket{}}
}

// take removes n tokens from key's bucket at now. When the bucket holds fewer, nothing is taken and it
// returns how long until n would be there.
func (t *tokenBuckets) take(key string, n int, now time.Time) (ok bool, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) >= t.idle {
		for k, b := range t.buckets {
			if now.Sub(b.last) >= t.idle {
				delete(t.buckets, k)
			}
		}
		t.lastSweep = now
	}
	b := t.buckets[key]
	if b == nil {
		b = &bucket{tokens: t.burst, last: now}
		t.buckets[key] = b
	} else if now.After(b.last) {
		b.tokens = min(t.burst, b.tokens+now.Sub(b.last).Seconds()*t.rate)
		b.last = now
	}
	if b.tokens < float64(n) {
		return false, time.Duration(math.Ceil((float64(n)-b.tokens)/t.rate)) * time.Second
	}
	b.tokens -= float64(n)
	return true, 0
}

// len is how many buckets are held.
func (t *tokenBuckets) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buckets)
}

// DefaultMinFreeDisk is the free space under the server's data directory below which the server stops
// issuing: the ledger and the Raft log must never fill the disk.
const DefaultMinFreeDisk = 512 << 20

// diskCheckEvery is how long one free-space reading is trusted: a request never costs a statfs.
const diskCheckEvery = 5 * time.Second

// FreeDiskFunc returns the bytes available under dir.
type FreeDiskFunc func(dir string) (uint64, error)

// StatfsFree is the FreeDiskFunc of a real file system: the space available to unprivileged users
// (the root reserve is not counted on).
func StatfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// diskGuard refuses issuance when the data directory's file system is nearly full. Readings are cached
// for diskCheckEvery.
type diskGuard struct {
	dir   string
	min   uint64
	free  FreeDiskFunc
	clock func() time.Time

	mu      sync.Mutex
	readAt  time.Time
	avail   uint64
	readErr error
}

// check returns nil when there is room to issue, or an ErrResourceExhausted error saying how much is
// free. A guard without a directory checks nothing.
func (d *diskGuard) check() error {
	if d == nil || d.dir == "" {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	if d.readAt.IsZero() || now.Sub(d.readAt) >= diskCheckEvery || now.Before(d.readAt) {
		d.avail, d.readErr = d.free(d.dir)
		d.readAt = now
	}
	switch {
	case d.readErr != nil:
		return fmt.Errorf("server disk: %w", d.readErr)
	case d.avail < d.min:
		return fmt.Errorf("%w: server disk nearly full: %d MiB free under data_dir %s, below min_free_disk (%d MiB); free space or raise the disk before issuance resumes",
			ErrResourceExhausted, d.avail>>20, d.dir, d.min>>20)
	}
	return nil
}
