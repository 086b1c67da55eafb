package ratelimit

import (
	"testing"
	"time"
)

// A bucket allows its burst, then refuses saying how long to wait, with the first refusal of an
// episode marked; tokens come back with time; keys have their own buckets.
func TestBucketsTake(t *testing.T) {
	b := NewBuckets[string](2, 3, 0) // 2 tokens a second, 3 at most
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if r := b.Take("a", 1, now); !r.OK {
			t.Fatalf("take %d within the burst: %+v", i, r)
		}
	}
	r := b.Take("a", 1, now)
	if r.OK || !r.FirstRefusal || r.Wait != time.Second {
		t.Fatalf("take past the burst: %+v, want refused, first of its episode, wait 1s", r)
	}
	if r := b.Take("a", 1, now); r.OK || r.FirstRefusal {
		t.Fatalf("second refusal: %+v, want refused and not the first", r)
	}
	if r := b.Take("b", 3, now); !r.OK {
		t.Fatalf("another key: %+v", r)
	}
	if r := b.Take("a", 2, now.Add(time.Second)); !r.OK {
		t.Fatalf("after a second's refill of 2 tokens: %+v", r)
	}
	if r := b.Take("a", 1, now.Add(time.Second)); r.OK || !r.FirstRefusal {
		t.Fatalf("refusal after a success: %+v, want the first of a new episode", r)
	}
	if r := b.Take("a", 4, now.Add(time.Hour)); r.OK || r.Wait != time.Second {
		t.Fatalf("more than the burst: %+v, want refused (waits are rounded up to seconds)", r)
	}
}

// Buckets idle for a refill period are swept; with MaxKeys, reaching it sweeps at once and, if every
// bucket is in use, starts over, so memory never follows the number of keys seen.
func TestBucketsMemoryIsBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBuckets[int](1, 5, 0)
	for k := range 1000 {
		b.Take(k, 1, now)
	}
	if n := b.Len(); n != 1000 {
		t.Fatalf("%d buckets for 1000 active keys", n)
	}
	b.Take(-1, 1, now.Add(b.RefillTime()))
	if n := b.Len(); n != 1 {
		t.Fatalf("%d buckets after the others went idle for %s, want 1", n, b.RefillTime())
	}

	capped := NewBuckets[int](1, 5, 100)
	for k := range 1000 {
		capped.Take(k, 1, now)
		if n := capped.Len(); n > 100 {
			t.Fatalf("%d buckets with MaxKeys 100", n)
		}
	}
}
