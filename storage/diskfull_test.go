package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/signet-id/signet/internal/testfs"
	"github.com/signet-id/signet/internal/waitfor"
)

// openFullStore opens a store in a fresh tmpfs, writes an owner and fills the disk. It returns the store
// and the filler file (remove it to free the space).
func openFullStore(t *testing.T) (*Store, string) {
	t.Helper()
	mnt := testfs.Mount(t, "32m")
	s, err := Open(Config{Dir: filepath.Join(mnt, "server"), Bootstrap: true, Logger: testLogger(t),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		MinFreeBytes: 1 << 20, DiskFullRetry: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	// No background write (the node's version record) may land once the disk is full.
	waitFor(t, "the node's command version in the state", func() bool { return recordedVersion(t, s, s.NodeID()) == CommandVersion })
	filler := filepath.Join(mnt, "filler")
	testfs.Fill(t, filler)
	return s, filler
}

// applyTooLarge hands the FSM, as Raft would, a committed entry the full state file has no room for.
func applyTooLarge(t *testing.T, s *Store) (applied uint64, resp chan []any) {
	t.Helper()
	cmd, err := encodeCommand(cmdOwnerCreate, ownerCreateCmd{Owner: Owner{Name: "big", DisplayName: strings.Repeat("x", 2<<20)}}.wire())
	if err != nil {
		t.Fatal(err)
	}
	if applied, err = readAppliedIndex(s.stateDB()); err != nil {
		t.Fatal(err)
	}
	resp = make(chan []any, 1)
	go func() {
		resp <- (&fsm{s: s}).ApplyBatch([]*raft.Log{{Index: applied + 100, Type: raft.LogCommand, Data: cmd}})
	}()
	waitfor.Condition(t, 10*time.Second, "the FSM to report the full state file", s.stateFull.Load)
	return applied, resp
}

// TestStateFullRetriesUntilSpaceIsFreed: a committed entry that state.db has no room for neither stops
// the node nor is skipped: while it waits, Health and writes report ErrDiskFull and reads go on; once
// space is freed it is applied, and the node is healthy again.
func TestStateFullRetriesUntilSpaceIsFreed(t *testing.T) {
	s, filler := openFullStore(t)
	_, resp := applyTooLarge(t, s)
	if err := s.Health(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), s.cfg.Dir) {
		t.Fatalf("health on a full disk: %v", err)
	}
	if _, err := s.CreateOwner(context.Background(), Owner{Name: "bob"}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write while the state file is full: %v", err)
	}
	if _, err := s.Owner("alice"); err != nil {
		t.Fatalf("read while the state file is full: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-resp:
		if o, ok := r[0].(Owner); !ok || o.Name != "big" {
			t.Fatalf("the entry applied after space was freed answered %v", r[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the entry was not applied after space was freed")
	}
	if _, err := s.Owner("big"); err != nil || s.stateFull.Load() {
		t.Fatalf("after space was freed: owner %v, state full %v", err, s.stateFull.Load())
	}
	if err := s.Health(); err != nil {
		t.Fatalf("health after space was freed: %v", err)
	}
}

// TestStateFullThenClose: a node closed while an entry waits for room leaves it unapplied (the state
// file's applied index does not move, and no later entry is applied), so the next start replays it.
func TestStateFullThenClose(t *testing.T) {
	s, filler := openFullStore(t)
	applied, resp := applyTooLarge(t, s)
	s.Close() // its error (no room to mark the state clean) is expected here
	r := <-resp
	if err, _ := r[0].(error); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("the entry pending at close answered %v", r[0])
	}
	// Nor is any later entry applied, even with room again: that would skip the first for good.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	later, _ := encodeCommand(cmdOwnerCreate, ownerCreateCmd{Owner: Owner{Name: "small"}}.wire())
	r = (&fsm{s: s}).ApplyBatch([]*raft.Log{{Index: applied + 101, Type: raft.LogCommand, Data: later}})
	if err, _ := r[0].(error); !errors.Is(err, ErrClosed) {
		t.Fatalf("an entry after the abandoned one answered %v", r[0])
	}
	db, err := openStateDB(filepath.Join(s.cfg.Dir, stateFile), MinStateMmapSize)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := readAppliedIndex(db); err != nil || got != applied {
		t.Fatalf("applied index after close: %d, %v; want %d", got, err, applied)
	}
}

// TestRaftLogFullReportsDiskFullAndRecovers: a write the Raft log has no room for fails as ErrDiskFull,
// naming the data dir, and so do the writes refused while the node steps down and re-elects itself;
// once space is freed, writes succeed again without a restart.
func TestRaftLogFullReportsDiskFullAndRecovers(t *testing.T) {
	s, filler := openFullStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.CreateOwner(ctx, Owner{Name: "big", DisplayName: strings.Repeat("x", 4<<20)})
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), s.cfg.Dir) || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("a write the raft log has no room for: %v", err)
	}
	for i := range 3 {
		if _, err := s.CreateOwner(ctx, Owner{Name: fmt.Sprintf("o%d", i), DisplayName: strings.Repeat("x", 1<<20)}); !errors.Is(err, ErrDiskFull) || errors.Is(err, ErrNotLeader) {
			t.Fatalf("write %d after the raft log filled up: %v", i, err)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Until the node has re-elected itself, writes are still refused as ErrDiskFull. Each attempt writes
	// an owner of its own: a refused write may yet be committed by the re-elected node.
	attempt := 0
	var written string
	waitfor.Condition(t, 20*time.Second, "a write to succeed after space was freed", func() bool {
		attempt++
		name := fmt.Sprintf("after%d", attempt)
		_, err := s.CreateOwner(ctx, Owner{Name: name})
		if err != nil && !errors.Is(err, ErrDiskFull) {
			t.Fatalf("write %s after space was freed: %v, want success or ErrDiskFull", name, err)
		}
		written = name
		return err == nil
	})
	if _, err := s.Owner(written); err != nil {
		t.Fatalf("the write that succeeded after space was freed: %v", err)
	}
	if err := s.Health(); err != nil {
		t.Fatalf("health after recovery: %v", err)
	}
}
