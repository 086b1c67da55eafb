package workloadapi_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	spiffeclient "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// agentID is the SPIFFE ID of the agent serveAgent runs.
const agentID = "spiffe://example.org/signet/agent/bench"

// serveAgent runs a real agent (synced from an in-process server) behind a real Workload API socket
// with the real Unix attestor, with `entries` entries for this process's uid. It returns the socket
// address and the server, to change entries behind the agent.
func serveAgent(tb testing.TB, entries int) (string, *testenv.Env) {
	tb.Helper()
	env := testenv.New(tb)
	env.Owner(tb, "bench")
	env.Entries(tb, agentID, "bench", "spiffe://example.org/workload", entries, "unix:uid:"+strconv.Itoa(os.Getuid()))
	a, err := agent.New(agent.Config{Client: env.AgentClient(tb, agentID), TrustDomain: testenv.TrustDomain})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	readyCtx, cancelReady := context.WithTimeout(ctx, 60*time.Second)
	defer cancelReady()
	if err := a.WaitReady(readyCtx); err != nil {
		tb.Fatal(err)
	}
	return serveSource(tb, a), env
}

// serveSource serves the Workload API from src on a new socket with the real Unix attestor until the
// test ends, and returns the socket address.
func serveSource(tb testing.TB, src workloadapi.Source) string {
	tb.Helper()
	att, err := unix.New(unix.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := workloadapi.New(workloadapi.Config{Attestor: att, Source: src})
	if err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(tb.TempDir(), "agent.sock")
	lis, err := uds.Listen(sock, 0o700, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(peercred.Credentials()))
	workload.RegisterSpiffeWorkloadAPIServer(g, h)
	go g.Serve(lis)
	tb.Cleanup(g.Stop)
	return "unix://" + sock
}

// BenchmarkFetchX509SVID measures FetchX509SVID from the agent's cache as a go-spiffe client sees it:
// connect a stream, be attested, receive the SVIDs. Each client has its own connection. Run with a fixed
// count: -benchtime 20000x.
func BenchmarkFetchX509SVID(b *testing.B) {
	addr, _ := serveAgent(b, 1)
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients-%d", clients), func(b *testing.B) {
			ctx := context.Background()
			cs := make([]*spiffeclient.Client, clients)
			for i := range cs {
				c, err := spiffeclient.New(ctx, spiffeclient.WithAddr(addr))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				if _, err := c.FetchX509SVID(ctx); err != nil { // warm the connection
					b.Fatal(err)
				}
				cs[i] = c
			}
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			next := make(chan int, b.N)
			for i := range b.N {
				next <- i
			}
			close(next)
			errs := make(chan error, clients)
			b.ResetTimer()
			start := time.Now()
			for _, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := make([]time.Duration, 0, b.N/clients+1)
					for range next {
						t0 := time.Now()
						if _, err := c.FetchX509SVID(ctx); err != nil {
							errs <- err
							return
						}
						local = append(local, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds())
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "fetches/s")
			b.ReportMetric(pct(0.5), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}
