package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors of governance operations.
var (
	// ErrConflict: the object changed since the caller read it (optimistic concurrency).
	ErrConflict = errors.New("changed concurrently")
	// ErrOwnerOffboarded: the owner was offboarded and cannot own anything new.
	ErrOwnerOffboarded = errors.New("owner is offboarded")
	// ErrSameApprover: a pending entry must be approved by an admin other than the one who created it.
	ErrSameApprover = errors.New("approval by the same admin who made the request")
	// ErrNotPending: approval of an entry that does not wait for one.
	ErrNotPending = errors.New("entry is not pending approval")
)

type actorKey struct{}

// WithActor returns a context whose writes are attributed to actor in the audit log (an admin
// identity such as "uid:1000(alice)"). Writes without one are attributed to "signet".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "signet"
}

// auditMeta is carried by every command that changes the registry: who, when (the proposer's clock,
// so every replica records the same) and why.
type auditMeta struct {
	Actor  string    `json:"actor"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason,omitempty"`
}

func (s *Store) newMeta(ctx context.Context, reason string) auditMeta {
	return auditMeta{Actor: actorFrom(ctx), Time: s.cfg.Clock().UTC(), Reason: reason}
}

func (m auditMeta) record(action, object string) AuditRecord {
	return AuditRecord{Time: m.Time, Actor: m.Actor, Action: action, Object: object, Reason: m.Reason}
}

// Commands of governance.
type entryUpdateCmd struct {
	Entry Entry `json:"entry"`
	// PrevRevision must be the entry's current revision: an update based on a stale read is refused.
	PrevRevision uint64    `json:"prev_revision"`
	Meta         auditMeta `json:"meta"`
}

// Entry state changes.
const (
	EntryDisable = "disable"
	EntryEnable  = "enable"
	EntryApprove = "approve"
)

type entryStateCmd struct {
	ID     string    `json:"id"`
	Action string    `json:"action"`
	Meta   auditMeta `json:"meta"`
}

// Offboarding modes.
const (
	OffboardReassign = "reassign"
	OffboardDisable  = "disable"
)

type ownerOffboardCmd struct {
	Owner string    `json:"owner"`
	Mode  string    `json:"mode"`
	To    string    `json:"to,omitempty"`
	Meta  auditMeta `json:"meta"`
	// Checked, when not nil, is every entry the proposer checked against the entry policy, ID →
	// revision: the FSM refuses (ErrConflict) if the owner's entries are not exactly these.
	Checked map[string]uint64 `json:"checked,omitempty"`
}

type ledgerPruneCmd struct {
	Before     time.Time `json:"before"`
	MaxBatches int       `json:"max_batches"`
	// MaxRecords bounds the records one command removes (the legacy cmdLedgerPruneJSON has no such
	// bound and is applied without one). A batch is never split: the first batch is removed
	// whatever its size, so every command makes progress.
	MaxRecords int `json:"max_records,omitempty"`
}

// pruneResult is the FSM's answer to a ledger prune (but the legacy cmdLedgerPruneJSON).
type pruneResult struct {
	Batches, Records int
	// Bounded is set when the command stopped at MaxRecords with older batches still before Before.
	Bounded bool
}

// maxPruneRecords bounds the ledger records one prune command removes, so that applying it (every
// record's ID index key is deleted) keeps the FSM busy for a bounded time on every replica.
const maxPruneRecords = 50_000

// Review decisions.
const (
	ReviewKeep    = "keep"
	ReviewDisable = "disable"
)

// ReviewDecision is a reviewer's verdict on one entry.
type ReviewDecision struct {
	EntryID  string `json:"entry_id"`
	Decision string `json:"decision"`
	Note     string `json:"note,omitempty"`
}

// Review is a signed access review.
type Review struct {
	ID        string           `json:"id"`
	Reviewer  string           `json:"reviewer"`
	SignedBy  string           `json:"signed_by"` // the admin identity that recorded it
	SignedAt  time.Time        `json:"signed_at"`
	Decisions []ReviewDecision `json:"decisions"`
}

type reviewSignCmd struct {
	Review Review    `json:"review"`
	Meta   auditMeta `json:"meta"`
}

var (
	bucketEntryStats = []byte("entry_stats") // entry ID -> entryStatsValue
	bucketReviews    = []byte("reviews")
)

// EntryStats is what the ledger says about one entry's use.
type EntryStats struct {
	Count        uint64
	LastIssuedAt time.Time
	// Agents that received SVIDs of the entry (at most maxStatsAgents are tracked).
	Agents []string
}

const maxStatsAgents = 64

func applyEntryUpdate(tx *bolt.Tx, c entryUpdateCmd) (applied, error) {
	entries := tx.Bucket(bucketEntries)
	v := entries.Get([]byte(c.Entry.ID))
	if v == nil {
		return applied{}, fmt.Errorf("entry %q: %w", c.Entry.ID, ErrEntryNotFound)
	}
	var old Entry
	if err := decodeStored("entry", c.Entry.ID, v, &old); err != nil {
		return applied{}, err
	}
	if old.Revision != c.PrevRevision {
		return applied{}, fmt.Errorf("entry %q: %w (revision %d, the update was based on %d): read it again", old.ID, ErrConflict, old.Revision, c.PrevRevision)
	}
	if err := checkOwnerUsable(tx, c.Entry.Owner); err != nil {
		return applied{}, fmt.Errorf("entry %q: %w", old.ID, err)
	}
	keys := tx.Bucket(bucketEntryKeys)
	oldKey, newKey := []byte(old.identityKey()), []byte(c.Entry.identityKey())
	if string(oldKey) != string(newKey) {
		if id := keys.Get(newKey); id != nil {
			return applied{}, fmt.Errorf("entry %q: %w (entry %s has the same SPIFFE ID, parent and selectors)", c.Entry.SPIFFEID, ErrEntryExists, id)
		}
		mustDelete(keys, oldKey)
		mustPut(keys, newKey, []byte(old.ID))
	}
	e := c.Entry
	e.Revision = nextRevision(tx)
	mustPut(entries, []byte(e.ID), mustJSON(&e))
	appendAudit(tx, c.Meta.record("entry.update", e.ID), &old, &e)
	return applied{resp: e, publish: func(r *registry) { r.entryPut(&e, e.Revision) }}, nil
}

// checkOwnerUsable refuses an owner that does not exist or was offboarded.
func checkOwnerUsable(tx *bolt.Tx, name string) error {
	v := tx.Bucket(bucketOwners).Get([]byte(name))
	if v == nil {
		return fmt.Errorf("owner %q: %w (add it with: signet owner add %s)", name, ErrOwnerNotFound, name)
	}
	var o Owner
	if err := decodeStored("owner", name, v, &o); err != nil {
		return err
	}
	if o.Offboarded {
		return fmt.Errorf("owner %q: %w (on %s)", name, ErrOwnerOffboarded, o.OffboardedAt.Format(time.RFC3339))
	}
	return nil
}

func applyEntryState(tx *bolt.Tx, c entryStateCmd) (applied, error) {
	entries := tx.Bucket(bucketEntries)
	v := entries.Get([]byte(c.ID))
	if v == nil {
		return applied{}, fmt.Errorf("entry %q: %w", c.ID, ErrEntryNotFound)
	}
	var old Entry
	if err := decodeStored("entry", c.ID, v, &old); err != nil {
		return applied{}, err
	}
	e := old
	switch c.Action {
	case EntryDisable:
		e.Disabled, e.DisabledAt, e.DisabledBy, e.DisabledReason = true, c.Meta.Time, c.Meta.Actor, c.Meta.Reason
	case EntryEnable:
		if err := checkOwnerUsable(tx, e.Owner); err != nil {
			return applied{}, fmt.Errorf("entry %q: cannot enable: %w; reassign it first", e.ID, err)
		}
		e.Disabled, e.DisabledAt, e.DisabledBy, e.DisabledReason = false, time.Time{}, "", ""
	case EntryApprove:
		if !e.Pending {
			return applied{}, fmt.Errorf("entry %q: %w", e.ID, ErrNotPending)
		}
		if c.Meta.Actor == e.CreatedBy || c.Meta.Actor == e.UpdatedBy {
			return applied{}, fmt.Errorf("entry %q: %w (%s): another admin must approve it", e.ID, ErrSameApprover, c.Meta.Actor)
		}
		e.Pending, e.ApprovedBy, e.ApprovedAt = false, c.Meta.Actor, c.Meta.Time
	default:
		return applied{}, fmt.Errorf("entry %q: %w: unknown state change %q", e.ID, ErrInvalid, c.Action)
	}
	e.UpdatedAt, e.UpdatedBy, e.UpdateReason = c.Meta.Time, c.Meta.Actor, c.Meta.Reason
	e.Revision = nextRevision(tx)
	mustPut(entries, []byte(e.ID), mustJSON(&e))
	appendAudit(tx, c.Meta.record("entry."+c.Action, e.ID), &old, &e)
	return applied{resp: e, publish: func(r *registry) { r.entryPut(&e, e.Revision) }}, nil
}

// OffboardResult is what an offboarding changed (or, for a plan, would change).
type OffboardResult struct {
	Owner   Owner
	Entries []Entry     // after the change
	Tokens  []JoinToken // after the change
	// Revisions maps each entry's ID to its revision before the change: what OffboardOwnerChecked
	// takes after the entries were checked.
	Revisions map[string]uint64
}

// edit is one object before and after a change.
type edit[T any] struct{ before, after T }

// offboardPlan is every change offboarding an owner makes, in the order the FSM writes and audits them,
// and the registry revision after it (the owner's; entries take the ones before it, in order).
type offboardPlan struct {
	owner    edit[Owner]
	entries  []edit[Entry]
	tokens   []edit[JoinToken]
	revision uint64
}

func (p *offboardPlan) result() OffboardResult {
	res := OffboardResult{Owner: p.owner.after, Revisions: make(map[string]uint64, len(p.entries))}
	for _, e := range p.entries {
		res.Entries = append(res.Entries, e.after)
		res.Revisions[e.before.ID] = e.before.Revision
	}
	for _, t := range p.tokens {
		res.Tokens = append(res.Tokens, t.after)
	}
	return res
}

// matches checks that the plan changes exactly the entries in checked, at the revisions given.
func (p *offboardPlan) matches(checked map[string]uint64) error {
	for _, e := range p.entries {
		rev, ok := checked[e.before.ID]
		if !ok || rev != e.before.Revision {
			return fmt.Errorf("%w: entry %s changed or appeared since the entries were checked against the policy: offboard again", ErrConflict, e.before.ID)
		}
	}
	if len(checked) != len(p.entries) {
		return fmt.Errorf("%w: %d entries were checked against the policy, the owner now has %d: offboard again", ErrConflict, len(checked), len(p.entries))
	}
	return nil
}

// planOffboard validates c against the state in tx and computes every change it makes, writing nothing.
// It is the one definition of offboarding: the FSM writes its plan, and PlanOffboard returns it as a
// dry run, so both refuse and select alike.
func planOffboard(tx *bolt.Tx, c ownerOffboardCmd) (offboardPlan, error) {
	var p offboardPlan
	v := tx.Bucket(bucketOwners).Get([]byte(c.Owner))
	if v == nil {
		return p, fmt.Errorf("owner %q: %w", c.Owner, ErrOwnerNotFound)
	}
	if err := decodeStored("owner", c.Owner, v, &p.owner.before); err != nil {
		return p, err
	}
	if p.owner.before.Offboarded {
		return p, fmt.Errorf("owner %q: %w already", c.Owner, ErrOwnerOffboarded)
	}
	switch c.Mode {
	case OffboardReassign:
		if c.To == c.Owner {
			return p, fmt.Errorf("owner %q: %w: cannot reassign to itself", c.Owner, ErrInvalid)
		}
		if err := checkOwnerUsable(tx, c.To); err != nil {
			return p, fmt.Errorf("reassign to: %w", err)
		}
	case OffboardDisable:
	default:
		return p, fmt.Errorf("owner %q: %w: offboarding mode %q", c.Owner, ErrInvalid, c.Mode)
	}
	rev := getUint64(tx.Bucket(bucketMeta), keyRevision)
	err := tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
		var old Entry
		if err := decodeStored("entry", string(k), v, &old); err != nil {
			return err
		}
		if old.Owner != c.Owner {
			return nil
		}
		e := old
		if c.Mode == OffboardReassign {
			e.Owner = c.To
		} else if !e.Disabled {
			e.Disabled, e.DisabledAt, e.DisabledBy = true, c.Meta.Time, c.Meta.Actor
			e.DisabledReason = "owner " + c.Owner + " offboarded"
			if c.Meta.Reason != "" {
				e.DisabledReason += ": " + c.Meta.Reason
			}
		}
		e.UpdatedAt, e.UpdatedBy, e.UpdateReason = c.Meta.Time, c.Meta.Actor, "owner "+c.Owner+" offboarded"
		rev++
		e.Revision = rev
		p.entries = append(p.entries, edit[Entry]{old, e})
		return nil
	})
	if err != nil {
		return p, err
	}
	err = tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		var old JoinToken
		if err := decodeStored("join token", string(k), v, &old); err != nil {
			return err
		}
		if old.Owner != c.Owner || !old.UsedAt.IsZero() || old.Revoked {
			return nil
		}
		t := old
		if c.Mode == OffboardReassign {
			t.Owner = c.To
		} else {
			t.Revoked = true
		}
		p.tokens = append(p.tokens, edit[JoinToken]{old, t})
		return nil
	})
	if err != nil {
		return p, err
	}
	o := p.owner.before
	o.Offboarded, o.OffboardedAt, o.OffboardedBy, o.ReassignedTo = true, c.Meta.Time, c.Meta.Actor, c.To
	p.owner.after = o
	p.revision = rev + 1
	return p, nil
}

func applyOwnerOffboard(tx *bolt.Tx, c ownerOffboardCmd) (applied, error) {
	p, err := planOffboard(tx, c)
	if err != nil {
		return applied{}, err
	}
	if c.Checked != nil {
		if err := p.matches(c.Checked); err != nil {
			return applied{}, fmt.Errorf("owner %q: %w", c.Owner, err)
		}
	}
	entries := tx.Bucket(bucketEntries)
	for _, e := range p.entries {
		mustPut(entries, []byte(e.after.ID), mustJSON(&e.after))
		appendAudit(tx, c.Meta.record("entry.offboard-"+c.Mode, e.after.ID), &e.before, &e.after)
	}
	tokens := tx.Bucket(bucketTokens)
	for _, t := range p.tokens {
		mustPut(tokens, []byte(t.after.ID), mustJSON(&t.after))
		appendAudit(tx, c.Meta.record("token.offboard-"+c.Mode, t.after.ID), t.before.auditView(), t.after.auditView())
	}
	o := p.owner.after
	mustPut(tx.Bucket(bucketOwners), []byte(o.Name), mustJSON(&o))
	if err := putUint64(tx.Bucket(bucketMeta), keyRevision, p.revision); err != nil {
		panic(fmt.Sprintf("storage: put revision: %v", err))
	}
	appendAudit(tx, c.Meta.record("owner.offboard", o.Name), &p.owner.before, &o)
	return applied{resp: p.result(), publish: func(r *registry) {
		for _, e := range p.entries {
			r.entryPut(&e.after, e.after.Revision)
		}
		for _, t := range p.tokens {
			r.tokenPut(&t.after)
		}
		r.ownerPut(&o, p.revision)
	}}, nil
}

// statsDays is how many days of daily issuance counts an entry's stats keep (today and 14 before).
const statsDays = 15

// entryStatsValue is the stored form of an entry's statistics: one small binary value, read and written
// once per entry per ledger batch. Layout (big endian): count u64 | last issued ns u64 | newest day u32 |
// statsDays × u32 daily counts (ring, index day % statsDays) | agent count u8 | per agent: len u16, bytes.
type entryStatsValue struct {
	count  uint64
	last   uint64
	day    uint32
	daily  [statsDays]uint32
	agents []string
}

func decodeStatsValue(v []byte) (entryStatsValue, error) {
	var st entryStatsValue
	if len(v) == 0 {
		return st, nil
	}
	if len(v) < 21+4*statsDays {
		return st, fmt.Errorf("%w: entry stats of %d bytes", errBadRecord, len(v))
	}
	st.count = binary.BigEndian.Uint64(v[0:])
	st.last = binary.BigEndian.Uint64(v[8:])
	st.day = binary.BigEndian.Uint32(v[16:])
	for i := range statsDays {
		st.daily[i] = binary.BigEndian.Uint32(v[20+4*i:])
	}
	rest := v[20+4*statsDays:]
	n := int(rest[0])
	rest = rest[1:]
	for range n {
		if len(rest) < 2 {
			return st, fmt.Errorf("%w: truncated entry stats", errBadRecord)
		}
		l := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+l {
			return st, fmt.Errorf("%w: truncated entry stats", errBadRecord)
		}
		st.agents = append(st.agents, string(rest[2:2+l]))
		rest = rest[2+l:]
	}
	return st, nil
}

func (st *entryStatsValue) encode() []byte {
	b := make([]byte, 0, 21+4*statsDays+len(st.agents)*72)
	b = binary.BigEndian.AppendUint64(b, st.count)
	b = binary.BigEndian.AppendUint64(b, st.last)
	b = binary.BigEndian.AppendUint32(b, st.day)
	for _, d := range st.daily {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	b = append(b, byte(len(st.agents)))
	for _, a := range st.agents {
		b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
		b = append(b, a...)
	}
	return b
}

// advance moves the daily ring to day, zeroing the days skipped.
func (st *entryStatsValue) advance(day uint32) {
	if day <= st.day {
		return
	}
	for d := st.day + 1; d <= day && d-st.day <= statsDays; d++ {
		st.daily[d%statsDays] = 0
	}
	if day-st.day > statsDays {
		st.daily = [statsDays]uint32{}
	}
	st.day = day
}

// dailyUntil returns the counts of the statsDays days ending with day, oldest first.
func (st *entryStatsValue) dailyUntil(day uint32) []uint64 {
	out := make([]uint64, statsDays)
	for i := range statsDays {
		d := day - uint32(statsDays-1-i)
		if d <= st.day && st.day-d < statsDays {
			out[i] = uint64(st.daily[d%statsDays])
		}
	}
	return out
}

func dayOf(ns uint64) uint32 { return uint32(ns / uint64(24*time.Hour)) }

// recordStats updates per-entry issuance statistics for one ledger batch (positions by entry).
func recordStats(tx *bolt.Tx, batchTime uint64, byEntry map[string][]uint32, fields []indexedFields) {
	stats := tx.Bucket(bucketEntryStats)
	day := dayOf(batchTime)
	for entryID, ps := range byEntry {
		st, err := decodeStatsValue(stats.Get([]byte(entryID)))
		if err != nil {
			panic(fmt.Sprintf("storage: entry %q: %v", entryID, err))
		}
		st.count += uint64(len(ps))
		st.last = batchTime
		st.advance(day)
		if day == st.day {
			st.daily[day%statsDays] += uint32(len(ps))
		}
		for _, p := range ps {
			if a := string(fields[p].agent); a != "" && !slices.Contains(st.agents, a) && len(st.agents) < maxStatsAgents && len(a) < 1<<16 {
				st.agents = append(st.agents, a)
			}
		}
		mustPut(stats, []byte(entryID), st.encode())
	}
}

func (st *entryStatsValue) public() EntryStats {
	out := EntryStats{Count: st.count, Agents: st.agents}
	if st.last != 0 {
		out.LastIssuedAt = time.Unix(0, int64(st.last)).UTC()
	}
	return out
}

// EntryStats returns the issuance statistics of an entry (zero if never issued).
func (s *Store) EntryStats(id string) (EntryStats, error) {
	var st entryStatsValue
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		st, err = decodeStatsValue(tx.Bucket(bucketEntryStats).Get([]byte(id)))
		return err
	})
	if err != nil {
		return EntryStats{}, fmt.Errorf("storage: stats of entry %q: %w", id, err)
	}
	return st.public(), nil
}

func applyReviewSign(tx *bolt.Tx, c reviewSignCmd) (applied, error) {
	var posts []func(*registry)
	entries := tx.Bucket(bucketEntries)
	for _, d := range c.Review.Decisions {
		if d.Decision != ReviewKeep && d.Decision != ReviewDisable {
			return applied{}, fmt.Errorf("review: entry %q: %w: decision %q (keep or disable)", d.EntryID, ErrInvalid, d.Decision)
		}
		if entries.Get([]byte(d.EntryID)) == nil {
			return applied{}, fmt.Errorf("review: entry %q: %w", d.EntryID, ErrEntryNotFound)
		}
	}
	for _, d := range c.Review.Decisions {
		if d.Decision != ReviewDisable {
			continue
		}
		var old Entry
		if err := decodeStored("entry", d.EntryID, entries.Get([]byte(d.EntryID)), &old); err != nil {
			return applied{}, err
		}
		if old.Disabled {
			continue
		}
		e := old
		e.Disabled, e.DisabledAt, e.DisabledBy = true, c.Meta.Time, c.Meta.Actor
		e.DisabledReason = "access review " + c.Review.ID + " by " + c.Review.Reviewer
		if d.Note != "" {
			e.DisabledReason += ": " + d.Note
		}
		e.Revision = nextRevision(tx)
		mustPut(entries, []byte(e.ID), mustJSON(&e))
		appendAudit(tx, c.Meta.record("entry.disable", e.ID), &old, &e)
		posts = append(posts, func(reg *registry) { reg.entryPut(&e, e.Revision) })
	}
	r := c.Review
	mustPut(tx.Bucket(bucketReviews), []byte(r.ID), mustJSON(&r))
	appendAudit(tx, c.Meta.record("review.sign", r.ID), nil, &r)
	return applied{resp: r, publish: func(reg *registry) {
		for _, p := range posts {
			p(reg)
		}
	}}, nil
}

// applyLedgerPrune deletes the oldest ledger batches issued before Before, with their index keys: at most
// MaxBatches batches and, when MaxRecords is set, at most that many records (but always at least one
// batch), so that one Raft entry stays cheap to apply.
func applyLedgerPrune(tx *bolt.Tx, c ledgerPruneCmd) (applied, error) {
	ledger := tx.Bucket(bucketLedger)
	byID := tx.Bucket(bucketLedgerByID)
	idx := ledgerIndexes(tx)
	before := uint64(c.Before.UnixNano())
	var res pruneResult
	var doomed [][]byte
	cur := ledger.Cursor()
	for k, v := cur.First(); k != nil && res.Batches < c.MaxBatches; k, v = cur.Next() {
		if binary.BigEndian.Uint64(k[:8]) >= before {
			break
		}
		n := batchCount(v)
		if c.MaxRecords > 0 && res.Batches > 0 && res.Records+n > c.MaxRecords {
			res.Bounded = true
			break
		}
		bk := append([]byte(nil), k...)
		// One index key per (dimension, value) of the batch, as applyLedgerAppend wrote them.
		var values [5]map[string]struct{}
		for i := range n {
			raw, err := batchRecord(v, uint32(i))
			if err != nil {
				panic(fmt.Sprintf("storage: prune batch %x: %v", bk, err))
			}
			f, err := scanIndexed(raw)
			if err != nil {
				panic(fmt.Sprintf("storage: prune batch %x record %d: %v", bk, i, err))
			}
			if addr := byID.Get(f.id); addr != nil && string(addr[:batchKeyLen]) == string(bk) {
				mustDelete(byID, f.id)
				deleteDeliveries(tx, string(f.id))
			}
			for d, val := range f.values() {
				if len(val) == 0 {
					continue
				}
				if values[d] == nil {
					values[d] = map[string]struct{}{}
				}
				values[d][string(val)] = struct{}{}
			}
		}
		for d, vals := range values {
			for val := range vals {
				mustDelete(idx[d], indexKey(val, bk))
			}
		}
		doomed = append(doomed, bk)
		res.Batches++
		res.Records += n
	}
	for _, bk := range doomed {
		mustDelete(ledger, bk)
	}
	return applied{resp: res}, nil
}

// PlanOffboard returns what OffboardOwner with the same arguments would change, read from this node's
// state, and changes nothing: it refuses and selects exactly as the write does (it is the same code).
// The revisions it shows are those the write would assign if nothing else is written first.
func (s *Store) PlanOffboard(ctx context.Context, owner, mode, to, reason string) (OffboardResult, error) {
	c := ownerOffboardCmd{Owner: owner, Mode: mode, To: to, Meta: s.newMeta(ctx, reason)}
	var p offboardPlan
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		p, err = planOffboard(tx, c)
		return err
	})
	if err != nil {
		return OffboardResult{}, fmt.Errorf("storage: offboard owner (dry run): %w", err)
	}
	return p.result(), nil
}

// UpdateEntry replaces an entry (validated by the caller) if its revision is still prevRevision.
func (s *Store) UpdateEntry(ctx context.Context, e Entry, prevRevision uint64, reason string) (Entry, error) {
	resp, err := s.propose(ctx, federatedType(cmdEntryUpdate, e), entryUpdateCmd{Entry: e, PrevRevision: prevRevision, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return Entry{}, fmt.Errorf("storage: update entry: %w", err)
	}
	return resp.(Entry), nil
}

// SetEntryState disables, enables or approves an entry.
func (s *Store) SetEntryState(ctx context.Context, id, action, reason string) (Entry, error) {
	resp, err := s.propose(ctx, cmdEntryState, entryStateCmd{ID: id, Action: action, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return Entry{}, fmt.Errorf("storage: %s entry: %w", action, err)
	}
	return resp.(Entry), nil
}

// OffboardOwner reassigns (mode OffboardReassign, to) or disables (OffboardDisable) every entry and
// unused join token of owner, and marks the owner offboarded, in one Raft write.
func (s *Store) OffboardOwner(ctx context.Context, owner, mode, to, reason string) (OffboardResult, error) {
	resp, err := s.propose(ctx, cmdOwnerOffboard, ownerOffboardCmd{Owner: owner, Mode: mode, To: to, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return OffboardResult{}, fmt.Errorf("storage: offboard owner: %w", err)
	}
	return resp.(OffboardResult), nil
}

// OffboardOwnerChecked is OffboardOwner for a proposer that checked the owner's entries (ID → revision,
// as PlanOffboard returned them in Revisions) against the entry policy: it fails with ErrConflict,
// changing nothing, if the owner's entries are no longer exactly those.
func (s *Store) OffboardOwnerChecked(ctx context.Context, owner, mode, to, reason string, checked map[string]uint64) (OffboardResult, error) {
	if checked == nil {
		checked = map[string]uint64{} // nil would mean "not checked"
	}
	resp, err := s.propose(ctx, cmdOwnerOffboard, ownerOffboardCmd{Owner: owner, Mode: mode, To: to, Meta: s.newMeta(ctx, reason), Checked: checked}.wire())
	if err != nil {
		return OffboardResult{}, fmt.Errorf("storage: offboard owner: %w", err)
	}
	return resp.(OffboardResult), nil
}

// SignReview records an access review and disables the entries it decided to disable, in one write.
func (s *Store) SignReview(ctx context.Context, r Review) (Review, error) {
	resp, err := s.propose(ctx, cmdReviewSign, reviewSignCmd{Review: r, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return Review{}, fmt.Errorf("storage: sign review: %w", err)
	}
	return resp.(Review), nil
}

// PruneLedger removes ledger batches issued before the given time, at most maxBatches; it returns how
// many it removed (call again while that equals maxBatches). The batches are removed by as many Raft
// commands as it takes to keep each under maxPruneRecords records.
func (s *Store) PruneLedger(ctx context.Context, before time.Time, maxBatches int) (int, error) {
	return s.pruneLedger(ctx, before, maxBatches, maxPruneRecords)
}

func (s *Store) pruneLedger(ctx context.Context, before time.Time, maxBatches, maxRecords int) (int, error) {
	total := 0
	for total < maxBatches {
		resp, err := s.propose(ctx, cmdLedgerPrune, ledgerPruneCmd{Before: before, MaxBatches: maxBatches - total, MaxRecords: maxRecords}.wire())
		if err != nil {
			return total, fmt.Errorf("storage: prune ledger before %s: %w", before.Format(time.RFC3339), err)
		}
		res := resp.(pruneResult)
		total += res.Batches
		if !res.Bounded {
			break
		}
	}
	return total, nil
}

// EntryActivity is an entry's issuance history as reviews need it.
type EntryActivity struct {
	Stats EntryStats
	// Deliveries is what agents reported of the entry's SVIDs reaching workloads.
	Deliveries DeliveryStats
	// Daily holds the issuance counts of the last statsDays days, oldest first (the last is today).
	Daily []uint64
}

// Activity returns the activity of every entry that was ever issued, read in one transaction.
func (s *Store) Activity(now time.Time) (map[string]*EntryActivity, error) {
	out := map[string]*EntryActivity{}
	day := dayOf(uint64(now.UnixNano()))
	err := s.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketEntryStats).ForEach(func(k, v []byte) error {
			st, err := decodeStatsValue(v)
			if err != nil {
				return fmt.Errorf("stats of entry %q: %w", k, err)
			}
			out[string(k)] = &EntryActivity{Stats: st.public(), Daily: st.dailyUntil(day)}
			return nil
		})
		if err != nil {
			return err
		}
		// Every delivered entry was issued, so it has an activity already.
		return tx.Bucket(bucketDeliveryStats).ForEach(func(k, v []byte) error {
			if a := out[string(k)]; a != nil {
				a.Deliveries = deliveryStatsOf(v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: entry activity: %w", err)
	}
	return out, nil
}
