package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

// The issuance ledger.
//
// Records are committed in batches (one Raft command per group commit), and a batch is stored as one
// value (an offset table, then the records as they arrived; see batchValue) under a batch key
//
//	issued_at (8 bytes, unix ns, big endian) | raft index (8)
//
// A record's address is its batch key plus its position in the batch (4 bytes). Every record of a batch
// has the same issued_at, the time the leader proposed the batch, and batch keys strictly increase with
// the Raft index, so the ledger is in time order and time ranges are key ranges.
//
// Indexes: by ID (serial or jti → address), and by owner, entry, SPIFFE ID, agent and signing key
// (signed_by: the CA key that signed the credential). The value indexes
// hold one key per (value, batch), value | 0x00 | batch key, whose value lists the positions of that
// batch's records with this value. A batch of 500 issuances for one entry costs one index write per
// dimension, not 500: this is what lets recording keep up with signing. Every query is a bounded range
// scan of one index, newest first; none scans the whole ledger.
var (
	bucketLedger         = []byte("ledger_batches")
	bucketLedgerByID     = []byte("ledger_by_id")
	bucketLedgerByOwner  = []byte("ledger_by_owner")
	bucketLedgerByEntry  = []byte("ledger_by_entry")
	bucketLedgerBySPIFFE = []byte("ledger_by_spiffe_id")
	bucketLedgerByAgent  = []byte("ledger_by_agent")
	bucketLedgerBySigner = []byte("ledger_by_signed_by")

	keyLedgerTime = []byte("ledger_time") // newest batch time, to keep batch keys increasing
)

const (
	batchKeyLen = 16
	addrLen     = batchKeyLen + 4
)

func batchKey(ns uint64, index uint64) []byte {
	k := make([]byte, batchKeyLen, addrLen)
	binary.BigEndian.PutUint64(k[0:8], ns)
	binary.BigEndian.PutUint64(k[8:16], index)
	return k
}

func recordAddr(bk []byte, pos uint32) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(bk[:batchKeyLen]), pos)
}

// indexedFields are the parts of a record the FSM indexes, read without decoding the whole record.
type indexedFields struct {
	id, owner, entry, spiffeID, agent, signedBy []byte
	issuedAt                                    uint64
}

func scanIndexed(raw []byte) (indexedFields, error) {
	var f indexedFields
	err := walkRecord(raw, func(num protowire.Number, b []byte, u uint64) {
		switch num {
		case fID:
			f.id = b
		case fOwner:
			f.owner = b
		case fEntryID:
			f.entry = b
		case fSPIFFEID:
			f.spiffeID = b
		case fAgent:
			f.agent = b
		case fSignedBy:
			f.signedBy = b
		case fIssuedAt:
			f.issuedAt = u
		}
	})
	return f, err
}

func encodePositions(ps []uint32) []byte {
	b := make([]byte, 0, len(ps)*2)
	prev := uint32(0)
	for i, p := range ps {
		d := p - prev
		if i == 0 {
			d = p
		}
		b = protowire.AppendVarint(b, uint64(d))
		prev = p
	}
	return b
}

func decodePositions(b []byte) ([]uint32, error) {
	var out []uint32
	var cur uint32
	for len(b) > 0 {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: index positions", errBadRecord)
		}
		b = b[n:]
		cur += uint32(v)
		out = append(out, cur)
	}
	return out, nil
}

// ledgerIndexes are the value indexes of the ledger, in the order of indexedFields.values.
func ledgerIndexes(tx *bolt.Tx) [5]*bolt.Bucket {
	return [5]*bolt.Bucket{tx.Bucket(bucketLedgerByOwner), tx.Bucket(bucketLedgerByEntry),
		tx.Bucket(bucketLedgerBySPIFFE), tx.Bucket(bucketLedgerByAgent), tx.Bucket(bucketLedgerBySigner)}
}

// values are the record's values of the ledger's value indexes (ledgerIndexes), in order.
func (f *indexedFields) values() [5][]byte {
	return [5][]byte{f.owner, f.entry, f.spiffeID, f.agent, f.signedBy}
}

// applyLedgerAppend stores a batch of ledger records. signed says the command's type may carry
// signed_by in its records (command version 4: ledger-append-signed, agent-attest-signed,
// agent-renew-signed); the older types apply exactly as they always did.
func applyLedgerAppend(tx *bolt.Tx, index uint64, payload []byte, signed bool) (applied, error) {
	raws, err := splitLedgerBatch(payload)
	if err != nil {
		return applied{}, fmt.Errorf("%w: ledger batch: %w", errBadCommand, err)
	}
	if len(raws) == 0 {
		return applied{resp: 0}, nil
	}
	fields := make([]indexedFields, len(raws))
	for i, raw := range raws {
		if err = checkRecordFields(raw, signed); err != nil {
			return applied{}, fmt.Errorf("%w: ledger record %d: %w", errBadCommand, i, err)
		}
		if fields[i], err = scanIndexed(raw); err != nil {
			return applied{}, fmt.Errorf("%w: ledger record %d: %w", errBadCommand, i, err)
		}
	}
	// The batch time is the proposal's stamp, kept strictly increasing across batches (a new leader's
	// clock may be behind the old one's); deterministic, so every replica computes the same key.
	meta := tx.Bucket(bucketMeta)
	t := fields[0].issuedAt
	if last := getUint64(meta, keyLedgerTime); t <= last {
		t = last + 1
	}
	if err := putUint64(meta, keyLedgerTime, t); err != nil {
		panic(fmt.Sprintf("storage: put ledger time: %v", err))
	}
	bk := batchKey(t, index)
	ledger := tx.Bucket(bucketLedger)
	ledger.FillPercent = 1.0 // keys only ever append
	mustPut(ledger, bk, batchValue(raws))

	byID := tx.Bucket(bucketLedgerByID)
	groups := [5]map[string][]uint32{{}, {}, {}, {}, {}}
	for i, f := range fields {
		mustPut(byID, f.id, recordAddr(bk, uint32(i)))
		for d, v := range f.values() {
			if len(v) > 0 {
				groups[d][string(v)] = append(groups[d][string(v)], uint32(i))
			}
		}
	}
	for d, b := range ledgerIndexes(tx) {
		for v, ps := range groups[d] {
			mustPut(b, indexKey(v, bk), encodePositions(ps))
		}
	}
	recordStats(tx, t, groups[1], fields)
	return applied{resp: len(raws)}, nil
}

// batchValue is how a batch is stored: the record count n (4 bytes), then n+1 offsets (4 bytes each)
// into the record area that follows, then the records' bytes back to back. Any record is read in
// constant time, without walking the batch.
func batchValue(raws [][]byte) []byte {
	size := 4 + 4*(len(raws)+1)
	for _, r := range raws {
		size += len(r)
	}
	v := make([]byte, 0, size)
	v = binary.BigEndian.AppendUint32(v, uint32(len(raws)))
	off := uint32(0)
	for _, r := range raws {
		v = binary.BigEndian.AppendUint32(v, off)
		off += uint32(len(r))
	}
	v = binary.BigEndian.AppendUint32(v, off)
	for _, r := range raws {
		v = append(v, r...)
	}
	return v
}

// batchCount returns the number of records in a stored batch.
func batchCount(v []byte) int {
	if len(v) < 4 {
		return 0
	}
	return int(binary.BigEndian.Uint32(v))
}

// batchRecord returns the encoded record at pos of a stored batch.
func batchRecord(v []byte, pos uint32) ([]byte, error) {
	n := batchCount(v)
	if int(pos) >= n || len(v) < 4+4*(n+1) {
		return nil, fmt.Errorf("%w: position %d of a batch of %d", errBadRecord, pos, n)
	}
	area := v[4+4*(n+1):]
	start := binary.BigEndian.Uint32(v[4+4*pos:])
	end := binary.BigEndian.Uint32(v[4+4*(pos+1):])
	if start > end || int(end) > len(area) {
		return nil, fmt.Errorf("%w: bad offsets at position %d", errBadRecord, pos)
	}
	return area[start:end], nil
}

func indexKey(value string, bk []byte) []byte {
	k := make([]byte, 0, len(value)+1+len(bk))
	k = append(k, value...)
	k = append(k, 0)
	return append(k, bk...)
}

// LedgerProposal is a batch of issuance records on its way through Raft: proposed here on the leader, or
// sent to the leader when Wait is called on a follower.
type LedgerProposal struct {
	s   *Store
	f   raft.ApplyFuture
	err error
	n   int
	op  string // what the command does, for errors; default "append N ledger records"

	issuedAt time.Time
	// A proposal for the leader: the records (stamped with the leader's time once committed) and the
	// proposal sent.
	recs    []Issuance
	forward *Proposal
	// retry builds the proposal to forward if this node, no longer leader, did not append the batch.
	retry    func() (*Proposal, commandType, error)
	fwdType  commandType
	resp     any
	fwdIndex uint64
}

// Wait blocks until the batch is applied on this node (so committed on a majority), or ctx ends. A
// proposal of no records proposed nothing: Wait returns nil at once.
func (p *LedgerProposal) Wait(ctx context.Context) error {
	op := p.op
	if op == "" {
		op = fmt.Sprintf("append %d ledger records", p.n)
	}
	if p.err != nil {
		return fmt.Errorf("storage: %s: %w", op, p.err)
	}
	if p.forward != nil {
		return p.waitForwarded(ctx, op)
	}
	if p.f == nil {
		return nil
	}
	full := p.s.diskFullWatch()
	done := make(chan error, 1)
	go func() { done <- p.f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			err = p.s.raftError(err)
			if errors.Is(err, errNotAppended) && p.retry != nil && p.s.forwarder() != nil {
				// Leadership moved away before the batch was appended: send it to the new leader.
				fwd, t, ferr := p.retry()
				if ferr != nil {
					return fmt.Errorf("storage: %s: %w", op, ferr)
				}
				p.forward, p.fwdType, p.f = fwd, t, nil
				return p.waitForwarded(ctx, op)
			}
			return fmt.Errorf("storage: %s: %w", op, err)
		}
		p.s.wroteOK()
		if err, ok := p.f.Response().(error); ok {
			if p.op != "" {
				return err // a refusal by the state names its object already
			}
			return fmt.Errorf("storage: %s: %w", op, err)
		}
		p.resp = p.f.Response()
		return nil
	case <-full:
		// The batch may be in the log and take effect once space is freed; the caller stops waiting.
		return fmt.Errorf("storage: %s: %w", op, p.s.waitError(nil))
	case <-ctx.Done():
		// The batch may still commit; the caller only stops waiting.
		return fmt.Errorf("storage: %s: %w", op, p.s.waitError(ctx.Err()))
	}
}

// waitForwarded sends the proposal to the leader and waits for its outcome, then stamps the records
// with the time the leader gave them.
func (p *LedgerProposal) waitForwarded(ctx context.Context, op string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeoutFrom(ctx))
		defer cancel()
	}
	out, err := p.s.route(ctx, *p.forward)
	if err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	if out.Code != codeOK {
		if p.op != "" {
			return out.err()
		}
		return fmt.Errorf("storage: %s: %w", op, out.err())
	}
	if p.resp, err = decodeResult(p.fwdType, out.Result); err != nil {
		return err
	}
	p.issuedAt, p.fwdIndex = out.IssuedAt, out.Index
	stampAll(p.recs, out.IssuedAt)
	return nil
}

// response is the FSM's result for the command, once Wait returned nil.
func (p *LedgerProposal) response() any { return p.resp }

// index is the log index the proposal was committed at, once Wait returned nil.
func (p *LedgerProposal) index() uint64 {
	if p.f != nil {
		return p.f.Index()
	}
	return p.fwdIndex
}

// ProposeLedger stamps recs with the issuance time (IssuedAt is set here, on every record: the moment
// the leader commits the issuance) and proposes them to Raft as one command. Proposals enter the Raft log
// in the order of the calls, with increasing times. Wait on the result before handing out any credential.
// The proposal serves whoever waits for it, so it is not bound to a context: waiting for room in Raft's
// queue is bounded by the default write timeout (see AppendLedger for a caller's context). On a
// follower the records are sent to the leader by Wait, and stamped with the leader's time there.
func (s *Store) ProposeLedger(recs []Issuance) *LedgerProposal {
	return s.proposeStamped(context.Background(), recs, nil)
}

// proposeStamped stamps recs with the next ledger time and proposes them: as a ledger-append command
// when build is nil, else as the command build makes from their wire form. The records are encoded
// before the ledger lock is taken; under it, the time is stamped, the batch framed with it and the
// command enqueued in Raft, so that log order and time order agree. Waiting for room in Raft's queue
// ends with ctx's deadline. On a follower with a forwarder, the unstamped records (and the command
// built with none) go to the leader when the proposal is waited on.
func (s *Store) proposeStamped(ctx context.Context, recs []Issuance, build ledgerBuild) *LedgerProposal {
	if len(recs) == 0 {
		if build != nil {
			return &LedgerProposal{err: fmt.Errorf("%w: a command carrying ledger records has none", ErrInvalid)}
		}
		return &LedgerProposal{} // nothing to propose; Wait returns nil
	}
	if s.closed.Load() {
		return &LedgerProposal{err: ErrClosed, n: len(recs)}
	}
	if err := ctx.Err(); err != nil {
		return &LedgerProposal{err: err, n: len(recs)}
	}
	u := encodeUnstampedBatch(recs)
	if s.forwards() {
		fwd, t, err := s.forwardedLedger(u, build)
		if err != nil {
			return &LedgerProposal{err: err, n: len(recs)}
		}
		return &LedgerProposal{s: s, n: len(recs), recs: recs, fwdType: t, forward: fwd}
	}
	p := s.proposeUnstamped(ctx, u, len(recs), build)
	stampAll(recs, p.issuedAt)
	p.recs = recs
	p.retry = func() (*Proposal, commandType, error) { return s.forwardedLedger(u, build) }
	return p
}

func stampAll(recs []Issuance, t time.Time) {
	for i := range recs {
		recs[i].IssuedAt = t
	}
}

// ledgerBuild makes the command that carries a stamped ledger batch (a nil ledgerBuild: a plain ledger
// append). signed says every server understands command version 4: the command is then of the type whose
// records may carry signed_by (signedType), else of the type that predates it.
type ledgerBuild func(batch []byte, signed bool) ([]byte, error)

// signsLedger reports whether ledger records may carry signed_by: every server of the Raft configuration
// has recorded command version 4 (checkVersions). A ledger append is never refused or delayed for it:
// until then, during a rolling upgrade, records are committed without their signer, in the older types.
func (s *Store) signsLedger() bool {
	return s.checkVersions([]byte{byte(cmdLedgerAppendSigned)}) == nil
}

// forwardedLedger is the proposal a follower sends for the records u (and the command build makes,
// built with no records, of the type that predates signed_by), and the type of command it is. The
// records keep signed_by only if every server, the leader included, understands it by this node's view:
// a leader of an older build would propose them in a type it refuses to apply.
func (s *Store) forwardedLedger(u unstampedBatch, build ledgerBuild) (*Proposal, commandType, error) {
	if !s.signsLedger() {
		u = u.withoutSignedBy()
	}
	p := &Proposal{Ledger: u.wire()}
	if build == nil {
		return p, cmdLedgerAppend, nil
	}
	cmd, err := build(nil, false)
	if err != nil {
		return nil, 0, err
	}
	p.Command = cmd
	return p, commandType(cmd[0]), nil
}

// proposeUnstamped stamps the encoded batch u (n records) and proposes it (see proposeStamped): with the
// records' signed_by in a type of command version 4 if every server understands it (signsLedger), else
// without it in the type that predates it.
func (s *Store) proposeUnstamped(ctx context.Context, u unstampedBatch, n int, build ledgerBuild) *LedgerProposal {
	if err := s.refuseWhileStateFull(); err != nil {
		return &LedgerProposal{err: err, n: n}
	}
	signed := s.signsLedger()
	if !signed {
		u = u.withoutSignedBy()
	}
	p := &LedgerProposal{s: s, n: n}
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	t := s.cfg.Clock().UTC()
	if !t.After(s.lastLedgerTime) {
		t = s.lastLedgerTime.Add(time.Nanosecond)
	}
	s.lastLedgerTime = t
	p.issuedAt = t
	var cmd []byte
	if build == nil {
		ct := cmdLedgerAppend
		if signed {
			ct = cmdLedgerAppendSigned
		}
		cmd = u.appendStamped([]byte{byte(ct)}, t)
	} else if cmd, p.err = build(u.appendStamped(nil, t), signed); p.err != nil {
		return p
	}
	p.f = s.raft.Apply(cmd, timeoutFrom(ctx))
	return p
}

// AppendLedger proposes recs and waits until they are committed (see ProposeLedger); ctx bounds both
// the proposal and the wait.
func (s *Store) AppendLedger(ctx context.Context, recs []Issuance) error {
	return s.proposeStamped(ctx, recs, nil).Wait(ctx)
}

// LedgerQuery selects issuance records. Filters combine with AND. Results are newest first.
type LedgerQuery struct {
	Owner    string
	SPIFFEID string
	EntryID  string
	Agent    string
	// SignedBy keeps only credentials signed by this CA key (Issuance.SignedBy).
	SignedBy string
	// Since and Until bound issued_at: Since <= issued_at < Until. Zero means unbounded.
	Since time.Time
	Until time.Time
	// ValidAt, if set, keeps only credentials valid at that time (issued at or before it, expiring after).
	ValidAt time.Time
	// Delivered, if set, keeps only credentials an agent reported handing to a workload
	// (DeliveredOnly) or only those never reported delivered (UndeliveredOnly).
	Delivered DeliveryFilter
	// Limit caps the page size: 0 means DefaultLedgerLimit; at most MaxLedgerLimit.
	Limit int
	// Cursor continues a previous query (LedgerPage.Next).
	Cursor string
}

// MaxCredentialLifetime bounds how long any credential Signet issues lives (entries and agent SVIDs allow
// at most 30 days); ValidAt queries look back this far.
const MaxCredentialLifetime = 31 * 24 * time.Hour

// Page sizes for ledger queries.
const (
	DefaultLedgerLimit = 100
	MaxLedgerLimit     = 10000
)

// LedgerPage is one page of query results.
type LedgerPage struct {
	Issuances []Issuance
	// Next is non-empty when more results may follow; pass it as LedgerQuery.Cursor.
	Next string
}

func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

// QueryLedger runs q against this node's state.
func (s *Store) QueryLedger(q LedgerQuery) (LedgerPage, error) {
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultLedgerLimit
	case limit < 0 || limit > MaxLedgerLimit:
		return LedgerPage{}, fmt.Errorf("storage: ledger query: limit %d: %w: must be between 1 and %d", limit, ErrInvalid, MaxLedgerLimit)
	}
	if !q.ValidAt.IsZero() {
		if until := q.ValidAt.Add(time.Nanosecond); q.Until.IsZero() || until.Before(q.Until) {
			q.Until = until
		}
		if since := q.ValidAt.Add(-MaxCredentialLifetime); since.After(q.Since) {
			q.Since = since
		}
	}
	var cursor []byte
	if q.Cursor != "" {
		c, err := hex.DecodeString(q.Cursor)
		if err != nil || len(c) != addrLen {
			return LedgerPage{}, fmt.Errorf("storage: ledger query: cursor %q: %w: not a cursor returned by a previous query", q.Cursor, ErrInvalid)
		}
		cursor = c
	}
	// The most selective index first; with no filter, the batches themselves.
	bucket, value := bucketLedger, ""
	switch {
	case q.EntryID != "":
		bucket, value = bucketLedgerByEntry, q.EntryID
	case q.SPIFFEID != "":
		bucket, value = bucketLedgerBySPIFFE, q.SPIFFEID
	case q.Agent != "":
		bucket, value = bucketLedgerByAgent, q.Agent
	case q.Owner != "":
		bucket, value = bucketLedgerByOwner, q.Owner
	case q.SignedBy != "":
		bucket, value = bucketLedgerBySigner, q.SignedBy
	}
	var prefix []byte
	if value != "" {
		prefix = append([]byte(value), 0)
	}
	// Group keys in [lo, hi) are visited, newest first.
	hi := append(bytes.Clone(prefix), bytes.Repeat([]byte{0xff}, batchKeyLen+1)...)
	if !q.Until.IsZero() {
		hi = append(bytes.Clone(prefix), timeKey(q.Until)...)
	}
	var cursorGroup []byte
	var cursorPos uint32
	if cursor != nil {
		cursorGroup = append(bytes.Clone(prefix), cursor[:batchKeyLen]...)
		cursorPos = binary.BigEndian.Uint32(cursor[batchKeyLen:])
		if bytes.Compare(cursorGroup, hi) < 0 {
			hi = append(bytes.Clone(cursorGroup), 0) // include the cursor's own group
		}
	}
	lo := bytes.Clone(prefix)
	if !q.Since.IsZero() {
		lo = append(lo, timeKey(q.Since)...)
	}

	var page LedgerPage
	var last []byte
	err := s.view(func(tx *bolt.Tx) error {
		ledger := tx.Bucket(bucketLedger)
		c := tx.Bucket(bucket).Cursor()
		k, v := c.Seek(hi)
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.Compare(k, lo) >= 0 && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			bk := k[len(prefix):]
			if len(bk) != batchKeyLen {
				continue
			}
			batch := v
			var positions []uint32
			if prefix != nil {
				var err error
				if positions, err = decodePositions(v); err != nil {
					return err
				}
				batch = ledger.Get(bk)
			} else {
				positions = make([]uint32, batchCount(batch))
				for i := range positions {
					positions[i] = uint32(i)
				}
			}
			inCursorGroup := cursorGroup != nil && bytes.Equal(k, cursorGroup)
			batchTime := time.Unix(0, int64(binary.BigEndian.Uint64(bk[:8]))).UTC()
			for _, pos := range slices.Backward(positions) {
				if inCursorGroup && pos >= cursorPos {
					continue
				}
				raw, err := batchRecord(batch, pos)
				if err != nil {
					return fmt.Errorf("ledger batch %x: %w", bk, err)
				}
				rec, err := decodeIssuance(raw)
				if err != nil {
					return fmt.Errorf("ledger record %x/%d: %w", bk, pos, err)
				}
				rec.IssuedAt = batchTime
				if !q.matches(&rec) || !q.Delivered.keeps(tx, rec.ID) {
					continue
				}
				if len(page.Issuances) == limit {
					page.Next = hex.EncodeToString(last)
					return nil
				}
				page.Issuances = append(page.Issuances, rec)
				last = recordAddr(bk, pos)
			}
		}
		return nil
	})
	if err != nil {
		return LedgerPage{}, fmt.Errorf("storage: ledger query: %w", err)
	}
	return page, nil
}

func (q *LedgerQuery) matches(r *Issuance) bool {
	return (q.ValidAt.IsZero() || r.ExpiresAt.After(q.ValidAt)) &&
		(q.Owner == "" || r.Owner == q.Owner) &&
		(q.SPIFFEID == "" || r.SPIFFEID == q.SPIFFEID) &&
		(q.EntryID == "" || r.EntryID == q.EntryID) &&
		(q.Agent == "" || r.Agent == q.Agent) &&
		(q.SignedBy == "" || r.SignedBy == q.SignedBy)
}

// LookupIssuance returns the record of the credential with the given serial (lowercase hex) or JWT ID.
func (s *Store) LookupIssuance(id string) (Issuance, error) {
	var rec Issuance
	err := s.view(func(tx *bolt.Tx) error {
		addr := tx.Bucket(bucketLedgerByID).Get([]byte(id))
		if len(addr) != addrLen {
			return fmt.Errorf("issuance %q: %w", id, ErrIssuanceNotFound)
		}
		bk, pos := addr[:batchKeyLen], binary.BigEndian.Uint32(addr[batchKeyLen:])
		raw, err := batchRecord(tx.Bucket(bucketLedger).Get(bk), pos)
		if err != nil {
			return fmt.Errorf("issuance %q: %w", id, errors.Join(ErrIssuanceNotFound, err))
		}
		if rec, err = decodeIssuance(raw); err != nil {
			return fmt.Errorf("issuance %q: %w", id, err)
		}
		rec.IssuedAt = time.Unix(0, int64(binary.BigEndian.Uint64(bk[:8]))).UTC()
		return nil
	})
	if err != nil {
		return Issuance{}, fmt.Errorf("storage: %w", err)
	}
	return rec, nil
}
