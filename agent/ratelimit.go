package agent

import (
	"sync"
	"time"
)

// maxLimitedCallers bounds the callers (uids) the mint limiter tracks. A full bucket is the same as no
// bucket, so full ones are dropped first when this is reached.
const maxLimitedCallers = 4096

// mintLimiter is a token bucket per caller uid: each JWT-SVID the agent asks the server to mint for a
// caller takes one token; tokens come back at rate per second up to burst.
type mintLimiter struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[uint32]*bucket
}

type bucket struct {
	tokens  float64
	at      time.Time // when tokens was last brought up to date
	refused bool      // the last take was refused
}

func newMintLimiter(rate float64, burst int) *mintLimiter {
	return &mintLimiter{rate: rate, burst: float64(burst), buckets: map[uint32]*bucket{}}
}

// take takes one token from uid's bucket at now, reporting whether there was one, and, when there was
// not, whether this is the first refusal since uid's last successful take (worth one log line).
func (l *mintLimiter) take(uid uint32, now time.Time) (ok, firstRefusal bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[uid]
	if b == nil {
		if len(l.buckets) >= maxLimitedCallers {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[uid] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		first := !b.refused
		b.refused = true
		return false, first
	}
	b.tokens--
	b.refused = false
	return true, false
}

func (l *mintLimiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
}

// pruneLocked drops the buckets that have refilled (they hold nothing a new bucket would not), and if
// that frees nothing, all of them: reaching this needs thousands of uids calling at once.
func (l *mintLimiter) pruneLocked(now time.Time) {
	for uid, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, uid)
		}
	}
	if len(l.buckets) >= maxLimitedCallers {
		clear(l.buckets)
	}
}
