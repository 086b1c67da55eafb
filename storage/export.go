package storage

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
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

// Export is one consistent read of the whole state, spooled to an unlinked temporary file in the data
// dir (so nothing is left behind by a crash) until Close.
type Export struct {
	f    *os.File
	Info ExportInfo
}

// Export copies the state as of one read transaction into a temporary file, digesting it on the way,
// so the digest can be sent ahead of the body. One pass is needed: bbolt copies the whole file, free
// pages included, and a write after the read began may reuse a free page, so two passes over the same
// read can differ. The caller must Close it.
func (s *Store) Export() (*Export, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	f, err := os.CreateTemp(s.cfg.Dir, "export-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("storage: export the state: %w", err)
	}
	// Unlinked at once: the open file is all there is of it.
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("storage: export the state: %w", err)
	}
	e := &Export{f: f}
	if err := s.exportTo(e); err != nil {
		_ = f.Close()
		return nil, err
	}
	return e, nil
}

func (s *Store) exportTo(e *Export) error {
	tx, err := s.stateDB().Begin(false)
	if err != nil {
		return fmt.Errorf("storage: export the state: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	meta := tx.Bucket(bucketMeta)
	e.Info.SchemaVersion, e.Info.AppliedIndex = getUint64(meta, keySchemaVersion), getUint64(meta, keyAppliedIndex)
	h := sha256.New()
	n, err := tx.WriteTo(io.MultiWriter(e.f, h))
	if isNoSpace(err) {
		return fmt.Errorf("storage: export the state: a copy of state.db is spooled in the data dir first: %w", s.diskFullError(err))
	}
	if err != nil {
		return fmt.Errorf("storage: export the state: %w", err)
	}
	e.Info.Size = n
	h.Sum(e.Info.SHA256[:0])
	return nil
}

// WriteTo writes the body to w: the bytes Info describes.
func (e *Export) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, io.NewSectionReader(e.f, 0, e.Info.Size))
	if err != nil {
		return n, fmt.Errorf("storage: export the state: %w", err)
	}
	return n, nil
}

// Close ends the read.
func (e *Export) Close() error { return e.f.Close() }
