package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// The fetch benchmark's client is this test binary run again with fetchClientEnv set: a process
// separate from the agent, using the go-spiffe Workload API client over the agent's Unix socket, as a
// workload does. Its parameters are in the environment; it prints one JSON fetchResult line.
const (
	fetchClientEnv     = "SIGNET_BENCH_FETCH_CLIENT" // "x509" or "jwt"
	fetchSocketEnv     = "SIGNET_BENCH_FETCH_SOCKET"
	fetchCountEnv      = "SIGNET_BENCH_FETCH_COUNT"   // fetches in all
	fetchParallelEnv   = "SIGNET_BENCH_FETCH_CLIENTS" // concurrent clients sharing them
	fetchBenchAudience = "bench"
)

// fetchResult is what the client process reports: the latency of every fetch, and the wall time of all.
type fetchResult struct {
	LatenciesNS []int64 `json:"latencies_ns"`
	ElapsedNS   int64   `json:"elapsed_ns"`
	Error       string  `json:"error,omitempty"`
}

// runFetchClient is the client process: count fetches shared by clients goroutines, each fetch the
// way a workload makes it (go-spiffe's FetchX509SVID or FetchJWTSVID: a connection, the call, close).
func runFetchClient() int {
	kind, socket := os.Getenv(fetchClientEnv), os.Getenv(fetchSocketEnv)
	count, err1 := strconv.Atoi(os.Getenv(fetchCountEnv))
	clients, err2 := strconv.Atoi(os.Getenv(fetchParallelEnv))
	if err1 != nil || err2 != nil || count < 1 || clients < 1 {
		fmt.Fprintln(os.Stderr, "fetch client: bad", fetchCountEnv, "or", fetchParallelEnv)
		return 2
	}
	addr := workloadapi.WithAddr("unix://" + socket)
	fetch := func(ctx context.Context) error {
		if kind == "jwt" {
			_, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: fetchBenchAudience}, addr)
			return err
		}
		_, err := workloadapi.FetchX509SVID(ctx, addr)
		return err
	}
	lat := make([]int64, count)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < count; i += clients {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t0 := time.Now()
				err := fetch(ctx)
				lat[i] = int64(time.Since(t0))
				cancel()
				if err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	res := fetchResult{LatenciesNS: lat, ElapsedNS: int64(time.Since(start))}
	if firstErr != nil {
		res.Error = firstErr.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// cpuTicks returns the user+system CPU time of pid in clock ticks (fields 14 and 15 of
// /proc/<pid>/stat).
func cpuTicks(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name (field 2) may hold spaces; the fields after it are counted from its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat CPU times (100 on Linux).
const clockTick = 10 * time.Millisecond

// BenchmarkFetchProcesses: the Workload API from the cache, measured the way workloads see it. Real
// server and agent processes (delivery recording on, as always); one entry for this uid, minted and
// its JWT-SVID cached by a warm-up fetch; then a separate client process (this test binary run
// again) makes b.N fetches with go-spiffe's FetchX509SVID or FetchJWTSVID over the agent's socket,
// each a new connection as with those functions, by 1 or 16 concurrent goroutines. Reports
// fetches/s, p50 and p99 latency, and the agent's CPU time (user+system from /proc) per fetch.
// Run with -benchtime 5000x.
func BenchmarkFetchProcesses(b *testing.B) {
	s := newTestServer(b).start(b)
	s.mustCLI("owner", "add", "bench")
	a := s.newAgent(b, "").start(b, s.token("bench"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/bench/fetch", "--selector", myUID,
		"--owner", "bench", "--purpose", "bench", "--parent-id", a.id)
	eventually(b, 60*time.Second, "the agent to serve the entry", func() bool { return countSVIDs(a.socket) == 1 })
	for _, kind := range []string{"x509", "jwt"} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d", kind, clients), func(b *testing.B) {
				runFetchClientProcess(b, a, kind, 16, clients) // warm-up: mint, cache, page in
				b.ResetTimer()
				before := cpuTicks(b, a.cmd.Process.Pid)
				res := runFetchClientProcess(b, a, kind, b.N, clients)
				cpu := time.Duration(cpuTicks(b, a.cmd.Process.Pid)-before) * clockTick
				b.StopTimer()
				lat := res.LatenciesNS
				slices.Sort(lat)
				ms := func(ns int64) float64 { return float64(ns) / 1e6 }
				b.ReportMetric(float64(b.N)/(float64(res.ElapsedNS)/1e9), "fetches/s")
				b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
				b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "agent-cpu-µs/fetch")
			})
		}
	}
}

// runFetchClientProcess runs the client process for count fetches by clients goroutines.
func runFetchClientProcess(b *testing.B, a *testAgent, kind string, count, clients int) fetchResult {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fetchClientEnv+"="+kind, fetchSocketEnv+"="+a.socket,
		fetchCountEnv+"="+strconv.Itoa(count), fetchParallelEnv+"="+strconv.Itoa(clients))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("fetch client: %v\n%s", err, exitStderr(err))
	}
	var res fetchResult
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("fetch client output: %v\n%s", err, out)
	}
	if res.Error != "" {
		b.Fatalf("fetch client (%s, %d clients): %s\nagent: %s", kind, clients, res.Error, a.stderr.String())
	}
	return res
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
