package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	k8sPodUID       = "7d3e2f1a-5b6c-4d8e-9f0a-1b2c3d4e5f60"
	k8sContainerID  = "4f2a6c8e0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a"
	k8sUnlistedID   = "0000000000000000000000000000000000000000000000000000000000000001"
	k8sTestToken    = "agent-service-account-token"
	k8sCgroupFormat = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope\n"
)

// k8sNode is what the agent sees on a Kubernetes node: a kubelet (local HTTPS server serving a real
// v1.PodList with the payments/api pod) and a proc root where processes' cgroups are fixtures.
type k8sNode struct {
	kubelet  *httptest.Server
	requests atomic.Int64
	procRoot string
	config   string // the agent's workload_attestors section
}

func newK8sNode(t *testing.T) *k8sNode {
	n := &k8sNode{procRoot: t.TempDir()}
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "api-0", Namespace: "payments", UID: types.UID(k8sPodUID), Labels: map[string]string{"app": "api"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "api", NodeName: "node-1", Containers: []corev1.Container{{Name: "api", Image: "payments/api:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "api", ContainerID: "containerd://" + k8sContainerID, Image: "docker.io/payments/api:1"}}},
	}
	n.kubelet = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pods" || r.Header.Get("Authorization") != "Bearer "+k8sTestToken {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		n.requests.Add(1)
		json.NewEncoder(w).Encode(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{pod}})
	}))
	n.kubelet.Config.ErrorLog = log.New(io.Discard, "", 0)
	n.kubelet.StartTLS()
	t.Cleanup(n.kubelet.Close)
	dir := t.TempDir()
	ca, token := filepath.Join(dir, "kubelet-ca.crt"), filepath.Join(dir, "token")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.kubelet.Certificate().Raw})))
	writeFile(t, token, k8sTestToken+"\n")
	n.config = fmt.Sprintf(`workload_attestors:
  unix: {}
  k8s:
    proc_root: %s
    kubelet_url: %s
    token_path: %s
    kubelet_ca_path: %s
    poll_interval: 20ms
    poll_attempts: 5
`, n.procRoot, n.kubelet.URL, token, ca)
	return n
}

// place shows process pid in the proc root with its real stat (its start time) and the cgroup line of
// the given container (pod "" for a process in no pod).
func (n *k8sNode) place(t *testing.T, pid int, pod, container string) {
	t.Helper()
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	cgroup := "0::/user.slice/user-1000.slice/session-1.scope\n"
	if pod != "" {
		cgroup = fmt.Sprintf(k8sCgroupFormat, strings.ReplaceAll(pod, "-", "_"), container)
	}
	writeFile(t, filepath.Join(n.procRoot, strconv.Itoa(pid), "stat"), string(stat))
	writeFile(t, filepath.Join(n.procRoot, strconv.Itoa(pid), "cgroup"), cgroup)
}

// fetchAs runs 'signet svid fetch' in a child placed in the given container: a shell that waits
// until it is placed, then execs signet (same pid, same start time).
func (n *k8sNode) fetchAs(t *testing.T, socket, pod, container string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `read go && exec "$0" svid fetch --socket "$1" --timeout 30s`, signetBin, socket)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.place(t, cmd.Process.Pid, pod, container)
	io.WriteString(stdin, "go\n")
	stdin.Close()
	code := 0
	if err := cmd.Wait(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// TestK8sWorkloadEndToEnd: real server and agent processes, the agent running the unix and k8s
// workload attestors against a local kubelet. A process in the payments/api container gets the SVID
// of the entry selected by k8s:ns:payments + k8s:sa:api + its uid (the union of both attestors);
// a process in a container the kubelet does not list is refused after the retry window; a process in
// no pod is served by its unix selectors.
func TestK8sWorkloadEndToEnd(t *testing.T) {
	node := newK8sNode(t)
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "payments")
	a := s.newAgent(t, node.config).start(t, s.token("payments"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/payments/api", "--selector", "k8s:ns:payments",
		"--selector", "k8s:sa:api", "--selector", myUID, "--owner", "payments", "--purpose", "the payments API", "--parent-id", a.id)
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/host/tool", "--selector", myUID,
		"--owner", "payments", "--purpose", "a host tool", "--parent-id", a.id)

	// This test process runs "in" the payments/api container.
	node.place(t, os.Getpid(), k8sPodUID, k8sContainerID)
	// go-spiffe's FetchX509SVIDs, from this process.
	waitForIDs(t, a.socket, "spiffe://example.org/payments/api", "spiffe://example.org/host/tool")

	// A container the kubelet never lists: refused after poll_attempts fresh lists, fail closed.
	before := node.requests.Load()
	_, stderr, code := node.fetchAs(t, a.socket, k8sPodUID, k8sUnlistedID)
	if code == 0 || !strings.Contains(stderr, "container not in the kubelet's pod list after 5 fetches") {
		t.Fatalf("unlisted container: exit %d, stderr %s", code, stderr)
	}
	if got := node.requests.Load() - before; got < 4 {
		t.Fatalf("the kubelet was asked %d times for the unlisted container, want a fresh list per attempt", got)
	}

	// A process in no pod: its unix selectors only, no error.
	out, stderr, code := node.fetchAs(t, a.socket, "", "")
	if code != 0 || !strings.Contains(out, "spiffe://example.org/host/tool") || strings.Contains(out, "payments/api") {
		t.Fatalf("process in no pod: exit %d, stdout %s, stderr %s", code, out, stderr)
	}
	if strings.Contains(a.stderr.String(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("the agent logged about a served process: %s", a.stderr.String())
	}
}
