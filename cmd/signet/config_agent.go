package main

import (
	"cmp"
	"fmt"
	"os"
	"strconv"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// This file holds the agent's configuration file: its keys, loadAgentConfig, and the checks of the
// server addresses, the sds section and the Workload API limits.

// agentFileConfig is the agent's configuration file.
type agentFileConfig struct {
	TrustDomain   string `yaml:"trust_domain"`
	ServerAddress string `yaml:"server_address"`
	// ServerAddresses are several servers' agent API addresses (instead of ServerAddress).
	ServerAddresses   []string `yaml:"server_addresses"`
	DataDir           string   `yaml:"data_dir"`
	SocketPath        string   `yaml:"socket_path"`
	SocketMode        string   `yaml:"socket_mode"`
	TrustBundlePath   string   `yaml:"trust_bundle_path"`
	InsecureBootstrap bool     `yaml:"insecure_bootstrap"`
	LogLevel          string   `yaml:"log_level"`
	// JWTMintRate and JWTMintBurst limit the JWT-SVIDs minted per caller uid (agent.Config).
	JWTMintRate  float64 `yaml:"jwt_mint_rate"`
	JWTMintBurst int     `yaml:"jwt_mint_burst"`
	// JWTCacheSize bounds the JWT-SVIDs the agent keeps for reuse.
	JWTCacheSize int `yaml:"jwt_cache_size"`
	// MaxHashSize is the size in bytes above which an executable is not hashed (unix.Config).
	MaxHashSize int64 `yaml:"max_hash_size"`
	// WorkloadAttestors selects and configures the workload attestors (config_attestors.go).
	WorkloadAttestors *workloadAttestorsConfig `yaml:"workload_attestors"`
	// attestors is what runs, filled by loadAgentConfig.
	attestors enabledAttestors
	// NodeAttestor says how the agent attests its node (k8s_psat, aws_iid); without it, with a join token.
	NodeAttestor agentNodeAttestor `yaml:"node_attestor"`

	// Envoy SDS (the secret discovery service on the Workload API socket, docs/envoy.md).
	SDS agentSDSConfig `yaml:"sds"`
}

// agentSDSConfig is the agent's sds section (workloadapi.SDSConfig).
type agentSDSConfig struct {
	// DisableSPIFFECertValidation sends validation contexts as trusted_ca rather than as the SPIFFE
	// certificate validator's configuration.
	DisableSPIFFECertValidation bool `yaml:"disable_spiffe_cert_validation"`
	// DefaultSVIDName, DefaultBundleName and DefaultAllBundlesName rename the resources default,
	// ROOTCA and ALL (the names SPIRE's agent configuration calls the same).
	DefaultSVIDName       string `yaml:"default_svid_name"`
	DefaultBundleName     string `yaml:"default_bundle_name"`
	DefaultAllBundlesName string `yaml:"default_all_bundles_name"`
}

// check fills the default resource names and checks them, naming the key.
func (c *agentSDSConfig) check(path string) error {
	c.DefaultSVIDName = cmp.Or(c.DefaultSVIDName, workloadapi.SDSDefaultSVIDName)
	c.DefaultBundleName = cmp.Or(c.DefaultBundleName, workloadapi.SDSDefaultBundleName)
	c.DefaultAllBundlesName = cmp.Or(c.DefaultAllBundlesName, workloadapi.SDSAllBundlesName)
	seen := map[string]string{}
	for _, k := range []struct{ key, name string }{
		{"sds.default_svid_name", c.DefaultSVIDName}, {"sds.default_bundle_name", c.DefaultBundleName}, {"sds.default_all_bundles_name", c.DefaultAllBundlesName},
	} {
		if err := workloadapi.CheckSDSResourceName(k.name); err != nil {
			return configError(path, k.key, "%v", err)
		}
		if other, dup := seen[k.name]; dup {
			return configError(path, k.key, "%q is also %s: the three names must differ", k.name, other)
		}
		seen[k.name] = k.key
	}
	return nil
}

// sdsConfig maps the sds section onto the library's configuration.
func (c agentSDSConfig) sdsConfig() workloadapi.SDSConfig {
	return workloadapi.SDSConfig{DisableSPIFFECertValidation: c.DisableSPIFFECertValidation,
		DefaultSVIDName: c.DefaultSVIDName, DefaultBundleName: c.DefaultBundleName, DefaultAllBundlesName: c.DefaultAllBundlesName}
}

// loadAgentConfig reads and validates an agent configuration file, filling defaults.
func loadAgentConfig(path string) (agentFileConfig, spiffeid.TrustDomain, os.FileMode, error) {
	var c agentFileConfig
	present, err := decodeConfigKeys(path, &c)
	if err != nil {
		return c, spiffeid.TrustDomain{}, 0, err
	}
	if c.WorkloadAttestors == nil {
		c.WorkloadAttestors = &workloadAttestorsConfig{}
	}
	if c.attestors, err = checkWorkloadAttestors(path, &c, present); err != nil {
		return c, spiffeid.TrustDomain{}, 0, err
	}
	td, err := requireTrustDomain(path, c.TrustDomain)
	if err != nil {
		return c, td, 0, err
	}
	if err := checkServerAddresses(path, &c); err != nil {
		return c, td, 0, err
	}
	if c.DataDir == "" {
		c.DataDir = defaultAgentDataDir
	}
	if err := requireAbs(path, "data_dir", c.DataDir); err != nil {
		return c, td, 0, err
	}
	if c.SocketPath == "" {
		c.SocketPath = defaultAgentSocket
	}
	if err := requireAbs(path, "socket_path", c.SocketPath); err != nil {
		return c, td, 0, err
	}
	if c.SocketMode == "" {
		c.SocketMode = defaultSocketMode
	}
	mode, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return c, td, 0, configError(path, "socket_mode", "%q: want an octal file mode such as \"0666\"", c.SocketMode)
	}
	if c.TrustBundlePath != "" {
		if err := requireAbs(path, "trust_bundle_path", c.TrustBundlePath); err != nil {
			return c, td, 0, err
		}
		if c.InsecureBootstrap {
			return c, td, 0, configError(path, "insecure_bootstrap", "cannot be true together with trust_bundle_path: choose one (trust_bundle_path is the safe one)")
		}
	}
	if c.LogLevel == "" {
		c.LogLevel = defaultLogLevel
	}
	if err := checkLogLevel(path, c.LogLevel); err != nil {
		return c, td, 0, err
	}
	if err := checkAgentLimits(path, &c); err != nil {
		return c, td, 0, err
	}
	if err := c.NodeAttestor.check(path); err != nil {
		return c, td, 0, err
	}
	if err := c.SDS.check(path); err != nil {
		return c, td, 0, err
	}
	return c, td, os.FileMode(mode), nil
}

// checkServerAddresses validates server_address and server_addresses: exactly one of them.
func checkServerAddresses(path string, c *agentFileConfig) error {
	if len(c.ServerAddresses) == 0 {
		c.ServerAddresses = nil // "server_addresses: []" and none are the same
	}
	switch {
	case c.ServerAddress == "" && len(c.ServerAddresses) == 0:
		return configError(path, "server_address", "is required (host:port of the server's agent API; or server_addresses, a list of several servers')")
	case c.ServerAddress != "" && len(c.ServerAddresses) > 0:
		return configError(path, "server_addresses", "set together with server_address: choose one (put every server in server_addresses)")
	case len(c.ServerAddresses) > maxRetryJoin:
		return configError(path, "server_addresses", "%d addresses: at most %d", len(c.ServerAddresses), maxRetryJoin)
	case c.ServerAddress != "":
		return checkHostPort(path, "server_address", c.ServerAddress, false)
	}
	for i, a := range c.ServerAddresses {
		if err := checkHostPort(path, fmt.Sprintf("server_addresses[%d]", i), a, false); err != nil {
			return err
		}
	}
	return nil
}

// servers is the agent's server addresses, from whichever key is set.
func (c *agentFileConfig) servers() []string {
	if c.ServerAddress != "" {
		return []string{c.ServerAddress}
	}
	return c.ServerAddresses
}

// Bounds of the agent's Workload API limits.
const (
	maxJWTMintRate  = 10000
	maxJWTMintBurst = 100000
	maxJWTCacheSize = 1000000
	maxMaxHashSize  = 4 << 30
)

// checkAgentLimits fills and checks the agent's Workload API and attestation limits.
func checkAgentLimits(path string, c *agentFileConfig) error {
	if c.JWTMintRate == 0 {
		c.JWTMintRate = agent.DefaultJWTMintRate
	}
	if !(c.JWTMintRate > 0 && c.JWTMintRate <= maxJWTMintRate) {
		return configError(path, "jwt_mint_rate", "%g: want JWT-SVIDs minted per second per caller uid, more than 0 and at most %d (e.g. 0.5, 20)", c.JWTMintRate, maxJWTMintRate)
	}
	if c.JWTMintBurst == 0 {
		c.JWTMintBurst = agent.DefaultJWTMintBurst
	}
	if c.JWTMintBurst < 1 || c.JWTMintBurst > maxJWTMintBurst {
		return configError(path, "jwt_mint_burst", "%d: want between 1 and %d", c.JWTMintBurst, maxJWTMintBurst)
	}
	if c.JWTCacheSize == 0 {
		c.JWTCacheSize = agent.DefaultJWTCacheSize
	}
	if c.JWTCacheSize < 1 || c.JWTCacheSize > maxJWTCacheSize {
		return configError(path, "jwt_cache_size", "%d: want between 1 and %d", c.JWTCacheSize, maxJWTCacheSize)
	}
	if c.MaxHashSize == 0 {
		c.MaxHashSize = unix.DefaultMaxHashSize
	}
	if c.MaxHashSize < 1 || c.MaxHashSize > maxMaxHashSize {
		return configError(path, "max_hash_size", "%d: want a size in bytes between 1 and %d (4 GiB), e.g. %d for 256 MiB", c.MaxHashSize, int64(maxMaxHashSize), 256<<20)
	}
	return nil
}
