package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// BenchmarkLedgerRecordsPerHour: how many ledger records an agent's entries write, before minting on
// demand (every entry minted ahead and renewed at half life: prefetch entries behave so) and after
// (only the entries a workload uses). Real server and agent processes; 2,000 entries with a 10 s
// X.509-SVID lifetime, 20 of them (1 %) for this process's uid, which keeps a go-spiffe X509Source
// open on the agent's socket; the others for uids no process has. After two lifetimes, the records
// issued in a 30 s window are counted and scaled to the 100,000-entry, 1,000-used case with the
// default 1 h lifetime: records per hour are proportional to the entries minted and to 1/lifetime.
// Run with -benchtime 1x.
func BenchmarkLedgerRecordsPerHour(b *testing.B) {
	const (
		n      = 2000
		used   = 20
		ttl    = 10 * time.Second
		window = 30 * time.Second
		scale  = 100000 / n // to 100,000 entries, 1,000 used
	)
	for _, c := range []struct {
		name     string
		prefetch bool
	}{{"before-every-entry-minted", true}, {"after-minted-on-demand", false}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				s := newTestServer(b)
				// The short lifetime, and an agent issuance rate that does not cap the 400 renewals/s of
				// the before case (the default 100/s would, and hide what is measured).
				s.appendConfig(b, "min_x509_svid_ttl: 1s\nissuance_limits:\n  agent_rate: 100000\n")
				s.start(b)
				s.mustCLI("owner", "add", "bench")
				a := s.newAgent(b, "").start(b, s.token("bench"))
				importEntries(b, s, a.id, "bench", n, func(i int) string {
					if i < used {
						return myUID
					}
					return "unix:uid:" + strconv.Itoa(200000+i)
				}, c.prefetch, ttl)
				eventually(b, 60*time.Second, "the used entries served", func() bool { return countSVIDs(a.socket) == used })
				ctx, cancel := context.WithCancel(context.Background())
				src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)))
				if err != nil {
					b.Fatal(err)
				}
				// Not a wait for a condition: two lifetimes pass so that the window sees the steady state of
				// renewals (the first mints are not counted).
				time.Sleep(2 * ttl)
				b.ResetTimer()
				t1 := time.Now()
				time.Sleep(window) // the measured interval itself
				t2 := time.Now()
				b.StopTimer()
				src.Close()
				cancel()
				recs := decodeJSON[[]issuanceView](b, s.mustCLI("ledger", "query", "--owner", "bench", "--since", "3m", "--limit", "1000000", "-o", "json"))
				count := 0
				for _, r := range recs {
					at, err := time.Parse(time.RFC3339Nano, r.IssuedAt)
					if err != nil {
						b.Fatalf("issued_at %q: %v", r.IssuedAt, err)
					}
					if r.Kind == "x509-svid" && strings.HasPrefix(r.SPIFFEID, "spiffe://example.org/bench/") && !at.Before(t1) && at.Before(t2) {
						count++
					}
				}
				perHour := float64(count) / t2.Sub(t1).Hours()
				b.ReportMetric(perHour, "records/h-measured")
				b.ReportMetric(perHour*float64(ttl)/float64(time.Hour)*scale, "records/h-100k-entries-1h-ttl")
			}
		})
	}
}
