package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
)

// propose encodes a protobuf command, proposes it (refused with ErrUpgradeInProgress while a server of
// the cluster would not understand it) and waits for its result.
func (s *Store) propose(ctx context.Context, t commandType, m proto.Message) (any, error) {
	cmd, err := encodeCommand(t, m)
	if err != nil {
		return nil, err
	}
	if cmd, err = wrapPolicyChecked(ctx, cmd); err != nil {
		return nil, err
	}
	return s.apply(ctx, cmd)
}

// proposeWithLedger proposes a protobuf command that carries ledger records (stamped like any ledger
// batch; build makes the command from their encoded batch) and waits for its result.
func (s *Store) proposeWithLedger(ctx context.Context, t commandType, recs []Issuance, build func(ledger []byte) proto.Message) (any, error) {
	if !s.forwards() { // a forwarded command is gated by the leader (ApplyProposal)
		if err := s.checkProposable(ctx, []byte{byte(t)}); err != nil {
			return nil, err
		}
	}
	p := s.proposeStamped(ctx, recs, func(batch []byte, signed bool) ([]byte, error) {
		if signed {
			return encodeCommand(signedType(t), build(batch))
		}
		return encodeCommand(t, build(batch))
	})
	p.op = t.String()
	if err := p.Wait(ctx); err != nil {
		return nil, err
	}
	return p.response(), nil
}

// CreateOwner adds an owner. ErrOwnerExists if the name is taken.
func (s *Store) CreateOwner(ctx context.Context, o Owner) (Owner, error) {
	return s.createOwner(ctx, o, false)
}

// EnsureOwner adds an owner unless one with that name exists, and returns the stored owner.
func (s *Store) EnsureOwner(ctx context.Context, o Owner) (Owner, error) {
	return s.createOwner(ctx, o, true)
}

func (s *Store) createOwner(ctx context.Context, o Owner, ifMissing bool) (Owner, error) {
	resp, err := s.propose(ctx, cmdOwnerCreate, ownerCreateCmd{Owner: o, IfMissing: ifMissing, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return Owner{}, fmt.Errorf("storage: create owner %q: %w", o.Name, err)
	}
	return resp.(Owner), nil
}

// CreateEntry stores a new entry. The caller assigns e.ID (unique) and validates the content; the store
// checks what depends on state: the owner exists (ErrOwnerNotFound) and no entry has the same SPIFFE ID,
// parent and selectors (ErrEntryExists). The stored entry, with its revision, is returned.
func (s *Store) CreateEntry(ctx context.Context, e Entry) (Entry, error) {
	if e.ID == "" {
		return Entry{}, fmt.Errorf("storage: create entry %q: %w: ID is required", e.SPIFFEID, ErrInvalid)
	}
	resp, err := s.propose(ctx, federatedType(cmdEntryCreate, e), entryCreateCmd{Entry: e, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return Entry{}, fmt.Errorf("storage: create entry: %w", err)
	}
	return resp.(Entry), nil
}

// BatchResult is the outcome of one entry of CreateEntries.
type BatchResult struct {
	Entry Entry
	Err   error
}

// CreateEntries stores many entries in one Raft write, each validated against the state like
// CreateEntry; each succeeds or fails on its own. Results are in the order of es.
func (s *Store) CreateEntries(ctx context.Context, es []Entry) ([]BatchResult, error) {
	for _, e := range es {
		if e.ID == "" {
			return nil, fmt.Errorf("storage: create entries: entry %q: %w: ID is required", e.SPIFFEID, ErrInvalid)
		}
	}
	resp, err := s.propose(ctx, federatedType(cmdEntryBatch, es...), entryBatchCmd{Entries: es, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return nil, fmt.Errorf("storage: create %d entries: %w", len(es), err)
	}
	return resp.([]BatchResult), nil
}

// DeleteEntry removes an entry and returns what was removed. ErrEntryNotFound if there is none.
func (s *Store) DeleteEntry(ctx context.Context, id string) (Entry, error) {
	resp, err := s.propose(ctx, cmdEntryDelete, entryDeleteCmd{ID: id, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return Entry{}, fmt.Errorf("storage: delete entry: %w", err)
	}
	return resp.(Entry), nil
}

// PutAuthority publishes a public trust anchor into the bundle. Publishing one already present is a no-op.
func (s *Store) PutAuthority(ctx context.Context, a Authority) error {
	if _, err := s.propose(ctx, cmdAuthorityPut, authorityPutCmd{Authority: a, Meta: s.newMeta(ctx, "")}.wire()); err != nil {
		return fmt.Errorf("storage: publish %s authority %s: %w", a.Kind, a.ID, err)
	}
	return nil
}

// RemoveAuthority takes node's authority out of the bundle (a pruned CA key); removing one that is not
// there is a no-op, one of another node's is ErrInvalid.
func (s *Store) RemoveAuthority(ctx context.Context, kind AuthorityKind, id, node string) error {
	if _, err := s.propose(ctx, cmdAuthorityRemove, authorityRemoveCmd{Kind: kind, ID: id, Node: node, Meta: s.newMeta(ctx, "")}.wire()); err != nil {
		return fmt.Errorf("storage: remove %s authority %s of node %s: %w", kind, id, node, err)
	}
	return nil
}

// Authorities returns every authority of the bundle with its node and dates, in publication order.
func (s *Store) Authorities() []Authority {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	out := make([]Authority, 0, len(s.reg.authorities))
	for _, a := range s.reg.authorities {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(x, y Authority) int {
		return cmp.Or(x.AddedAt.Compare(y.AddedAt), cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.ID, y.ID))
	})
	return out
}

// Owner returns the named owner.
func (s *Store) Owner(name string) (Owner, error) {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	o, ok := s.reg.owners[name]
	if !ok {
		return Owner{}, fmt.Errorf("storage: owner %q: %w", name, ErrOwnerNotFound)
	}
	return *o, nil
}

// Owners returns all owners sorted by name.
func (s *Store) Owners() []Owner {
	s.reg.mu.RLock()
	out := make([]Owner, 0, len(s.reg.owners))
	for _, o := range s.reg.owners {
		out = append(out, *o)
	}
	s.reg.mu.RUnlock()
	slices.SortFunc(out, func(a, b Owner) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Entry returns the entry with the given ID.
func (s *Store) Entry(id string) (Entry, error) {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	e, ok := s.reg.entries[id]
	if !ok {
		return Entry{}, fmt.Errorf("storage: entry %q: %w", id, ErrEntryNotFound)
	}
	return *e, nil
}

// Entries returns all entries sorted by SPIFFE ID, then ID.
func (s *Store) Entries() []Entry {
	s.reg.mu.RLock()
	out := make([]Entry, 0, len(s.reg.entries))
	for _, e := range s.reg.entries {
		out = append(out, *e)
	}
	s.reg.mu.RUnlock()
	sortEntries(out)
	return out
}

// EntriesByParent returns the entries whose parent is parentID, sorted.
func (s *Store) EntriesByParent(parentID string) []Entry {
	s.reg.mu.RLock()
	m := s.reg.byParent[parentID]
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, *e)
	}
	s.reg.mu.RUnlock()
	sortEntries(out)
	return out
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.SPIFFEID, b.SPIFFEID), cmp.Compare(a.ID, b.ID))
	})
}

// Revision returns the registry revision: it increases with every owner or entry write.
func (s *Store) Revision() uint64 { return s.reg.currentRevision() }

// Changed returns a channel that is closed at the next change to entries, owners or the bundle. Take it
// before reading the state it guards, so that no change between the read and the wait is missed.
func (s *Store) Changed() <-chan struct{} { return s.reg.changed() }

// ChangedEntries returns the entries created, changed or deleted after revision since, each with the
// parents it had, and the current revision. ok is false when since is older than the retained change
// history: take a full listing instead.
func (s *Store) ChangedEntries(since uint64) (changes []EntryChange, revision uint64, ok bool) {
	return s.reg.changedSince(since)
}

// Bundle returns the trust domain's current authorities. The returned value is shared: do not modify it.
func (s *Store) Bundle() Bundle {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	return s.reg.bundle
}
