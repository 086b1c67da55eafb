package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchEnv is a real single-node server: Raft + bbolt store, CA, recorder and issuer.
type benchEnv struct {
	store  *storage.Store
	ca     *ca.CA
	issuer *Issuer
	caller Caller
	entry  storage.Entry
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := testkit.OpenStore(b, log)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	authority := testkit.NewCA(b, td, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(runCtx) }()
	b.Cleanup(func() { stop(); <-done })
	// The benchmarks measure signing and recording: rate limits out of the way.
	unlimited := IssuanceLimits{AgentRate: 1e9, AgentBurst: 1 << 40, EntryRate: 1e9, EntryBurst: 1 << 40}
	iss, err := NewIssuer(IssuerConfig{Store: st, CA: authority, Recorder: rec, NodeID: st.NodeID(), Limits: unlimited, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	agentID := spiffeid.RequireFromString("spiffe://example.org/signet/agent/bench")
	if _, err := st.CreateOwner(ctx, storage.Owner{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	e, err := st.CreateEntry(ctx, storage.Entry{ID: "bench-entry", SPIFFEID: "spiffe://example.org/bench/workload",
		ParentID: agentID.String(), Owner: "bench", Purpose: "benchmark",
		Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}}, X509TTL: time.Hour, JWTTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{store: st, ca: authority, issuer: iss, caller: Caller{AgentID: agentID, NodeAttestation: "bench"}, entry: e}
}

// benchKeys returns n distinct workload public keys (generated before timing starts).
func benchKeys(b *testing.B, n int) []crypto.PublicKey {
	keys := make([]crypto.PublicKey, n)
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k.Public()
	}
	return keys
}

// runLoad runs op b.N times on `workers` goroutines and reports throughput and latency percentiles.
func runLoad(b *testing.B, workers int, op func(i int) error) {
	var next int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var firstErr error
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/workers+1)
			for {
				mu.Lock()
				i := int(next)
				next++
				mu.Unlock()
				if i >= b.N {
					break
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
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
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "issuances/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkX509Issuance measures, in one run and on one server, X.509-SVID signing alone and issuance
// with its ledger record committed through the single-node Raft before the certificate is returned,
// sequentially and with 64 concurrent requests. Run with a fixed count: -benchtime 20000x.
func BenchmarkX509Issuance(b *testing.B) {
	env := newBenchEnv(b)
	id := spiffeid.RequireFromString(env.entry.SPIFFEID)
	signOnly := func(keys []crypto.PublicKey) func(int) error {
		return func(i int) error {
			_, err := env.ca.SignX509SVID(ca.X509SVIDParams{SPIFFEID: id, PublicKey: keys[i%len(keys)], TTL: time.Hour})
			return err
		}
	}
	recorded := func(keys []crypto.PublicKey) func(int) error {
		return func(i int) error {
			e, err := env.issuer.authorize(env.caller, env.issuer.Parents(env.caller, time.Now()), env.entry.ID)
			if err != nil {
				return err
			}
			_, rec, err := env.issuer.signForKey(&e, env.caller, keys[i%len(keys)])
			if err != nil {
				return err
			}
			return env.issuer.cfg.Recorder.Record(context.Background(), rec)
		}
	}
	// Agents send up to 500 CSRs per call: one Record for the whole batch. One op is one SVID; each
	// worker signs 500 and records them together.
	const batch = 500
	recordedBatch := func(keys []crypto.PublicKey) func(int) error {
		var mu sync.Mutex
		pending := map[int][]storage.Issuance{}
		return func(i int) error {
			e, err := env.issuer.authorize(env.caller, env.issuer.Parents(env.caller, time.Now()), env.entry.ID)
			if err != nil {
				return err
			}
			_, rec, err := env.issuer.signForKey(&e, env.caller, keys[i%len(keys)])
			if err != nil {
				return err
			}
			w := i / batch
			mu.Lock()
			pending[w] = append(pending[w], rec)
			full := len(pending[w]) == batch
			recs := pending[w]
			if full {
				delete(pending, w)
			}
			mu.Unlock()
			if full {
				return env.issuer.cfg.Recorder.Record(context.Background(), recs...)
			}
			return nil
		}
	}
	for _, c := range []struct {
		name    string
		workers int
		op      func([]crypto.PublicKey) func(int) error
	}{
		{"sign-only/sequential", 1, signOnly},
		{"recorded/sequential", 1, recorded},
		{"sign-only/concurrent-64", 64, signOnly},
		{"recorded/concurrent-64", 64, recorded},
		{"recorded/batches-of-500", 2, recordedBatch},
	} {
		b.Run(c.name, func(b *testing.B) {
			keys := benchKeys(b, min(b.N, 1024))
			runLoad(b, c.workers, c.op(keys))
		})
	}
}

// BenchmarkX509IssuanceWithCSR is the server's whole per-SVID path as agents drive it: CSR parsing and
// proof-of-possession check, authorization, signing and recording, 64 concurrent single-CSR requests and
// batches of 500 CSRs.
func BenchmarkX509IssuanceWithCSR(b *testing.B) {
	env := newBenchEnv(b)
	u, _ := url.Parse(env.entry.SPIFFEID)
	csrs := make([][]byte, 1024)
	for i := range csrs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, k)
		if err != nil {
			b.Fatal(err)
		}
		csrs[i] = der
	}
	b.Run("concurrent-64", func(b *testing.B) {
		runLoad(b, 64, func(i int) error {
			res, err := env.issuer.SignX509SVIDs(context.Background(), env.caller, []X509Request{{EntryID: env.entry.ID, CSR: csrs[i%len(csrs)]}})
			if err == nil && res[0].Err != nil {
				err = res[0].Err
			}
			return err
		})
	})
	b.Run("batch-500", func(b *testing.B) {
		reqs := make([]X509Request, 500)
		for i := range reqs {
			reqs[i] = X509Request{EntryID: env.entry.ID, CSR: csrs[i]}
		}
		// One op is one SVID: b.N/500 calls of 500 CSRs each, two calls in parallel (one per core).
		calls := max(1, b.N/len(reqs))
		var wg sync.WaitGroup
		var next atomic.Int64
		errs := make(chan error, 2)
		b.ResetTimer()
		start := time.Now()
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(calls) {
					res, err := env.issuer.SignX509SVIDs(context.Background(), env.caller, reqs)
					if err == nil && res[0].Err != nil {
						err = res[0].Err
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(calls*len(reqs))/time.Since(start).Seconds(), "issuances/s")
	})
}

// BenchmarkJWTIssuance: JWT-SVID signing alone and with its ledger record committed.
func BenchmarkJWTIssuance(b *testing.B) {
	env := newBenchEnv(b)
	id := spiffeid.RequireFromString(env.entry.SPIFFEID)
	aud := []string{"bench"}
	for _, c := range []struct {
		name    string
		workers int
		op      func(int) error
	}{
		{"sign-only/concurrent-64", 64, func(int) error {
			_, err := env.ca.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: id, Audience: aud, TTL: time.Hour})
			return err
		}},
		{"recorded/concurrent-64", 64, func(int) error {
			_, err := env.issuer.SignJWTSVID(context.Background(), env.caller, env.entry.ID, aud)
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) { runLoad(b, c.workers, c.op) })
	}
}

// BenchmarkParentsOf is the node-alias lookup made before every X.509 batch and JWT request (and on
// every sync wake-up), for an agent with node selectors among 1000 node aliases, 10 of which match it.
func BenchmarkParentsOf(b *testing.B) {
	env := newBenchEnv(b)
	serverID := ServerID(env.ca.TrustDomain()).String()
	aliases := make([]storage.Entry, 1000)
	for i := range aliases {
		aliases[i] = storage.Entry{ID: fmt.Sprintf("alias-%04d", i), SPIFFEID: fmt.Sprintf("spiffe://example.org/node/alias-%04d", i),
			ParentID: serverID, Owner: "bench", Purpose: "benchmark", X509TTL: time.Hour, JWTTTL: time.Hour,
			Selectors: []selector.Selector{{Type: "join_token", Value: fmt.Sprintf("owner:o%d", i%100)}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := env.store.CreateEntries(ctx, aliases)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	caller := env.caller
	caller.Selectors = []selector.Selector{{Type: "join_token", Value: "id:0123456789abcdef"}, {Type: "join_token", Value: "owner:o7"}}
	if got := env.issuer.Parents(caller, time.Now()); len(got) != 11 {
		b.Fatalf("parents: %d, want the agent and 10 aliases", len(got))
	}
	b.ReportAllocs()
	for b.Loop() {
		env.issuer.Parents(caller, time.Now())
	}
}
