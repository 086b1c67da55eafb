package k8s

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkAttest: one attestation of this process, as the agent runs it per Workload API call, with
// p50 and p99 per call: k8s (stat and cgroup read, the cached pod list of 110 pods, the kubelet's
// default maximum, selectors memoized per list), unix beside it (warm caches), and both, as an agent
// on a Kubernetes node runs them; then the fetch of a new pod list.
func BenchmarkAttest(b *testing.B) {
	pods := make([]corev1.Pod, 0, 110)
	for i := range 109 {
		p := paymentsPod()
		p.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
		pods = append(pods, p)
	}
	pods = append(pods, paymentsPod())
	k := newKubelet(b, func(int64) []corev1.Pod { return pods })
	ka, pid, start := testAttestor(b, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.PodListTTL = MaxPodListTTL })
	ua, err := unix.New(unix.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	run := func(b *testing.B, attest func() error) {
		if err := attest(); err != nil { // warm the caches and fetch the pod list
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			if err := attest(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Nanoseconds())/1e3, "p99-µs")
	}
	b.Run("k8s", func(b *testing.B) {
		run(b, func() error { _, err := ka.Attest(ctx, pid, start); return err })
	})
	b.Run("unix", func(b *testing.B) {
		run(b, func() error { _, err := ua.Attest(ctx, pid, start); return err })
	})
	b.Run("unix+k8s", func(b *testing.B) {
		run(b, func() error {
			if _, err := ua.Attest(ctx, pid, start); err != nil {
				return err
			}
			_, err := ka.Attest(ctx, pid, start)
			return err
		})
	})
	if n := k.calls.Load(); n > 1 {
		b.Fatalf("the kubelet was asked %d times; the benchmarks above measure the cached list", n)
	}
	// What a cache miss costs, once per pod_list_ttl at most: the request to the local kubelet over
	// TLS (connection reused), reading and decoding 110 pods into v1.PodList, indexing them.
	b.Run("pod-list-fetch", func(b *testing.B) {
		run(b, func() error { _, err := ka.pods.fetch(ctx, time.Now()); return err })
	})
}
