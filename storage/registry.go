package storage

import (
	"cmp"
	"crypto"
	"crypto/x509"
	"slices"
	"sync"
)

// maxChanges is how many registry changes are kept in memory for delta sync. An agent further behind
// than this gets a full listing instead of a delta.
const maxChanges = 65536

type change struct {
	revision uint64
	entryID  string
	// parents are the entry's parent IDs before and after the change (one or two), so a watcher can
	// tell whether the change concerns it without a tombstone.
	parents []string
}

// EntryChange says that an entry was created, changed or deleted, and which parents it had before and
// after: the agents concerned.
type EntryChange struct {
	ID      string
	Parents []string
}

// registry is the in-memory, read-optimised view of the registry part of the state: owners, entries and
// authorities. It is rebuilt from bbolt on open and restore, and updated by the FSM after each committed
// transaction, so readers never see a write that is not durable. Entries are immutable once published:
// an update replaces the pointer, so readers may share them.
type registry struct {
	mu          sync.RWMutex
	revision    uint64
	owners      map[string]*Owner
	entries     map[string]*Entry
	byParent    map[string]map[string]*Entry
	authorities map[string]*Authority
	// revokedSigners are the revoked upstream intermediates' key IDs, oldest revocation first, at most
	// MaxRevokedSigners (Bundle.RevokedSigners).
	revokedSigners []string
	bundle         Bundle
	tokens         map[string]*JoinToken
	agents         map[string]*Agent
	changes        []change // ascending by revision, at most maxChanges
	// floor is the newest revision that is NOT covered by changes: deltas can be served from any
	// revision >= floor.
	floor  uint64
	notify chan struct{}
}

func newRegistry() *registry {
	return &registry{
		owners:      map[string]*Owner{},
		entries:     map[string]*Entry{},
		byParent:    map[string]map[string]*Entry{},
		authorities: map[string]*Authority{},
		tokens:      map[string]*JoinToken{},
		agents:      map[string]*Agent{},
		notify:      make(chan struct{}),
	}
}

func (r *registry) tokenPut(t *JoinToken) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens[t.ID] = t
}

// agentPut publishes an agent change; rev is the new registry revision, or 0 when the change does not
// affect what the agent may issue (an SVID renewal). Only a change with a revision wakes the watchers:
// every agent renews, and waking every sync stream for each renewal would make each of them
// re-authenticate and re-read for nothing. (Attestation, ban and eviction carry a revision, so streams
// still learn of them at once; the renewing agent itself reconnects with its new SVID.)
func (r *registry) agentPut(a *Agent, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agents[a.ID] = a
	if rev != 0 {
		r.recordChangeLocked(rev, "")
	}
}

func (r *registry) agentDelete(id string, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.agents, id)
	r.recordChangeLocked(rev, "")
}

// load makes the registry a fresh copy of st (after open or restore), in one step readers cannot see
// half done. All change history is forgotten: every watcher must resynchronise fully.
func (r *registry) load(st registryState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision = st.revision
	r.floor = st.revision
	r.changes = nil
	r.owners = map[string]*Owner{}
	for _, o := range st.owners {
		r.owners[o.Name] = o
	}
	r.entries = map[string]*Entry{}
	r.byParent = map[string]map[string]*Entry{}
	for _, e := range st.entries {
		r.putEntryLocked(e)
	}
	r.authorities = map[string]*Authority{}
	for _, a := range st.auths {
		r.authorities[a.Kind.key(a.ID)] = a
	}
	r.revokedSigners = nil
	for _, id := range st.revokedSigners {
		r.addRevokedSignerLocked(id)
	}
	r.rebuildBundleLocked(st.bundleSeq)
	r.tokens = map[string]*JoinToken{}
	for _, t := range st.tokens {
		r.tokens[t.ID] = t
	}
	r.agents = map[string]*Agent{}
	for _, a := range st.agents {
		r.agents[a.ID] = a
	}
	r.wakeLocked()
}

func (k AuthorityKind) key(id string) string { return string(k) + "/" + id }

func (r *registry) wakeLocked() {
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *registry) putEntryLocked(e *Entry) {
	if old, ok := r.entries[e.ID]; ok {
		r.unparentLocked(old)
	}
	r.entries[e.ID] = e
	m := r.byParent[e.ParentID]
	if m == nil {
		m = map[string]*Entry{}
		r.byParent[e.ParentID] = m
	}
	m[e.ID] = e
}

// unparentLocked removes e from the by-parent index, and its parent's map once empty.
func (r *registry) unparentLocked(e *Entry) {
	m := r.byParent[e.ParentID]
	delete(m, e.ID)
	if len(m) == 0 {
		delete(r.byParent, e.ParentID)
	}
}

func (r *registry) recordChangeLocked(rev uint64, entryID string, parents ...string) {
	r.revision = rev
	if entryID != "" {
		if len(r.changes) == maxChanges {
			// Forget the oldest quarter; deltas are still possible from any revision at or after the
			// newest forgotten change.
			drop := maxChanges / 4
			r.floor = r.changes[drop-1].revision
			r.changes = slices.Delete(r.changes, 0, drop)
		}
		r.changes = append(r.changes, change{revision: rev, entryID: entryID, parents: parents})
	}
	r.wakeLocked()
}

// entryPut publishes a created or changed entry at revision rev.
func (r *registry) entryPut(e *Entry, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	parents := []string{e.ParentID}
	if old, ok := r.entries[e.ID]; ok && old.ParentID != e.ParentID {
		parents = append(parents, old.ParentID)
	}
	r.putEntryLocked(e)
	r.recordChangeLocked(rev, e.ID, parents...)
}

func (r *registry) entryDelete(id string, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parents []string
	if old, ok := r.entries[id]; ok {
		parents = []string{old.ParentID}
		r.unparentLocked(old)
		delete(r.entries, id)
	}
	r.recordChangeLocked(rev, id, parents...)
}

func (r *registry) ownerPut(o *Owner, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owners[o.Name] = o
	r.recordChangeLocked(rev, "")
}

func (r *registry) authorityPut(a *Authority, bundleSeq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.authorities[a.Kind.key(a.ID)] = a
	r.rebuildBundleLocked(bundleSeq)
	r.wakeLocked()
}

func (r *registry) authorityRemove(kind AuthorityKind, id string, bundleSeq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.authorities, kind.key(id))
	r.rebuildBundleLocked(bundleSeq)
	r.wakeLocked()
}

// signerRevoke lists a revoked upstream intermediate in the bundle (Bundle.RevokedSigners).
func (r *registry) signerRevoke(id string, bundleSeq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addRevokedSignerLocked(id)
	r.rebuildBundleLocked(bundleSeq)
	r.wakeLocked()
}

func (r *registry) addRevokedSignerLocked(id string) {
	if len(r.revokedSigners) >= MaxRevokedSigners {
		r.revokedSigners = slices.Delete(r.revokedSigners, 0, 1)
	}
	r.revokedSigners = append(r.revokedSigners, id)
}

func (r *registry) rebuildBundleLocked(seq uint64) {
	b := Bundle{JWTAuthorities: map[string]crypto.PublicKey{}, Sequence: seq, RevokedSigners: slices.Clone(r.revokedSigners)}
	auths := make([]*Authority, 0, len(r.authorities))
	for _, a := range r.authorities {
		auths = append(auths, a)
	}
	slices.SortFunc(auths, func(x, y *Authority) int { return cmp.Compare(x.AddedAt.UnixNano(), y.AddedAt.UnixNano()) })
	for _, a := range auths {
		switch a.Kind {
		case AuthorityX509:
			// The DER was validated before it was proposed; a parse failure here would mean a corrupted
			// state file, which the bundle simply omits.
			if c, err := x509.ParseCertificate(a.DER); err == nil {
				b.X509Authorities = append(b.X509Authorities, c)
			}
		case AuthorityJWT:
			if k, err := x509.ParsePKIXPublicKey(a.DER); err == nil {
				b.JWTAuthorities[a.ID] = k
			}
		}
	}
	r.bundle = b
}

// Revision returns the current registry revision.
func (r *registry) currentRevision() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revision
}

// changed returns a channel closed at the next change to entries, owners or the bundle.
func (r *registry) changed() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.notify
}

// changedSince returns the entries changed after revision since (the latest change of each), and the
// current revision. ok is false when since is older than the kept history: the caller must take a full
// listing.
func (r *registry) changedSince(since uint64) (changes []EntryChange, rev uint64, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if since < r.floor || since > r.revision {
		return nil, r.revision, false
	}
	i, _ := slices.BinarySearchFunc(r.changes, since+1, func(c change, rev uint64) int { return cmp.Compare(c.revision, rev) })
	at := map[string]int{}
	for _, c := range r.changes[i:] {
		if j, seen := at[c.entryID]; seen {
			for _, p := range c.parents {
				if !slices.Contains(changes[j].Parents, p) {
					changes[j].Parents = append(changes[j].Parents, p)
				}
			}
			continue
		}
		at[c.entryID] = len(changes)
		changes = append(changes, EntryChange{ID: c.entryID, Parents: slices.Clone(c.parents)})
	}
	return changes, r.revision, true
}
