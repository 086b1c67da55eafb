package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// rssMiB reads a process's resident set size from /proc.
func rssMiB(tb testing.TB, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// importEntries creates n entries for parent via 'signet entry import' (one call per 10,000), selected
// by sel(i); prefetch ones if prefetch; with X.509-SVID lifetime x509TTL unless 0 (the default, 1h).
func importEntries(tb testing.TB, s *testServer, parent, owner string, n int, sel func(i int) string, prefetch bool, x509TTL time.Duration) {
	tb.Helper()
	ttl := ""
	if x509TTL != 0 {
		ttl = "  x509_ttl: " + x509TTL.String() + "\n"
	}
	for start := 0; start < n; start += 10000 {
		var b strings.Builder
		for i := start; i < min(n, start+10000); i++ {
			fmt.Fprintf(&b, "- spiffe_id: spiffe://example.org/bench/%d\n  selectors: [%s]\n  owner: %s\n  purpose: bench\n  parent_id: %s\n  prefetch: %t\n%s",
				i, sel(i), owner, parent, prefetch, ttl)
		}
		file := filepath.Join(tb.TempDir(), "entries.yaml")
		writeFile(tb, file, b.String())
		s.mustCLI("entry", "import", file)
	}
}

func mine(int) string { return myUID }

// countSVIDs returns how many X.509-SVIDs the socket serves this process (0 on error).
func countSVIDs(socket string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		return 0
	}
	return len(svids)
}

// BenchmarkProcesses2000Entries: a real server and agent with 2,000 entries for the agent, all matching
// this process: the time from the import (one call) until the agent serves all 2,000 SVIDs (minted on
// this process's first fetch), and both processes' RSS then.
// Run with -benchtime 1x.
func BenchmarkProcesses2000Entries(b *testing.B) {
	for range b.N {
		s := newTestServer(b).start(b)
		s.mustCLI("owner", "add", "bench")
		a := s.newAgent(b, "").start(b, s.token("bench"))
		start := time.Now()
		importEntries(b, s, a.id, "bench", 2000, mine, false, 0)
		eventually(b, 120*time.Second, "2,000 SVIDs", func() bool { return countSVIDs(a.socket) == 2000 })
		b.ReportMetric(time.Since(start).Seconds()*1000, "import-to-all-SVIDs-ms")
		b.ReportMetric(rssMiB(b, s.cmd.Process.Pid), "server-rss-MiB")
		b.ReportMetric(rssMiB(b, a.cmd.Process.Pid), "agent-rss-MiB")
	}
}

// BenchmarkAgentStartToFirstSVID: an agent whose 1,000 entries are already registered is restarted;
// one op is the time from starting the process to the first X.509-SVID served on its socket (the
// socket is polled every millisecond; the first poll that finds the entries synced has them minted on
// demand). Run with -benchtime 20x.
func BenchmarkAgentStartToFirstSVID(b *testing.B) {
	s := newTestServer(b).start(b)
	s.mustCLI("owner", "add", "bench")
	a := s.newAgent(b, "").start(b, s.token("bench"))
	importEntries(b, s, a.id, "bench", 1000, mine, false, 0)
	eventually(b, 120*time.Second, "1,000 SVIDs", func() bool { return countSVIDs(a.socket) == 1000 })
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		a.stop()
		b.StartTimer()
		t0 := time.Now()
		a.proc = startProc(b, "agent", "agent", "--config", a.config)
		for {
			if n := countSVIDsQuick(a.socket); n > 0 {
				break
			}
			if time.Since(t0) > 30*time.Second {
				b.Fatalf("no SVID 30s after agent start\n%s", a.stderr.String())
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
}

// countSVIDsQuick is countSVIDs with a short timeout, for polling a socket that may not exist yet.
func countSVIDsQuick(socket string) int {
	if _, err := os.Stat(socket); err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		return 0
	}
	return len(svids)
}

// BenchmarkAgent100kEntries: one agent holding 100,000 prefetch entries (each for another uid but the
// last one, which is this process's): prefetch, so the agent mints them all at start, as every entry
// was before minting on demand. The agent is restarted; one op is the time from its start until it has
// an SVID for every entry (its health check turns SERVING), then its RSS. Run with -benchtime 1x.
func BenchmarkAgent100kEntries(b *testing.B) {
	const n = 100000
	s := newTestServer(b).start(b)
	s.mustCLI("owner", "add", "bench")
	a := s.newAgent(b, "").start(b, s.token("bench"))
	importEntries(b, s, a.id, "bench", n, func(i int) string {
		if i == n-1 {
			return myUID
		}
		return "unix:uid:" + strconv.Itoa(200000+i)
	}, true, 0)
	healthy := func() bool {
		_, _, code := runCLI(b, nil, "healthcheck", "--socket", a.socket, "--timeout", "1s")
		return code == 0
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		a.stop()
		b.StartTimer()
		t0 := time.Now()
		a.proc = startProc(b, "agent", "agent", "--config", a.config)
		eventually(b, 10*time.Minute, "the agent to mint 100,000 SVIDs", healthy)
		b.ReportMetric(time.Since(t0).Seconds(), "start-to-all-SVIDs-s")
		b.ReportMetric(rssMiB(b, a.cmd.Process.Pid), "agent-rss-MiB")
		b.ReportMetric(rssMiB(b, s.cmd.Process.Pid), "server-rss-MiB")
		if got := countSVIDs(a.socket); got != 1 {
			b.Fatalf("this process gets %d SVIDs, want 1", got)
		}
	}
}

// BenchmarkFirstFetchOnDemand: real server (on 127.0.0.1) and agent processes; one op is a go-spiffe
// FetchX509SVID of an identity the agent has not minted yet: the call waits for one signing round trip
// to the server. Between ops (not timed) the previous entry is deleted and a new one created, and the
// agent is seen to hold it (its bundle stream answers this process) before the fetch. Reports p50 and
// p99. Run with -benchtime 200x.
func BenchmarkFirstFetchOnDemand(b *testing.B) {
	s := newTestServer(b).start(b)
	s.mustCLI("owner", "add", "bench")
	a := s.newAgent(b, "").start(b, s.token("bench"))
	addr := workloadapi.WithAddr("unix://" + a.socket)
	entitled := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := workloadapi.FetchX509Bundles(ctx, addr)
		return err == nil
	}
	var lat []time.Duration
	prev := ""
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if prev != "" {
			s.mustCLI("entry", "delete", prev)
		}
		out := s.mustCLI("entry", "create", "--spiffe-id", fmt.Sprintf("spiffe://example.org/bench/first/%d", i), "--selector", myUID,
			"--owner", "bench", "--purpose", "bench", "--parent-id", a.id, "-o", "json")
		prev = decodeJSON[entryView](b, out).ID
		eventually(b, 30*time.Second, "the agent to hold the new entry", entitled)
		b.StartTimer()
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		svid, err := workloadapi.FetchX509SVID(ctx, addr)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		if want := fmt.Sprintf("spiffe://example.org/bench/first/%d", i); svid.ID.String() != want {
			b.Fatalf("fetched %s, want the new entry's %s", svid.ID, want)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
}
