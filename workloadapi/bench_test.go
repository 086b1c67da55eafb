package workloadapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/server"
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
	return serveAgentWith(tb, entries, serveOpts{})
}

// serveOpts adjusts serveAgentWith.
type serveOpts struct {
	// agent adjusts the agent's configuration.
	agent func(*agent.Config)
	// attestor adjusts the Unix attestor's configuration.
	attestor func(*unix.Config)
	// open puts the socket where every uid can connect (a child process that drops root uses it).
	open bool
	// server adjusts the server's configuration.
	server func(*server.Config)
	// logger, if set, is the Workload API handler's and the agent's logger.
	logger *slog.Logger
	// sds configures the secret discovery service served beside the Workload API.
	sds workloadapi.SDSConfig
	// source, if set, wraps the agent as the Source the socket serves from.
	source func(*agent.Agent) workloadapi.Source
}

// serveAgentWith is serveAgent adjusted by o.
func serveAgentWith(tb testing.TB, entries int, o serveOpts) (string, *testenv.Env) {
	tb.Helper()
	env := testenv.NewWith(tb, o.server)
	env.Owner(tb, "bench")
	env.Entries(tb, agentID, "bench", "spiffe://example.org/workload", entries, "unix:uid:"+strconv.Itoa(os.Getuid()))
	cfg := agent.Config{Client: env.AgentClient(tb, agentID), TrustDomain: testenv.TrustDomain, Logger: o.logger}
	if o.agent != nil {
		o.agent(&cfg)
	}
	a, err := agent.New(cfg)
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
	var src workloadapi.Source = a
	if o.source != nil {
		src = o.source(a)
	}
	return serveSourceWith(tb, src, o), env
}

// serveSource serves the Workload API from src on a new socket with the real Unix attestor until the
// test ends, and returns the socket address.
func serveSource(tb testing.TB, src workloadapi.Source) string {
	return serveSourceWith(tb, src, serveOpts{})
}

func serveSourceWith(tb testing.TB, src workloadapi.Source, o serveOpts) string {
	tb.Helper()
	var attCfg unix.Config
	if o.attestor != nil {
		o.attestor(&attCfg)
	}
	att, err := unix.New(attCfg)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := workloadapi.New(workloadapi.Config{Attestors: []workloadapi.Attestor{att}, Source: src, Logger: o.logger})
	if err != nil {
		tb.Fatal(err)
	}
	dir, dirMode, sockMode := tb.TempDir(), os.FileMode(0o700), os.FileMode(0o600)
	if o.open {
		// t.TempDir's parents are 0700: make one under the system's temp directory instead.
		if dir, err = os.MkdirTemp("", "signet-wl-"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		dirMode, sockMode = 0o755, 0o666
	}
	sock := filepath.Join(dir, "agent.sock")
	lis, err := uds.Listen(sock, dirMode, sockMode)
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(peercred.Credentials()))
	workload.RegisterSpiffeWorkloadAPIServer(g, h)
	sds, err := h.SDS(o.sds)
	if err != nil {
		tb.Fatal(err)
	}
	secretv3.RegisterSecretDiscoveryServiceServer(g, sds)
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
