package server_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/issuer"
)

// rotationBenchCallers is how many agent API callers ask at once in BenchmarkIssuanceAcrossRotation.
const rotationBenchCallers = 64

// BenchmarkIssuanceAcrossRotation: 64 callers ask the agent API (in-memory gRPC to a real server: Raft
// and bbolt on disk, the group-commit recorder) for one X.509-SVID per call, b.N calls in all, each
// returned only once its ledger record is committed. In window=rotating the node's keys rotate
// (Server.RotateKeys: a successor made, published in the bundle through Raft, activated) when a quarter
// of the calls have started, and the run fails unless both keys signed SVIDs in it; in window=steady
// nothing rotates. keys=disk keeps the keys in files, keys=pkcs11 in a SoftHSM2 token (the successor is
// generated in the token, and every SVID signed there, during the window). Reports issuances/s, p50 and
// p99 latency, and how long the rotation took. Run with a fixed count and repetitions, and compare the
// windows with benchstat: -benchtime 4000x -count 6.
func BenchmarkIssuanceAcrossRotation(b *testing.B) {
	conf, err := testkit.WriteSoftHSMConf(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("SOFTHSM2_CONF", conf) // before the module is first loaded in this process
	const pin = "4711-bench"
	testkit.NewSoftHSMToken(b, conf, "signet-bench", pin)
	pinFile := filepath.Join(b.TempDir(), "hsm.pin")
	if err := os.WriteFile(pinFile, []byte(pin), 0o600); err != nil {
		b.Fatal(err)
	}
	km, err := keymanager.Open(context.Background(), keymanager.Config{Kind: keymanager.PKCS11,
		URI: "pkcs11:module-path=" + testkit.SoftHSMModule + ";token=signet-bench?pin-source=" + pinFile})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { km.Close() })
	csrs := make([][]byte, 256) // workload keys are reused: the server checks each CSR on its own
	for i := range csrs {
		csrs[i] = testkit.CSR(b, testkit.P256(b), nil)
	}
	runs := 0
	for _, keys := range []string{"disk", "pkcs11"} {
		for _, window := range []string{"steady", "rotating"} {
			b.Run("keys="+keys+"/window="+window, func(b *testing.B) {
				runs++
				cfg := rotation.Config{Dir: b.TempDir(), New: rotation.DiskFactory(testenv.TrustDomain, 0, nil),
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				if keys == "pkcs11" { // a node of its own per run: its keys do not meet the others' in the token
					cfg.New = rotation.KeyManagerFactory(testenv.TrustDomain, 0, nil, km.SlotKeys(fmt.Sprintf("bench-%d", runs)))
					cfg.Destroy = km.DestroySlot
				}
				rot, err := rotation.Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				runIssuanceAcrossRotation(b, rot, csrs, window == "rotating")
			})
		}
	}
}

// rotationBenchWarmup is how many calls each window is preceded by, untimed: the environment is fresh
// per window, and the first calls (connection, recorder, page cache) would weigh on whichever runs first.
const rotationBenchWarmup = 1000

// runIssuanceAcrossRotation runs b.N single-CSR issuance calls on rotationBenchCallers goroutines against
// a server whose keys are rot, after rotationBenchWarmup untimed ones, rotating them once a quarter of the
// timed calls have started if rotate.
func runIssuanceAcrossRotation(b *testing.B, rot *rotation.Manager, csrs [][]byte, rotate bool) {
	env := testenv.NewWith(b, func(c *server.Config) {
		c.CA, c.Keys = nil, rot
		// Throughput is measured: rate limits out of the way.
		c.IssuanceLimits = issuer.IssuanceLimits{AgentRate: 1e9, AgentBurst: 1 << 40, EntryRate: 1e9, EntryBurst: 1 << 40}
	})
	const agentID = "spiffe://example.org/signet/agent/bench"
	env.Owner(b, "bench")
	l := &issuanceLoad{srv: env.Server, client: env.AgentClient(b, agentID), csrs: csrs,
		entry: env.Entries(b, agentID, "bench", "spiffe://example.org/bench", 1, "unix:uid:1000")[0]}
	if _, _, err := l.run(rotationBenchWarmup, -1); err != nil {
		b.Fatal(err)
	}
	rotateAt := int64(-1)
	if rotate && b.N >= 4*rotationBenchCallers { // not in the run of one call that sizes nothing
		rotateAt = int64(b.N / 4)
	}
	b.ResetTimer()
	start := time.Now()
	lat, signers, err := l.run(b.N, rotateAt)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if rotateAt >= 0 {
		// The rotation must have happened inside the window: both keys signed in it.
		if len(signers) != 2 {
			b.Fatalf("%d keys signed during the window (%v), want the old and the new one: the rotation ended after the window (run a longer one: -benchtime 4000x)", len(signers), slices.Collect(maps.Values(signers)))
		}
		b.ReportMetric(float64(l.rotationTook.Milliseconds()), "rotation-ms")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "issuances/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// issuanceLoad is rotationBenchCallers agent API callers asking for one X.509-SVID each per call.
type issuanceLoad struct {
	srv          *server.Server
	client       agentv1.AgentClient
	entry        string
	csrs         [][]byte
	rotationTook time.Duration
}

// run makes n calls and returns their latencies and how many SVIDs each authority key ID signed; the
// call numbered rotateAt (none if negative) also starts Server.RotateKeys, which run waits for.
func (l *issuanceLoad) run(n int, rotateAt int64) ([]time.Duration, map[string]int, error) {
	ctx := context.Background()
	var (
		next     int64
		rotated  = make(chan error, 1)
		mu       sync.Mutex
		lat      []time.Duration
		signers  = map[string]int{} // authority key ID -> SVIDs it signed
		firstErr error
		wg       sync.WaitGroup
	)
	for range rotationBenchCallers {
		wg.Go(func() {
			local, localSigners := make([]time.Duration, 0, n/rotationBenchCallers+1), map[string]int{}
			var err error
			for {
				i := atomic.AddInt64(&next, 1) - 1
				if i >= int64(n) {
					break
				}
				if i == rotateAt {
					go func() {
						t0 := time.Now()
						_, err := l.srv.RotateKeys(ctx)
						l.rotationTook = time.Since(t0)
						rotated <- err
					}()
				}
				t0 := time.Now()
				var res *agentv1.SignX509SVIDsResponse
				res, err = l.client.SignX509SVIDs(ctx, &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: l.entry, Csr: l.csrs[i%int64(len(l.csrs))]}}})
				if err == nil && res.Results[0].ErrorCode != 0 {
					err = fmt.Errorf("issuance %d refused: %s", i, res.Results[0].ErrorMessage)
				}
				if err != nil {
					break
				}
				local = append(local, time.Since(t0))
				var leaf *x509.Certificate
				if leaf, err = x509.ParseCertificate(res.Results[0].CertChain[0]); err != nil {
					break
				}
				localSigners[string(leaf.AuthorityKeyId)]++
			}
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, local...)
			for k, c := range localSigners {
				signers[k] += c
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	if firstErr == nil && rotateAt >= 0 && rotateAt < int64(n) {
		if err := <-rotated; err != nil {
			firstErr = fmt.Errorf("RotateKeys: %w", err)
		}
	}
	return lat, signers, firstErr
}
