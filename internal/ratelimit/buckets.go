package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Buckets is a set of token buckets of one rate and burst, one per key (an agent, a caller uid): a
// bucket starts full, each request takes tokens, and tokens come back at Rate per second up to Burst.
//
// Memory follows the keys active recently, never every key seen: a bucket idle long enough to have
// refilled is the same as no bucket, and such buckets are swept once per refill period. With MaxKeys
// set, reaching it sweeps at once, and if every bucket is still in use, forgets them all (their keys
// start again from full buckets): reaching it takes that many keys asking within one refill period.
type Buckets[K comparable] struct {
	rate, burst float64
	// idle is how long an empty bucket takes to refill.
	idle    time.Duration
	maxKeys int

	mu        sync.Mutex
	m         map[K]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens  float64
	last    time.Time // when tokens was last brought up to date
	refused bool      // the last take was refused
}

// Result is the outcome of Take.
type Result struct {
	// OK reports whether the tokens were taken.
	OK bool
	// Wait is, when not OK, how long until the bucket holds the tokens asked for (whole seconds,
	// rounded up).
	Wait time.Duration
	// FirstRefusal is set on a refusal after a success (or on a new key's first refusal): the start
	// of an episode, worth one log line where each refusal is not.
	FirstRefusal bool
}

// NewBuckets returns buckets refilling at rate tokens per second up to burst (both positive), holding
// at most maxKeys buckets (0: no bound but the sweep of idle ones).
func NewBuckets[K comparable](rate float64, burst, maxKeys int) *Buckets[K] {
	idle := time.Duration(float64(burst) / rate * float64(time.Second))
	return &Buckets[K]{rate: rate, burst: float64(burst), idle: max(idle, time.Second), maxKeys: maxKeys, m: map[K]*bucket{}}
}

// RefillTime is how long an empty bucket takes to refill: a key idle that long holds no bucket after
// the next sweep.
func (b *Buckets[K]) RefillTime() time.Duration { return b.idle }

// Take takes n tokens from key's bucket at now. When the bucket holds fewer, nothing is taken.
func (b *Buckets[K]) Take(key K, n int, now time.Time) Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastSweep) >= b.idle || now.Before(b.lastSweep) {
		b.sweepLocked(now)
	}
	bk := b.m[key]
	if bk == nil {
		if b.maxKeys > 0 && len(b.m) >= b.maxKeys {
			if b.sweepLocked(now); len(b.m) >= b.maxKeys {
				clear(b.m)
			}
		}
		bk = &bucket{tokens: b.burst, last: now}
		b.m[key] = bk
	} else if now.After(bk.last) {
		bk.tokens = min(b.burst, bk.tokens+now.Sub(bk.last).Seconds()*b.rate)
		bk.last = now
	}
	if bk.tokens < float64(n) {
		first := !bk.refused
		bk.refused = true
		return Result{Wait: time.Duration(math.Ceil((float64(n)-bk.tokens)/b.rate)) * time.Second, FirstRefusal: first}
	}
	bk.tokens -= float64(n)
	bk.refused = false
	return Result{OK: true}
}

// sweepLocked drops the buckets idle for a refill period.
func (b *Buckets[K]) sweepLocked(now time.Time) {
	for k, bk := range b.m {
		if now.Sub(bk.last) >= b.idle {
			delete(b.m, k)
		}
	}
	b.lastSweep = now
}

// Len is how many buckets are held.
func (b *Buckets[K]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
