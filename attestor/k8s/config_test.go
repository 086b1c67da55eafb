package k8s

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/selector"
)

// TestNewValidatesConfig: every bad field is refused at start with an error naming its key.
func TestNewValidatesConfig(t *testing.T) {
	dir := t.TempDir()
	token, ca, notPEM := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt"), filepath.Join(dir, "not.pem")
	writeTestFile(t, token, "abc.def.ghi")
	writeTestFile(t, ca, selfSignedPEM(t))
	writeTestFile(t, notPEM, "hello")
	writeTestFile(t, filepath.Join(dir, "empty"), "\n")
	writeTestFile(t, filepath.Join(dir, "two-lines"), "a\nb\n")
	writeTestFile(t, filepath.Join(dir, "huge"), strings.Repeat("a", maxTokenBytes+1))
	good := Config{TokenPath: token, KubeletCAPath: ca}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"relative proc root", func(c *Config) { c.ProcRoot = "proc" }, `proc_root: "proc" is not an absolute path`},
		{"missing proc root", func(c *Config) { c.ProcRoot = filepath.Join(dir, "nope") }, "proc_root"},
		{"relative token path", func(c *Config) { c.TokenPath = "token" }, `token_path: "token" is not an absolute path`},
		{"bad node name", func(c *Config) { c.NodeName = "Node_1" }, `node_name: value "Node_1" is not a DNS subdomain`},
		{"http kubelet", func(c *Config) { c.KubeletURL = "http://127.0.0.1:10255" }, `kubelet_url: "http://127.0.0.1:10255": want https://host:port`},
		{"kubelet url with a path", func(c *Config) { c.KubeletURL = "https://127.0.0.1:10250/pods" }, "kubelet_url"},
		{"kubelet url with credentials", func(c *Config) { c.KubeletURL = "https://u:p@127.0.0.1:10250" }, "kubelet_url"},
		{"ca and skip", func(c *Config) { c.SkipKubeletVerification = true }, "kubelet_ca_path and skip_kubelet_verification: give one"},
		{"missing ca", func(c *Config) { c.KubeletCAPath = filepath.Join(dir, "nope") }, "kubelet_ca_path"},
		{"ca not PEM", func(c *Config) { c.KubeletCAPath = notPEM }, "no PEM certificate"},
		{"missing token", func(c *Config) { c.TokenPath = filepath.Join(dir, "nope") }, "token_path"},
		{"empty token", func(c *Config) { c.TokenPath = filepath.Join(dir, "empty") }, "not a service account token"},
		{"two-line token", func(c *Config) { c.TokenPath = filepath.Join(dir, "two-lines") }, "not a service account token"},
		{"huge token", func(c *Config) { c.TokenPath = filepath.Join(dir, "huge") }, "larger than 65536 bytes"},
		{"negative ttl", func(c *Config) { c.PodListTTL = -time.Second }, "pod_list_ttl: -1s"},
		{"ttl too long", func(c *Config) { c.PodListTTL = time.Hour }, "pod_list_ttl: 1h0m0s: want a positive value of at most 1m0s"},
		{"negative attempts", func(c *Config) { c.PollAttempts = -1 }, "poll_attempts"},
		{"too many attempts", func(c *Config) { c.PollAttempts = MaxPollAttempts + 1 }, "poll_attempts"},
		{"interval too long", func(c *Config) { c.PollInterval = 2 * time.Minute }, "poll_interval"},
		{"timeout too long", func(c *Config) { c.RequestTimeout = 2 * time.Minute }, "request_timeout"},
		{"list bound too large", func(c *Config) { c.MaxPodListBytes = MaxPodListBytesCap + 1 }, "max_pod_list_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	a, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.pods.url != "https://127.0.0.1:10250/pods" || a.attempts != DefaultPollAttempts || a.interval != DefaultPollInterval || a.pods.ttl != DefaultPodListTTL {
		t.Fatalf("defaults: url %s attempts %d interval %s ttl %s", a.pods.url, a.attempts, a.interval, a.pods.ttl)
	}
	good.NodeName = "node-1.example"
	if a, err = New(good); err != nil || a.pods.url != "https://node-1.example:10250/pods" {
		t.Fatalf("default URL with a node name: %v, %v", a, err)
	}
}

// TestSelectorType: the keys and value checks a server validates k8s selectors with.
func TestSelectorType(t *testing.T) {
	typ := SelectorType()
	for _, ok := range []string{
		"k8s:ns:payments", "k8s:sa:api", "k8s:pod-name:api-5d4f8b7c9-x2x7k", "k8s:pod-uid:" + fixturePodUID,
		"k8s:pod-label:app:api", "k8s:pod-label:app.kubernetes.io/name:web", "k8s:pod-label:tier:",
		"k8s:pod-owner:ReplicaSet:api-5d4f8b7c9", "k8s:container-name:api",
		"k8s:container-image:registry.example:5000/payments/api@sha256:" + strings.Repeat("a", 64), "k8s:node-name:ip-10-0-0-1.ec2.internal",
	} {
		s, err := selector.Parse(ok)
		if err == nil {
			err = typ.Validate(s)
		}
		if err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"k8s:ns:Payments":                           "not a DNS label",
		"k8s:ns:a.b":                                "not a DNS label",
		"k8s:sa:-api":                               "not a DNS subdomain",
		"k8s:pod-uid:42":                            "not a pod UID",
		"k8s:pod-label:app":                         "not <label key>:<label value>",
		"k8s:pod-label:-app:x":                      "not a label key",
		"k8s:pod-label:app:a b":                     "not a label value",
		"k8s:pod-owner:ReplicaSet":                  "not <owner kind>:<owner name>",
		"k8s:pod-owner:Replica-Set:x":               "not <owner kind>:<owner name>",
		"k8s:container-image:a b":                   "not an image reference",
		"k8s:ns-label:team:payments":                `unknown key "ns-label"`,
		"k8s:node-name:" + strings.Repeat("a", 254): "not a DNS subdomain",
	} {
		s, err := selector.Parse(bad)
		if err == nil {
			err = typ.Validate(s)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", bad, err, want)
		}
	}
}
