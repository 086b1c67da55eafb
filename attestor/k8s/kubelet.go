package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/selector"
	corev1 "k8s.io/api/core/v1"
)

// kubeletClient is the HTTPS client of the kubelet's secure port: TLS 1.2 or later (kubelets do not
// all offer 1.3), verified against the CAs in caPath unless skipVerify.
func kubeletClient(caPath string, skipVerify bool) (*http.Client, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if skipVerify {
		conf.InsecureSkipVerify = true
	} else {
		pem, err := os.ReadFile(caPath)
		if err != nil {
			return nil, fmt.Errorf("%s: kubelet_ca_path: %w (or set skip_kubelet_verification for a kubelet with a self-signed certificate)", errPrefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: kubelet_ca_path %s: no PEM certificate in it", errPrefix, caPath)
		}
		conf.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true, MaxIdleConns: 2, IdleConnTimeout: time.Minute, Proxy: nil}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// readToken reads the service account token: not empty, at most 64 KiB, one line.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: token_path: %w", errPrefix, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: token_path %s: %w", errPrefix, path, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxTokenBytes:
		return "", fmt.Errorf("%s: token_path %s: larger than %d bytes: not a service account token", errPrefix, path, maxTokenBytes)
	case tok == "" || strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s: token_path %s: not a service account token (empty, or more than one line)", errPrefix, path)
	}
	return tok, nil
}

// podCache holds the kubelet's latest pod list, shared by every caller: while it is younger than ttl
// it answers them all, and concurrent callers that need a new one share one fetch.
type podCache struct {
	url       string
	tokenPath string
	client    *http.Client
	timeout   time.Duration
	maxBytes  int64
	ttl       time.Duration
	now       func() time.Time

	mu       sync.Mutex
	list     *podList
	inflight *fetch
}

// fetch is one pod list request in flight; done is closed when list or err is set.
type fetch struct {
	started time.Time
	// waiters counts the callers sharing this fetch (under podCache.mu).
	waiters int
	done    chan struct{}
	list    *podList
	err     error
}

// get returns a pod list fetched at or after since, and less than ttl ago. Concurrent callers share
// one request (which is not cancelled when one of them gives up).
func (c *podCache) get(ctx context.Context, since time.Time) (*podList, error) {
	c.mu.Lock()
	now := c.now()
	if l := c.list; l != nil && !l.fetched.Before(since) && now.Sub(l.fetched) < c.ttl {
		c.mu.Unlock()
		return l, nil
	}
	f := c.inflight
	if f == nil || f.started.Before(since) {
		f = &fetch{started: now, done: make(chan struct{})}
		c.inflight = f
		go c.run(context.WithoutCancel(ctx), f)
	}
	f.waiters++
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.list, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the kubelet's pod list: %w", ctx.Err())
	}
}

func (c *podCache) run(ctx context.Context, f *fetch) {
	f.list, f.err = c.fetch(ctx, f.started)
	c.mu.Lock()
	if f.err == nil && (c.list == nil || !f.started.Before(c.list.fetched)) {
		c.list = f.list
	}
	if c.inflight == f {
		c.inflight = nil
	}
	c.mu.Unlock()
	close(f.done)
}

// fetch GETs the pod list with the service account token and indexes it.
func (c *podCache) fetch(ctx context.Context, started time.Time) (*podList, error) {
	token, err := readToken(c.tokenPath)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("kubelet pod list %s: %w", c.url, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet pod list: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("kubelet pod list %s: reading: %w", c.url, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("kubelet pod list %s: %s: the agent's service account needs get on nodes/proxy (token_path %s)", c.url, resp.Status, c.tokenPath)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("kubelet pod list %s: %s", c.url, resp.Status)
	case int64(len(body)) > c.maxBytes:
		return nil, fmt.Errorf("kubelet pod list %s: larger than %d bytes (max_pod_list_bytes)", c.url, c.maxBytes)
	}
	var pods corev1.PodList
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&pods); err != nil {
		return nil, fmt.Errorf("kubelet pod list %s: not a PodList: %w", c.url, err)
	}
	return indexPods(pods.Items, started), nil
}

// podList is one pod list, indexed by pod UID. Its pods are never modified.
type podList struct {
	fetched time.Time
	byUID   map[string]*corev1.Pod

	// memo holds the validated, sorted selectors of each container attested from this list (at most
	// one entry per container it lists), so a cached list costs a map lookup per call.
	mu   sync.Mutex
	memo map[containerRef][]selector.Selector
}

func indexPods(pods []corev1.Pod, fetched time.Time) *podList {
	l := &podList{fetched: fetched, byUID: make(map[string]*corev1.Pod, len(pods))}
	for i := range pods {
		l.byUID[string(pods[i].UID)] = &pods[i]
	}
	return l
}

// errNoContainer: the pod is listed, the container not (yet) in its status.
var errNoContainer = errors.New("container not in the pod's status")

// selectors returns the selectors of the container ref names, if the list has it: those of
// podSelectors that valid keeps, computed once per list and container. The result is the caller's.
func (l *podList) selectors(ref containerRef, valid func([]selector.Selector) []selector.Selector) ([]selector.Selector, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sels, ok := l.memo[ref]; ok {
		return slices.Clone(sels), true
	}
	pod, ok := l.byUID[ref.podUID]
	if !ok {
		return nil, false
	}
	st, err := containerStatus(pod, ref.containerID)
	if err != nil {
		return nil, false
	}
	sels := valid(podSelectors(pod, st))
	if l.memo == nil {
		l.memo = make(map[containerRef][]selector.Selector)
	}
	l.memo[ref] = sels
	return slices.Clone(sels), true
}

// containerStatus finds the status of the container with ID id ("<runtime>://<id>") among the pod's
// containers, init containers and ephemeral containers.
func containerStatus(pod *corev1.Pod, id string) (*corev1.ContainerStatus, error) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			_, cid, ok := strings.Cut(list[i].ContainerID, "://")
			if ok && cid == id {
				return &list[i], nil
			}
		}
	}
	return nil, errNoContainer
}
