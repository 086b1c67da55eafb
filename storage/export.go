package storage

import (
	"crypto/sha256"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Exporting the state for `signet snapshot save`: the same consistent bbolt read transaction a Raft
// snapshot streams (fsm.Snapshot), described by what a restore needs to check before it changes
// anything. CA private keys are not in the state, so they are never in an export.

// ExportInfo describes an export's body.
type ExportInfo struct {
	// SchemaVersion is the newest command version the state has applied; AppliedIndex the Raft index
	// it is at.
	SchemaVersion, AppliedIndex uint64
	// Size is the body's length in bytes; SHA256 its digest.
	Size   int64
	SHA256 [sha256.Size]byte
}

// Export is one consistent read of the whole state, held open until Close.
type Export struct {
	tx   *bolt.Tx
	Info ExportInfo
}

// Export opens a read transaction on the state and digests its body (a first pass over it), so the
// digest can be sent ahead of the body. The caller must Close it: an open read holds the state file's
// pages.
func (s *Store) Export() (*Export, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	tx, err := s.stateDB().Begin(false)
	if err != nil {
		return nil, fmt.Errorf("storage: export the state: %w", err)
	}
	e := &Export{tx: tx}
	meta := tx.Bucket(bucketMeta)
	e.Info.SchemaVersion, e.Info.AppliedIndex = getUint64(meta, keySchemaVersion), getUint64(meta, keyAppliedIndex)
	h := sha256.New()
	n, err := tx.WriteTo(h)
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("storage: export the state: digest: %w", err)
	}
	e.Info.Size = n
	h.Sum(e.Info.SHA256[:0])
	return e, nil
}

// WriteTo writes the body to w: the bytes Info describes.
func (e *Export) WriteTo(w io.Writer) (int64, error) {
	n, err := e.tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("storage: export the state: %w", err)
	}
	return n, nil
}

// Close ends the read.
func (e *Export) Close() error { return e.tx.Rollback() }
