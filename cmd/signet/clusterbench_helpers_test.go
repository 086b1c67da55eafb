package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchLimits raises the servers' issuance limits, which would otherwise cap the one load-generating
// agent far below what is measured.
const benchLimits = "issuance_limits:\n  agent_rate: 1000000\n  agent_burst: 10000000\n  entry_rate: 1000000\n  entry_burst: 10000000\n"

// newBenchCluster starts three 'signet server' processes with benchLimits and an owner "bench".
func newBenchCluster(b testing.TB) *testCluster {
	c := newTestCluster(b, 3)
	for _, s := range c.servers {
		s.appendConfig(b, benchLimits)
	}
	c.startAll()
	c.servers[0].mustCLI("owner", "add", "bench")
	return c
}

// loadAgent is the load generator: an agent attested with a join token through one server, holding
// its agent SVID and an mTLS connection to that server's agent API, and entries parented to it.
type loadAgent struct {
	id      string
	conn    *agent.ServerConn
	entries []string
}

// attestLoadAgent attests a load agent through s and creates n entries for it.
func attestLoadAgent(b testing.TB, s *testServer, n int) *loadAgent {
	b.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	bundle, err := x509bundle.Load(td, s.bundlePath)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, err := agent.Attest(ctx, agent.AttestConfig{Address: s.address, TrustDomain: td, DataDir: b.TempDir(),
		JoinToken: s.token("bench"), Bundle: bundle.X509Authorities(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	conn, err := agent.Dial(s.address, id, td)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	a := &loadAgent{id: id.ID(), conn: conn}
	importEntries(b, s, a.id, "bench", n, mine, false, 0)
	for _, e := range decodeJSON[[]entryView](b, s.mustCLI("entry", "list", "--parent-id", a.id, "-o", "json")) {
		a.entries = append(a.entries, e.ID)
	}
	if len(a.entries) != n {
		b.Fatalf("load agent %s has %d entries, want %d", a.id, len(a.entries), n)
	}
	// The entries are committed; wait until the server the agent talks to has applied them.
	csr := newBenchCSRs(b, 1)[0]
	eventually(b, 30*time.Second, "the load agent's last entry signed", func() bool {
		return a.sign(context.Background(), a.entries[n-1], csr) == nil
	})
	return a
}

// sign has one CSR signed for entry: one recorded X.509-SVID issuance.
func (a *loadAgent) sign(ctx context.Context, entry string, csr []byte) error {
	resp, err := a.conn.SignX509SVIDs(ctx, &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: entry, Csr: csr}}})
	if err != nil {
		return err
	}
	if len(resp.Results) != 1 || resp.Results[0].ErrorCode != 0 || len(resp.Results[0].CertChain) == 0 {
		return fmt.Errorf("entry %s: no X.509-SVID: %v", entry, resp.Results)
	}
	return nil
}

// newBenchCSRs returns n CSRs for fresh P-256 keys (made before the timer runs).
func newBenchCSRs(b testing.TB, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	for i := range out {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if out[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// runLoad has len(csrs) X.509-SVIDs signed through a by conc concurrent callers, each call one CSR for
// the next entry, and returns every call's latency and the elapsed time.
func (a *loadAgent) runLoad(b *testing.B, conc int, csrs [][]byte) ([]time.Duration, time.Duration) {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		all     []time.Duration
		firstEr error
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= len(csrs) {
					break
				}
				t0 := time.Now()
				if err := a.sign(ctx, a.entries[i%len(a.entries)], csrs[i]); err != nil {
					mu.Lock()
					firstEr = cmpOr(firstEr, err)
					mu.Unlock()
					cancel()
					break
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstEr != nil {
		b.Fatal(firstEr)
	}
	return all, elapsed
}

// reportPercentiles reports p50 and p99 of d (sorted in place) in milliseconds as name-p50-ms, name-p99-ms.
func reportPercentiles(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		b.Fatalf("%s: nothing measured", name)
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	b.ReportMetric(ms(d[len(d)/2]), name+"-p50-ms")
	b.ReportMetric(ms(d[len(d)*99/100]), name+"-p99-ms")
}
