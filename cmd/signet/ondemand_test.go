package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// ledgerRecords returns the ledger records of a SPIFFE ID.
func (s *testServer) ledgerRecords(t testing.TB, spiffeID string) []issuanceView {
	t.Helper()
	return decodeJSON[[]issuanceView](t, s.mustCLI("ledger", "query", "--spiffe-id", spiffeID, "-o", "json"))
}

// lookedUp is what 'ledger lookup -o json' says of who received a credential.
type lookedUp struct {
	Known      bool           `json:"known"`
	Deliveries []deliveryView `json:"deliveries"`
}

// lookup runs 'ledger lookup' on a credential file, as JSON and as a table.
func (s *testServer) lookup(t testing.TB, file string) (lookedUp, string) {
	t.Helper()
	return decodeJSON[lookedUp](t, s.mustCLI("ledger", "lookup", file, "-o", "json")), s.mustCLI("ledger", "lookup", file)
}

// TestMintOnDemandWithProcesses, with real server and agent processes: an entry no process matches
// writes no ledger record over several of its lifetimes; a workload fetching once gets an SVID, the
// ledger holds one record, and its lookup one delivery naming the workload's uid and path; a go-spiffe
// X509Source kept open keeps getting rotations; once it is closed, renewals stop within a lifetime.
// The review lists the unused entry as never used, and not the used one; the lookup of a
// certificate no workload received says so.
func TestMintOnDemandWithProcesses(t *testing.T) {
	s := newTestServer(t)
	// SVIDs of seconds, to watch several lifetimes pass (below the default minimum, set by config).
	writeFile(t, s.config, string(mustRead(t, s.config))+"min_x509_svid_ttl: 1s\n")
	s.start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	const unused, once, kept = "spiffe://example.org/unused", "spiffe://example.org/once", "spiffe://example.org/kept"
	const ttl = 3 * time.Second
	s.mustCLI("entry", "create", "--spiffe-id", unused, "--selector", "unix:uid:4242420", "--owner", "alice", "--purpose", "nobody",
		"--parent-id", a.id, "--x509-ttl", ttl.String())
	s.mustCLI("entry", "create", "--spiffe-id", once, "--selector", myUID, "--owner", "alice", "--purpose", "fetched once",
		"--parent-id", a.id, "--x509-ttl", "1h")
	start := time.Now()

	// One fetch: the first answer waits for the mint, and the ledger has exactly one record for it.
	fetchCtx, cancelFetch := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelFetch()
	fetched, err := workloadapi.FetchX509SVID(fetchCtx, workloadapi.WithAddr("unix://"+a.socket))
	if err != nil || fetched.ID.String() != once {
		t.Fatalf("first fetch: %v, %v; want %s", fetched, err, once)
	}
	if recs := s.ledgerRecords(t, once); len(recs) != 1 || recs[0].Agent != a.id {
		t.Fatalf("after one fetch the ledger holds %+v, want one record through %s", recs, a.id)
	}
	certPEM, _, err := fetched.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "once.pem")
	writeFile(t, certFile, string(certPEM))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var got lookedUp
	eventually(t, 15*time.Second, "the delivery to reach the ledger", func() bool {
		got, _ = s.lookup(t, certFile)
		return len(got.Deliveries) > 0
	})
	if d := got.Deliveries; len(d) != 1 || d[0].Count != 1 || d[0].UID != uint32(os.Getuid()) || d[0].Path != exe || d[0].PID != int32(os.Getpid()) || d[0].Agent != a.id {
		t.Fatalf("lookup deliveries %+v; want one, once, to uid %d, path %s, pid %d, through %s", d, os.Getuid(), exe, os.Getpid(), a.id)
	}
	if _, table := s.lookup(t, certFile); !strings.Contains(table, "Who received it") || !strings.Contains(table, exe) {
		t.Fatalf("lookup table does not say who received it:\n%s", table)
	}

	// An X509Source kept open keeps getting rotations of a short-lived identity.
	s.mustCLI("entry", "create", "--spiffe-id", kept, "--selector", myUID, "--owner", "alice", "--purpose", "kept open",
		"--parent-id", a.id, "--x509-ttl", ttl.String())
	waitForIDs(t, a.socket, once, kept)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, sv := range svids {
				if sv.ID.String() == kept {
					return sv
				}
			}
			return svids[0]
		}))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 4 { // three rotations: one and a half lifetimes, past what a fetch keeps in use
		cur, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		seen[cur.Certificates[0].SerialNumber.Text(16)] = true
		select {
		case <-src.Updated():
		case <-ctx.Done():
			t.Fatalf("%d SVIDs seen through the open X509Source, want 4", len(seen))
		}
	}
	src.Close()
	closed := len(s.ledgerRecords(t, kept))
	// The review goes by deliveries: the unused entry is never used; the ones the source received are
	// not flagged (once their last deliveries are reported).
	eventually(t, 15*time.Second, "review --stale 3s to flag the unused entry only", func() bool {
		items := decodeJSON[[]reviewView](t, s.mustCLI("review", "--stale", "3s", "-o", "json"))
		var unusedFlagged, usedFlagged bool
		for _, it := range items {
			for _, f := range it.Findings {
				switch {
				case it.SPIFFEID == unused && strings.Contains(f, "never used"):
					unusedFlagged = true
				case (it.SPIFFEID == once || it.SPIFFEID == kept) && strings.Contains(f, "used"):
					usedFlagged = true
				}
			}
		}
		return unusedFlagged && !usedFlagged
	})
	// Renewals stop within one lifetime of the close: over two more, at most one more record.
	window := time.NewTimer(2*ttl + time.Second)
	<-window.C
	if n := len(s.ledgerRecords(t, kept)); n > closed+1 {
		t.Fatalf("%d records when the X509Source closed, %d two lifetimes later: renewals went on", closed, n)
	}
	if elapsed := time.Since(start); elapsed < 3*ttl {
		t.Fatalf("the test ran %s, less than the three lifetimes the unused entry must be watched", elapsed)
	}
	if recs := s.ledgerRecords(t, unused); len(recs) != 0 {
		t.Fatalf("an entry no process matches has %d ledger records after %s (%d lifetimes)", len(recs), time.Since(start).Round(time.Second), time.Since(start)/ttl)
	}
	// The agent's own SVID is in the ledger and was never handed to a workload: the lookup says so.
	l, table := s.lookup(t, filepath.Join(a.dir, "data", "agent_svid.pem"))
	if !l.Known || len(l.Deliveries) != 0 || !strings.Contains(table, "minted, never delivered") {
		t.Fatalf("lookup of the agent's SVID: %+v\n%s", l, table)
	}
	// Deliveries and minting side by side.
	var shown []entryView
	shown = decodeJSON[[]entryView](t, s.mustCLI("entry", "list", "-o", "json"))
	for _, e := range shown {
		if (e.SPIFFEID == once && (e.DeliveredCount < 2 || e.LastDeliveredAt == "never")) || (e.SPIFFEID == unused && (e.DeliveredCount != 0 || e.IssuedCount != 0)) {
			t.Fatalf("entry list: %s delivered %d times, last %s, issued %d", e.SPIFFEID, e.DeliveredCount, e.LastDeliveredAt, e.IssuedCount)
		}
		if e.SPIFFEID == unused {
			if out := s.mustCLI("entry", "show", e.ID); !strings.Contains(out, "0 times to workloads, last never") || !strings.Contains(out, "on first request") {
				t.Fatalf("entry show of the unused entry does not say it was never delivered, and is minted on request:\n%s", out)
			}
		}
	}
	if n := len(decodeJSON[[]issuanceView](t, s.mustCLI("ledger", "query", "--spiffe-id", once, "--undelivered", "-o", "json"))); n != 0 {
		t.Fatalf("ledger query --undelivered lists %d records of the fetched entry", n)
	}
	// The owner's view and the offboarding plan say what is in use, by which process on which agent.
	type ownerUse struct {
		InUse []useView `json:"in_use"`
	}
	for _, args := range [][]string{{"owner", "show", "alice"}, {"owner", "offboard", "alice", "--disable", "--dry-run"}} {
		got := decodeJSON[ownerUse](t, s.mustCLI(append(args, "-o", "json")...))
		i := slices.IndexFunc(got.InUse, func(u useView) bool { return u.ID == fetched.Certificates[0].SerialNumber.Text(16) })
		if i < 0 || len(got.InUse[i].Deliveries) != 1 || got.InUse[i].Deliveries[0].Path != exe || got.InUse[i].Deliveries[0].Agent != a.id ||
			slices.ContainsFunc(got.InUse, func(u useView) bool { return u.SPIFFEID == unused }) {
			t.Fatalf("%s: in use %+v; want the fetched SVID, received by %s through %s", strings.Join(args, " "), got.InUse, exe, a.id)
		}
	}
	if table := s.mustCLI("owner", "show", "alice"); !strings.Contains(table, "In use:") || !strings.Contains(table, exe) {
		t.Fatalf("owner show does not say what is in use:\n%s", table)
	}
}

// TestPrefetchServedWithServerStopped: a prefetch entry is minted before any workload asks, and served
// while the server is stopped; an on-demand entry never fetched is not. A delivery made while the
// server is down reaches the ledger once it is back, each delivery counted once.
func TestPrefetchServedWithServerStopped(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	const ahead, lazy = "spiffe://example.org/ahead", "spiffe://example.org/lazy"
	s.mustCLI("entry", "create", "--spiffe-id", ahead, "--selector", myUID, "--owner", "alice", "--purpose", "starts offline",
		"--parent-id", a.id, "--prefetch")
	s.mustCLI("entry", "create", "--spiffe-id", lazy, "--selector", myUID, "--owner", "alice", "--purpose", "on demand", "--parent-id", a.id)
	eventually(t, 30*time.Second, "the prefetch entry to be minted ahead", func() bool { return len(s.ledgerRecords(t, ahead)) == 1 })
	if n := len(s.ledgerRecords(t, lazy)); n != 0 {
		t.Fatalf("the on-demand entry has %d ledger records before any fetch", n)
	}
	fetch := func() *x509svid.SVID {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+a.socket))
		if err != nil || svid.ID.String() != ahead {
			t.Fatalf("fetch: %v, %v; want %s", svid, err, ahead)
		}
		return svid
	}
	// delivered waits for want deliveries of file to one caller and returns them. want 0 takes the
	// first count seen: the first fetch's stream may also carry a second response (the on-demand entry
	// minted meanwhile) before the client closes it, and both are deliveries.
	delivered := func(file string, want uint64) uint64 {
		t.Helper()
		var got lookedUp
		eventually(t, 30*time.Second, fmt.Sprintf("%d deliveries in the ledger", want), func() bool {
			got, _ = s.lookup(t, file)
			return len(got.Deliveries) == 1 && got.Deliveries[0].Count >= max(want, 1)
		})
		if want != 0 && got.Deliveries[0].Count != want {
			t.Fatalf("%d deliveries recorded, want %d: counted twice", got.Deliveries[0].Count, want)
		}
		return got.Deliveries[0].Count
	}
	first := fetch()
	certPEM, _, err := first.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "ahead.pem")
	writeFile(t, certFile, string(certPEM))
	base := delivered(certFile, 0)
	if base > 2 {
		t.Fatalf("one fetch recorded %d deliveries, want 1 (or 2: see delivered)", base)
	}

	s.stop()
	// Served from the cache; its delivery waits for the server.
	if again := fetch(); again.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0 {
		t.Fatal("with the server stopped the agent served another SVID than the one it prefetched")
	}
	// With the server away, the agent says how long it can keep serving what it holds: the prefetch
	// SVID, and the on-demand one the fetches above had minted (the stream asks for both).
	st := decodeJSON[agentStatusView](t, s.mustCLI("agent", "status", "--socket", a.socket, "-o", "json"))
	if len(st.SVIDs) != 2 || st.SVIDs[0].SPIFFEID != ahead || !st.SVIDs[0].Prefetch || st.SVIDs[1].SPIFFEID != lazy || st.SVIDs[1].Prefetch ||
		st.MinOutageBudgetSeconds <= 0 || st.MinOutageBudgetSeconds > 3600 ||
		st.MinOutageBudgetSeconds != min(st.SVIDs[0].OutageBudgetSeconds, st.SVIDs[1].OutageBudgetSeconds) {
		t.Fatalf("agent status with the server stopped: %+v; want both SVIDs, each with an outage budget under its 1h life, and their minimum", st)
	}
	if out := s.mustCLI("healthcheck", "--socket", a.socket); !strings.Contains(out, "SERVING") || !strings.Contains(out, "outage budget: ") {
		t.Fatalf("agent healthcheck does not give the outage budget:\n%s", out)
	}
	s.start(t)
	delivered(certFile, base+1) // the fetch made while the server was stopped, reported once
	fetch()
	delivered(certFile, base+2)
}
