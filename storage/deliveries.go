package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Caller is the attested process an agent handed a credential to.
type Caller struct {
	UID       uint32 `json:"uid"`
	GID       uint32 `json:"gid"`
	PID       int32  `json:"pid"`
	StartTime uint64 `json:"start_time"` // clock ticks since boot: with PID, one process
	Path      string `json:"path,omitempty"`
	SHA256    string `json:"sha256,omitempty"` // a prefix of the executable's digest (hex)
}

// Delivery is what one agent reported of one caller receiving one credential: counts and times are
// cumulative, so a report applied twice changes nothing (the FSM keeps the larger count, the earlier
// first and the later last time).
type Delivery struct {
	CredentialID string    `json:"credential_id"` // X.509 serial (lowercase hex) or JWT ID
	Agent        string    `json:"agent"`
	Caller       Caller    `json:"caller"`
	FirstAt      time.Time `json:"first_at"`
	LastAt       time.Time `json:"last_at"`
	Count        uint64    `json:"count"`
	// EntryID is the ledger record's entry, filled in when stored.
	EntryID string `json:"entry_id,omitempty"`
}

// MaxCallersPerCredential bounds the distinct callers kept for one credential: an agent cannot make
// the server store without bound by inventing callers. Deliveries to further callers are not kept.
const MaxCallersPerCredential = 64

var (
	bucketDeliveries     = []byte("deliveries")       // credential ID, 0, caller key -> Delivery (JSON)
	bucketDeliveryStats  = []byte("entry_deliveries") // entry ID -> count (8 bytes), last unix ns (8 bytes)
	deliveryKeySeparator = []byte{0}
)

// deliveryRecordCmd is the delivery-record command (raftv1.DeliveryRecord): deliveries reported by
// agents, merged into their ledger records by applyDeliveryRecord.
type deliveryRecordCmd struct {
	Deliveries []Delivery
}

func deliveryPrefix(credentialID string) []byte {
	return append([]byte(credentialID), deliveryKeySeparator...)
}

// deliveryKey is the credential ID, a zero byte and the caller: one row per (credential, caller).
func deliveryKey(d *Delivery) []byte {
	k := deliveryPrefix(d.CredentialID)
	k = binary.BigEndian.AppendUint32(k, d.Caller.UID)
	k = binary.BigEndian.AppendUint32(k, d.Caller.GID)
	k = binary.BigEndian.AppendUint32(k, uint32(d.Caller.PID))
	k = binary.BigEndian.AppendUint64(k, d.Caller.StartTime)
	k = binary.AppendUvarint(k, uint64(len(d.Caller.Path)))
	k = append(k, d.Caller.Path...)
	return append(k, d.Caller.SHA256...)
}

// issuanceOwnedBy returns the entry of the ledger record id if it exists and was issued through
// agent, and false otherwise.
func issuanceOwnedBy(tx *bolt.Tx, id, agent string) (entryID string, ok bool) {
	addr := tx.Bucket(bucketLedgerByID).Get([]byte(id))
	if len(addr) != addrLen {
		return "", false
	}
	raw, err := batchRecord(tx.Bucket(bucketLedger).Get(addr[:batchKeyLen]), binary.BigEndian.Uint32(addr[batchKeyLen:]))
	if err != nil {
		return "", false
	}
	f, err := scanIndexed(raw)
	if err != nil || string(f.agent) != agent {
		return "", false
	}
	return string(f.entry), true
}

// applyDeliveryRecord merges reported deliveries into their ledger records; those naming no record
// issued through the reporting agent, or a caller past MaxCallersPerCredential, are skipped. The
// response is how many were kept. The stored rows are JSON, like the registry's objects.
func applyDeliveryRecord(tx *bolt.Tx, c deliveryRecordCmd) (applied, error) {
	rows, stats := tx.Bucket(bucketDeliveries), tx.Bucket(bucketDeliveryStats)
	kept := 0
	for i := range c.Deliveries {
		d := c.Deliveries[i]
		entryID, ok := issuanceOwnedBy(tx, d.CredentialID, d.Agent)
		if !ok || d.Count == 0 {
			continue
		}
		key := deliveryKey(&d)
		var old Delivery
		if v := rows.Get(key); v != nil {
			if err := decodeStored("delivery of", d.CredentialID, v, &old); err != nil {
				return applied{}, err
			}
		} else if countPrefix(rows, deliveryPrefix(d.CredentialID), MaxCallersPerCredential) >= MaxCallersPerCredential {
			continue
		}
		merged := d
		merged.EntryID = entryID
		if old.Count > 0 {
			merged.Count = max(old.Count, d.Count)
			if old.FirstAt.Before(merged.FirstAt) {
				merged.FirstAt = old.FirstAt
			}
			if old.LastAt.After(merged.LastAt) {
				merged.LastAt = old.LastAt
			}
		}
		mustPut(rows, key, mustJSON(&merged))
		count, last := decodeDeliveryStats(stats.Get([]byte(entryID)))
		count += merged.Count - old.Count
		last = max(last, merged.LastAt.UnixNano())
		mustPut(stats, []byte(entryID), encodeDeliveryStats(count, last))
		kept++
	}
	return applied{resp: kept}, nil
}

// countPrefix counts the keys under prefix, stopping at limit.
func countPrefix(b *bolt.Bucket, prefix []byte, limit int) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < limit; k, _ = c.Next() {
		n++
	}
	return n
}

func encodeDeliveryStats(count uint64, last int64) []byte {
	v := binary.BigEndian.AppendUint64(nil, count)
	return binary.BigEndian.AppendUint64(v, uint64(last))
}

func decodeDeliveryStats(v []byte) (count uint64, last int64) {
	if len(v) != 16 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:]))
}

// ProposeDeliveries proposes reported deliveries as one Raft command (see applyDeliveryRecord); Wait on
// the result. The server's delivery recorder group-commits through it. Like every protobuf command, it
// is refused (ErrUpgradeInProgress) while a server of the cluster may not understand it. On a follower
// Wait sends it to the leader.
func (s *Store) ProposeDeliveries(ds []Delivery) *LedgerProposal {
	if len(ds) == 0 {
		return &LedgerProposal{}
	}
	p := &LedgerProposal{s: s, n: len(ds), op: fmt.Sprintf("record %d deliveries", len(ds))}
	cmd, err := encodeCommand(cmdDeliveryRecord, deliveryRecordCmd{Deliveries: ds}.wire())
	if err != nil {
		p.err = err
		return p
	}
	fwd := func() (*Proposal, commandType, error) { return &Proposal{Command: cmd}, cmdDeliveryRecord, nil }
	if s.forwards() {
		p.forward, p.fwdType, _ = fwd() // Wait sends it to the leader, which gates it
		return p
	}
	p.f, p.err = s.enqueue(context.Background(), cmd)
	p.retry = fwd
	return p
}

// RecordDeliveries stores reported deliveries in one Raft command and returns how many were kept (see
// applyDeliveryRecord).
func (s *Store) RecordDeliveries(ctx context.Context, ds []Delivery) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	resp, err := s.propose(ctx, cmdDeliveryRecord, deliveryRecordCmd{Deliveries: ds}.wire())
	if err != nil {
		return 0, fmt.Errorf("storage: record %d deliveries: %w", len(ds), err)
	}
	return resp.(int), nil
}

// Deliveries returns who received the credential id (at most MaxCallersPerCredential rows), in caller
// key order.
func (s *Store) Deliveries(id string) ([]Delivery, error) {
	var out []Delivery
	err := s.view(func(tx *bolt.Tx) error {
		prefix := deliveryPrefix(id)
		c := tx.Bucket(bucketDeliveries).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Delivery
			if err := decodeStored("delivery of", id, v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return out, nil
}

// DeliveryFilter selects ledger records by whether they were delivered (LedgerQuery.Delivered).
type DeliveryFilter uint8

const (
	AnyDelivery     DeliveryFilter = iota // no filter
	DeliveredOnly                         // credentials an agent reported handing to a workload
	UndeliveredOnly                       // credentials never reported delivered
)

// keeps reports whether the record id passes the filter.
func (f DeliveryFilter) keeps(tx *bolt.Tx, id string) bool {
	if f == AnyDelivery {
		return true
	}
	return delivered(tx, id) == (f == DeliveredOnly)
}

// delivered reports whether any delivery of the credential id is recorded.
func delivered(tx *bolt.Tx, id string) bool {
	prefix := deliveryPrefix(id)
	k, _ := tx.Bucket(bucketDeliveries).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// DeliveryStats is what the ledger knows of an entry's credentials reaching workloads.
type DeliveryStats struct {
	// Count is the number of deliveries reported (every hand-over of an SVID to a workload).
	Count uint64
	// LastDeliveredAt is the latest delivery; zero if none was ever reported.
	LastDeliveredAt time.Time
}

// EntryDeliveries returns the delivery statistics of an entry (zero if never delivered).
func (s *Store) EntryDeliveries(entryID string) (DeliveryStats, error) {
	var st DeliveryStats
	err := s.view(func(tx *bolt.Tx) error {
		st = deliveryStatsOf(tx.Bucket(bucketDeliveryStats).Get([]byte(entryID)))
		return nil
	})
	if err != nil {
		return DeliveryStats{}, fmt.Errorf("storage: deliveries of entry %q: %w", entryID, err)
	}
	return st, nil
}

// deleteDeliveries removes the deliveries of a pruned ledger record (the per-entry totals stay).
func deleteDeliveries(tx *bolt.Tx, id string) {
	prefix := deliveryPrefix(id)
	c := tx.Bucket(bucketDeliveries).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			panic(fmt.Sprintf("storage: delete delivery of %q: %v", id, err))
		}
	}
}

func deliveryStatsOf(v []byte) DeliveryStats {
	count, last := decodeDeliveryStats(v)
	st := DeliveryStats{Count: count}
	if last != 0 {
		st.LastDeliveredAt = time.Unix(0, last).UTC()
	}
	return st
}
