package storage

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/signet-id/signet/internal/fsutil"
)

// A full disk. Raft appends to raft.db and the FSM commits to state.db, both in Dir. When an append
// fails for lack of space, Raft answers that write with the error and steps down, so every later write
// would be refused as "not the leader" while the node re-elects itself and fails again. The store
// remembers the failure and reports those writes as ErrDiskFull until a write succeeds again or Health
// finds room on the disk. A committed entry that state.db cannot take is retried (the node serves reads
// meanwhile) instead of stopping the node: it must not be skipped, and the disk may be freed.

// DefaultMinFreeBytes is Config.MinFreeBytes's default: bbolt grows its files by up to 16 MiB at a
// time, so with less free a write may fail any moment.
const DefaultMinFreeBytes = 16 << 20

// DefaultDiskFullRetry is Config.DiskFullRetry's default.
const DefaultDiskFullRetry = time.Second

// isNoSpace reports whether err is the file system's "no space left on device" (or a quota exceeded).
// Raft quotes its log store's error into its own ("unable to store logs within log store, err: %q"),
// which drops the chain, so the message is matched as well.
func isNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}

// diskFullError wraps cause as ErrDiskFull, naming the data dir and what to do.
func (s *Store) diskFullError(cause error) error {
	return fmt.Errorf("%w: %s: %v (free space on that file system; writes resume by themselves)", ErrDiskFull, s.cfg.Dir, cause)
}

// diskAlarm remembers the last write that failed for lack of space, until a write succeeds. Writers
// waiting for a commit watch it, so that they learn of a full disk instead of waiting for a commit
// that cannot happen before space is freed.
type diskAlarm struct {
	set   atomic.Bool // cause != nil; read without the lock on the write path
	mu    sync.Mutex
	cause error
	ch    chan struct{} // closed when cause is set
}

// noteDiskFull records a write that failed for lack of space.
func (s *Store) noteDiskFull(err error) {
	a := &s.disk
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cause == nil && a.ch != nil {
		close(a.ch)
		a.ch = nil
	}
	a.cause = err
	a.set.Store(true)
}

// diskFullCause returns the remembered out-of-space failure, or nil.
func (s *Store) diskFullCause() error {
	a := &s.disk
	if !a.set.Load() {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cause
}

// diskFullWatch returns a channel closed when a write fails for lack of space, or nil (never ready)
// while one is already remembered: a new write must still get its chance.
func (s *Store) diskFullWatch() <-chan struct{} {
	a := &s.disk
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cause != nil {
		return nil
	}
	if a.ch == nil {
		a.ch = make(chan struct{})
	}
	return a.ch
}

// wroteOK forgets a remembered out-of-space failure: a write went through.
func (s *Store) wroteOK() {
	a := &s.disk
	if !a.set.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cause = nil
	a.set.Store(false)
}

// raftError maps an error of a Raft future to the store's sentinels. A refusal as "not the leader" or a
// timeout right after this node failed to write for lack of space is reported as the full disk it is.
func (s *Store) raftError(err error) error {
	if isNoSpace(err) {
		s.noteDiskFull(err)
		return s.diskFullError(err)
	}
	if cause := s.diskFullCause(); cause != nil && (errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrAbortedByRestore)) {
		return s.diskFullError(fmt.Errorf("this node stepped down after a write failed: %w", cause))
	}
	return mapRaftError(err)
}

// waitError is what a write that stopped waiting (ctx ended) reports: the full disk if that is why.
func (s *Store) waitError(ctxErr error) error {
	cause := s.diskFullCause()
	switch {
	case cause != nil:
		return s.diskFullError(fmt.Errorf("the write was not confirmed, and may take effect once space is freed: %w", cause))
	case ctxErr == nil: // woken by the alarm, cleared since
		return s.diskFullError(errors.New("the write was not confirmed: a write failed for lack of space"))
	}
	return ctxErr
}

// Health reports whether this node can take writes as far as its disk goes: ErrDiskFull when a write
// failed for lack of space and the data dir's file system still has less than MinFreeBytes free, or
// when it has less than that now. ErrClosed after Close.
func (s *Store) Health() error {
	if s.closed.Load() {
		return ErrClosed
	}
	free, err := fsutil.FreeBytes(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("storage: health: %w", err)
	}
	if free >= s.cfg.MinFreeBytes {
		s.wroteOK()
		return nil
	}
	cause := s.diskFullCause()
	if cause == nil {
		cause = fmt.Errorf("only %d bytes free, less than the %d a write may need", free, s.cfg.MinFreeBytes)
	}
	return s.diskFullError(cause)
}

// sleepUnlessClosing waits d, or less if the store is closing; it reports whether the store is still open.
func (s *Store) sleepUnlessClosing(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	}
}

// refuseWhileStateFull returns ErrDiskFull while the state file has no room for committed entries:
// a write proposed now could not be applied until space is freed.
func (s *Store) refuseWhileStateFull() error {
	if !s.stateFull.Load() {
		return nil
	}
	cause := s.diskFullCause()
	if cause == nil {
		cause = errors.New("the state file has no room")
	}
	return s.diskFullError(fmt.Errorf("this node takes no writes until committed ones fit in its state file: %w", cause))
}

// checkFreeSpace refuses to open a store on a file system with less than min bytes free: a rebuild or a
// Raft election there fails half-way.
func checkFreeSpace(dir string, min uint64) error {
	free, err := fsutil.FreeBytes(dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if free < min {
		return fmt.Errorf("%w: %s: only %d bytes free, and a node needs %d to start (free space on that file system, then start again)", ErrDiskFull, dir, free, min)
	}
	return nil
}

// openError marks an Open failure caused by a full disk as ErrDiskFull.
func openError(dir string, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %s: %w (free space on that file system, then start again)", ErrDiskFull, dir, err)
	}
	return err
}
