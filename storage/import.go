package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Importing an export (`signet snapshot restore`): the body is checked against what its header says,
// prepared for this cluster, and handed to Raft's user-snapshot path (Raft.Restore), which installs it
// on the leader and, through a hole it leaves in the log, on every other server.

// keyRestoreID names the restore a state comes from (meta "restore_id"): the hex SHA-256 of the body
// it was restored from, empty for a state never restored. A node's automatic audit checkpoint of an
// earlier chain is superseded when it changes.
var keyRestoreID = []byte("restore_id")

// ImportForwarder streams a restore made on a follower to the leader, which imports it (ApplyImport).
// An error is a transport failure; the outcome holds the index of the installed snapshot or the
// leader's error. The store's Forwarder implements it too in a cluster (package cluster's does).
type ImportForwarder interface {
	ForwardImport(ctx context.Context, r io.Reader, want ExportInfo) (Outcome, error)
}

// Import replaces the whole replicated state with the export read from r (see ApplyImport), on the
// leader: here if this node leads, else streamed to it through the forwarder. While the cluster has no
// leader it waits, until ctx ends; a restore whose stream broke after it started fails (r cannot be
// read again). On a follower it returns once this node has installed the snapshot too.
func (s *Store) Import(ctx context.Context, r io.Reader, want ExportInfo) (uint64, error) {
	f, _ := s.forwarder().(ImportForwarder)
	if f == nil {
		return s.ApplyImport(ctx, r, want)
	}
	cr := &countingReader{r: r}
	for {
		if s.raft.State() == raft.Leader && cr.n == 0 {
			return s.ApplyImport(ctx, r, want)
		}
		out := NoLeaderOutcome()
		if _, leader := s.Leader(); leader != "" && s.raft.State() != raft.Leader {
			var err error
			if out, err = f.ForwardImport(ctx, cr, want); err != nil {
				return 0, fmt.Errorf("storage: restore through the leader: %w", err)
			}
			if out.Code == codeOK {
				return out.Index, s.waitInstalled(ctx, out.Index)
			}
		}
		if out.Code != codeNotAppended || cr.n > 0 {
			return 0, out.err()
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("storage: restore: %w: %s (waited for a leader until the request's deadline: %w)", ErrNotLeader, out.Message, ctx.Err())
		case <-s.closing:
			return 0, ErrClosed
		case <-time.After(forwardRetry):
		}
	}
}

// waitInstalled waits until this node has installed the snapshot the leader restored at index (raft's
// applied index moves past a snapshot once the FSM has restored it).
func (s *Store) waitInstalled(ctx context.Context, index uint64) error {
	err := s.waitIndex(ctx, index, s.raft.AppliedIndex)
	if err == nil || err == ErrClosed {
		return err
	}
	return fmt.Errorf("storage: restore: committed at index %d, but this server has not installed it yet (applied %d): %w", index, s.raft.AppliedIndex(), err)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ApplyImport replaces the whole replicated state with the export read from r, which must match want's
// size, digest and a schema version this build understands; otherwise nothing changes. Only the leader
// imports (ErrNotLeader, unappended, on another node). The Raft configuration and what describes this
// cluster's servers stay this cluster's: the command versions its servers recorded, and its CA
// authorities (added to the restored ones). It returns the Raft index of the installed snapshot.
func (s *Store) ApplyImport(ctx context.Context, r io.Reader, want ExportInfo) (uint64, error) {
	if !s.IsLeader() {
		id, _ := s.Leader()
		return 0, fmt.Errorf("storage: restore: %w: the leader is %q", errNotAppended, id)
	}
	if want.SchemaVersion > uint64(CommandVersion) {
		return 0, fmt.Errorf("storage: restore: %w: the snapshot has applied command version %d, this signet understands up to %d: restore it with the newer signet; nothing changed", ErrStateTooNew, want.SchemaVersion, CommandVersion)
	}
	tmp := filepath.Join(s.cfg.Dir, stateFile+".import")
	defer os.Remove(tmp)
	h := sha256.New()
	if err := writeFromReader(tmp, io.TeeReader(io.LimitReader(r, want.Size+1), h)); err != nil {
		return 0, fmt.Errorf("storage: restore: write %s: %w", tmp, err)
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return 0, fmt.Errorf("storage: restore: %w", err)
	}
	if fi.Size() != want.Size {
		return 0, fmt.Errorf("storage: restore: %w: the body is %d bytes, the header says %d; nothing changed", ErrInvalid, fi.Size(), want.Size)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want.SHA256[:]) {
		return 0, fmt.Errorf("storage: restore: %w: digest mismatch: the body's SHA-256 is %x, the header says %x (the file is damaged); nothing changed", ErrInvalid, got, want.SHA256)
	}
	applied, err := s.prepareImport(tmp, want.SHA256)
	if err != nil {
		return 0, fmt.Errorf("storage: restore: the snapshot is not a usable state: %w; nothing changed", err)
	}
	if fi, err = os.Stat(tmp); err != nil {
		return 0, fmt.Errorf("storage: restore: %w", err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		return 0, fmt.Errorf("storage: restore: %w", err)
	}
	defer f.Close()
	// The snapshot's index is at least the state's applied index, so the state's stored index is below
	// every entry appended after it: none is skipped as already applied.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: applied, Size: fi.Size()}
	if err := s.raft.Restore(meta, f, timeoutFrom(ctx)); err != nil {
		return 0, fmt.Errorf("storage: restore: %w", mapRaftError(err))
	}
	return s.raft.AppliedIndex(), nil
}

// prepareImport checks the state database at path (its schema version and registry) and makes it this
// cluster's: this state's recorded command versions replace the snapshot's, this state's authorities
// are added to the snapshot's, and its restore ID is set. It returns the state's applied index.
func (s *Store) prepareImport(path string, digest [sha256.Size]byte) (uint64, error) {
	versions := map[string][]byte{}
	auths := map[string][]byte{}
	if err := s.view(func(tx *bolt.Tx) error {
		for dst, b := range map[*map[string][]byte][]byte{&versions: bucketNodeVersions, &auths: bucketAuthorities} {
			if err := tx.Bucket(b).ForEach(func(k, v []byte) error { (*dst)[string(k)] = bytes.Clone(v); return nil }); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, err
	}
	db, err := openStateDB(path, MinStateMmapSize)
	if err != nil {
		return 0, err
	}
	var applied uint64
	err = db.Update(func(tx *bolt.Tx) error {
		if err := checkSchemaVersion(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		applied = getUint64(meta, keyAppliedIndex)
		if err := tx.DeleteBucket(bucketNodeVersions); err != nil {
			return err
		}
		nv, err := tx.CreateBucket(bucketNodeVersions)
		if err != nil {
			return err
		}
		for k, v := range versions {
			mustPut(nv, []byte(k), v)
		}
		ab := tx.Bucket(bucketAuthorities)
		added := false
		for k, v := range auths {
			if ab.Get([]byte(k)) == nil {
				mustPut(ab, []byte(k), v)
				added = true
			}
		}
		if added {
			if err := putUint64(meta, keyBundleSeq, getUint64(meta, keyBundleSeq)+1); err != nil {
				return err
			}
		}
		return meta.Put(keyRestoreID, fmt.Appendf(nil, "%x", digest))
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if _, err := readStateFile(path); err != nil {
		return 0, err
	}
	return applied, nil
}

// RestoreID names the restore the state comes from (see keyRestoreID): empty if it was never restored.
func (s *Store) RestoreID() (string, error) {
	var id string
	err := s.view(func(tx *bolt.Tx) error { id = string(tx.Bucket(bucketMeta).Get(keyRestoreID)); return nil })
	return id, err
}
