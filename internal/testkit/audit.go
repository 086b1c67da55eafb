package testkit

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/signet-id/signet/storage"
)

// AuditRecords returns every audit record of action ("" for all), oldest first.
func AuditRecords(tb testing.TB, st *storage.Store, action string) []storage.AuditRecord {
	tb.Helper()
	var out []storage.AuditRecord
	q := storage.AuditQuery{Action: action, Limit: storage.MaxLedgerLimit}
	for {
		recs, next, err := st.AuditLog(q)
		if err != nil {
			tb.Fatalf("AuditLog: %v", err)
		}
		out = append(out, recs...)
		if next == 0 {
			return out
		}
		q.After = next
	}
}

var refusalsRE = regexp.MustCompile(`\[(\d+) refusals like this one from `)

// Refusals is how many refused requests an audit record of the denial log stands for.
func Refusals(tb testing.TB, r storage.AuditRecord) int {
	tb.Helper()
	m := refusalsRE.FindStringSubmatch(r.Reason)
	if m == nil {
		return 1
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 2 {
		tb.Fatalf("audit record %d: bad count in %q", r.Seq, r.Reason)
	}
	return n
}

// WaitRefusals waits, at most deadline, until the denied records of action stand for want refusals in
// all, and returns them.
func WaitRefusals(tb testing.TB, st *storage.Store, action string, want int, deadline time.Duration) []storage.AuditRecord {
	tb.Helper()
	end := time.Now().Add(deadline)
	for {
		recs := AuditRecords(tb, st, action)
		total := 0
		for _, r := range recs {
			if r.Outcome != storage.AuditDenied {
				tb.Fatalf("audit record %d of %s: outcome %q, want denied", r.Seq, action, r.Outcome)
			}
			total += Refusals(tb, r)
		}
		switch {
		case total == want:
			return recs
		case total > want:
			tb.Fatalf("%d %s records stand for %d refusals, want %d: %+v", len(recs), action, total, want, recs)
		case time.Now().After(end):
			tb.Fatalf("after %s, %d %s records stand for %d refusals, want %d", deadline, len(recs), action, total, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
