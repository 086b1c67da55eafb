package main

import (
	"context"
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

// TestMintOnDemandWithProcesses, with real server and agent processes: an entry no process matches
// writes no ledger record over several of its lifetimes; a workload fetching once gets an SVID and
// the ledger holds one record; a go-spiffe X509Source kept open keeps getting rotations; once it is
// closed, renewals stop within a lifetime.
func TestMintOnDemandWithProcesses(t *testing.T) {
	s := newTestServer(t).start(t)
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
	waitForIDs(t, a.socket, once)
	if recs := s.ledgerRecords(t, once); len(recs) != 1 || recs[0].Agent != a.id {
		t.Fatalf("after one fetch the ledger holds %+v, want one record through %s", recs, a.id)
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
}

// TestPrefetchServedWithServerStopped: a prefetch entry is minted before any workload asks, and served
// while the server is stopped; an on-demand entry never fetched is not.
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
	s.stop()
	waitForIDs(t, a.socket, ahead)
}
