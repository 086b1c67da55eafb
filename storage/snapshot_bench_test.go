package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkLedger10MSnapshot: a Raft snapshot (fsm.Snapshot, then Persist streaming state.db from one
// read transaction) of a ledger of SIGNET_BENCH_RECORDS records (default 10,000,000; the
// BenchmarkLedger10M builder), and the apply latency of ledger proposals made while it runs: one
// proposer appends 64-record batches back to back (as the server's group commit does), first for 10 s
// without a snapshot (the baseline), then during the snapshot. Once with the state file mapped as
// before the fix (1 GiB, bbolt then grows the mapping in 1 GiB steps) and once with the default
// Config.StateMmapSize. Before each snapshot the ledger is filled up to 8 MiB short of the next GiB:
// where a 1 GiB-stepped mapping ends, as it does once per GiB of growth. Run with -benchtime 1x (each
// op is one snapshot of the whole state).
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

// benchSnapshot measures one snapshot under a proposal load and returns the next record number: a
// 10 s baseline of the load, then the fill (fillToMappingEnd, without the load), then the snapshot with
// the load running.
func benchSnapshot(b *testing.B, s *Store, next int) int {
	b.StopTimer()
	p := startProposer(s, next)
	time.Sleep(10 * time.Second) // the baseline: a measured interval, not a wait for a condition
	base, next := p.stop(b)
	next = fillToMappingEnd(b, s, next)
	sizeBefore := stateSize(b, s)
	p = startProposer(s, next)
	b.StartTimer()
	t0 := time.Now()
	if err := s.Snapshot(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	b.StopTimer()
	during, next := p.stop(b)
	if len(base) == 0 || len(during) == 0 {
		b.Fatalf("no applies measured: %d before, %d during the snapshot", len(base), len(during))
	}
	b.ReportMetric(took.Seconds(), "snapshot-s")
	reportLatencies(b, "apply-baseline", base)
	reportLatencies(b, "apply-during-snapshot", during)
	b.ReportMetric(float64(len(during))/took.Seconds(), "applies/s-during-snapshot")
	b.Logf("snapshot in %s; %d applies during it (%d in the 10 s baseline); state.db %d MiB before it, %d MiB after",
		took.Round(time.Millisecond), len(during), len(base), sizeBefore>>20, stateSize(b, s)>>20)
	b.StartTimer()
	return next
}

// proposer appends 64-record ledger batches back to back and times each until stopped.
type proposer struct {
	stopping atomic.Bool
	done     chan struct{}
	lat      []time.Duration
	next     int
	err      error
}

func startProposer(s *Store, next int) *proposer {
	p := &proposer{done: make(chan struct{}), next: next}
	go func() {
		defer close(p.done)
		recs := make([]Issuance, 64)
		for !p.stopping.Load() {
			for j := range recs {
				recs[j] = benchIssuance(p.next+j, time.Now().Add(time.Hour))
			}
			p.next += len(recs)
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			err := s.AppendLedger(ctx, recs)
			cancel()
			if err != nil {
				p.err = fmt.Errorf("append: %w", err)
				return
			}
			p.lat = append(p.lat, time.Since(t0))
		}
	}()
	return p
}

// stop ends the load once the append in flight has finished (a stalled one counts with its whole
// wait) and returns the latencies and the next record number.
func (p *proposer) stop(b *testing.B) ([]time.Duration, int) {
	p.stopping.Store(true)
	<-p.done
	if p.err != nil {
		b.Fatal(p.err)
	}
	return p.lat, p.next
}

// fillToMappingEnd appends records until the state's high-water mark (what bbolt must have mapped) is
// within 8 MiB of the next GiB, and returns the next record number.
func fillToMappingEnd(b *testing.B, s *Store, next int) int {
	end := (stateUsed(b, s)>>30 + 1) << 30
	recs := make([]Issuance, 1024)
	for stateUsed(b, s) < end-8<<20 {
		for j := range recs {
			recs[j] = benchIssuance(next+j, time.Now().Add(time.Hour))
		}
		next += len(recs)
		if err := s.AppendLedger(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("filled to %d MiB of the %d MiB mapping end", stateUsed(b, s)>>20, end>>20)
	return next
}

// stateUsed is the high-water mark of s's state.db: the bytes its pages span.
func stateUsed(b *testing.B, s *Store) int64 {
	var n int64
	if err := s.view(func(tx *bolt.Tx) error { n = tx.Size(); return nil }); err != nil {
		b.Fatal(err)
	}
	return n
}

// stateSize is the size of s's state.db in bytes.
func stateSize(b *testing.B, s *Store) int64 {
	fi, err := os.Stat(filepath.Join(s.cfg.Dir, stateFile))
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// reportLatencies reports p50, p99 and max of d in milliseconds.
func reportLatencies(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	b.ReportMetric(ms(d[len(d)/2]), name+"-p50-ms")
	b.ReportMetric(ms(d[len(d)*99/100]), name+"-p99-ms")
	b.ReportMetric(ms(d[len(d)-1]), name+"-max-ms")
}
