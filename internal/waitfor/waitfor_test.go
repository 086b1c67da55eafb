package waitfor

import (
	"runtime"
	"testing"
	"time"
)

func TestConditionWaitsUntilItHolds(t *testing.T) {
	n := 0
	Condition(t, 10*time.Second, "three checks", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("condition checked %d times, want 3", n)
	}
}

// A condition that never holds fails the test once the timeout has passed: run in a goroutine with a
// recording TB, as Fatalf ends it.
func TestConditionFailsAfterTimeout(t *testing.T) {
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Condition(rec, 30*time.Millisecond, "never", func() bool { return false })
	}()
	<-done
	if !rec.failed {
		t.Fatal("a condition that never held did not fail the test")
	}
}

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit() // as testing.T.Fatalf does
}
