package agent

import (
	"cmp"
	"slices"
	"time"

	"github.com/signet-id/signet/selector"
)

// KeepX509 implements workloadapi.Source: until release is called, the entries matching sels are in
// use (an open X.509 stream), so their SVIDs are minted if missing and rotated at half life.
func (a *Agent) KeepX509(sels []selector.Selector) (release func()) {
	s := &x509Stream{sels: sels}
	a.mu.Lock()
	a.streams[s] = struct{}{}
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.streams, s)
		a.mu.Unlock()
		// The minter recomputes when the entries this stream kept stop being in use.
		a.wakeMinter()
	}
}

// streamedLocked returns the IDs of the entries an open X.509 stream matches (nil when none is open).
func (a *Agent) streamedLocked() map[string]bool {
	if len(a.streams) == 0 {
		return nil
	}
	out := map[string]bool{}
	for s := range a.streams {
		for _, e := range a.matchLocked(s.sels) {
			out[e.entry.Id] = true
		}
	}
	return out
}

// inUse reports whether the entry's X.509-SVID is kept minted and rotated: the entry is a prefetch
// entry, an open stream matches it, or a workload fetched it within the last SVID lifetime.
func inUse(e *entryState, streamed map[string]bool, now time.Time) bool {
	if e.entry.Prefetch || streamed[e.entry.Id] {
		return true
	}
	u := e.usedUntil()
	return !u.IsZero() && now.Before(u)
}

// renewable reports whether the entry's SVID is renewed at half life: the entry is in use and, unless
// it is a prefetch entry or a stream keeps it, a workload fetched this very SVID. An SVID minted for a
// fetch, and fetched no more, is renewed once at most, then dropped when its last fetch is a
// lifetime old.
func renewable(e *entryState, streamed map[string]bool, now time.Time) bool {
	if e.entry.Prefetch || streamed[e.entry.Id] {
		return true
	}
	return inUse(e, streamed, now) && e.svid != nil && e.lastUsed.Load() >= e.svid.mintedAt.UnixNano()
}

// markUsed records a fetch of the entry's X.509-SVID at now.
func (e *entryState) markUsed(now time.Time) { e.lastUsed.Store(now.UnixNano()) }

// HeldSVID is an X.509-SVID the agent holds for an entry.
type HeldSVID struct {
	EntryID  string
	SPIFFEID string
	Serial   string
	// ExpiresAt is when the SVID expires: how long the agent can keep serving it without the server.
	ExpiresAt time.Time
	// Prefetch: minted ahead of requests; otherwise held because a workload uses it.
	Prefetch bool
}

// Held returns the X.509-SVIDs the agent holds now, sorted by SPIFFE ID then entry ID.
func (a *Agent) Held() []HeldSVID {
	now := a.cfg.Clock()
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []HeldSVID
	for _, e := range a.entries {
		if s := e.svid; s != nil && now.Before(s.notAfter) && !e.expired(now) {
			out = append(out, HeldSVID{EntryID: e.entry.Id, SPIFFEID: e.entry.SpiffeId, Serial: s.serial, ExpiresAt: s.notAfter, Prefetch: e.entry.Prefetch})
		}
	}
	slices.SortFunc(out, func(x, y HeldSVID) int {
		return cmp.Or(cmp.Compare(x.SPIFFEID, y.SPIFFEID), cmp.Compare(x.EntryID, y.EntryID))
	})
	return out
}
