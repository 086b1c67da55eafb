package k8s

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/signet-id/signet/internal/procfs"
	"github.com/signet-id/signet/selector"
)

// ErrProcessGone is returned (wrapped, naming the pid) when the process being attested exited, or its
// pid came to name another process, while Attest was reading it.
var ErrProcessGone = errors.New("process exited or its pid was reused")

// ErrNotListed is returned (wrapped, naming the pod and container) when a process runs in a container
// the kubelet did not list within the retry window: the call is refused (fail closed).
var ErrNotListed = errors.New("container not in the kubelet's pod list")

// Defaults applied by New to zero Config fields.
const (
	DefaultProcRoot = "/proc"
	// DefaultKubeletPort is the kubelet's secure port; the URL is https://<NodeName or 127.0.0.1>:10250.
	DefaultKubeletPort = 10250
	// DefaultTokenPath is where the kubelet mounts a pod's service account token.
	DefaultTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	// DefaultKubeletCAPath is the cluster CA mounted beside the token; many kubelets serve a
	// certificate it signed (serverTLSBootstrap). Otherwise give the kubelet's CA, or skip verification.
	DefaultKubeletCAPath = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	// DefaultPodListTTL is how long one pod list answers every caller before it is fetched again.
	DefaultPodListTTL = 2 * time.Second
	// DefaultPollInterval and DefaultPollAttempts bound the wait for a just-started container to
	// appear in the kubelet's list: 20 fetches 250 ms apart, 5 s in all; then the call is refused.
	DefaultPollInterval = 250 * time.Millisecond
	DefaultPollAttempts = 20
	// DefaultRequestTimeout bounds one pod list request.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxPodListBytes bounds the kubelet's answer (110 pods, the kubelet's default maximum,
	// take well under 2 MiB).
	DefaultMaxPodListBytes int64 = 32 << 20
)

// Upper bounds of the Config fields.
const (
	MaxPollAttempts    = 600
	MaxPollInterval    = time.Minute
	MaxPodListTTL      = time.Minute
	MaxRequestTimeout  = time.Minute
	MaxPodListBytesCap = 256 << 20
	maxTokenBytes      = 64 << 10
	selectorType       = "k8s"
	errPrefix          = "attestor/k8s"
)

// Config configures an Attestor. Durations and counts left zero get the defaults above.
type Config struct {
	// ProcRoot is where the proc file system of the callers' pid namespace is mounted (default
	// "/proc"); the agent must see the host's cgroup paths (host pid and cgroup namespaces).
	ProcRoot string
	// KubeletURL is the kubelet's secure endpoint, https://host:port (default
	// https://<NodeName>:10250, or https://127.0.0.1:10250 without NodeName). The pod list is GET
	// <KubeletURL>/pods.
	KubeletURL string
	// NodeName is this node's name; only used for the default KubeletURL.
	NodeName string
	// TokenPath is the agent's service account token, sent as a bearer token and read again for each
	// fetch (projected tokens rotate). Default DefaultTokenPath.
	TokenPath string
	// KubeletCAPath is a PEM file of the CAs the kubelet's serving certificate must chain to (default
	// DefaultKubeletCAPath). Ignored, and must be empty, with SkipKubeletVerification.
	KubeletCAPath string
	// SkipKubeletVerification accepts any kubelet certificate (kubelets with self-signed certificates).
	SkipKubeletVerification bool
	// PodListTTL is how long a fetched pod list is used for every caller (default DefaultPodListTTL).
	PodListTTL time.Duration
	// PollInterval and PollAttempts: a container not (yet) in the list is looked for in a fresh list
	// up to PollAttempts times, PollInterval apart, before the call is refused.
	PollInterval time.Duration
	PollAttempts int
	// RequestTimeout bounds one pod list request (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// MaxPodListBytes bounds the kubelet's answer (default DefaultMaxPodListBytes).
	MaxPodListBytes int64
	// Now is the clock of the pod list cache (default time.Now).
	Now func() time.Time
	// Logger receives debug messages; default: discarded.
	Logger *slog.Logger
}

// SelectorType declares the selectors this attestor produces, for a server's selector.Registry.
func SelectorType() selector.Type {
	return selector.Type{Name: selectorType, Kind: selector.Workload, Keys: map[string]selector.ValueCheck{
		"ns":              dnsLabelValue,
		"sa":              dnsSubdomainValue,
		"pod-name":        dnsSubdomainValue,
		"pod-uid":         uidValue,
		"pod-label":       labelValue,
		"pod-owner":       ownerValue,
		"container-name":  dnsLabelValue,
		"container-image": imageValue,
		"node-name":       dnsSubdomainValue,
	}}
}

// Attestor produces k8s selectors for processes running in pods on this node. It is safe for
// concurrent use.
type Attestor struct {
	procRoot  string
	attempts  int
	interval  time.Duration
	pods      *podCache
	selectors selector.Type
	log       *slog.Logger
}

// Check validates cfg without touching the file system (a configuration loader calls it), and fills
// the defaults of zero fields. Errors name the configuration key (kubelet_url, poll_attempts, …).
func (cfg *Config) Check() error {
	var err error
	cfg.ProcRoot = cmp.Or(cfg.ProcRoot, DefaultProcRoot)
	if cfg.NodeName != "" {
		if err := dnsSubdomainValue(cfg.NodeName); err != nil {
			return fmt.Errorf("%s: node_name: %w", errPrefix, err)
		}
	}
	if cfg.KubeletURL, err = kubeletURL(cfg.KubeletURL, cfg.NodeName); err != nil {
		return err
	}
	if cfg.SkipKubeletVerification && cfg.KubeletCAPath != "" {
		return fmt.Errorf("%s: kubelet_ca_path and skip_kubelet_verification: give one, not both", errPrefix)
	}
	if !cfg.SkipKubeletVerification {
		cfg.KubeletCAPath = cmp.Or(cfg.KubeletCAPath, DefaultKubeletCAPath)
	}
	cfg.TokenPath = cmp.Or(cfg.TokenPath, DefaultTokenPath)
	for _, p := range []struct{ key, path string }{{"proc_root", cfg.ProcRoot}, {"token_path", cfg.TokenPath}, {"kubelet_ca_path", cfg.KubeletCAPath}} {
		if p.path != "" && !filepath.IsAbs(p.path) {
			return fmt.Errorf("%s: %s: %q is not an absolute path", errPrefix, p.key, p.path)
		}
	}
	if cfg.PodListTTL, err = bounded("pod_list_ttl", cfg.PodListTTL, DefaultPodListTTL, MaxPodListTTL); err != nil {
		return err
	}
	if cfg.PollInterval, err = bounded("poll_interval", cfg.PollInterval, DefaultPollInterval, MaxPollInterval); err != nil {
		return err
	}
	if cfg.PollAttempts, err = bounded("poll_attempts", cfg.PollAttempts, DefaultPollAttempts, MaxPollAttempts); err != nil {
		return err
	}
	if cfg.RequestTimeout, err = bounded("request_timeout", cfg.RequestTimeout, DefaultRequestTimeout, MaxRequestTimeout); err != nil {
		return err
	}
	cfg.MaxPodListBytes, err = bounded("max_pod_list_bytes", cfg.MaxPodListBytes, DefaultMaxPodListBytes, MaxPodListBytesCap)
	return err
}

// New returns an Attestor configured by cfg, with defaults applied to zero fields. The token file must
// exist and the CA file hold a certificate: a misconfigured agent fails at start, not on each call.
func New(cfg Config) (*Attestor, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	root, err := procfs.Root(cfg.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("%s: proc_root: %w", errPrefix, err)
	}
	if _, err := readToken(cfg.TokenPath); err != nil {
		return nil, err
	}
	client, err := kubeletClient(cfg.KubeletCAPath, cfg.SkipKubeletVerification)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attestor{
		procRoot: root, attempts: cfg.PollAttempts, interval: cfg.PollInterval, selectors: SelectorType(),
		pods: &podCache{url: cfg.KubeletURL + "/pods", tokenPath: cfg.TokenPath, client: client, timeout: cfg.RequestTimeout,
			maxBytes: cfg.MaxPodListBytes, ttl: cfg.PodListTTL, now: now},
		log: log.With("attestor", selectorType),
	}, nil
}

// kubeletURL validates the configured URL, or builds the default.
func kubeletURL(raw, node string) (string, error) {
	if raw == "" {
		host := cmp.Or(node, "127.0.0.1")
		return "https://" + host + ":" + strconv.Itoa(DefaultKubeletPort), nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%s: kubelet_url: %q: want https://host:port (the kubelet's secure port, e.g. https://127.0.0.1:10250)", errPrefix, raw)
	}
	return "https://" + u.Host, nil
}

// bounded returns v, or def when v is zero; a negative v or one above maxV is an error naming the key.
func bounded[T int | int64 | time.Duration](key string, v, def, maxV T) (T, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0 || v > maxV:
		return 0, fmt.Errorf("%s: %s: %v: want a positive value of at most %v", errPrefix, key, v, maxV)
	}
	return v, nil
}

// Attest returns the k8s selectors of process pid, sorted by selector.Normalize: none, and no error,
// for a process in no pod. startTime is the start time the process had when it connected: a pid that
// names another process before or after the cgroup is read is refused with ErrProcessGone. A process in
// a container the kubelet does not list is looked for in fresh lists for the poll window, then
// refused with ErrNotListed.
func (a *Attestor) Attest(ctx context.Context, pid int32, startTime uint64) ([]selector.Selector, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("%s: pid %d: not a process id", errPrefix, pid)
	}
	if err := a.checkSameProcess(pid, startTime); err != nil {
		return nil, err
	}
	ref, inPod, readErr := a.readCgroup(pid)
	if err := a.checkSameProcess(pid, startTime); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	if !inPod {
		return nil, nil
	}
	var since time.Time // the list must be fetched at or after this time (zero: any cached list)
	for attempt := 1; ; attempt++ {
		list, err := a.pods.get(ctx, since)
		if err != nil {
			return nil, fmt.Errorf("%s: pid %d: %w", errPrefix, pid, err)
		}
		if sels, ok := list.selectors(ref, func(s []selector.Selector) []selector.Selector { return a.valid(pid, s) }); ok {
			if attempt > 1 { // it waited: the caller must still be there
				if err := a.checkSameProcess(pid, startTime); err != nil {
					return nil, err
				}
			}
			return sels, nil
		}
		if attempt >= a.attempts {
			return nil, fmt.Errorf("%s: pid %d: pod %s container %s: %w after %d fetches %s apart",
				errPrefix, pid, ref.podUID, ref.containerID, ErrNotListed, a.attempts, a.interval)
		}
		a.log.Debug("container not in the kubelet's pod list yet; polling", "pid", pid, "pod", ref.podUID, "container", ref.containerID, "attempt", attempt)
		t := time.NewTimer(a.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: pid %d: waiting for pod %s in the kubelet's list: %w", errPrefix, pid, ref.podUID, ctx.Err())
		case <-t.C:
		}
		since = a.pods.now()
	}
}

// valid drops (logging at debug level) selectors that are not valid values of their key.
func (a *Attestor) valid(pid int32, sels []selector.Selector) []selector.Selector {
	out := sels[:0]
	for _, s := range sels {
		if err := a.selectors.Validate(s); err != nil {
			a.log.Debug("skipping selector that is not valid", "pid", pid, "error", err)
			continue
		}
		out = append(out, s)
	}
	return selector.Normalize(out)
}

func (a *Attestor) readCgroup(pid int32) (containerRef, bool, error) {
	var buf [procfs.BufSize]byte // grown up to 16 KiB: 13 v1 hierarchies of long systemd paths fit
	path := filepath.Join(a.procRoot, strconv.FormatInt(int64(pid), 10), "cgroup")
	b, err := procfs.ReadFile(path, buf[:])
	if err != nil {
		return containerRef{}, false, fmt.Errorf("%s: pid %d: reading cgroup: %w", errPrefix, pid, err)
	}
	ref, inPod, err := parseCgroup(b)
	if err != nil {
		return containerRef{}, false, fmt.Errorf("%s: pid %d: %w", errPrefix, pid, err)
	}
	return ref, inPod, nil
}

func (a *Attestor) checkSameProcess(pid int32, start uint64) error {
	now, err := procfs.StartTime(a.procRoot, pid)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: pid %d: %w", errPrefix, pid, ErrProcessGone)
	case err != nil:
		return fmt.Errorf("%s: pid %d: reading start time: %w", errPrefix, pid, err)
	case now != start:
		return fmt.Errorf("%s: pid %d: %w: start time %d, the caller's was %d", errPrefix, pid, ErrProcessGone, now, start)
	}
	return nil
}
