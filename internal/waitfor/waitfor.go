// Package waitfor is test support: wait on a condition with a deadline, never a bare sleep. It has no
// dependencies, so the tests of every package (storage's own included) can use it.
//
//	waitfor.Condition(t, 10*time.Second, "the leader to be elected", func() bool { return s.IsLeader() })
package waitfor

import (
	"testing"
	"time"
)

// Poll is how often Condition checks its condition.
const Poll = 10 * time.Millisecond

// Condition checks cond every Poll until it holds, failing tb (naming what and the timeout) once
// timeout has passed.
func Condition(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(Poll)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
