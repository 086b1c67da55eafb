package unix

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestAttestDigestOnlyWhenWanted: while Config.DigestWanted says no entry uses a sha256 selector,
// the executable is not hashed and there is no sha256 selector; once it says yes, there is.
func TestAttestDigestOnlyWhenWanted(t *testing.T) {
	p := newFakeProc(t, "program")
	var wanted atomic.Bool
	a := newAttestor(t, Config{ProcRoot: p.root, DigestWanted: wanted.Load})
	var hashes atomic.Int32
	a.onHash = func() { hashes.Add(1) }
	sels, err := attestNow(t, a, context.Background(), p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := values(t, sels)["sha256"]; ok || hashes.Load() != 0 {
		t.Fatalf("sha256 %q, %d hashes while no digest is wanted; want neither", d, hashes.Load())
	}
	wanted.Store(true)
	sels, err = attestNow(t, a, context.Background(), p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if d := values(t, sels)["sha256"]; d != sha256Hex("program") || hashes.Load() != 1 {
		t.Fatalf("sha256 %q after %d hashes once a digest is wanted; want the program's, 1 hash", d, hashes.Load())
	}
}

// TestAttestHashesPerUIDBounded: with one hash per uid at a time, a second new executable of the same
// uid waits for the first (and gives up when its context ends), while another uid's is hashed at once.
func TestAttestHashesPerUIDBounded(t *testing.T) {
	root := t.TempDir()
	first := addFakeProc(t, root, 100, 1000, "first program")
	second := addFakeProc(t, root, 101, 1000, "second program")
	other := addFakeProc(t, root, 200, 2000, "other uid's program")
	a := newAttestor(t, Config{ProcRoot: root, MaxHashesPerUID: 1})
	var running atomic.Int32
	release := make(chan struct{})
	a.onHash = func() {
		running.Add(1)
		<-release
	}

	var wg sync.WaitGroup
	attest := func(p *fakeProc) {
		wg.Go(func() {
			if _, err := attestNow(t, a, context.Background(), p.pid); err != nil {
				t.Errorf("pid %d: %v", p.pid, err)
			}
		})
	}
	attest(first)
	waitFor(t, func() bool { return running.Load() == 1 }, "the first hash to start")

	// The second attestation of uid 1000 waits for a slot; a cancelled one gives up.
	ctx, cancel := context.WithCancel(context.Background())
	canceled := make(chan error, 1)
	go func() {
		_, err := attestNow(t, a, ctx, second.pid)
		canceled <- err
	}()
	waitFor(t, func() bool { return a.hashSlots.waiters(1000) == 1 }, "a second uid 1000 hash to wait")
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting attestation after its context ended: %v, want context.Canceled", err)
	}
	attest(second)
	waitFor(t, func() bool { return a.hashSlots.waiters(1000) == 1 }, "a second uid 1000 hash to wait")

	// Another uid is not held up by uid 1000.
	attest(other)
	waitFor(t, func() bool { return running.Load() == 2 }, "uid 2000's hash to start")
	if n := a.hashSlots.waiters(1000); n != 1 {
		t.Fatalf("%d uid 1000 attestations wait, want 1", n)
	}
	close(release)
	wg.Wait()
	if n := running.Load(); n != 3 {
		t.Fatalf("%d hashes, want 3", n)
	}
	if n := len(a.hashSlots.byUID); n != 0 {
		t.Fatalf("%d uids still hold hash slots after every attestation ended", n)
	}
}
