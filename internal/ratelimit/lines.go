// Package ratelimit holds the rate limiters the server and the agent share: token buckets per key
// (Buckets), which bound what callers can make a node do, and a log-line limiter (Lines), which
// bounds what refused callers can make a node write to its log.
package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Lines lets Burst log lines (at least one) through per Every and counts the ones it held back, so
// that a caller — with or without a credential — cannot flood the log. The zero value lets one line
// through per instant; set Every. A Lines is safe for concurrent use.
type Lines struct {
	Every time.Duration
	Burst int

	mu    sync.Mutex
	start time.Time
	n     int
	held  int
}

// Allow reports whether a line may be logged at now, and how many were held back since the last one
// allowed.
func (l *Lines) Allow(now time.Time) (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.start.IsZero() || now.Sub(l.start) >= l.Every || now.Before(l.start) {
		l.start, l.n = now, 0
	}
	if l.n >= max(l.Burst, 1) {
		l.held++
		return false, 0
	}
	l.n++
	held, l.held = l.held, 0
	return true, held
}

// Log logs msg at level if the limiter allows it at now, with the count of lines held back before it
// (attribute not_logged_since_last).
func (l *Lines) Log(log *slog.Logger, level slog.Level, now time.Time, msg string, args ...any) {
	if ok, held := l.Allow(now); ok {
		log.Log(context.Background(), level, msg, append(args, "not_logged_since_last", held)...)
	}
}

// Warn is Log at slog.LevelWarn.
func (l *Lines) Warn(log *slog.Logger, now time.Time, msg string, args ...any) {
	l.Log(log, slog.LevelWarn, now, msg, args...)
}
