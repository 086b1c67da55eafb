package storage

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkLedger10MSnapshot: a Raft snapshot (fsm.Snapshot, then Persist streaming state.db from one
// read transaction) of a ledger of SIGNET_BENCH_RECORDS records (default 10,000,000; the
// BenchmarkLedger10M builder), and the apply latency of ledger proposals made while it runs: one
// proposer appends 64-record batches back to back (as the server's group commit does), first for 10 s
// without a snapshot (the baseline), then during the snapshot. Once with the state file mapped as
// before the fix (1 GiB, bbolt then grows the mapping in 1 GiB steps) and once with the default
// Config.StateMmapSize. Run with -benchtime 1x (each op is one snapshot of the whole state).
func BenchmarkLedger10MSnapshot(b *testing.B) {
	n := benchRecords()
	dir := b.TempDir()
	s := openSnapshotBenchStore(b, dir, 0)
	loadBenchLedger(b, s, n)
	s.Close()
	next := n // the proposer's records continue the ledger's numbering
	for _, v := range []struct {
		name string
		mmap int64
	}{{"before-mmap-1GiB", MinStateMmapSize}, {"after-mmap-default", 0}} {
		b.Run(v.name, func(b *testing.B) {
			s := openSnapshotBenchStore(b, dir, v.mmap)
			defer s.Close()
			for range b.N {
				next = benchSnapshot(b, s, next)
			}
		})
	}
}

// openSnapshotBenchStore opens the store in dir; automatic snapshots are off so that the measured one
// is the only one.
func openSnapshotBenchStore(b *testing.B, dir string, mmap int64) *Store {
	b.Helper()
	s, err := Open(Config{Dir: dir, Bootstrap: true, Logger: testLogger(b), StateMmapSize: mmap,
		SnapshotThreshold: 1 << 40, SnapshotInterval: time.Hour,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		s.Close()
		b.Fatalf("WaitLeader: %v", err)
	}
	return s
}

// benchSnapshot measures one snapshot under a proposal load and returns the next record number.
func benchSnapshot(b *testing.B, s *Store, next int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu      sync.Mutex
		lat     []time.Duration
		propErr error
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		const batch = 64
		recs := make([]Issuance, batch)
		for ctx.Err() == nil {
			for j := range recs {
				recs[j] = benchIssuance(next+j, time.Now().Add(time.Hour))
			}
			next += batch
			t0 := time.Now()
			err := s.AppendLedger(ctx, recs)
			d := time.Since(t0)
			if err != nil {
				if ctx.Err() == nil {
					mu.Lock()
					propErr = fmt.Errorf("append during the snapshot: %w", err)
					mu.Unlock()
				}
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	}()
	take := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		out := lat
		lat = nil
		return out
	}
	// The baseline: a fixed window of the same load without a snapshot (a measured interval, not a wait
	// for a condition).
	b.StopTimer()
	time.Sleep(10 * time.Second)
	base := take()
	b.StartTimer()
	t0 := time.Now()
	if err := s.Snapshot(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	during := take()
	b.StopTimer()
	cancel()
	wg.Wait()
	if propErr != nil {
		b.Fatal(propErr)
	}
	if len(base) == 0 || len(during) == 0 {
		b.Fatalf("no applies measured: %d before, %d during the snapshot", len(base), len(during))
	}
	b.ReportMetric(took.Seconds(), "snapshot-s")
	reportLatencies(b, "apply-baseline", base)
	reportLatencies(b, "apply-during-snapshot", during)
	b.ReportMetric(float64(len(during))/took.Seconds(), "applies/s-during-snapshot")
	b.Logf("snapshot in %s; %d applies during it (%d in the 10 s baseline)", took.Round(time.Millisecond), len(during), len(base))
	b.StartTimer()
	return next
}

// reportLatencies reports p50, p99 and max of d in milliseconds.
func reportLatencies(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	b.ReportMetric(ms(d[len(d)/2]), name+"-p50-ms")
	b.ReportMetric(ms(d[len(d)*99/100]), name+"-p99-ms")
	b.ReportMetric(ms(d[len(d)-1]), name+"-max-ms")
}
