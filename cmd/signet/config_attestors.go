package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/signet-id/signet/attestor/k8s"
)

// workloadAttestorsConfig is the agent's workload_attestors section: the attestors that run, each
// under its name. Without the section the agent runs the unix attestor alone.
type workloadAttestorsConfig struct {
	// Unix has no keys of its own yet (max_hash_size is a top-level key): "unix: {}".
	Unix *struct{}          `yaml:"unix"`
	K8s  *k8sAttestorConfig `yaml:"k8s"`
}

// k8sAttestorConfig is workload_attestors.k8s (k8s.Config; zero values: the package's defaults).
type k8sAttestorConfig struct {
	ProcRoot   string `yaml:"proc_root"`
	KubeletURL string `yaml:"kubelet_url"`
	NodeName   string `yaml:"node_name"`
	// NodeNameEnv names an environment variable holding the node name (a DaemonSet sets it from
	// spec.nodeName), for a config file shared by every node.
	NodeNameEnv             string        `yaml:"node_name_env"`
	TokenPath               string        `yaml:"token_path"`
	KubeletCAPath           string        `yaml:"kubelet_ca_path"`
	SkipKubeletVerification bool          `yaml:"skip_kubelet_verification"`
	PodListTTL              time.Duration `yaml:"pod_list_ttl"`
	PollInterval            time.Duration `yaml:"poll_interval"`
	PollAttempts            int           `yaml:"poll_attempts"`
	RequestTimeout          time.Duration `yaml:"request_timeout"`
	MaxPodListBytes         int64         `yaml:"max_pod_list_bytes"`
	// lib is the validated k8s.Config, filled by checkWorkloadAttestors.
	lib k8s.Config
}

// enabledAttestors says which workload attestors run: unix alone when the section is absent or
// empty; otherwise those it names (present is the set of keys the file sets, so "unix:" with no value
// counts).
type enabledAttestors struct{ unix, k8s bool }

// checkWorkloadAttestors validates the workload_attestors section and decides what runs.
func checkWorkloadAttestors(path string, c *agentFileConfig, present map[string]bool) (enabledAttestors, error) {
	const key = "workload_attestors"
	on := enabledAttestors{unix: present[key+".unix"], k8s: present[key+".k8s"]}
	if !on.unix && !on.k8s {
		return enabledAttestors{unix: true}, nil
	}
	if !on.k8s {
		return on, nil
	}
	if c.WorkloadAttestors.K8s == nil {
		c.WorkloadAttestors.K8s = &k8sAttestorConfig{}
	}
	k := c.WorkloadAttestors.K8s
	if k.NodeNameEnv != "" {
		if k.NodeName != "" {
			return on, configError(path, key+".k8s.node_name_env", "cannot be set together with node_name: give one")
		}
		k.NodeName = os.Getenv(k.NodeNameEnv)
		if k.NodeName == "" {
			return on, configError(path, key+".k8s.node_name_env", "environment variable %q is empty or not set (set it from spec.nodeName with the downward API)", k.NodeNameEnv)
		}
	}
	k.lib = k8s.Config{ProcRoot: k.ProcRoot, KubeletURL: k.KubeletURL, NodeName: k.NodeName, TokenPath: k.TokenPath,
		KubeletCAPath: k.KubeletCAPath, SkipKubeletVerification: k.SkipKubeletVerification, PodListTTL: k.PodListTTL,
		PollInterval: k.PollInterval, PollAttempts: k.PollAttempts, RequestTimeout: k.RequestTimeout, MaxPodListBytes: k.MaxPodListBytes}
	if err := k.lib.Check(); err != nil {
		// "attestor/k8s: poll_attempts -1: …" → "config FILE: workload_attestors.k8s.poll_attempts -1: …"
		return on, fmt.Errorf("config %s: %s.k8s.%s", path, key, strings.TrimPrefix(err.Error(), "attestor/k8s: "))
	}
	return on, nil
}

// k8sConfig is the validated k8s attestor configuration, or nil when it does not run.
func (c *agentFileConfig) k8sConfig() *k8s.Config {
	if !c.attestors.k8s {
		return nil
	}
	return &c.WorkloadAttestors.K8s.lib
}
