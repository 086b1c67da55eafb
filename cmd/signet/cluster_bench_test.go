package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
)

// BenchmarkClusterIssuance: recorded X.509-SVID issuances per second on three real 'signet server'
// processes (each issuance's ledger record committed on a Raft majority, with fsync, before the answer).
// The load generator is an agent attested with a join token through the server measured, with 256
// entries; each call is SignX509SVIDs with one CSR (keys made beforehand) over the agent API (mTLS,
// TLS 1.3), from 1, 16, 64 and 256 concurrent callers, through the leader and through a follower.
// Reports issuances/s and the calls' p50/p99. Run with -benchtime 4000x (calls per case).
func BenchmarkClusterIssuance(b *testing.B) {
	c := newBenchCluster(b)
	leader := c.leaderIndex(0, 1, 2)
	targets := []struct {
		name string
		s    *testServer
	}{{"leader", c.servers[leader]}, {"follower", c.servers[(leader+1)%3]}}
	for _, tg := range targets {
		a := attestLoadAgent(b, tg.s, 256)
		for _, conc := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/concurrency-%d", tg.name, conc), func(b *testing.B) {
				csrs := newBenchCSRs(b, b.N)
				b.ResetTimer()
				lat, elapsed := a.runLoad(b, conc, csrs)
				b.StopTimer()
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "issuances/s")
				reportPercentiles(b, "call", lat)
			})
		}
	}
}

// BenchmarkClusterFailover: the leader of three 'signet server' processes is SIGKILLed; measured is the
// time from the kill to the first successful recorded X.509-SVID issuance through a survivor (a load
// agent attested there calls SignX509SVIDs, each attempt bounded by 2 s, 10 ms apart). The killed server
// is restarted and the three agree on a leader before the next run. Run with -benchtime 10x.
func BenchmarkClusterFailover(b *testing.B) {
	c := newBenchCluster(b)
	agents := make([]*loadAgent, len(c.servers))
	for i, s := range c.servers {
		agents[i] = attestLoadAgent(b, s, 1)
	}
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		leader := c.leaderIndex(0, 1, 2)
		survivor := (leader + 1) % 3
		a := agents[survivor]
		csrs := newBenchCSRs(b, 1)
		b.StartTimer()
		t0 := time.Now()
		c.servers[leader].kill9()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := a.sign(ctx, a.entries[0], csrs[0])
			cancel()
			if err == nil {
				break
			}
			if time.Since(t0) > 60*time.Second {
				b.Fatalf("no recorded issuance through server %d 60 s after the leader's kill: %v", survivor, err)
			}
			time.Sleep(10 * time.Millisecond) // the retry interval of a caller, not a synchronisation
		}
		took = append(took, time.Since(t0))
		b.StopTimer()
		c.servers[leader].start(b)
		c.leaderIndex(0, 1, 2)
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, "kill-to-issuance", took)
	b.ReportMetric(float64(slices.Max(took).Microseconds())/1000, "kill-to-issuance-max-ms")
}

// BenchmarkClusterEntryPropagation: an entry created through a follower's admin socket (the admin API,
// in process, as 'signet entry create' calls it) until an agent connected to another server receives it
// on its entry sync stream (SyncEntries, the stream a 'signet agent' keeps open). One op is one entry;
// p50/p99 of the delay are reported. Run with -benchtime 200x.
func BenchmarkClusterEntryPropagation(b *testing.B) {
	c := newBenchCluster(b)
	leader := c.leaderIndex(0, 1, 2)
	writer, reader := c.servers[(leader+1)%3], c.servers[(leader+2)%3]
	a := attestLoadAgent(b, reader, 1)
	admin, closeAdmin, err := dialAdmin(writer.adminSocket)
	if err != nil {
		b.Fatal(err)
	}
	defer closeAdmin()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := a.conn.SyncEntries(ctx, &agentv1.SyncEntriesRequest{})
	if err != nil {
		b.Fatal(err)
	}
	seen := make(chan string, 1024)
	go func() {
		defer close(seen)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			for _, e := range resp.Entries {
				seen <- e.SpiffeId
			}
		}
	}()
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		want := fmt.Sprintf("spiffe://example.org/propagation/%d", i)
		t0 := time.Now()
		_, err := admin.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: &adminv1.Entry{SpiffeId: want, ParentId: a.id,
			Selectors: []*adminv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 300000+i)}}, Owner: "bench", Purpose: "propagation"}})
		if err != nil {
			b.Fatal(err)
		}
		waitSeen(b, seen, want)
		took = append(took, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, "create-to-agent", took)
}

// waitSeen reads entry IDs from seen until want arrives (within 30 s).
func waitSeen(b *testing.B, seen <-chan string, want string) {
	deadline := time.After(30 * time.Second)
	for {
		select {
		case id, ok := <-seen:
			if !ok {
				b.Fatalf("the sync stream ended before %s arrived", want)
			}
			if id == want {
				return
			}
		case <-deadline:
			b.Fatalf("%s did not reach the agent on another server within 30 s", want)
		}
	}
}
