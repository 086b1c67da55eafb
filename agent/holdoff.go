package agent

import (
	"sync"
	"time"
)

// serverHoldOff is how long the agent stops asking the server for an entry's JWT-SVIDs after the
// server refused one for a limit of its own (ResourceExhausted: its issuance rate limits, or its disk
// nearly full). Meanwhile workloads are refused at once, without a call, and served from the cache:
// a refused server is not asked again at the pace workloads ask the agent.
const serverHoldOff = mintRetry

// holdOffs holds, per entry ID, until when the server is not asked, and what it said. Entries are
// forgotten once their hold ends, so it holds at most the entries refused within serverHoldOff.
type holdOffs struct {
	mu sync.Mutex
	m  map[string]heldRefusal
}

type heldRefusal struct {
	until  time.Time
	reason string
}

func newHoldOffs() *holdOffs { return &holdOffs{m: map[string]heldRefusal{}} }

// held returns the server's refusal of entryID if its hold has not ended at now.
func (h *holdOffs) held(entryID string, now time.Time) (heldRefusal, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.m[entryID]
	if ok && !now.Before(r.until) {
		delete(h.m, entryID)
		return heldRefusal{}, false
	}
	return r, ok
}

// hold stops asking the server for entryID until now+serverHoldOff, remembering its reason. It
// reports whether the entry was not already held (a new episode, worth one log line).
func (h *holdOffs) hold(entryID, reason string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, r := range h.m {
		if !now.Before(r.until) {
			delete(h.m, id)
		}
	}
	_, was := h.m[entryID]
	h.m[entryID] = heldRefusal{until: now.Add(serverHoldOff), reason: reason}
	return !was
}
