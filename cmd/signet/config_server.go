package main

import (
	"fmt"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// This file holds the server's configuration file: its keys, loadServerConfig, and the checks of the
// ca and issuance_limits sections.

// serverFileConfig is the server's configuration file.
type serverFileConfig struct {
	TrustDomain  string        `yaml:"trust_domain"`
	DataDir      string        `yaml:"data_dir"`
	BindAddress  string        `yaml:"bind_address"`
	AdminSocket  string        `yaml:"admin_socket"`
	AdminUIDs    []uint32      `yaml:"admin_uids"`
	LogLevel     string        `yaml:"log_level"`
	AgentSVIDTTL time.Duration `yaml:"agent_svid_ttl"`
	// MinX509SVIDTTL and MinJWTSVIDTTL are the shortest SVID lifetimes entries may ask.
	MinX509SVIDTTL time.Duration `yaml:"min_x509_svid_ttl"`
	MinJWTSVIDTTL  time.Duration `yaml:"min_jwt_svid_ttl"`
	// DefaultEntryTTL is the lifetime of entries created without an expiry.
	DefaultEntryTTL time.Duration `yaml:"default_entry_ttl"`
	// LedgerRetention is how long issuance records are kept.
	LedgerRetention time.Duration `yaml:"ledger_retention"`
	// NodeAttestors are the node attestors agents may use besides join tokens (k8s_psat, aws_iid).
	NodeAttestors serverNodeAttestors `yaml:"node_attestors"`
	// OIDC is the OIDC discovery provider and the iss of JWT-SVIDs (config_oidc.go, docs/oidc.md).
	OIDC oidcFileConfig `yaml:"oidc"`
	// Policy holds the entry creation policy (CEL rules; docs/policy.md).
	Policy policy.Config `yaml:"policy"`
	// IssuanceLimits are the token buckets of issuance (SVIDs per second and burst).
	IssuanceLimits struct {
		AgentRate  float64 `yaml:"agent_rate"`
		AgentBurst int     `yaml:"agent_burst"`
		EntryRate  float64 `yaml:"entry_rate"`
		EntryBurst int     `yaml:"entry_burst"`
	} `yaml:"issuance_limits"`
	// MinFreeDisk is the free space under data_dir below which issuance stops ("512MiB").
	MinFreeDisk string `yaml:"min_free_disk"`
	// minFreeDisk is MinFreeDisk in bytes, filled by loadServerConfig.
	minFreeDisk uint64
	// StateMmapSize is the address space state.db is mapped with ("64GiB"; storage.Config.StateMmapSize).
	StateMmapSize string `yaml:"state_mmap_size"`
	// stateMmapSize is StateMmapSize in bytes, filled by loadServerConfig.
	stateMmapSize int64
	// caSchedule is ca.ttl and ca.rotation with defaults, filled by loadServerConfig.
	caSchedule rotation.Schedule
	CA         struct {
		TTL time.Duration `yaml:"ttl"`
		// Rotation is the key schedule (rotation.Schedule): how long SVIDs signed under a key live at
		// most, and how long a successor is in the bundle before it signs.
		Rotation struct {
			MaxSVIDTTL    time.Duration `yaml:"max_svid_ttl"`
			PrepareBefore time.Duration `yaml:"prepare_before"`
		} `yaml:"rotation"`
		// KeyManager is where the CA's private keys live: disk (default), softkms, pkcs11, awskms,
		// cloudkms or azurekms (package ca/keymanager); the other keys configure it.
		KeyManager      string `yaml:"key_manager"`
		KMSURI          string `yaml:"kms_uri"`
		X509Key         string `yaml:"x509_key"`
		JWTKey          string `yaml:"jwt_key"`
		CredentialsFile string `yaml:"credentials_file"`
	} `yaml:"ca"`
	// Upstream authority: an existing PKI signs each node's CA (config_upstream.go).
	UpstreamAuthority *upstreamAuthorityFile `yaml:"upstream_authority"`
	// upstream is UpstreamAuthority built, filled by loadServerConfig; nil without one.
	upstream ca.Upstream

	Raft struct {
		NodeID           string `yaml:"node_id"`
		BindAddress      string `yaml:"bind_address"`
		AdvertiseAddress string `yaml:"advertise_address"`
		// AdvertiseAddressEnv names an environment variable holding AdvertiseAddress (config_env.go).
		AdvertiseAddressEnv string   `yaml:"advertise_address_env"`
		Bootstrap           *bool    `yaml:"bootstrap"`
		BootstrapExpect     int      `yaml:"bootstrap_expect"`
		RetryJoin           []string `yaml:"retry_join"`
		ClusterID           string   `yaml:"cluster_id"`
		JoinSecretFile      string   `yaml:"join_secret_file"`
		// SnapshotThreshold, SnapshotInterval and TrailingLogs tune Raft's snapshots (storage.Config).
		SnapshotThreshold uint64        `yaml:"snapshot_threshold"`
		SnapshotInterval  time.Duration `yaml:"snapshot_interval"`
		TrailingLogs      uint64        `yaml:"trailing_logs"`
		// joinSecret is JoinSecretFile's secret, filled by loadServerConfig.
		joinSecret []byte
	} `yaml:"raft"`

	// Federation: SPIFFE federation (config_federation.go, docs/federation.md).
	Federation federationFileConfig `yaml:"federation"`
}

// loadServerConfig reads and validates a server configuration file, filling defaults.
func loadServerConfig(path string) (serverFileConfig, spiffeid.TrustDomain, error) {
	var c serverFileConfig
	if err := decodeConfig(path, &c); err != nil {
		return c, spiffeid.TrustDomain{}, err
	}
	td, err := requireTrustDomain(path, c.TrustDomain)
	if err != nil {
		return c, td, err
	}
	if err := requireAbs(path, "data_dir", c.DataDir); err != nil {
		return c, td, err
	}
	if c.BindAddress == "" {
		c.BindAddress = defaultServerBind
	}
	if err := checkHostPort(path, "bind_address", c.BindAddress, true); err != nil {
		return c, td, err
	}
	if c.AdminSocket == "" {
		c.AdminSocket = defaultServerAdmin
	}
	if err := requireAbs(path, "admin_socket", c.AdminSocket); err != nil {
		return c, td, err
	}
	if c.LogLevel == "" {
		c.LogLevel = defaultLogLevel
	}
	if err := checkLogLevel(path, c.LogLevel); err != nil {
		return c, td, err
	}
	if c.AgentSVIDTTL == 0 {
		c.AgentSVIDTTL = time.Hour
	}
	if c.AgentSVIDTTL < agentapi.MinAgentSVIDTTL || c.AgentSVIDTTL > 30*24*time.Hour {
		return c, td, configError(path, "agent_svid_ttl", "%s: want between 1m and 720h", c.AgentSVIDTTL)
	}
	if km := c.CA.KeyManager; !keymanager.Rotates(keymanager.Kind(km)) && c.CA.Rotation.PrepareBefore != 0 {
		return c, td, configError(path, "ca.rotation.prepare_before", "keys in key_manager %s do not rotate (Signet creates no cloud KMS keys; keys on disk, in softkms and in pkcs11 rotate): remove it, or use one of those", km)
	}
	sched := rotation.Schedule{TTL: c.CA.TTL, MaxSVIDTTL: c.CA.Rotation.MaxSVIDTTL, PrepareBefore: c.CA.Rotation.PrepareBefore}.WithDefaults()
	if err := sched.Validate(); err != nil {
		return c, td, fmt.Errorf("config %s: %w", path, err)
	}
	c.caSchedule = sched
	c.CA.TTL, c.CA.Rotation.MaxSVIDTTL, c.CA.Rotation.PrepareBefore = sched.TTL, sched.MaxSVIDTTL, sched.PrepareBefore
	for _, m := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{{"min_x509_svid_ttl", &c.MinX509SVIDTTL, adminapi.MinX509SVIDTTL}, {"min_jwt_svid_ttl", &c.MinJWTSVIDTTL, adminapi.MinJWTSVIDTTL}} {
		if *m.v == 0 {
			*m.v = min(m.def, sched.MaxSVIDTTL) // the default gives way to a shorter longest SVID TTL
		}
		if *m.v < adminapi.ShortestSVIDTTL || *m.v > 30*24*time.Hour {
			return c, td, configError(path, m.key, "%s: want between %s and 720h", *m.v, adminapi.ShortestSVIDTTL)
		}
		if *m.v > sched.MaxSVIDTTL {
			return c, td, configError(path, m.key, "%s is longer than the longest SVID TTL %s (ca.rotation.max_svid_ttl): lower it or raise ca.rotation.max_svid_ttl", *m.v, sched.MaxSVIDTTL)
		}
	}
	if c.DefaultEntryTTL == 0 {
		c.DefaultEntryTTL = adminapi.DefaultEntryLifetime
	}
	if c.DefaultEntryTTL < adminapi.MinDefaultEntryTTL {
		return c, td, configError(path, "default_entry_ttl", "%s: must be at least %s", c.DefaultEntryTTL, adminapi.MinDefaultEntryTTL)
	}
	if c.LedgerRetention == 0 {
		c.LedgerRetention = server.DefaultLedgerRetention
	}
	if c.LedgerRetention < storage.MaxCredentialLifetime {
		return c, td, configError(path, "ledger_retention", "%s: must be at least %s, the longest a credential lives (so every valid credential can be looked up)", c.LedgerRetention, storage.MaxCredentialLifetime)
	}
	if err := checkIssuanceLimits(path, &c); err != nil {
		return c, td, err
	}
	if c.MinFreeDisk == "" {
		c.MinFreeDisk = defaultMinFreeDisk
	}
	if c.minFreeDisk, err = parseSize(c.MinFreeDisk); err != nil {
		return c, td, configError(path, "min_free_disk", "%q: %v", c.MinFreeDisk, err)
	}
	if c.minFreeDisk < 1<<20 {
		return c, td, configError(path, "min_free_disk", "%q: at least 1MiB (the default is %s)", c.MinFreeDisk, defaultMinFreeDisk)
	}
	if c.StateMmapSize == "" {
		c.StateMmapSize = defaultStateMmapSize
	}
	n, err := parseSize(c.StateMmapSize)
	if err != nil {
		return c, td, configError(path, "state_mmap_size", "%q: %v", c.StateMmapSize, err)
	}
	if n < storage.MinStateMmapSize || n > storage.MaxStateMmapSize {
		return c, td, configError(path, "state_mmap_size", "%q: want 1GiB to 1TiB (the default is %s)", c.StateMmapSize, defaultStateMmapSize)
	}
	c.stateMmapSize = int64(n)
	if len(c.Policy.Rules) == 0 {
		c.Policy.Rules = nil // "rules: []" and no rules are the same
	}
	if _, err := policy.Compile(c.Policy); err != nil {
		return c, td, configError(path, "policy", "%v", err)
	}
	if err := checkCAKeys(path, &c); err != nil {
		return c, td, err
	}
	// Upstream authority.
	if c.upstream, err = c.UpstreamAuthority.build(path, &c); err != nil {
		return c, td, err
	}
	if c.Raft.BindAddress == "" {
		c.Raft.BindAddress = defaultRaftBind
	}
	if err := checkHostPort(path, "raft.bind_address", c.Raft.BindAddress, true); err != nil {
		return c, td, err
	}
	if err := checkAdvertiseAddress(path, &c.Raft.AdvertiseAddress, c.Raft.AdvertiseAddressEnv); err != nil {
		return c, td, err
	}
	if err := checkCluster(path, &c); err != nil {
		return c, td, err
	}
	if err := c.NodeAttestors.build(path, td); err != nil {
		return c, td, err
	}
	// The OIDC discovery provider (issue 14).
	if err := c.OIDC.check(path); err != nil {
		return c, td, err
	}
	// Federation (issue 14).
	if err := c.Federation.check(path); err != nil {
		return c, td, err
	}
	return c, td, nil
}

// checkCAKeys validates the ca.key_manager keys (the key manager checks the rest when it opens, with
// errors naming the same keys): a known manager, bounded values, and no KMS keys for disk.
func checkCAKeys(path string, c *serverFileConfig) error {
	if c.CA.KeyManager == "" {
		c.CA.KeyManager = string(keymanager.Disk)
	}
	switch keymanager.Kind(c.CA.KeyManager) {
	case keymanager.Disk, keymanager.SoftKMS, keymanager.PKCS11, keymanager.AWSKMS, keymanager.CloudKMS, keymanager.AzureKMS:
	default:
		return configError(path, "ca.key_manager", "%q: want %s", c.CA.KeyManager, keymanager.Kinds)
	}
	for _, kv := range []struct{ key, v string }{{"ca.kms_uri", c.CA.KMSURI}, {"ca.x509_key", c.CA.X509Key}, {"ca.jwt_key", c.CA.JWTKey},
		{"ca.credentials_file", c.CA.CredentialsFile}} {
		if len(kv.v) > keymanager.MaxURILength {
			return configError(path, kv.key, "at most %d characters", keymanager.MaxURILength)
		}
		if kv.v != "" && c.CA.KeyManager == string(keymanager.Disk) {
			return configError(path, kv.key, "only with a ca.key_manager other than disk (the disk keys are data_dir/ca/%s and %s)", ca.X509KeyFile, ca.JWTKeyFile)
		}
	}
	if c.CA.CredentialsFile != "" {
		if err := requireAbs(path, "ca.credentials_file", c.CA.CredentialsFile); err != nil {
			return err
		}
	}
	return nil
}

// caKeys maps the ca.key_manager keys onto the key manager's config.
func (c *serverFileConfig) caKeys() keymanager.Config {
	return keymanager.Config{Kind: keymanager.Kind(c.CA.KeyManager), URI: c.CA.KMSURI, X509Key: c.CA.X509Key, JWTKey: c.CA.JWTKey,
		CredentialsFile: c.CA.CredentialsFile}
}

// checkIssuanceLimits validates the issuance_limits section and fills its defaults (the server
// package's).
func checkIssuanceLimits(path string, c *serverFileConfig) error {
	l := &c.IssuanceLimits
	for _, r := range []struct {
		key  string
		rate *float64
		def  float64
	}{{"issuance_limits.agent_rate", &l.AgentRate, issuer.DefaultAgentIssueRate}, {"issuance_limits.entry_rate", &l.EntryRate, issuer.DefaultEntryIssueRate}} {
		if *r.rate == 0 {
			*r.rate = r.def
		}
		if *r.rate < 0.001 || *r.rate > 1e6 {
			return configError(path, r.key, "%g: want SVIDs per second between 0.001 and 1000000", *r.rate)
		}
	}
	for _, b := range []struct {
		key      string
		burst    *int
		def, min int
	}{{"issuance_limits.agent_burst", &l.AgentBurst, issuer.DefaultAgentIssueBurst, issuer.MaxCSRBatch},
		{"issuance_limits.entry_burst", &l.EntryBurst, issuer.DefaultEntryIssueBurst, 1}} {
		if *b.burst == 0 {
			*b.burst = b.def
		}
		if *b.burst < b.min || *b.burst > 10_000_000 {
			return configError(path, b.key, "%d: want between %d and 10000000", *b.burst, b.min)
		}
	}
	return nil
}
