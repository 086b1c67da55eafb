package awsiid

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

var base64Std = base64.StdEncoding

// DefaultMaxInstances bounds a MemoryInstanceLog.
const DefaultMaxInstances = 100_000

// MemoryInstanceLog is the InstanceLog of one process: claims are atomic (one mutex) but forgotten
// when the process exits, so it suits a single-process deployment (signet dev) and tests, not a
// cluster (see InstanceLog). It holds at most its bound of instances and refuses claims beyond it
// rather than forgetting one.
type MemoryInstanceLog struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
}

// NewMemoryInstanceLog returns an empty log of at most max instances (DefaultMaxInstances for 0).
func NewMemoryInstanceLog(max int) *MemoryInstanceLog {
	if max <= 0 {
		max = DefaultMaxInstances
	}
	return &MemoryInstanceLog{max: max, seen: map[string]time.Time{}}
}

// Claim records key; first is true only for the first claim of key.
func (l *MemoryInstanceLog) Claim(_ context.Context, key string, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[key]; ok {
		return false, nil
	}
	if len(l.seen) >= l.max {
		return false, fmt.Errorf("instance log full (%d instances)", l.max)
	}
	l.seen[key] = now
	return true, nil
}
