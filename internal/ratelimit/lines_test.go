package ratelimit

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of lines costs Burst lines per Every; the first line of the next interval says how many
// were held back.
func TestLinesBoundsAFlood(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := &Lines{Every: 10 * time.Second, Burst: 3}
	start := time.Unix(1_000_000, 0)
	for i := range 1000 {
		l.Warn(log, start.Add(time.Duration(i)*time.Millisecond), "refused", "i", i)
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("1000 lines within one interval logged %d, want 3:\n%s", n, buf.String())
	}
	buf.Reset()
	l.Warn(log, start.Add(10*time.Second), "refused")
	if !strings.Contains(buf.String(), "not_logged_since_last=997") {
		t.Fatalf("first line of the next interval: %q, want the 997 held back counted", buf.String())
	}
	// A clock that went back starts a new interval rather than holding every line until it catches up.
	if ok, _ := l.Allow(start); !ok {
		t.Fatal("a line after the clock went back was held")
	}
}
