package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/procfs"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/selector"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const testToken = "eyJhbGciOiJSUzI1NiJ9.agent-token.sig"

// kubelet is a local HTTPS server answering GET /pods as the kubelet's secure port does: a v1.PodList
// in JSON, for callers presenting the expected bearer token.
type kubelet struct {
	srv    *httptest.Server
	caPath string
	token  atomic.Value // string: the bearer token it accepts
	calls  atomic.Int64
	// pods returns the list to serve for the n-th request (1-based).
	pods func(n int64) []corev1.Pod
	// gate, if set, is received from before answering (to hold requests in flight).
	gate chan struct{}
}

func newKubelet(t testing.TB, pods func(n int64) []corev1.Pod) *kubelet {
	t.Helper()
	k := &kubelet{pods: pods}
	k.token.Store(testToken)
	k.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pods" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+k.token.Load().(string) {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		n := k.calls.Add(1)
		if k.gate != nil {
			<-k.gate
		}
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: k.pods(n)}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(&list)
	}))
	t.Cleanup(k.srv.Close)
	k.caPath = filepath.Join(t.TempDir(), "kubelet-ca.crt")
	writeTestFile(t, k.caPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})))
	return k
}

// paymentsPod is the pod of the fixtures' container: namespace payments, service account api.
func paymentsPod() corev1.Pod {
	ctrl := true
	return corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "api-5d4f8b7c9-x2x7k", Namespace: "payments", UID: types.UID(fixturePodUID),
			Labels:          map[string]string{"app": "api", "app.kubernetes.io/part-of": "payments"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "api-5d4f8b7c9", UID: "1b2c", Controller: &ctrl}}},
		Spec: corev1.PodSpec{ServiceAccountName: "api", NodeName: "node-1",
			Containers:     []corev1.Container{{Name: "sidecar", Image: "envoy:1.30"}, {Name: "api", Image: "registry.example/payments/api:1.4"}},
			InitContainers: []corev1.Container{{Name: "migrate", Image: "registry.example/payments/migrate:1.4"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "sidecar", ContainerID: "containerd://" + strings.Repeat("e", 64), Image: "docker.io/library/envoy:1.30"},
				{Name: "api", ContainerID: "containerd://" + fixtureContainerID, Image: "registry.example/payments/api:1.4",
					ImageID: "registry.example/payments/api@sha256:" + strings.Repeat("a", 64)},
			}},
	}
}

func writeTestFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// procRoot builds a proc root holding pid's real stat (so its start time is the real one) and the
// cgroup fixture named cgroup, as /proc would show a process in that container.
func procRoot(t testing.TB, pid int, cgroup string) string {
	t.Helper()
	root := t.TempDir()
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.ReadFile(filepath.Join("testdata", "cgroup", cgroup))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(root, strconv.Itoa(pid), "stat"), string(stat))
	writeTestFile(t, filepath.Join(root, strconv.Itoa(pid), "cgroup"), string(cg))
	return root
}

// testAttestor is an Attestor for this process, seen in cgroup fixture cgroup, asking k.
func testAttestor(t testing.TB, k *kubelet, cgroup string, mod func(*Config)) (*Attestor, int32, uint64) {
	t.Helper()
	pid := os.Getpid()
	tokenPath := filepath.Join(t.TempDir(), "token")
	writeTestFile(t, tokenPath, testToken+"\n")
	cfg := Config{ProcRoot: procRoot(t, pid, cgroup), KubeletURL: k.srv.URL, TokenPath: tokenPath, KubeletCAPath: k.caPath,
		PollInterval: time.Millisecond, PollAttempts: 3}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start, err := procfs.StartTime("/proc", int32(pid))
	if err != nil {
		t.Fatal(err)
	}
	return a, int32(pid), start
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestAttestPodSelectors: a process in a container of a listed pod gets the pod's and the container's
// selectors, valid and sorted.
func TestAttestPodSelectors(t *testing.T) {
	for _, cgroup := range []string{"v2-systemd-containerd-besteffort", "v1-cgroupfs-docker-burstable", "v2-systemd-crio-burstable"} {
		t.Run(cgroup, func(t *testing.T) {
			k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
			a, pid, start := testAttestor(t, k, cgroup, nil)
			sels, err := a.Attest(testCtx(t), pid, start)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"k8s:container-image:registry.example/payments/api:1.4",
				"k8s:container-image:registry.example/payments/api@sha256:" + strings.Repeat("a", 64),
				"k8s:container-name:api",
				"k8s:node-name:node-1",
				"k8s:ns:payments",
				"k8s:pod-label:app.kubernetes.io/part-of:payments",
				"k8s:pod-label:app:api",
				"k8s:pod-name:api-5d4f8b7c9-x2x7k",
				"k8s:pod-owner:ReplicaSet:api-5d4f8b7c9",
				"k8s:pod-uid:" + fixturePodUID,
				"k8s:sa:api",
			}
			if got := selector.Strings(sels); !slices.Equal(got, want) {
				t.Fatalf("selectors:\n got %q\nwant %q", got, want)
			}
			for _, s := range sels {
				if err := SelectorType().Validate(s); err != nil {
					t.Errorf("attested selector does not validate: %v", err)
				}
			}
			// Selectors are computed once per list and container; each caller gets its own copy.
			sels[0].Value = "ns:changed-by-the-caller"
			again, err := a.Attest(testCtx(t), pid, start)
			if err != nil || !slices.Equal(selector.Strings(again), want) {
				t.Fatalf("second attestation: %q, %v; want %q", selector.Strings(again), err, want)
			}
		})
	}
}

// TestAttestProcessOutsidePod: a process in no pod gets no selectors and no error, and costs no
// kubelet request.
func TestAttestProcessOutsidePod(t *testing.T) {
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
	for _, cgroup := range []string{"v2-host-user-session", "v1-host-systemd-service", "v2-plain-docker-container"} {
		a, pid, start := testAttestor(t, k, cgroup, nil)
		sels, err := a.Attest(testCtx(t), pid, start)
		if err != nil || len(sels) != 0 {
			t.Fatalf("%s: Attest: %v, %v; want nothing", cgroup, selector.Strings(sels), err)
		}
	}
	if n := k.calls.Load(); n != 0 {
		t.Fatalf("kubelet asked %d times for processes in no pod", n)
	}
}

// TestAttestWaitsForNewContainer: a container not yet in the pod's status (it just started) is looked
// for again in fresh lists, and attested once it appears.
func TestAttestWaitsForNewContainer(t *testing.T) {
	k := newKubelet(t, func(n int64) []corev1.Pod {
		switch n {
		case 1:
			return nil // the pod is not listed yet
		case 2:
			p := paymentsPod()
			p.Status.ContainerStatuses = p.Status.ContainerStatuses[:1] // listed, the container not yet
			return []corev1.Pod{p}
		}
		return []corev1.Pod{paymentsPod()}
	})
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.PollAttempts = 5 })
	sels, err := a.Attest(testCtx(t), pid, start)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(selector.Strings(sels), "k8s:sa:api") {
		t.Fatalf("selectors %q lack k8s:sa:api", selector.Strings(sels))
	}
	if n := k.calls.Load(); n != 3 {
		t.Fatalf("kubelet asked %d times, want 3 (two misses, then found)", n)
	}
}

// TestAttestRechecksTheCallerAfterWaiting: a caller whose pid came to name another process while the
// attestor polled for its container is refused once the container is listed.
func TestAttestRechecksTheCallerAfterWaiting(t *testing.T) {
	var root string
	k := newKubelet(t, func(n int64) []corev1.Pod {
		if n == 1 {
			return nil
		}
		// Meanwhile the caller exited and its pid went to another process (pid 1's start time).
		other, err := os.ReadFile("/proc/1/stat")
		if err != nil {
			t.Error(err)
		}
		writeTestFile(t, filepath.Join(root, strconv.Itoa(os.Getpid()), "stat"), string(other))
		return []corev1.Pod{paymentsPod()}
	})
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", nil)
	root = a.procRoot
	if sels, err := a.Attest(testCtx(t), pid, start); !errors.Is(err, ErrProcessGone) {
		t.Fatalf("Attest: %q, %v; want ErrProcessGone", selector.Strings(sels), err)
	}
}

// TestAttestRefusesUnlistedContainer: a container the kubelet never lists is refused after
// PollAttempts fresh lists (fail closed), naming the pod and container.
func TestAttestRefusesUnlistedContainer(t *testing.T) {
	other := paymentsPod()
	other.UID = "0f4a7b3e-9a0d-4c52-8f25-1c2b3d4e5f60"
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{other} })
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.PollAttempts = 4 })
	sels, err := a.Attest(testCtx(t), pid, start)
	if !errors.Is(err, ErrNotListed) || sels != nil {
		t.Fatalf("Attest: %v, %v; want ErrNotListed", selector.Strings(sels), err)
	}
	for _, want := range []string{"pod " + fixturePodUID, "container " + fixtureContainerID, "after 4 fetches"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n := k.calls.Load(); n != 4 {
		t.Fatalf("kubelet asked %d times, want 4", n)
	}
}

// TestPodListCachedAndShared: concurrent callers share one kubelet request, later callers use the
// cached list until it is PodListTTL old (by the injected clock), then it is fetched again.
func TestPodListCachedAndShared(t *testing.T) {
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
	k.gate = make(chan struct{})
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.Now = clock; c.PodListTTL = 2 * time.Second })
	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() { _, err := a.Attest(testCtx(t), pid, start); errs <- err }()
	}
	// Hold the first request until every caller waits on it: they all share it.
	waitfor.Condition(t, 30*time.Second, "every caller to wait on the kubelet request", func() bool {
		a.pods.mu.Lock()
		defer a.pods.mu.Unlock()
		return a.pods.inflight != nil && a.pods.inflight.waiters == callers
	})
	close(k.gate)
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := k.calls.Load(); n != 1 {
		t.Fatalf("%d concurrent callers made %d kubelet requests, want 1", callers, n)
	}
	if _, err := a.Attest(testCtx(t), pid, start); err != nil || k.calls.Load() != 1 {
		t.Fatalf("a call within the TTL: %v, %d requests; want the cached list", err, k.calls.Load())
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if _, err := a.Attest(testCtx(t), pid, start); err != nil || k.calls.Load() != 2 {
		t.Fatalf("a call after the TTL: %v, %d requests; want a new fetch", err, k.calls.Load())
	}
}

// TestKubeletToken: the token file is read for each fetch (projected tokens rotate); a token the
// kubelet refuses is an error saying which permission the agent needs.
func TestKubeletToken(t *testing.T) {
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
	var tokenPath string
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { tokenPath = c.TokenPath; c.PodListTTL = time.Nanosecond })
	if _, err := a.Attest(testCtx(t), pid, start); err != nil {
		t.Fatal(err)
	}
	k.token.Store("rotated-token")
	_, err := a.Attest(testCtx(t), pid, start)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: the agent's service account needs get on nodes/proxy") {
		t.Fatalf("Attest with a stale token: %v", err)
	}
	writeTestFile(t, tokenPath, "rotated-token")
	if _, err := a.Attest(testCtx(t), pid, start); err != nil {
		t.Fatalf("Attest after the token file rotated: %v", err)
	}
}

// TestKubeletVerification: a kubelet whose certificate does not chain to kubelet_ca_path is refused;
// skip_kubelet_verification accepts it.
func TestKubeletVerification(t *testing.T) {
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
	otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
	writeTestFile(t, otherCA, selfSignedPEM(t))
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.KubeletCAPath = otherCA })
	if _, err := a.Attest(testCtx(t), pid, start); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Attest against a kubelet of another CA: %v, want a certificate error", err)
	}
	a, pid, start = testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.KubeletCAPath, c.SkipKubeletVerification = "", true })
	if _, err := a.Attest(testCtx(t), pid, start); err != nil {
		t.Fatalf("Attest with skip_kubelet_verification: %v", err)
	}
}

// TestAttestRefusesReusedPid: a pid whose start time is not the caller's is refused before anything
// is asked of the kubelet.
func TestAttestRefusesReusedPid(t *testing.T) {
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", nil)
	if _, err := a.Attest(testCtx(t), pid, start+1); !errors.Is(err, ErrProcessGone) {
		t.Fatalf("Attest with another start time: %v, want ErrProcessGone", err)
	}
	if _, err := a.Attest(testCtx(t), 999999999, start); !errors.Is(err, ErrProcessGone) {
		t.Fatalf("Attest of a pid not in the proc root: %v, want ErrProcessGone", err)
	}
	if n := k.calls.Load(); n != 0 {
		t.Fatalf("kubelet asked %d times", n)
	}
}

// TestKubeletAnswerBounded: a pod list larger than max_pod_list_bytes is refused.
func TestKubeletAnswerBounded(t *testing.T) {
	k := newKubelet(t, func(int64) []corev1.Pod { return []corev1.Pod{paymentsPod()} })
	a, pid, start := testAttestor(t, k, "v2-systemd-containerd-besteffort", func(c *Config) { c.MaxPodListBytes = 512 })
	if _, err := a.Attest(testCtx(t), pid, start); err == nil || !strings.Contains(err.Error(), "larger than 512 bytes (max_pod_list_bytes)") {
		t.Fatalf("Attest: %v", err)
	}
}

// selfSignedPEM is a CA certificate no kubelet of these tests chains to.
func selfSignedPEM(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
