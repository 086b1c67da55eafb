package unix

import (
	"errors"
	"testing"
	"time"
)

func TestDigestCacheGenerations(t *testing.T) {
	c := newDigestCache(2)
	k := func(i uint64) fileKey { return fileKey{ino: i} }
	c.put(k(1), "one")
	c.put(k(2), "two")
	c.put(k(3), "three") // current generation full: {1, 2} becomes the old one
	if d, ok := c.get(k(1)); !ok || d != "one" {
		t.Fatalf("get(1) = %q, %v after one rotation, want one, true", d, ok)
	}
	// The hit moved 1 into the current generation ({3, 1}); 2 is only in the old one.
	c.put(k(4), "four") // rotates again: {3, 1} old, {4} current; 2 is dropped
	if _, ok := c.get(k(2)); ok {
		t.Error("get(2) hit after two rotations without use")
	}
	for i, want := range map[uint64]string{1: "one", 3: "three", 4: "four"} {
		if d, ok := c.get(k(i)); !ok || d != want {
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
