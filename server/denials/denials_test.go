package denials

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/storage"
)

const testDeadline = 20 * time.Second

func waitRefusals(tb testing.TB, st *storage.Store, action string, want int) []storage.AuditRecord {
	tb.Helper()
	return testkit.WaitRefusals(tb, st, action, want, testDeadline)
}

func newLog(tb testing.TB) (*storage.Store, *DenialLog, Auditor) {
	tb.Helper()
	st := testkit.OpenStore(tb, nil)
	l := NewDenialLog(st, nil, testkit.Logger(tb))
	return st, l, Auditor{Denials: l, Log: testkit.Logger(tb), Limit: apierr.NewRefusalLogLimiter()}
}

// One actor's refusals of many different kinds are recorded one by one up to maxDenialKindsPerActor
// within a window; the rest are counted in one record. Other actors keep their own records.
func TestDenialRecordsPerActorAreCapped(t *testing.T) {
	st, l, a := newLog(t)
	stop := testkit.Run(t, testDeadline, l.Run)
	const kinds = 100
	for i := range kinds {
		a.Denied(context.Background(), "agent:a", "svid.jwt", "", fmt.Errorf("reason number %d", i))
	}
	a.Denied(context.Background(), "agent:b", "svid.jwt", "", errors.New("another agent"))
	stop()
	recs := waitRefusals(t, st, "", kinds+1)
	byActor := map[string]int{}
	overflow := 0
	for _, r := range recs {
		byActor[r.Actor]++
		if r.Action == denialOverflowAction {
			overflow += testkit.Refusals(t, r)
		}
	}
	if byActor["agent:a"] != maxDenialKindsPerActor+1 || overflow != kinds-maxDenialKindsPerActor || byActor["agent:b"] != 1 {
		t.Fatalf("records per actor %v, overflow standing for %d refusals; want %d for agent a (%d in one) and 1 for agent b",
			byActor, overflow, maxDenialKindsPerActor+1, kinds-maxDenialKindsPerActor)
	}
}

func TestDenialKind(t *testing.T) {
	base := denial{actor: "agent:a", action: "svid.x509", object: "e1", reason: `entry "e1": permission denied: not an entry of agent a`}
	tests := []struct {
		name string
		mod  func(*denial)
		same bool
	}{
		{"another object", func(d *denial) { d.object, d.reason = "e2", `entry "e2": permission denied: not an entry of agent a` }, true},
		{"another time", func(d *denial) { d.at = time.Now() }, true},
		// %q escapes quotes and backslashes: the quoted object is recognised too.
		{"another object that quoting escapes", func(d *denial) {
			d.object = `e"2\`
			d.reason = fmt.Sprintf("entry %q: permission denied: not an entry of agent a", d.object)
		}, true},
		{"another reason", func(d *denial) { d.reason = `entry "e1": permission denied: disabled (x)` }, false},
		{"another actor", func(d *denial) { d.actor = "agent:b" }, false},
		{"another action", func(d *denial) { d.action = "svid.jwt" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			tc.mod(&d)
			if got := d.kind() == base.kind(); got != tc.same {
				t.Fatalf("same kind = %v, want %v", got, tc.same)
			}
		})
	}
}

// Stopping the log writes the repeats it still holds.
func TestDenialLogStopWritesHeldRepeats(t *testing.T) {
	st, l, a := newLog(t)
	stop := testkit.Run(t, testDeadline, l.Run)
	for i := range 5 {
		a.Denied(context.Background(), "uid:1001", "admin.CreateEntry", "", errors.New("uid 1001 is not an admin"))
		if i == 0 {
			waitRefusals(t, st, "admin.CreateEntry", 1)
		}
	}
	stop()
	recs := waitRefusals(t, st, "admin.CreateEntry", 5)
	if len(recs) != 2 || testkit.Refusals(t, recs[1]) != 4 || recs[1].Actor != "uid:1001" {
		t.Fatalf("records after stop: %+v", recs)
	}
}
