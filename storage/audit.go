package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The audit log. Every registry change is audited by the FSM in the same transaction that applies it,
// with the object's state before and after as the FSM saw them; refused requests are appended by the
// server (AppendAudit). Records form a hash chain: each record's hash covers its content and the previous
// record's hash, so editing, removing or reordering a stored record breaks every link after it.
var (
	bucketAudit = []byte("audit")

	keyAuditSeq  = []byte("audit_seq")
	keyAuditHead = []byte("audit_head")
)

// Audit outcomes.
const (
	AuditOK     = "ok"
	AuditDenied = "denied"
)

// AuditRecord is one entry of the audit log.
type AuditRecord struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`   // the admin identity, "agent:<id>", or "signet"
	Action  string          `json:"action"`  // e.g. "entry.create", "owner.offboard", "agent.ban"
	Object  string          `json:"object"`  // what it acted on: an entry ID, owner name, agent ID…
	Outcome string          `json:"outcome"` // AuditOK or AuditDenied
	Reason  string          `json:"reason,omitempty"`
	Before  json.RawMessage `json:"before,omitempty"`
	After   json.RawMessage `json:"after,omitempty"`
	// PrevHash is the previous record's Hash (empty for the first); Hash is SHA-256 over the record with
	// Hash empty, hex.
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

type auditAppendCmd struct {
	Record AuditRecord `json:"record"`
}

// auditHash computes a record's hash (its Hash field ignored).
func auditHash(r AuditRecord) string {
	r.Hash = ""
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("storage: encode audit record: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func auditKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// appendAudit chains and stores r inside tx. before and after are marshalled (nil stays absent).
func appendAudit(tx *bolt.Tx, r AuditRecord, before, after any) {
	if before != nil {
		r.Before = mustJSON(before)
	}
	if after != nil {
		r.After = mustJSON(after)
	}
	if r.Outcome == "" {
		r.Outcome = AuditOK
	}
	r.Time = r.Time.UTC()
	meta := tx.Bucket(bucketMeta)
	r.Seq = getUint64(meta, keyAuditSeq) + 1
	r.PrevHash = string(meta.Get(keyAuditHead))
	r.Hash = auditHash(r)
	mustPut(tx.Bucket(bucketAudit), auditKey(r.Seq), mustJSON(&r))
	if err := putUint64(meta, keyAuditSeq, r.Seq); err != nil {
		panic(fmt.Sprintf("storage: put audit seq: %v", err))
	}
	mustPut(meta, keyAuditHead, []byte(r.Hash))
}

func applyAuditAppend(tx *bolt.Tx, c auditAppendCmd) (applied, error) {
	appendAudit(tx, c.Record, nil, nil)
	return applied{}, nil
}

// AppendAudit records an event that changed nothing (a refused request) in the audit log.
func (s *Store) AppendAudit(ctx context.Context, r AuditRecord) error {
	if _, err := s.propose(ctx, cmdAuditAppend, auditAppendCmd{Record: r}.wire()); err != nil {
		return fmt.Errorf("storage: append audit record: %w", err)
	}
	return nil
}

// AuditQuery selects audit records, oldest first, from After (exclusive).
type AuditQuery struct {
	After  uint64
	Limit  int
	Actor  string
	Object string
	Action string
}

// AuditLog returns records matching q, and the sequence number to continue from (0 at the end).
func (s *Store) AuditLog(q AuditQuery) ([]AuditRecord, uint64, error) {
	if q.Limit <= 0 || q.Limit > MaxLedgerLimit {
		q.Limit = DefaultLedgerLimit
	}
	var out []AuditRecord
	var next uint64
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(auditKey(q.After + 1)); k != nil; k, v = c.Next() {
			var r AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("audit record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if (q.Actor != "" && r.Actor != q.Actor) || (q.Object != "" && r.Object != q.Object) || (q.Action != "" && r.Action != q.Action) {
				continue
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].Seq
				return nil
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("storage: audit log: %w", err)
	}
	return out, next, nil
}

// AuditVerification is the result of recomputing the chain.
type AuditVerification struct {
	Records uint64
	// BrokenAt is the sequence number of the first record whose chain link fails (0 if none), and
	// Problem says how.
	BrokenAt uint64
	Problem  string
}

// AuditAnchor is a chain position known from outside state.db (a signed checkpoint): record Seq had
// hash Hash.
type AuditAnchor struct {
	Seq  uint64
	Hash string
}

// AuditHead returns the newest record's position: its sequence number and hash (zero with no records).
func (s *Store) AuditHead() (AuditAnchor, error) {
	var a AuditAnchor
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		a.Seq, a.Hash = getUint64(meta, keyAuditSeq), string(meta.Get(keyAuditHead))
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("storage: audit head: %w", err)
	}
	return a, nil
}

// VerifyAudit recomputes the hash chain over every stored record and reports the first broken link.
// The chain alone cannot reveal a record removed or altered with every later hash recomputed: that
// takes an anchor kept outside state.db (VerifyAuditAgainst).
func (s *Store) VerifyAudit() (AuditVerification, error) { return s.verifyAudit(nil) }

// VerifyAuditAgainst is VerifyAudit that also requires record a.Seq to exist with hash a.Hash. A chain
// that was rewritten up to that record fails there, even if every link of the rewritten chain holds.
func (s *Store) VerifyAuditAgainst(a AuditAnchor) (AuditVerification, error) {
	if a.Seq == 0 || a.Hash == "" {
		return AuditVerification{}, fmt.Errorf("storage: verify audit log: %w: the anchor needs a record number and its hash", ErrInvalid)
	}
	return s.verifyAudit(&a)
}

func (s *Store) verifyAudit(anchor *AuditAnchor) (AuditVerification, error) {
	var v AuditVerification
	err := s.view(func(tx *bolt.Tx) error {
		prev := ""
		want := uint64(1)
		c := tx.Bucket(bucketAudit).Cursor()
		for k, raw := c.First(); k != nil; k, raw = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			fail := func(problem string) error {
				v.BrokenAt, v.Problem = seq, problem
				return nil
			}
			if seq != want {
				return fail(fmt.Sprintf("record %d is missing", want))
			}
			var r AuditRecord
			if err := json.Unmarshal(raw, &r); err != nil {
				return fail(fmt.Sprintf("record does not decode: %v", err))
			}
			if r.Seq != seq {
				return fail(fmt.Sprintf("record says it is number %d", r.Seq))
			}
			if r.PrevHash != prev {
				return fail("its previous-hash does not match the record before it")
			}
			if got := auditHash(r); got != r.Hash {
				return fail("its content does not match its hash (the record was altered)")
			}
			if anchor != nil && seq == anchor.Seq && r.Hash != anchor.Hash {
				return fail(fmt.Sprintf("its hash %s is not the checkpoint's %s: this record or one before it was altered, removed or inserted, and the chain re-hashed", shortHash(r.Hash), shortHash(anchor.Hash)))
			}
			prev, want = r.Hash, want+1
			v.Records++
		}
		head := tx.Bucket(bucketMeta).Get(keyAuditHead)
		if v.BrokenAt == 0 && !bytes.Equal(head, []byte(prev)) {
			v.BrokenAt, v.Problem = want, "the chain head does not match the last record (records were removed)"
		}
		if v.BrokenAt == 0 && anchor != nil && v.Records < anchor.Seq {
			v.BrokenAt, v.Problem = anchor.Seq, fmt.Sprintf("the checkpoint covers record %d, but the chain ends at record %d: records were removed (from the end, or anywhere with the rest re-hashed)", anchor.Seq, v.Records)
		}
		return nil
	})
	if err != nil {
		return v, fmt.Errorf("storage: verify audit log: %w", err)
	}
	return v, nil
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
