package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/storage"
)

// vmRSS returns this process's resident set size in MiB (Linux).
func vmRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkEntryPropagation: a server holding 100,000 entries with 1,000 agents' sync streams open
// (100 entries each); one op creates an entry for a random agent and waits until that agent's stream
// delivers it. Reports p50/p99 of commit-to-delivery and the process's memory. Run: -benchtime 200x.
func BenchmarkEntryPropagation(b *testing.B) {
	const agents, perAgent = 1000, 100
	env := testenv.New(b)
	env.Owner(b, "bench")
	sels := []selector.Selector{{Type: "unix", Value: "uid:1000"}}
	agentID := func(i int) string { return fmt.Sprintf("spiffe://example.org/signet/agent/sim-%04d", i) }
	var batch []storage.Entry
	flush := func() {
		if _, err := env.Store.CreateEntries(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range agents * perAgent {
		id, _ := adminapi.NewEntryID()
		batch = append(batch, storage.Entry{ID: id, SPIFFEID: fmt.Sprintf("spiffe://example.org/w/%d", i), ParentID: agentID(i % agents),
			Owner: "bench", Purpose: "bench", Selectors: sels, X509TTL: time.Hour, JWTTTL: time.Hour, CreatedAt: time.Now()})
		if len(batch) == 5000 {
			flush()
		}
	}

	runtime.GC()
	var loaded runtime.MemStats
	runtime.ReadMemStats(&loaded)

	// One sync stream per simulated agent; deliveries are reported by SPIFFE ID.
	type arrival struct {
		spiffeID string
		at       time.Time
	}
	arrivals := make([]chan arrival, agents)
	ready := make(chan struct{}, agents)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range agents {
		arrivals[i] = make(chan arrival, 16)
		client := env.AgentClient(b, agentID(i))
		stream, err := client.SyncEntries(ctx, &agentv1.SyncEntriesRequest{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			initial := true
			n := 0
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				if initial {
					n += len(m.Entries)
					if !m.More && n >= perAgent {
						initial = false
						ready <- struct{}{}
					}
					continue
				}
				now := time.Now()
				for _, e := range m.Entries {
					arrivals[i] <- arrival{e.SpiffeId, now}
				}
			}
		}()
	}
	for range agents {
		<-ready
	}
	runtime.GC()
	rss := vmRSS()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for n := range b.N {
		i := rand.N(agents)
		id, _ := adminapi.NewEntryID()
		want := fmt.Sprintf("spiffe://example.org/new/%d", n)
		t0 := time.Now()
		if _, err := env.Store.CreateEntry(context.Background(), storage.Entry{ID: id, SPIFFEID: want, ParentID: agentID(i),
			Owner: "bench", Purpose: "bench", Selectors: sels, X509TTL: time.Hour, JWTTTL: time.Hour, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
		for a := range arrivals[i] {
			if a.spiffeID == want {
				lat = append(lat, a.at.Sub(t0))
				break
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
	// Heap of the server with 100,000 entries loaded (before any agent connects), and the whole
	// process (server plus the 1,000 simulated agents' client side) once every stream is synced.
	b.ReportMetric(float64(loaded.HeapInuse)/(1<<20), "server-heap-MiB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-with-streams-MiB")
	b.ReportMetric(rss, "rss-with-streams-MiB")
	cancel()
}

// BenchmarkBatchCreateEntries: one admin call creating 2,000 entries (validated, one Raft write).
func BenchmarkBatchCreateEntries(b *testing.B) {
	env := testenv.New(b)
	env.Owner(b, "bench")
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		req := &adminv1.BatchCreateEntriesRequest{}
		for i := range 2000 {
			req.Entries = append(req.Entries, &adminv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/b%d/%d", n, i),
				ParentId: "spiffe://example.org/signet/agent/x", Owner: "bench", Purpose: "bench",
				Selectors: []*adminv1.Selector{{Type: "unix", Value: "uid:1000"}}})
		}
		resp, err := env.Server.Admin.BatchCreateEntries(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.Results[0].ErrorMessage != "" {
			b.Fatal(resp.Results[0].ErrorMessage)
		}
	}
	b.ReportMetric(float64(b.N*2000)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkReview100k: an access review over 100,000 entries (of 1,000 owners; a tenth of them issued
// through the ledger), as 'signet review' runs it. Run: -benchtime 5x.
func BenchmarkReview100k(b *testing.B) {
	env := testenv.New(b)
	for o := range 1000 {
		env.Owner(b, fmt.Sprintf("owner-%03d", o))
	}
	sels := []selector.Selector{{Type: "unix", Value: "uid:1000"}}
	var batch []storage.Entry
	var recs []storage.Issuance
	for i := range 100000 {
		id, _ := adminapi.NewEntryID()
		e := storage.Entry{ID: id, SPIFFEID: fmt.Sprintf("spiffe://example.org/w/%d", i), ParentID: "spiffe://example.org/signet/agent/a",
			Owner: fmt.Sprintf("owner-%03d", i%1000), Purpose: "bench", Selectors: sels, X509TTL: time.Hour, JWTTTL: time.Hour,
			CreatedAt: time.Now().Add(-60 * 24 * time.Hour), ExpiresAt: time.Now().Add(time.Duration(i%60) * 24 * time.Hour)}
		if i%10 == 0 {
			recs = append(recs, storage.Issuance{ID: "r" + id, Kind: storage.KindX509SVID, SPIFFEID: e.SPIFFEID, EntryID: id, Owner: e.Owner,
				ExpiresAt: time.Now().Add(time.Hour), Agent: fmt.Sprintf("spiffe://example.org/signet/agent/%d", i%7)})
		}
		batch = append(batch, e)
		if len(batch) == 5000 {
			if _, err := env.Store.CreateEntries(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			if err := env.Store.AppendLedger(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
			batch, recs = batch[:0], recs[:0]
		}
	}
	// A sub-benchmark, so the registry above is built once.
	b.Run("review", func(b *testing.B) {
		var items int
		for range b.N {
			resp, err := env.Server.Admin.Review(context.Background(), &adminv1.ReviewRequest{})
			if err != nil {
				b.Fatal(err)
			}
			items = len(resp.Items)
		}
		b.ReportMetric(float64(items), "items")
	})
}
