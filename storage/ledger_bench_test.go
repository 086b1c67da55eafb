package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkLedger10M fills a ledger with SIGNET_BENCH_RECORDS records (default 10,000,000; 1,000 owners,
// 100,000 entries, 1,000 agents) through Raft in batches of 4,096, then measures, as a security
// engineer would use them: lookup of a credential by serial, the newest page of an owner's issuances,
// and an owner's credentials valid now. One op is one of each; p50/p99 are reported per kind.
// Run: go test -run '^$' -bench Ledger10M -benchtime 2000x -timeout 60m ./storage (loads once: the measurement is the "queries" sub-benchmark)
func BenchmarkLedger10M(b *testing.B) {
	n := benchRecords()
	s := openTestStore(b, b.TempDir())
	defer s.Close()
	loadBenchLedger(b, s, n)
	// The measurement is a sub-benchmark so the load above runs once (the parent runs with N=1 only).
	b.Run("queries", func(b *testing.B) { benchLedgerQueries(b, s, n) })
}

// benchRecords is SIGNET_BENCH_RECORDS, default 10,000,000.
func benchRecords() int {
	if v := os.Getenv("SIGNET_BENCH_RECORDS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return 10_000_000
}

// benchIssuance is the k-th record of a benchmark ledger: 1,000 owners, 100,000 entries, 1,000 agents.
func benchIssuance(k int, expires time.Time) Issuance {
	return Issuance{ID: fmt.Sprintf("%032x", uint64(k)*0x9e3779b97f4a7c15), Kind: KindX509SVID,
		SPIFFEID: fmt.Sprintf("spiffe://example.org/w/%d", k%100000), EntryID: fmt.Sprintf("e%05d", k%100000),
		Owner: fmt.Sprintf("owner-%03d", k%1000), Selectors: []string{"unix:uid:1000"},
		PublicKeySHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		ExpiresAt:       expires, Node: "node-1", Agent: fmt.Sprintf("spiffe://example.org/signet/agent/%d", k%1000),
		NodeAttestation: "join_token"}
}

// loadBenchLedger appends n records through Raft in batches of 4,096.
func loadBenchLedger(b *testing.B, s *Store, n int) {
	ctx := context.Background()
	start := time.Now()
	const batch = 4096
	recs := make([]Issuance, batch)
	for i := 0; i < n; i += batch {
		m := min(batch, n-i)
		for j := range m {
			recs[j] = benchIssuance(i+j, time.Now().Add(time.Hour))
		}
		if err := s.AppendLedger(ctx, recs[:m]); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d records in %s", n, time.Since(start).Round(time.Second))
}

func benchLedgerQueries(b *testing.B, s *Store, n int) {
	var lookup, owner, valid []time.Duration
	b.ResetTimer()
	for range b.N {
		k := rand.N(n)
		t0 := time.Now()
		if _, err := s.LookupIssuance(fmt.Sprintf("%032x", uint64(k)*0x9e3779b97f4a7c15)); err != nil {
			b.Fatal(err)
		}
		lookup = append(lookup, time.Since(t0))
		o := fmt.Sprintf("owner-%03d", rand.N(1000))
		t0 = time.Now()
		page, err := s.QueryLedger(LedgerQuery{Owner: o, Limit: 100})
		if err != nil || len(page.Issuances) != 100 {
			b.Fatalf("query: %d, %v", len(page.Issuances), err)
		}
		owner = append(owner, time.Since(t0))
		t0 = time.Now()
		if _, err := s.QueryLedger(LedgerQuery{Owner: o, ValidAt: time.Now(), Limit: 100}); err != nil {
			b.Fatal(err)
		}
		valid = append(valid, time.Since(t0))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"lookup", lookup}, {"owner-page", owner}, {"owner-valid-now", valid}} {
		slices.Sort(m.d)
		b.ReportMetric(float64(m.d[len(m.d)/2].Microseconds()), m.name+"-p50-µs")
		b.ReportMetric(float64(m.d[len(m.d)*99/100].Microseconds()), m.name+"-p99-µs")
	}
}
