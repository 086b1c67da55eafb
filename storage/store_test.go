package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/selector"
	bolt "go.etcd.io/bbolt"
)

// The helpers the package's tests share, and the tests of the registry (writes, conflicts, the by-parent
// index, change notification) and of the store's life: reopening, snapshots and restores, the data dir,
// and the state after a reboot or a crash. ledger_test.go holds the issuance ledger's tests.

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func openTestStore(t testing.TB, dir string) *Store {
	return openTestStoreClock(t, dir, nil)
}

func openTestStoreClock(t testing.TB, dir string, clock func() time.Time) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Bootstrap: true, Logger: testLogger(t), Clock: clock,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		s.Close()
		t.Fatalf("WaitLeader: %v", err)
	}
	// The node records its command version in the background once it leads: wait for that write, so
	// that tests handing entries to the FSM themselves know the applied index.
	waitFor(t, "the node's command version in the state", func() bool { return recordedVersion(t, s, s.NodeID()) == CommandVersion })
	return s
}

func mustSel(t testing.TB, s string) selector.Selector {
	sel, err := selector.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func testEntry(t testing.TB, id, spiffeID, owner string) Entry {
	return Entry{ID: id, SPIFFEID: spiffeID, ParentID: "spiffe://example.org/agent", Owner: owner,
		Purpose: "test", Selectors: []selector.Selector{mustSel(t, "unix:uid:1000")},
		X509TTL: time.Hour, JWTTTL: time.Hour, CreatedAt: time.Now().UTC()}
}

// openStoreWithEntry opens a store holding owner alice and her entry e1 (testEntry), closed when the
// test ends.
func openStoreWithEntry(t *testing.T) (*Store, Entry) {
	t.Helper()
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateOwner(context.Background(), Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	e, err := s.CreateEntry(context.Background(), testEntry(t, "e1", "spiffe://example.org/a", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

func TestRegistryWritesAndConflicts(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	defer s.Close()

	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/a", "alice")); !errors.Is(err, ErrOwnerNotFound) {
		t.Fatalf("entry with unknown owner: got %v, want ErrOwnerNotFound", err)
	}
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); !errors.Is(err, ErrOwnerExists) {
		t.Fatalf("duplicate owner: got %v", err)
	}
	if o, err := s.EnsureOwner(ctx, Owner{Name: "alice", DisplayName: "other"}); err != nil || o.DisplayName != "" {
		t.Fatalf("EnsureOwner on existing: %+v %v", o, err)
	}
	rev0 := s.Revision()
	e, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/a", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision <= rev0 || s.Revision() != e.Revision {
		t.Fatalf("revision not bumped: entry %d, before %d, now %d", e.Revision, rev0, s.Revision())
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e2", "spiffe://example.org/a", "alice")); !errors.Is(err, ErrEntryExists) {
		t.Fatalf("duplicate entry: got %v", err)
	}
	if got := s.EntriesByParent("spiffe://example.org/agent"); len(got) != 1 || got[0].ID != "e1" {
		t.Fatalf("EntriesByParent = %+v", got)
	}
	changes, rev, ok := s.ChangedEntries(rev0)
	if !ok || rev != e.Revision || len(changes) != 1 || changes[0].ID != "e1" || changes[0].Parents[0] != e.ParentID {
		t.Fatalf("ChangedEntries(%d) = %v %d %v", rev0, changes, rev, ok)
	}
	if _, err := s.DeleteEntry(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteEntry(ctx, "e1"); !errors.Is(err, ErrEntryNotFound) {
		t.Fatalf("delete missing: got %v", err)
	}
	// After delete the identity is free again.
	if _, err := s.CreateEntry(ctx, testEntry(t, "e3", "spiffe://example.org/a", "alice")); err != nil {
		t.Fatalf("recreate after delete: %v", err)
	}
}

func TestChangedWakesOnWriteAndBundle(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	ch := s.Changed()
	if _, err := s.CreateOwner(ctx, Owner{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by an owner write")
	}
	ch = s.Changed()
	if err := s.PutAuthority(ctx, Authority{Kind: AuthorityJWT, ID: "k1", DER: []byte("x"), AddedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by a bundle change")
	}
}

func issuance(i int, owner, entry string, at time.Time) Issuance {
	return Issuance{ID: fmt.Sprintf("%032x", i), Kind: KindX509SVID, SPIFFEID: "spiffe://example.org/" + entry,
		EntryID: entry, Owner: owner, Selectors: []string{"unix:uid:1000"}, PublicKeySHA256: "ab",
		IssuedAt: at, ExpiresAt: at.Add(time.Hour), Node: "n1", Agent: "spiffe://example.org/agent"}
}

// stepClock returns base, base+1s, base+2s, … on successive calls.
func stepClock(base time.Time) func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return base.Add(time.Duration(n-1) * time.Second)
	}
}

func TestReopenKeepsState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/a", "alice")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLedger(ctx, []Issuance{issuance(1, "alice", "e1", time.Now())}); err != nil {
		t.Fatal(err)
	}
	id := s.NodeID()
	rev := s.Revision()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	defer s.Close()
	if s.NodeID() != id {
		t.Fatalf("node ID changed across restart: %s -> %s", id, s.NodeID())
	}
	if _, err := s.Entry("e1"); err != nil {
		t.Fatalf("entry lost across restart: %v", err)
	}
	if s.Revision() != rev {
		t.Fatalf("revision %d after restart, want %d", s.Revision(), rev)
	}
	if _, err := s.LookupIssuance(fmt.Sprintf("%032x", 1)); err != nil {
		t.Fatalf("ledger record lost across restart: %v", err)
	}
	// Replayed log entries must not be applied twice.
	if _, err := s.CreateEntry(ctx, testEntry(t, "e2", "spiffe://example.org/b", "alice")); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRestoresLostState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/a", "alice")); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// Written after the snapshot: must come back from the Raft log.
	if _, err := s.CreateEntry(ctx, testEntry(t, "e2", "spiffe://example.org/b", "alice")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	defer s.Close()
	for _, id := range []string{"e1", "e2"} {
		if _, err := s.Entry(id); err != nil {
			t.Fatalf("entry %s not recovered: %v", id, err)
		}
	}
}

func TestOpenRefusesBadDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Config{Dir: filepath.Join(file, "sub"), Logger: testLogger(t)})
	if err == nil {
		t.Fatal("Open under a regular file succeeded")
	}
	if want := filepath.Join(file, "sub"); !containsAll(err.Error(), want, "data dir") {
		t.Fatalf("error %q does not name the data dir", err)
	}
	_, err = Open(Config{Dir: file, Logger: testLogger(t)})
	if err == nil || !containsAll(err.Error(), "not a directory") {
		t.Fatalf("Open on a file: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestStateRebuiltAfterReboot simulates a machine that went down while the state file was open: the
// guard names another boot, so the (possibly torn) file is set aside and rebuilt from the Raft log; the
// copy set aside is removed once the rebuild is done, and so is one an earlier start left behind.
func TestStateRebuiltAfterReboot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateEntry(ctx, testEntry(t, "e1", "spiffe://example.org/a", "alice")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Corrupt the state file and claim it was left open during another boot.
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("torn garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeGuard(filepath.Join(dir, guardFile), stateGuard{BootID: "another-boot"}); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	if _, err := s.Entry("e1"); err != nil {
		t.Fatalf("entry not rebuilt from the Raft log: %v", err)
	}
	untrusted := filepath.Join(dir, stateFile+".untrusted")
	if _, err := os.Stat(untrusted); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("untrusted state still there after the rebuild: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A copy left by a start that failed before its rebuild finished goes at the next one.
	if err := os.WriteFile(untrusted, []byte("left behind"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	if _, err := os.Stat(untrusted); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("untrusted copy left by an earlier start not removed: %v", err)
	}
}

// TestStateTrustedAfterCrashOnSameBoot: an unclean stop on the same boot (kill -9) keeps the file.
func TestStateTrustedAfterCrashOnSameBoot(t *testing.T) {
	dir := t.TempDir()
	statePath := filepath.Join(dir, stateFile)
	if err := os.WriteFile(statePath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeGuard(filepath.Join(dir, guardFile), stateGuard{BootID: currentBootID()}); err != nil {
		t.Fatal(err)
	}
	trusted, err := checkStateGuard(dir, statePath)
	if err != nil || trusted != (currentBootID() != "") {
		t.Fatalf("same-boot unclean stop: trusted=%v err=%v", trusted, err)
	}
}

func TestRestoreFailureKeepsAUsableState(t *testing.T) {
	ctx := context.Background()
	// badRegistry is a bbolt file whose owners bucket holds a value that is not an owner.
	badRegistry := func(t *testing.T) []byte {
		path := filepath.Join(t.TempDir(), "bad.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketOwners)
			if err != nil {
				return err
			}
			return b.Put([]byte("mallory"), []byte("not json"))
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name     string
		snapshot func(t *testing.T, s *Store) []byte
		wantErr  string
		// entries present after the restore (e1 was written before the snapshot, e2 after it).
		want []string
	}{
		{"not a bolt file", func(*testing.T, *Store) []byte { return []byte("this is not a bbolt database") }, "not a usable state", []string{"e1", "e2"}},
		{"empty", func(*testing.T, *Store) []byte { return nil }, "not a usable state", []string{"e1", "e2"}},
		{"registry does not decode", func(t *testing.T, _ *Store) []byte { return badRegistry(t) }, `owner "mallory"`, []string{"e1", "e2"}},
		{"written by a newer signet", func(t *testing.T, s *Store) []byte {
			path := filepath.Join(t.TempDir(), "newer.db")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.view(func(tx *bolt.Tx) error { _, err := tx.WriteTo(f); return err }); err != nil {
				t.Fatal(err)
			}
			f.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				return putUint64(tx.Bucket(bucketMeta), keySchemaVersion, uint64(CommandVersion)+1)
			}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, "this signet understands up to", []string{"e1", "e2"}},
		{"valid snapshot", func(t *testing.T, s *Store) []byte {
			var buf strings.Builder
			if err := s.view(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&buf); return err }); err != nil {
				t.Fatal(err)
			}
			return []byte(buf.String())
		}, "", []string{"e1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStoreWithEntry(t)
			snap := tc.snapshot(t, s)
			if _, err := s.CreateEntry(ctx, testEntry(t, "e2", "spiffe://example.org/b", "alice")); err != nil {
				t.Fatal(err)
			}
			err := (&fsm{s: s}).Restore(io.NopCloser(strings.NewReader(string(snap))))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Restore: %v, want an error containing %q", err, tc.wantErr)
			}
			if _, err := os.Stat(filepath.Join(s.cfg.Dir, stateFile+".restore")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("restore left its temporary file: %v", err)
			}
			for _, id := range []string{"e1", "e2"} {
				_, err := s.Entry(id)
				if present := slices.Contains(tc.want, id); present != (err == nil) {
					t.Fatalf("entry %s after restore: %v, want present %v", id, err, present)
				}
			}
			// The registry and the database agree, and both take writes.
			if _, err := s.CreateEntry(ctx, testEntry(t, "e3", "spiffe://example.org/c", "alice")); err != nil {
				t.Fatalf("write after restore: %v", err)
			}
			if err := s.AppendLedger(ctx, []Issuance{issuance(1, "alice", "e3", time.Time{})}); err != nil {
				t.Fatalf("ledger write after restore: %v", err)
			}
			if _, err := s.LookupIssuance(fmt.Sprintf("%032x", 1)); err != nil {
				t.Fatalf("ledger read after restore: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close after restore: %v", err)
			}
		})
	}
}

func TestByParentIndexFollowsMoves(t *testing.T) {
	ctx := context.Background()
	s, e := openStoreWithEntry(t)
	parents := func() []string {
		s.reg.mu.RLock()
		defer s.reg.mu.RUnlock()
		return slices.Sorted(maps.Keys(s.reg.byParent))
	}
	from, to := e.ParentID, "spiffe://example.org/other-agent"
	moved := e
	moved.ParentID = to
	if _, err := s.UpdateEntry(ctx, moved, e.Revision, "move"); err != nil {
		t.Fatal(err)
	}
	if got := parents(); !slices.Equal(got, []string{to}) {
		t.Fatalf("parents indexed after a move: %q, want only %q", got, to)
	}
	if len(s.EntriesByParent(from)) != 0 || len(s.EntriesByParent(to)) != 1 {
		t.Fatalf("entries by parent after a move: %v / %v", s.EntriesByParent(from), s.EntriesByParent(to))
	}
	if _, err := s.DeleteEntry(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if got := parents(); len(got) != 0 {
		t.Fatalf("parents indexed after the delete: %q", got)
	}
}

// TestRestoreDoesNotWaitForSnapshotReaders: a follower installing the leader's snapshot must not wait
// for a Raft snapshot of its own that is still being persisted from the old state (that snapshot's
// goroutine needs Raft's main loop, which waits for the restore: a deadlock that stalled a restarted
// node until it was killed). Here a read transaction of the old state stays open, as a snapshot's does,
// while the state is restored.
func TestRestoreDoesNotWaitForSnapshotReaders(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateOwner(context.Background(), Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := s.stateDB().View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&snap); return err }); err != nil {
		t.Fatal(err)
	}
	reader, err := s.stateDB().Begin(false) // a snapshot of the old state, still being persisted
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.restoreState(bytes.NewReader(snap.Bytes())) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
	case <-time.After(20 * time.Second):
		reader.Rollback()
		t.Fatal("the restore waited for a reader of the replaced state")
	}
	if _, err := s.Owner("alice"); err != nil {
		t.Fatalf("the restored state: %v", err)
	}
	if err := reader.Rollback(); err != nil { // the old state's reader still works, then lets it close
		t.Fatal(err)
	}
}
