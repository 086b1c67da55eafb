package agent_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const methodReport = "/signet.agent.v1.Agent/ReportDeliveries"

// waitDelivered polls the store until the credential id has one caller with count want.
func waitDelivered(tb testing.TB, st *storage.Store, id string, want uint64) storage.Delivery {
	tb.Helper()
	return waitDeliveries(tb, st, id, fmt.Sprintf("one caller, count %d", want), func(ds []storage.Delivery) bool {
		return len(ds) == 1 && ds[0].Count == want
	})[0]
}

// waitDeliveries polls the store until the deliveries of credential id satisfy cond.
func waitDeliveries(tb testing.TB, st *storage.Store, id, what string, cond func([]storage.Delivery) bool) []storage.Delivery {
	tb.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ds, err := st.Deliveries(id)
		if err != nil {
			tb.Fatal(err)
		}
		if cond(ds) {
			return ds
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("deliveries of %s: %+v; want %s", id, ds, what)
		}
	}
}

// TestDeliveriesReportedAndRetried: deliveries reach the server even when reports fail for a while
// (the server away), cumulative, so that what was sent before and again is not counted twice.
func TestDeliveriesReportedAndRetried(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	var refuse atomic.Bool
	var refused atomic.Int64
	e.setHook(func(_ context.Context, method string) error {
		if method == methodReport && refuse.Load() {
			refused.Add(1)
			return status.Error(codes.Unavailable, "server restarting")
		}
		return nil
	})
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
	a, _ := startAgent(t, e.client(), func(c *agent.Config) { c.DeliveryReportInterval = 10 * time.Millisecond })
	waitReady(t, a)
	ids := fetchSVIDs(t, a, uid1000(t), 1)
	caller := workloadapi.Caller{UID: 1000, GID: 1000, PID: 7, StartTime: 3, Path: "/usr/bin/web", SHA256: "00112233445566778899aabbccddeeff"}
	a.Delivered(caller, ids.SVIDs)
	serial := ids.SVIDs[0].Serial
	d := waitDelivered(t, e.st, serial, 1)
	if d.Caller.SHA256 != "0011223344556677" || d.Caller.Path != caller.Path || d.Caller.PID != 7 {
		t.Fatalf("reported caller %+v; want the digest cut to 16 hex characters, path and pid kept", d.Caller)
	}

	// The server refuses reports for a while: deliveries wait, then arrive, each counted once.
	refuse.Store(true)
	a.Delivered(caller, ids.SVIDs)
	a.Delivered(caller, ids.SVIDs)
	waitCount(t, &refused, 3, testDeadline, "refused reports")
	refuse.Store(false)
	waitDelivered(t, e.st, serial, 3)

	// JWT-SVIDs: the one minted and the one served from the cache are both delivered.
	for range 2 {
		if res, err := a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{UID: 1000, Caller: caller, Selectors: uid1000(t), Audience: []string{"db"}}); err != nil || len(res) != 1 {
			t.Fatalf("FetchJWTSVIDs: %d, %v", len(res), err)
		}
	}
	page, err := e.st.QueryLedger(storage.LedgerQuery{SPIFFEID: "spiffe://example.org/web"})
	if err != nil {
		t.Fatal(err)
	}
	var jti string
	for _, r := range page.Issuances {
		if r.Kind == storage.KindJWTSVID {
			jti = r.ID
		}
	}
	waitDelivered(t, e.st, jti, 2)
}

// TestDeliveryPathsMadeReportable: a path that is not valid UTF-8 (Linux allows it, protobuf strings do
// not) or longer than the server takes is reported cleaned and cut, not left to fail every report.
func TestDeliveryPathsMadeReportable(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
	a, _ := startAgent(t, e.client(), func(c *agent.Config) { c.DeliveryReportInterval = 10 * time.Millisecond })
	waitReady(t, a)
	ids := fetchSVIDs(t, a, uid1000(t), 1)
	long := "/" + strings.Repeat("é", 600) // 1,201 bytes, two per character
	a.Delivered(workloadapi.Caller{UID: 1, Path: "/opt/\xffbin"}, ids.SVIDs)
	a.Delivered(workloadapi.Caller{UID: 2, Path: long}, ids.SVIDs)
	ds := waitDeliveries(t, e.st, ids.SVIDs[0].Serial, "both callers", func(ds []storage.Delivery) bool { return len(ds) == 2 })
	for _, d := range ds {
		switch d.Caller.UID {
		case 1:
			if d.Caller.Path != "/opt/\uFFFDbin" {
				t.Fatalf("non-UTF-8 path reported as %q", d.Caller.Path)
			}
		case 2:
			if len(d.Caller.Path) > 1024 || !utf8.ValidString(d.Caller.Path) || !strings.HasPrefix(long, d.Caller.Path) || len(d.Caller.Path) < 1023 {
				t.Fatalf("long path reported as %d bytes (valid UTF-8 %v)", len(d.Caller.Path), utf8.ValidString(d.Caller.Path))
			}
		}
	}
}

// TestDeliveriesReportedOnStop: an agent that stops reports what it delivered since its last report.
func TestDeliveriesReportedOnStop(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/web"})
	a, stop := startAgent(t, e.client(), func(c *agent.Config) { c.DeliveryReportInterval = time.Hour })
	waitReady(t, a)
	ids := fetchSVIDs(t, a, uid1000(t), 1)
	a.Delivered(workloadapi.Caller{UID: 1000, PID: 9}, ids.SVIDs)
	stop()
	waitDelivered(t, e.st, ids.SVIDs[0].Serial, 1)
}
