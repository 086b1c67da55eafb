package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// fsm is the raft.FSM: a thin adapter that hands each committed log entry to the command processor
// below, inside one bbolt transaction per batch of entries. It implements raft.BatchingFSM so a burst of
// commits (for example many ledger batches) costs one state-file fsync.
type fsm struct {
	s *Store
}

var _ raft.BatchingFSM = (*fsm)(nil)

// Apply applies a single log entry.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one transaction. Entries at or below the state's applied index
// are skipped: they are replayed by Raft after a restart but already in the state file. Registry changes
// are published to in-memory readers only after the transaction commits.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	if f.s.applyAbandoned.Load() {
		// An earlier entry was left unapplied at close: applying a later one would skip it for good.
		return errorResponses(len(logs), fmt.Errorf("storage: raft entries %d..%d: %w: the node is stopping", logs[0].Index, logs[len(logs)-1].Index, ErrClosed))
	}
	var resps []any
	var posts []func()
	var last uint64
	apply := func(tx *bolt.Tx) error {
		resps, posts = make([]any, len(logs)), nil
		meta := tx.Bucket(bucketMeta)
		applied := getUint64(meta, keyAppliedIndex)
		last = applied
		for i, l := range logs {
			if l.Index <= applied {
				continue
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			resp, post := f.s.applyCommand(tx, l.Index, l.Data)
			if err, ok := resp.(error); ok && errors.Is(err, errCorruptState) {
				// Not a refusal: the state file is damaged. Answering would hide it.
				panic(fmt.Sprintf("storage: raft entry %d: %v", l.Index, err))
			}
			resps[i] = resp
			if post != nil {
				posts = append(posts, post)
			}
		}
		if last > applied {
			return putUint64(meta, keyAppliedIndex, last)
		}
		return nil
	}
	for retried := false; ; retried = true {
		err := f.s.stateDB().Update(apply)
		if err == nil {
			if retried {
				f.s.stateFull.Store(false)
				f.s.wroteOK()
				f.s.log.Info("the state file took the write after all: disk space was freed", "index", last)
			}
			break
		}
		if !isNoSpace(err) {
			// The state file cannot take a committed write: continuing would diverge from the cluster.
			panic(fmt.Sprintf("storage: apply raft entries %d..%d: %v", logs[0].Index, logs[len(logs)-1].Index, err))
		}
		// Out of space: the entries must not be skipped, and the disk may be freed. Retry; reads go on.
		f.s.noteDiskFull(err)
		f.s.stateFull.Store(true)
		if !retried {
			f.s.log.Error("the state file has no room for committed raft entries; retrying until disk space is freed",
				"dir", f.s.cfg.Dir, "entries", fmt.Sprintf("%d..%d", logs[0].Index, logs[len(logs)-1].Index), "every", f.s.cfg.DiskFullRetry, "error", err)
		}
		if !f.s.sleepUnlessClosing(f.s.cfg.DiskFullRetry) {
			// Closing: the entries stay unapplied in state.db (its applied index did not move), so the
			// next start replays them from the log.
			f.s.applyAbandoned.Store(true)
			return errorResponses(len(logs), f.s.diskFullError(fmt.Errorf("the node stopped before the state file took entry %d: %w", logs[0].Index, err)))
		}
	}
	for _, p := range posts {
		p()
	}
	f.s.noteApplied(last)
	f.s.rebuildProgress(last)
	return resps
}

func errorResponses(n int, err error) []any {
	resps := make([]any, n)
	for i := range resps {
		resps[i] = err
	}
	return resps
}

// Snapshot captures the state as of the last applied entry: a bbolt read transaction, streamed by Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	tx, err := f.s.stateDB().Begin(false)
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx}, nil
}

// Restore replaces the whole state with the snapshot in rc.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.s.restoreState(rc)
}

type fsmSnapshot struct {
	tx *bolt.Tx
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("storage: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { _ = s.tx.Rollback() }

// applyCommand decodes one command and dispatches it. It returns the response handed to the proposer (a
// value, or an error for a command refused by the state) and an optional function publishing the change
// to in-memory readers after commit. A command that cannot be decoded stops the node: skipping it would
// make this replica diverge.
func (s *Store) applyCommand(tx *bolt.Tx, index uint64, data []byte) (any, func()) {
	if len(data) == 0 {
		panic(fmt.Sprintf("storage: raft entry %d: empty command", index))
	}
	t, payload := commandType(data[0]), data[1:]
	switch t {
	case cmdOwnerCreate:
		var c ownerCreateCmd
		mustDecode(index, t, payload, &c)
		return s.applyOwnerCreate(tx, c)
	case cmdEntryCreate:
		var c entryCreateCmd
		mustDecode(index, t, payload, &c)
		return s.applyEntryCreate(tx, c)
	case cmdEntryBatch:
		var c entryBatchCmd
		mustDecode(index, t, payload, &c)
		return s.applyEntryBatch(tx, c)
	case cmdEntryDelete:
		var c entryDeleteCmd
		mustDecode(index, t, payload, &c)
		return s.applyEntryDelete(tx, c)
	case cmdAuthorityPut:
		var c authorityPutCmd
		mustDecode(index, t, payload, &c)
		return s.applyAuthorityPut(tx, c)
	case cmdLedgerAppend:
		return s.applyLedgerAppend(tx, index, payload)
	case cmdEntryUpdate:
		var c entryUpdateCmd
		mustDecode(index, t, payload, &c)
		return s.applyEntryUpdate(tx, c)
	case cmdEntryState:
		var c entryStateCmd
		mustDecode(index, t, payload, &c)
		return s.applyEntryState(tx, c)
	case cmdOwnerOffboard:
		var c ownerOffboardCmd
		mustDecode(index, t, payload, &c)
		c.Checked = nil // this type carries no check: replicas must apply it as they always did
		return s.applyOwnerOffboard(tx, c)
	case cmdOwnerOffboardChecked:
		var c ownerOffboardCmd
		mustDecode(index, t, payload, &c)
		if c.Checked == nil {
			c.Checked = map[string]uint64{}
		}
		return s.applyOwnerOffboard(tx, c)
	case cmdAuditAppend:
		var c auditAppendCmd
		mustDecode(index, t, payload, &c)
		return s.applyAuditAppend(tx, c)
	case cmdLedgerPrune:
		var c ledgerPruneCmd
		mustDecode(index, t, payload, &c)
		c.MaxRecords = 0 // this type has no record bound: replicas must remove exactly what it always did
		return s.applyLedgerPrune(tx, c).Batches, nil
	case cmdLedgerPruneBounded:
		var c ledgerPruneCmd
		mustDecode(index, t, payload, &c)
		return s.applyLedgerPrune(tx, c), nil
	case cmdReviewSign:
		var c reviewSignCmd
		mustDecode(index, t, payload, &c)
		return s.applyReviewSign(tx, c)
	case cmdTokenCreate:
		var c tokenCreateCmd
		mustDecode(index, t, payload, &c)
		return s.applyTokenCreate(tx, c)
	case cmdAgentAttest:
		var c agentAttestCmd
		mustDecode(index, t, payload, &c)
		return s.applyAgentAttest(tx, index, c)
	case cmdAgentRenew:
		var c agentRenewCmd
		mustDecode(index, t, payload, &c)
		return s.applyAgentRenew(tx, index, c)
	case cmdAgentEvict:
		var c agentEvictCmd
		mustDecode(index, t, payload, &c)
		return s.applyAgentEvict(tx, c)
	case cmdAgentBan:
		var c agentBanCmd
		mustDecode(index, t, payload, &c)
		return s.applyAgentBan(tx, c)
	default:
		if t&ignoreIfUnknown != 0 {
			s.log.Warn("skipping unknown optional raft command; upgrade this node", "index", index, "type", uint8(t))
			return nil, nil
		}
		panic(fmt.Sprintf("storage: raft entry %d: unknown command type %d: this node is older than the cluster, upgrade it", index, uint8(t)))
	}
}

// errCorruptState marks stored state that does not decode. Code shared by the FSM and reads returns it
// (wrapped, naming the object); the FSM stops the node on it, a read reports it.
var errCorruptState = errors.New("stored state does not decode")

// decodeStored decodes the stored JSON of the object what key.
func decodeStored(what, key string, v []byte, out any) error {
	if err := json.Unmarshal(v, out); err != nil {
		return fmt.Errorf("%s %q: %w: %v", what, key, errCorruptState, err)
	}
	return nil
}

func mustDecode(index uint64, t commandType, payload []byte, v any) {
	if err := json.Unmarshal(payload, v); err != nil {
		panic(fmt.Sprintf("storage: raft entry %d: decode %s: %v", index, t, err))
	}
}

func mustPut(b *bolt.Bucket, k, v []byte) {
	if err := b.Put(k, v); err != nil {
		panic(fmt.Sprintf("storage: put %q: %v", k, err))
	}
}

func mustDelete(b *bolt.Bucket, k []byte) {
	if err := b.Delete(k); err != nil {
		panic(fmt.Sprintf("storage: delete %q: %v", k, err))
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("storage: encode %T: %v", v, err))
	}
	return b
}

// nextRevision bumps and returns the registry revision.
func nextRevision(tx *bolt.Tx) uint64 {
	meta := tx.Bucket(bucketMeta)
	rev := getUint64(meta, keyRevision) + 1
	if err := putUint64(meta, keyRevision, rev); err != nil {
		panic(fmt.Sprintf("storage: put revision: %v", err))
	}
	return rev
}

func (s *Store) applyOwnerCreate(tx *bolt.Tx, c ownerCreateCmd) (any, func()) {
	b := tx.Bucket(bucketOwners)
	if v := b.Get([]byte(c.Owner.Name)); v != nil {
		if c.IfMissing {
			var existing Owner
			mustDecode(0, cmdOwnerCreate, v, &existing)
			return existing, nil
		}
		return fmt.Errorf("owner %q: %w", c.Owner.Name, ErrOwnerExists), nil
	}
	rev := nextRevision(tx)
	o := c.Owner
	mustPut(b, []byte(o.Name), mustJSON(&o))
	appendAudit(tx, c.Meta.record("owner.create", o.Name), nil, &o)
	return o, func() { s.reg.ownerPut(&o, rev) }
}

func (s *Store) applyEntryCreate(tx *bolt.Tx, c entryCreateCmd) (any, func()) {
	e := c.Entry
	entries := tx.Bucket(bucketEntries)
	if entries.Get([]byte(e.ID)) != nil {
		return fmt.Errorf("entry %q: %w: ID already in use", e.ID, ErrInvalid), nil
	}
	if err := checkOwnerUsable(tx, e.Owner); err != nil {
		return fmt.Errorf("entry %q: %w", e.SPIFFEID, err), nil
	}
	keys := tx.Bucket(bucketEntryKeys)
	ik := []byte(e.identityKey())
	if id := keys.Get(ik); id != nil {
		return fmt.Errorf("entry %q: %w (entry %s has the same SPIFFE ID, parent and selectors)", e.SPIFFEID, ErrEntryExists, id), nil
	}
	e.Revision = nextRevision(tx)
	mustPut(entries, []byte(e.ID), mustJSON(&e))
	mustPut(keys, ik, []byte(e.ID))
	appendAudit(tx, c.Meta.record("entry.create", e.ID), nil, &e)
	return e, func() { s.reg.entryPut(&e, e.Revision) }
}

// applyEntryBatch creates each entry like applyEntryCreate; each succeeds or fails on its own. The
// response is a []BatchResult in request order.
func (s *Store) applyEntryBatch(tx *bolt.Tx, c entryBatchCmd) (any, func()) {
	results := make([]BatchResult, len(c.Entries))
	var posts []func()
	for i := range c.Entries {
		resp, post := s.applyEntryCreate(tx, entryCreateCmd{Entry: c.Entries[i], Meta: c.Meta})
		if err, ok := resp.(error); ok {
			results[i].Err = err
			continue
		}
		results[i].Entry = resp.(Entry)
		posts = append(posts, post)
	}
	return results, func() {
		for _, p := range posts {
			p()
		}
	}
}

func (s *Store) applyEntryDelete(tx *bolt.Tx, c entryDeleteCmd) (any, func()) {
	entries := tx.Bucket(bucketEntries)
	v := entries.Get([]byte(c.ID))
	if v == nil {
		return fmt.Errorf("entry %q: %w", c.ID, ErrEntryNotFound), nil
	}
	var e Entry
	mustDecode(0, cmdEntryDelete, v, &e)
	rev := nextRevision(tx)
	mustDelete(entries, []byte(c.ID))
	mustDelete(tx.Bucket(bucketEntryKeys), []byte(e.identityKey()))
	appendAudit(tx, c.Meta.record("entry.delete", e.ID), &e, nil)
	return e, func() { s.reg.entryDelete(c.ID, rev) }
}

func (s *Store) applyAuthorityPut(tx *bolt.Tx, c authorityPutCmd) (any, func()) {
	a := c.Authority
	b := tx.Bucket(bucketAuthorities)
	k := []byte(a.Kind.key(a.ID))
	if b.Get(k) != nil {
		return nil, nil // already published: idempotent
	}
	meta := tx.Bucket(bucketMeta)
	seq := getUint64(meta, keyBundleSeq) + 1
	if err := putUint64(meta, keyBundleSeq, seq); err != nil {
		panic(fmt.Sprintf("storage: put bundle sequence: %v", err))
	}
	mustPut(b, k, mustJSON(&a))
	appendAudit(tx, c.Meta.record("bundle.add-"+string(a.Kind), a.ID), nil, &a)
	return nil, func() { s.reg.authorityPut(&a, seq) }
}
