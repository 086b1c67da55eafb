package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
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
	var posts []func(*registry)
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
			a, err := applyCommand(tx, l.Index, l.Data)
			if err != nil {
				// Skipping the entry would make this replica diverge; answering would hide the damage.
				panic(fmt.Sprintf("storage: cannot apply the replicated log, stopping this node: %v", err))
			}
			if a.skipped {
				f.s.log.Warn("skipping an optional raft command this node does not know; upgrade it", "index", l.Index, "type", uint8(l.Data[0]))
			}
			resps[i] = a.resp
			if a.publish != nil {
				posts = append(posts, a.publish)
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
		p(f.s.reg)
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

// applied is what applying one command produced: resp, the response handed to the proposer (a value, or
// an error for a command the state refused), and publish, which shows the change to in-memory readers
// once the transaction has committed. skipped is set for an optional command this build does not know.
type applied struct {
	resp    any
	publish func(*registry)
	skipped bool
}

// applyFunc is the shape of every command's apply function: the transaction and the decoded command in,
// the outcome out. It needs no Store, so forwarding, replay and tests can call it on any state database.
// A returned error is a refusal by the state (handed to the proposer), unless it wraps errCorruptState
// or errBadCommand: then this node cannot apply the entry.
type applyFunc[C any] func(tx *bolt.Tx, c C) (applied, error)

// applyCommand decodes one log entry (a type byte and its payload) and applies it to tx: the command
// processor behind the FSM, free of any Store. The error return is reserved for an entry this node
// cannot apply (it does not decode, its type is unknown and not optional, or the stored state is
// corrupt): the FSM stops the node on it, because a replica that skips a write diverges. A refusal by
// the state is a response, not an error.
func applyCommand(tx *bolt.Tx, index uint64, data []byte) (applied, error) {
	if len(data) == 0 {
		return applied{}, fmt.Errorf("raft entry %d: %w: empty command", index, errBadCommand)
	}
	t := commandType(data[0])
	a, err := dispatch(tx, index, t, data[1:], false)
	switch {
	case errors.Is(err, errUnknownCommand):
		return applied{}, fmt.Errorf("raft entry %d: %w", index, err)
	case errors.Is(err, errBadCommand), errors.Is(err, errCorruptState):
		return applied{}, fmt.Errorf("raft entry %d (%s): %w", index, t, err)
	case err != nil:
		return applied{resp: err}, noteSchemaVersion(tx, t)
	case a.skipped:
		return a, nil
	}
	return a, noteSchemaVersion(tx, t)
}

// errUnknownCommand marks a command type this build does not know and may not skip.
var errUnknownCommand = errors.New("unknown command type")

// dispatch decodes the payload of a command of type t and calls its apply function. policyChecked is
// set for the command a policy-checked command wraps, whose policy revision has been checked; a command
// the policy governs that came without one counts as decided under no policy (policy.go).
func dispatch(tx *bolt.Tx, index uint64, t commandType, payload []byte, policyChecked bool) (applied, error) {
	// Records may carry signed_by in the types of command version 4 and later.
	signed := t != unsignedType(t) || t == cmdAgentAttestNode || t == cmdAgentAttestNodeFirstUse
	attest := func(tx *bolt.Tx, c agentAttestCmd) (applied, error) { return applyAgentAttest(tx, index, c, signed) }
	renew := func(tx *bolt.Tx, c agentRenewCmd) (applied, error) { return applyAgentRenew(tx, index, c, signed) }
	attestNode := func(tx *bolt.Tx, c agentAttestNodeCmd) (applied, error) {
		return applyAgentAttestNode(tx, index, c, t == cmdAgentAttestNodeFirstUse)
	}
	if policyGoverned(t) && !policyChecked && t != cmdOwnerOffboard && t != cmdKeyRevoke && t != cmdKeyRevokeIntermediate {
		if err := checkPolicyRevision(tx, t, 0); err != nil {
			return applied{}, err
		}
	}
	switch t {
	case cmdLedgerAppend, cmdLedgerAppendSigned:
		return applyLedgerAppend(tx, index, payload, signed)
	case cmdOwnerCreate:
		return viaWire(tx, payload, ownerCreateFromWire, applyOwnerCreate)
	case cmdEntryCreate:
		return viaWire(tx, payload, entryCreateFromWire, func(tx *bolt.Tx, c entryCreateCmd) (applied, error) {
			if err := refuseFederatesWith(t, c.Entry); err != nil {
				return applied{}, err
			}
			return applyEntryCreate(tx, c)
		})
	case cmdEntryCreateFederated:
		return viaWire(tx, payload, entryCreateFromWire, applyEntryCreate)
	case cmdEntryBatch:
		return viaWire(tx, payload, entryBatchFromWire, func(tx *bolt.Tx, c entryBatchCmd) (applied, error) {
			if err := refuseFederatesWith(t, c.Entries...); err != nil {
				return applied{}, err
			}
			return applyEntryBatch(tx, c)
		})
	case cmdEntryBatchFederated:
		return viaWire(tx, payload, entryBatchFromWire, applyEntryBatch)
	case cmdEntryDelete:
		return viaWire(tx, payload, entryDeleteFromWire, applyEntryDelete)
	case cmdAuthorityPut:
		return viaWire(tx, payload, authorityPutFromWire, applyAuthorityPut)
	case cmdAuthorityRemove:
		return viaWire(tx, payload, authorityRemoveFromWire, applyAuthorityRemove)
	case cmdAuthorityRetain:
		return viaWire(tx, payload, authorityRetainFromWire, applyAuthorityRetain)
	case cmdRotationRequest:
		return viaWire(tx, payload, rotationRequestFromWire, applyRotationRequest)
	case cmdKeyRevoke, cmdKeyRevokeIntermediate: // decided under the policy unless it approves a pending revocation (revoke.go)
		return viaWire(tx, payload, keyRevokeFromWire, func(tx *bolt.Tx, c keyRevokeCmd) (applied, error) {
			return applyKeyRevoke(tx, c, policyChecked, t == cmdKeyRevokeIntermediate)
		})
	case cmdFederationCreate:
		return viaWire(tx, payload, federationCreateFromWire, applyFederationCreate)
	case cmdFederationDelete:
		return viaWire(tx, payload, federationDeleteFromWire, applyFederationDelete)
	case cmdFederatedBundleSet:
		return viaWire(tx, payload, federatedBundleSetFromWire, applyFederatedBundleSet)
	case cmdTokenCreate:
		return viaWire(tx, payload, tokenCreateFromWire, applyTokenCreate)
	case cmdAgentAttest, cmdAgentAttestSigned:
		return viaWire(tx, payload, agentAttestFromWire, attest)
	case cmdAgentRenew, cmdAgentRenewSigned:
		return viaWire(tx, payload, agentRenewFromWire, renew)
	case cmdAgentAttestNode, cmdAgentAttestNodeFirstUse:
		return viaWire(tx, payload, agentAttestNodeFromWire, attestNode)
	case cmdAgentEvict:
		return viaWire(tx, payload, agentEvictFromWire, applyAgentEvict)
	case cmdAgentBan:
		return viaWire(tx, payload, agentBanFromWire, applyAgentBan)
	case cmdEntryUpdate:
		return viaWire(tx, payload, entryUpdateFromWire, func(tx *bolt.Tx, c entryUpdateCmd) (applied, error) {
			if err := refuseFederatesWith(t, c.Entry); err != nil {
				return applied{}, err
			}
			return applyEntryUpdate(tx, c)
		})
	case cmdEntryUpdateFederated:
		return viaWire(tx, payload, entryUpdateFromWire, applyEntryUpdate)
	case cmdEntryState:
		return viaWire(tx, payload, entryStateFromWire, applyEntryState)
	case cmdOwnerOffboard:
		return viaWire(tx, payload, ownerOffboardFromWire, func(tx *bolt.Tx, c ownerOffboardCmd) (applied, error) {
			// Only a reassignment is decided under the policy; disabling needs none.
			if c.Mode == OffboardReassign && !policyChecked {
				if err := checkPolicyRevision(tx, t, 0); err != nil {
					return applied{}, err
				}
			}
			return applyOwnerOffboard(tx, c)
		})
	case cmdAuditAppend:
		return viaWire(tx, payload, auditAppendFromWire, applyAuditAppend)
	case cmdLedgerPrune:
		return viaWire(tx, payload, ledgerPruneFromWire, applyLedgerPrune)
	case cmdReviewSign:
		return viaWire(tx, payload, reviewSignFromWire, applyReviewSign)
	case cmdNodeVersion:
		return viaWire(tx, payload, nodeVersionFromWire, applyNodeVersion)
	case cmdDeliveryRecord:
		return viaWire(tx, payload, deliveryRecordFromWire, applyDeliveryRecord)
	case cmdPolicySet:
		return viaWire(tx, payload, policySetFromWire, applyPolicySet)
	case cmdPolicyChecked: // it wraps only governed commands, never itself (applyPolicyChecked)
		return viaWire(tx, payload, policyCheckedFromWire, func(tx *bolt.Tx, c policyCheckedCmd) (applied, error) {
			return applyPolicyChecked(tx, index, c)
		})

	// The JSON era: replayed exactly as before, never proposed.
	case cmdOwnerCreateJSON:
		return viaJSON(tx, payload, applyOwnerCreate)
	case cmdEntryCreateJSON:
		return viaJSON(tx, payload, applyEntryCreate)
	case cmdEntryBatchJSON:
		return viaJSON(tx, payload, applyEntryBatch)
	case cmdEntryDeleteJSON:
		return viaJSON(tx, payload, applyEntryDelete)
	case cmdAuthorityPutJSON:
		return viaJSON(tx, payload, applyAuthorityPut)
	case cmdTokenCreateJSON:
		return viaJSON(tx, payload, applyTokenCreate)
	case cmdAgentAttestJSON:
		return viaJSON(tx, payload, attest)
	case cmdAgentRenewJSON:
		return viaJSON(tx, payload, renew)
	case cmdAgentEvictJSON:
		return viaJSON(tx, payload, applyAgentEvict)
	case cmdAgentBanJSON:
		return viaJSON(tx, payload, applyAgentBan)
	case cmdEntryUpdateJSON:
		return viaJSON(tx, payload, applyEntryUpdate)
	case cmdEntryStateJSON:
		return viaJSON(tx, payload, applyEntryState)
	case cmdOwnerOffboardJSON:
		return viaJSON(tx, payload, func(tx *bolt.Tx, c ownerOffboardCmd) (applied, error) {
			c.Checked = nil // this type carries no check: replicas must apply it as they always did
			return applyOwnerOffboard(tx, c)
		})
	case cmdOwnerOffboardCheckedJSON:
		return viaJSON(tx, payload, func(tx *bolt.Tx, c ownerOffboardCmd) (applied, error) {
			if c.Checked == nil {
				c.Checked = map[string]uint64{}
			}
			return applyOwnerOffboard(tx, c)
		})
	case cmdAuditAppendJSON:
		return viaJSON(tx, payload, applyAuditAppend)
	case cmdLedgerPruneJSON:
		return viaJSON(tx, payload, func(tx *bolt.Tx, c ledgerPruneCmd) (applied, error) {
			c.MaxRecords = 0 // this type has no record bound: replicas must remove exactly what it always did
			a, err := applyLedgerPrune(tx, c)
			a.resp = a.resp.(pruneResult).Batches // and it answered with the batch count
			return a, err
		})
	case cmdLedgerPruneBoundedJSON:
		return viaJSON(tx, payload, applyLedgerPrune)
	case cmdReviewSignJSON:
		return viaJSON(tx, payload, applyReviewSign)
	default:
		if t&ignoreIfUnknown != 0 {
			return applied{skipped: true}, nil
		}
		return applied{}, fmt.Errorf("%w %d: this node is older than the cluster's log (it understands command version %d): upgrade it", errUnknownCommand, uint8(t), CommandVersion)
	}
}

// viaWire decodes a protobuf payload strictly into M, converts it with from and applies it.
func viaWire[M any, PM interface {
	*M
	proto.Message
}, C any](tx *bolt.Tx, payload []byte, from func(PM) C, apply applyFunc[C]) (applied, error) {
	m := PM(new(M))
	if err := decodeWire(payload, m); err != nil {
		return applied{}, err
	}
	return apply(tx, from(m))
}

// viaJSON decodes a legacy JSON payload and applies it.
func viaJSON[C any](tx *bolt.Tx, payload []byte, apply applyFunc[C]) (applied, error) {
	var c C
	if err := decodeJSON(payload, &c); err != nil {
		return applied{}, err
	}
	return apply(tx, c)
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

func applyOwnerCreate(tx *bolt.Tx, c ownerCreateCmd) (applied, error) {
	b := tx.Bucket(bucketOwners)
	if v := b.Get([]byte(c.Owner.Name)); v != nil {
		if c.IfMissing {
			var existing Owner
			if err := decodeStored("owner", c.Owner.Name, v, &existing); err != nil {
				return applied{}, err
			}
			return applied{resp: existing}, nil
		}
		return applied{}, fmt.Errorf("owner %q: %w", c.Owner.Name, ErrOwnerExists)
	}
	rev := nextRevision(tx)
	o := c.Owner
	mustPut(b, []byte(o.Name), mustJSON(&o))
	appendAudit(tx, c.Meta.record("owner.create", o.Name), nil, &o)
	return applied{resp: o, publish: func(r *registry) { r.ownerPut(&o, rev) }}, nil
}

func applyEntryCreate(tx *bolt.Tx, c entryCreateCmd) (applied, error) {
	e := c.Entry
	entries := tx.Bucket(bucketEntries)
	if entries.Get([]byte(e.ID)) != nil {
		return applied{}, fmt.Errorf("entry %q: %w: ID already in use", e.ID, ErrInvalid)
	}
	if err := checkOwnerUsable(tx, e.Owner); err != nil {
		return applied{}, fmt.Errorf("entry %q: %w", e.SPIFFEID, err)
	}
	keys := tx.Bucket(bucketEntryKeys)
	ik := []byte(e.identityKey())
	if id := keys.Get(ik); id != nil {
		return applied{}, fmt.Errorf("entry %q: %w (entry %s has the same SPIFFE ID, parent and selectors)", e.SPIFFEID, ErrEntryExists, id)
	}
	e.Revision = nextRevision(tx)
	mustPut(entries, []byte(e.ID), mustJSON(&e))
	mustPut(keys, ik, []byte(e.ID))
	appendAudit(tx, c.Meta.record("entry.create", e.ID), nil, &e)
	return applied{resp: e, publish: func(r *registry) { r.entryPut(&e, e.Revision) }}, nil
}

// applyEntryBatch creates each entry like applyEntryCreate; each succeeds or fails on its own. The
// response is a []BatchResult in request order.
func applyEntryBatch(tx *bolt.Tx, c entryBatchCmd) (applied, error) {
	results := make([]BatchResult, len(c.Entries))
	var posts []func(*registry)
	for i := range c.Entries {
		a, err := applyEntryCreate(tx, entryCreateCmd{Entry: c.Entries[i], Meta: c.Meta})
		if errors.Is(err, errCorruptState) {
			return applied{}, err
		}
		if err != nil {
			results[i].Err = err
			continue
		}
		results[i].Entry = a.resp.(Entry)
		posts = append(posts, a.publish)
	}
	return applied{resp: results, publish: func(r *registry) {
		for _, p := range posts {
			p(r)
		}
	}}, nil
}

func applyEntryDelete(tx *bolt.Tx, c entryDeleteCmd) (applied, error) {
	entries := tx.Bucket(bucketEntries)
	v := entries.Get([]byte(c.ID))
	if v == nil {
		return applied{}, fmt.Errorf("entry %q: %w", c.ID, ErrEntryNotFound)
	}
	var e Entry
	if err := decodeStored("entry", c.ID, v, &e); err != nil {
		return applied{}, err
	}
	rev := nextRevision(tx)
	mustDelete(entries, []byte(c.ID))
	mustDelete(tx.Bucket(bucketEntryKeys), []byte(e.identityKey()))
	appendAudit(tx, c.Meta.record("entry.delete", e.ID), &e, nil)
	return applied{resp: e, publish: func(r *registry) { r.entryDelete(c.ID, rev) }}, nil
}

func applyAuthorityRemove(tx *bolt.Tx, c authorityRemoveCmd) (applied, error) {
	b := tx.Bucket(bucketAuthorities)
	k := []byte(c.Kind.key(c.ID))
	v := b.Get(k)
	if v == nil {
		return applied{}, nil // already removed: idempotent
	}
	var a Authority
	if err := decodeStored("authority", c.ID, v, &a); err != nil {
		return applied{}, err
	}
	if a.Node != c.Node {
		return applied{}, fmt.Errorf("%s authority %s: %w: it is node %q's, not %q's", c.Kind, c.ID, ErrInvalid, a.Node, c.Node)
	}
	meta := tx.Bucket(bucketMeta)
	seq := nextBundleSeq(meta)
	mustDelete(b, k)
	appendAudit(tx, c.Meta.record("bundle.remove-"+string(c.Kind), c.ID), &a, nil)
	return applied{resp: nil, publish: func(r *registry) { r.authorityRemove(c.Kind, c.ID, seq) }}, nil
}

// nextBundleSeq records and returns the bundle's next sequence number (the set of authorities changes).
func nextBundleSeq(meta *bolt.Bucket) uint64 {
	seq := getUint64(meta, keyBundleSeq) + 1
	if err := putUint64(meta, keyBundleSeq, seq); err != nil {
		panic(fmt.Sprintf("storage: put bundle sequence: %v", err))
	}
	return seq
}

func applyAuthorityPut(tx *bolt.Tx, c authorityPutCmd) (applied, error) {
	a := c.Authority
	b := tx.Bucket(bucketAuthorities)
	k := []byte(a.Kind.key(a.ID))
	if b.Get(k) != nil {
		return applied{}, nil // already published: idempotent
	}
	if err := checkNotRevoked(tx, a.Kind, a.ID); err != nil {
		return applied{}, err
	}
	meta := tx.Bucket(bucketMeta)
	seq := nextBundleSeq(meta)
	mustPut(b, k, mustJSON(&a))
	appendAudit(tx, c.Meta.record("bundle.add-"+string(a.Kind), a.ID), nil, &a)
	return applied{resp: nil, publish: func(r *registry) { r.authorityPut(&a, seq) }}, nil
}
