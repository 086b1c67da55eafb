package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The issuance ledger. Each record is stored once under a time-ordered primary key
//
//	issued_at (8 bytes, unix ns, big endian) | raft index (8) | position in the batch (4)
//
// and indexed by ID (serial or jti → primary key) and by (owner | entry | SPIFFE ID | agent, time):
// index keys are value | 0x00 | primary key, with empty values. Every query is a bounded range scan of
// one index, newest first; none scans the whole ledger.
var (
	bucketLedger         = []byte("ledger")
	bucketLedgerByID     = []byte("ledger_by_id")
	bucketLedgerByOwner  = []byte("ledger_by_owner")
	bucketLedgerByEntry  = []byte("ledger_by_entry")
	bucketLedgerBySPIFFE = []byte("ledger_by_spiffe_id")
	bucketLedgerByAgent  = []byte("ledger_by_agent")
)

const pkLen = 20

func ledgerPK(issuedAt time.Time, index uint64, pos uint32) []byte {
	k := make([]byte, pkLen)
	binary.BigEndian.PutUint64(k[0:8], uint64(issuedAt.UnixNano()))
	binary.BigEndian.PutUint64(k[8:16], index)
	binary.BigEndian.PutUint32(k[16:20], pos)
	return k
}

func indexKey(value string, pk []byte) []byte {
	k := make([]byte, 0, len(value)+1+len(pk))
	k = append(k, value...)
	k = append(k, 0)
	return append(k, pk...)
}

func (s *Store) applyLedgerAppend(tx *bolt.Tx, index uint64, payload []byte) (any, func()) {
	raws, err := splitLedgerBatch(payload)
	if err != nil {
		panic(fmt.Sprintf("storage: raft entry %d: %v", index, err))
	}
	ledger := tx.Bucket(bucketLedger)
	ledger.FillPercent = 0.9 // keys are mostly appended in time order
	byID := tx.Bucket(bucketLedgerByID)
	byOwner := tx.Bucket(bucketLedgerByOwner)
	byEntry := tx.Bucket(bucketLedgerByEntry)
	bySPIFFE := tx.Bucket(bucketLedgerBySPIFFE)
	byAgent := tx.Bucket(bucketLedgerByAgent)
	for i, raw := range raws {
		rec, err := decodeIssuance(raw)
		if err != nil {
			panic(fmt.Sprintf("storage: raft entry %d record %d: %v", index, i, err))
		}
		pk := ledgerPK(rec.IssuedAt, index, uint32(i))
		mustPut(ledger, pk, raw)
		mustPut(byID, []byte(rec.ID), pk)
		mustPut(byOwner, indexKey(rec.Owner, pk), nil)
		mustPut(byEntry, indexKey(rec.EntryID, pk), nil)
		mustPut(bySPIFFE, indexKey(rec.SPIFFEID, pk), nil)
		if rec.Agent != "" {
			mustPut(byAgent, indexKey(rec.Agent, pk), nil)
		}
	}
	return len(raws), nil
}

// AppendLedger commits issuance records through Raft in one command and returns once they are applied on
// this node (and so committed on a majority). It is the durability point of issuance: a credential may be
// handed out only after its record was appended.
func (s *Store) AppendLedger(ctx context.Context, recs []Issuance) error {
	if len(recs) == 0 {
		return nil
	}
	_, err := s.apply(ctx, encodeLedgerBatch(recs))
	if err != nil {
		return fmt.Errorf("storage: append %d ledger records: %w", len(recs), err)
	}
	return nil
}

// LedgerQuery selects issuance records. Filters combine with AND. Results are newest first.
type LedgerQuery struct {
	Owner    string
	SPIFFEID string
	EntryID  string
	Agent    string
	// Since and Until bound issued_at: Since <= issued_at < Until. Zero means unbounded.
	Since time.Time
	Until time.Time
	// Limit caps the page size: 0 means DefaultLedgerLimit; at most MaxLedgerLimit.
	Limit int
	// Cursor continues a previous query (LedgerPage.Next).
	Cursor string
}

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

// QueryLedger runs q against this node's state.
func (s *Store) QueryLedger(q LedgerQuery) (LedgerPage, error) {
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultLedgerLimit
	case limit < 0 || limit > MaxLedgerLimit:
		return LedgerPage{}, fmt.Errorf("storage: ledger query: limit %d: %w: must be between 1 and %d", limit, ErrInvalid, MaxLedgerLimit)
	}
	var cursor []byte
	if q.Cursor != "" {
		c, err := hex.DecodeString(q.Cursor)
		if err != nil || len(c) != pkLen {
			return LedgerPage{}, fmt.Errorf("storage: ledger query: cursor %q: %w: not a cursor returned by a previous query", q.Cursor, ErrInvalid)
		}
		cursor = c
	}
	// The most selective index first.
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
	}
	var prefix []byte
	if bucket != nil && value != "" {
		prefix = append([]byte(value), 0)
	}
	hi := append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	if !q.Until.IsZero() {
		hi = ledgerPK(q.Until, 0, 0)[:8]
		hi = append(bytes.Clone(prefix), hi...)
	}
	if cursor != nil {
		if c := append(bytes.Clone(prefix), cursor...); bytes.Compare(c, hi) < 0 {
			hi = c
		}
	}
	lo := bytes.Clone(prefix)
	if !q.Since.IsZero() {
		lo = append(lo, ledgerPK(q.Since, 0, 0)[:8]...)
	}

	var page LedgerPage
	var lastPK []byte
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
			pk := k[len(prefix):]
			raw := v
			if prefix != nil {
				raw = ledger.Get(pk)
			}
			if raw == nil {
				continue
			}
			rec, err := decodeIssuance(raw)
			if err != nil {
				return fmt.Errorf("ledger record %x: %w", pk, err)
			}
			if !q.matches(&rec) {
				continue
			}
			if len(page.Issuances) == limit {
				page.Next = hex.EncodeToString(lastPK)
				return nil
			}
			page.Issuances = append(page.Issuances, rec)
			lastPK = bytes.Clone(pk)
		}
		return nil
	})
	if err != nil {
		return LedgerPage{}, fmt.Errorf("storage: ledger query: %w", err)
	}
	return page, nil
}

func (q *LedgerQuery) matches(r *Issuance) bool {
	return (q.Owner == "" || r.Owner == q.Owner) &&
		(q.SPIFFEID == "" || r.SPIFFEID == q.SPIFFEID) &&
		(q.EntryID == "" || r.EntryID == q.EntryID) &&
		(q.Agent == "" || r.Agent == q.Agent)
}

// LookupIssuance returns the record of the credential with the given serial (lowercase hex) or JWT ID.
func (s *Store) LookupIssuance(id string) (Issuance, error) {
	var rec Issuance
	err := s.view(func(tx *bolt.Tx) error {
		pk := tx.Bucket(bucketLedgerByID).Get([]byte(id))
		if pk == nil {
			return fmt.Errorf("issuance %q: %w", id, ErrIssuanceNotFound)
		}
		raw := tx.Bucket(bucketLedger).Get(pk)
		if raw == nil {
			return fmt.Errorf("issuance %q: %w", id, ErrIssuanceNotFound)
		}
		var err error
		rec, err = decodeIssuance(raw)
		return err
	})
	if err != nil {
		return Issuance{}, fmt.Errorf("storage: %w", err)
	}
	return rec, nil
}
