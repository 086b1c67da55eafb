package unix

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/waitfor"
)

func TestDigestCacheGenerations(t *testing.T) {
	c := newDigestCache(2)
	k := func(i uint64) fileKey { return fileKey{ino: i} }
	ctx := context.Background()
	// put caches a digest (the result of a hash); get looks one up without hashing.
	put := func(k fileKey, d string) {
		if _, err := c.digest(ctx, k, func() (string, error) { return d, nil }); err != nil {
			t.Fatal(err)
		}
	}
	errMiss := errors.New("cache miss")
	get := func(k fileKey) (string, bool) {
		d, err := c.digest(ctx, k, func() (string, error) { return "", errMiss })
		if err != nil && !errors.Is(err, errMiss) {
			t.Fatal(err)
		}
		return d, err == nil
	}
	put(k(1), "one")
	put(k(2), "two")
	put(k(3), "three") // current generation full: {1, 2} becomes the old one
	if d, ok := get(k(1)); !ok || d != "one" {
		t.Fatalf("get(1) = %q, %v after one rotation, want one, true", d, ok)
	}
	// The hit moved 1 into the current generation ({3, 1}); 2 is only in the old one.
	put(k(4), "four") // rotates again: {3, 1} old, {4} current; 2 is dropped
	if _, ok := get(k(2)); ok {
		t.Error("get(2) hit after two rotations without use")
	}
	for i, want := range map[uint64]string{1: "one", 3: "three", 4: "four"} {
		if d, ok := get(k(i)); !ok || d != want {
			t.Errorf("get(%d) = %q, %v, want %q, true", i, d, ok, want)
		}
	}
	if n := len(c.cur) + len(c.old); n > 2*c.max {
		t.Errorf("cache holds %d entries, bound is %d", n, 2*c.max)
	}
}

func TestNameCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newNameCache(2, time.Minute, func() time.Time { return now })
	lookups := 0
	c.lookup = func(k nameKey) (string, error) {
		lookups++
		switch k.id {
		case 0:
			return "root", nil
		case 7:
			return "", errors.New("name service down")
		}
		return "", nil
	}

	if name, cached, err := c.name(nameKey{id: 0}); name != "root" || cached || err != nil {
		t.Fatalf("first look-up = %q, %v, %v", name, cached, err)
	}
	if name, cached, _ := c.name(nameKey{id: 0}); name != "root" || !cached || lookups != 1 {
		t.Fatalf("second look-up = %q, cached %v, after %d look-ups; want a cache hit", name, cached, lookups)
	}
	// A group with the same number is a different entry.
	if _, cached, _ := c.name(nameKey{group: true, id: 0}); cached {
		t.Error("group 0 answered from user 0's entry")
	}
	// Failures are remembered too.
	if _, _, err := c.name(nameKey{id: 7}); err == nil {
		t.Error("failed look-up reported no error")
	}
	if name, cached, _ := c.name(nameKey{id: 7}); name != "" || !cached {
		t.Errorf("failed look-up not cached: %q, %v", name, cached)
	}
	if len(c.entries) > c.max {
		t.Errorf("cache holds %d entries, max %d", len(c.entries), c.max)
	}

	now = now.Add(time.Minute)
	before := lookups
	if _, cached, _ := c.name(nameKey{id: 0}); cached || lookups != before+1 {
		t.Error("entry used after its TTL")
	}
}

// TestDigestCacheOneHashAtATime checks how callers that miss the cache for a key being hashed share
// that hash: they get its digest; after a hash that failed on its caller's context they hash again
// themselves; they share other errors; and a waiter whose own context ends stops waiting.
func TestDigestCacheOneHashAtATime(t *testing.T) {
	errIO := errors.New("read error")
	tests := []struct {
		name       string
		first      func() (string, error) // the first caller's hash, once released
		waiterCtx  func() context.Context
		wantDigest string
		wantErr    error
		wantHashes int32 // hashes in all (the first caller's included)
	}{
		{name: "shared digest", first: func() (string, error) { return "digest", nil }, wantDigest: "digest", wantHashes: 1},
		{name: "hasher's context canceled", first: func() (string, error) { return "", context.Canceled }, wantDigest: "own", wantHashes: 2},
		{name: "hasher's deadline passed", first: func() (string, error) { return "", fmt.Errorf("reading: %w", context.DeadlineExceeded) }, wantDigest: "own", wantHashes: 2},
		{name: "shared error", first: func() (string, error) { return "", errIO }, wantErr: errIO, wantHashes: 1},
		{name: "hasher panics", first: func() (string, error) { panic("hash") }, wantErr: errHashPanicked, wantHashes: 1},
		{name: "waiter's context ends", first: func() (string, error) { return "digest", nil }, waiterCtx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, wantErr: context.Canceled, wantHashes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDigestCache(4)
			k := fileKey{ino: 1}
			var hashes atomic.Int32
			release := make(chan struct{})
			firstDone := make(chan struct{})
			go func() {
				defer close(firstDone)
				defer func() { recover() }() // "hasher panics": the panic reaches the first caller only
				c.digest(context.Background(), k, func() (string, error) {
					hashes.Add(1)
					<-release
					return tt.first()
				})
			}()
			waitFor(t, func() bool { return hashes.Load() == 1 }, "the first caller to start hashing")

			ctx := context.Background()
			if tt.waiterCtx != nil {
				ctx = tt.waiterCtx()
			}
			type result struct {
				d   string
				err error
			}
			got := make(chan result, 1)
			go func() {
				d, err := c.digest(ctx, k, func() (string, error) { hashes.Add(1); return "own", nil })
				got <- result{d, err}
			}()
			var r result
			if tt.waiterCtx != nil {
				r = <-got // it must return while the first caller is still hashing
				close(release)
			} else {
				waitFor(t, func() bool { return waiting(c) == 1 }, "the second caller to wait for the first one's hash")
				close(release)
				r = <-got
			}
			<-firstDone
			if r.d != tt.wantDigest || !errors.Is(r.err, tt.wantErr) || (tt.wantErr == nil) != (r.err == nil) {
				t.Errorf("second caller got %q, %v; want %q, %v", r.d, r.err, tt.wantDigest, tt.wantErr)
			}
			if n := hashes.Load(); n != tt.wantHashes {
				t.Errorf("%d hashes, want %d", n, tt.wantHashes)
			}
			if len(c.hashing) != 0 {
				t.Errorf("%d hashes still registered as in progress", len(c.hashing))
			}
		})
	}
}

// waiting returns how many callers have come to wait for a hash in progress in c.
func waiting(c *digestCache) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, h := range c.hashing {
		n += h.waiters
	}
	return n
}

// waitFor polls cond until it holds, failing the test (naming what) after ten seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	waitfor.Condition(t, 10*time.Second, what, cond)
}

// cached answers from the cache only: a miss while a hash of the key is in progress returns at once
// (the attestation then opens the executable and waits in digest), and a hit is there once hashed.
func TestDigestCacheCached(t *testing.T) {
	c := newDigestCache(2)
	k := fileKey{ino: 7}
	if d, ok := c.cached(k); ok {
		t.Fatalf("cached = %q on an empty cache", d)
	}
	release, hashing := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.digest(context.Background(), k, func() (string, error) { close(hashing); <-release; return "seven", nil })
		done <- err
	}()
	<-hashing
	if d, ok := c.cached(k); ok {
		t.Fatalf("cached = %q while the hash is in progress, want a miss", d)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d, ok := c.cached(k); !ok || d != "seven" {
		t.Fatalf("cached = %q, %v after the hash, want seven, true", d, ok)
	}
}
