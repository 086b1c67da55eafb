package unix

import (
	"context"
	"sync"
)

// hashSlots bounds the executables hashed at the same time for one uid: a user who starts many large
// programs at once waits for its own hashes instead of taking every core from the agent. Callers
// waiting for a slot give up when their context ends.
type hashSlots struct {
	max int

	mu    sync.Mutex
	byUID map[uint32]*uidSlots // only uids that hold or wait for a slot
}

type uidSlots struct {
	sem     chan struct{} // one value per slot taken
	users   int           // holders and waiters; the entry is dropped at zero
	waiting int           // waiters (tests watch it)
}

func newHashSlots(max int) *hashSlots {
	return &hashSlots{max: max, byUID: map[uint32]*uidSlots{}}
}

// acquire takes one of uid's slots, waiting until one is free or ctx ends; release gives it back.
func (h *hashSlots) acquire(ctx context.Context, uid uint32) (release func(), err error) {
	h.mu.Lock()
	s := h.byUID[uid]
	if s == nil {
		s = &uidSlots{sem: make(chan struct{}, h.max)}
		h.byUID[uid] = s
	}
	s.users++
	h.mu.Unlock()

	select {
	case s.sem <- struct{}{}:
	default:
		h.addWaiting(s, 1)
		select {
		case s.sem <- struct{}{}:
			h.addWaiting(s, -1)
		case <-ctx.Done():
			h.addWaiting(s, -1)
			h.leave(uid, s)
			return nil, ctx.Err()
		}
	}
	return func() {
		<-s.sem
		h.leave(uid, s)
	}, nil
}

func (h *hashSlots) addWaiting(s *uidSlots, n int) {
	h.mu.Lock()
	s.waiting += n
	h.mu.Unlock()
}

func (h *hashSlots) leave(uid uint32, s *uidSlots) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(h.byUID, uid)
	}
}

// waiters returns how many callers wait for one of uid's slots.
func (h *hashSlots) waiters(uid uint32) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.byUID[uid]; s != nil {
		return s.waiting
	}
	return 0
}
