package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"github.com/signet-id/signet/ca/rotation"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// Configuration files are YAML, decoded strictly: an unknown key or a value of the wrong type is an
// error naming the file and line. docs/configuration.md documents every key; examples/config/ has
// commented examples.

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

// maxConfigSize bounds configuration files.
const maxConfigSize = 1 << 20

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// decodeConfig reads path into v, strictly.
func decodeConfig(path string, v any) error {
	_, err := decodeConfigKeys(path, v)
	return err
}

// decodeConfigKeys is decodeConfig that also returns the dotted names of the keys the file sets
// ("workload_attestors.unix"), for sections whose mere presence means something even when empty.
func decodeConfigKeys(path string, v any) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigSize)
	}
	keys, err := decodeYAMLKeys("config", path, b, v, " (see docs/configuration.md)")
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return set, nil
}

// decodeYAML decodes one YAML document strictly into v. Problems are reported one per line as
// "path:LINE: key \"section.key\": what is wrong", naming unknown keys and keys with values of the wrong
// type; what ("config", "entry import") prefixes errors that have no line.
func decodeYAML(what, path string, b []byte, v any, hint string) error {
	_, err := decodeYAMLKeys(what, path, b, v, hint)
	return err
}

// decodeYAMLKeys is decodeYAML that also returns, by line, the dotted name of each key set.
func decodeYAMLKeys(what, path string, b []byte, v any, hint string) (map[int]string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s %s: the file is empty", what, path)
		}
		return nil, fmt.Errorf("%s %s: %s", what, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s %s: more than one YAML document (another starts after line %d): keep one", what, path, root.Line)
	}
	keys := map[int]string{}
	indexKeys(&root, "", keys)
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	err := strict.Decode(v)
	if err == nil {
		return keys, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return nil, fmt.Errorf("%s %s: %s", what, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = path + ":" + describeYAMLProblem(m, keys, hint)
	}
	return nil, errors.New(strings.Join(msgs, "\n"))
}

// indexKeys records, for each line holding a key (or its value), the key's dotted path; list items are
// named by position ("[2].selectors").
func indexKeys(n *yaml.Node, prefix string, lines map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexKeys(c, prefix, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := k.Value
			if prefix != "" {
				name = prefix + "." + k.Value
			}
			lines[k.Line] = name
			if _, taken := lines[v.Line]; !taken {
				lines[v.Line] = name
			}
			indexKeys(v, name, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			indexKeys(c, prefix+"["+strconv.Itoa(i+1)+"]", lines)
		}
	}
}

var (
	yamlNotFoundRE  = regexp.MustCompile(`^field (.+) not found in type`)
	yamlUnmarshalRE = regexp.MustCompile(`^cannot unmarshal (!!\w+) (.*) into (.+)$`)
)

// friendlyType names the Go type a value was expected to decode into, in configuration terms.
func friendlyType(goType string) string {
	switch {
	case goType == daysTypeName:
		return "a duration such as 90m, 24h or 30d"
	case goType == "time.Duration":
		return "a duration such as 10m or 1h"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "string":
		return "a string"
	case goType == "time.Time":
		return "an RFC 3339 time"
	default:
		return "a section of keys"
	}
}

// describeYAMLProblem turns one yaml.TypeError line ("line 3: field foo not found in type ...", "line 4:
// cannot unmarshal !!str `abc` into uint32") into "3: key \"raft.foo\": ...".
func describeYAMLProblem(m string, keys map[int]string, hint string) string {
	sub := yamlLineRE.FindStringSubmatch(m)
	if sub == nil {
		return " " + m
	}
	line, _ := strconv.Atoi(sub[1])
	rest := yamlLineRE.ReplaceAllString(m, "")
	if f := yamlNotFoundRE.FindStringSubmatch(rest); f != nil {
		name := keys[line]
		if name == "" {
			name = f[1]
		}
		return fmt.Sprintf("%d: unknown key %q%s", line, name, hint)
	}
	if u := yamlUnmarshalRE.FindStringSubmatch(rest); u != nil {
		return fmt.Sprintf("%d: key %q: %s is not %s", line, keys[line], u[2], friendlyType(u[3]))
	}
	return fmt.Sprintf("%d: key %q: %s", line, keys[line], rest)
}

// configError names the file and key of a bad value.
func configError(path, key, format string, args ...any) error {
	return fmt.Errorf("config %s: %s: %s", path, key, fmt.Sprintf(format, args...))
}

func requireTrustDomain(path, v string) (spiffeid.TrustDomain, error) {
	if v == "" {
		return spiffeid.TrustDomain{}, configError(path, "trust_domain", "is required (e.g. example.org)")
	}
	td, err := parseTrustDomain(v)
	if err != nil {
		return spiffeid.TrustDomain{}, configError(path, "trust_domain", "%v", err)
	}
	return td, nil
}

// parseTrustDomain reads a trust domain as every trust_domain key and --trust-domain flag take it: the
// name ("example.org") or its SPIFFE URI ("spiffe://example.org"), but not a SPIFFE ID with a path.
func parseTrustDomain(v string) (spiffeid.TrustDomain, error) {
	name := v
	if rest, ok := strings.CutPrefix(v, "spiffe://"); ok {
		name = strings.TrimSuffix(rest, "/")
		if i := strings.IndexByte(name, '/'); i >= 0 {
			return spiffeid.TrustDomain{}, fmt.Errorf("%q: want the trust domain name alone, e.g. %q", v, name[:i])
		}
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("%q: %v (e.g. example.org)", v, err)
	}
	return td, nil
}

// checkHostPort checks a host:port key. A listen address may leave the host out (":8081", every
// interface); an address to connect to or advertise may not.
func checkHostPort(path, key, v string, listen bool) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && ae.Err == "missing port in address":
			return configError(path, key, "%q: missing port (want host:port)", v)
		case errors.As(err, &ae) && ae.Err == "too many colons in address":
			return configError(path, key, "%q: want host:port; write an IPv6 address in brackets, e.g. [::1]:8081", v)
		}
		return configError(path, key, "%q: want host:port (%v)", v, err)
	}
	if host == "" && !listen {
		return configError(path, key, "%q: missing host (want host:port)", v)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		return configError(path, key, "%q: port %q: want a number from 1 to 65535", v, port)
	}
	return nil
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

func requireAbs(path, key, v string) error {
	if v == "" {
		return configError(path, key, "is required")
	}
	if !filepath.IsAbs(v) {
		return configError(path, key, "%q must be an absolute path", v)
	}
	return nil
}

func checkLogLevel(path, v string) error {
	switch v {
	case "debug", "info", "warn", "error":
		return nil
	}
	return configError(path, "log_level", "%q: want debug, info, warn or error", v)
}

// Defaults of the configuration files (documented in docs/configuration.md).
const (
	defaultServerBind   = "0.0.0.0:8081"
	defaultRaftBind     = "127.0.0.1:8300"
	defaultAgentSocket  = "/run/signet/agent.sock"
	defaultSocketMode   = "0666"
	defaultServerAdmin  = "/run/signet/admin/admin.sock"
	defaultLogLevel     = "info"
	defaultAgentDataDir = "/var/lib/signet/agent"
	defaultMinFreeDisk  = "512MiB"
	// defaultStateMmapSize is storage.DefaultStateMmapSize as written in a config file.
	defaultStateMmapSize = "64GiB"
)

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

// parseSize parses a byte size with a binary unit: "512MiB", "2GiB", "1TiB".
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}}
	for _, u := range units {
		num, ok := strings.CutSuffix(strings.TrimSpace(s), u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
		if err != nil || n > (1<<(64-u.shift))-1 {
			break
		}
		return n << u.shift, nil
	}
	return 0, errors.New("want a whole number with a unit KiB, MiB, GiB or TiB, such as 512MiB")
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

// maxRetryJoin bounds raft.retry_join: a cluster has at most 5 voters.
const maxRetryJoin = 16

// checkCluster validates the cluster keys and settles raft.bootstrap: a node configured to find its
// peers (bootstrap_expect above 1, or retry_join) does not bootstrap alone.
func checkCluster(path string, c *serverFileConfig) error {
	r := &c.Raft
	switch r.BootstrapExpect {
	case 0, 1, 3, 5:
	default:
		return configError(path, "raft.bootstrap_expect", "%d: use 1 (a single server), 3 or 5 (a cluster that survives 1 or 2 lost servers)", r.BootstrapExpect)
	}
	if len(r.RetryJoin) > maxRetryJoin {
		return configError(path, "raft.retry_join", "%d addresses: at most %d", len(r.RetryJoin), maxRetryJoin)
	}
	for i, a := range r.RetryJoin {
		if err := checkHostPort(path, fmt.Sprintf("raft.retry_join[%d]", i), a, false); err != nil {
			return err
		}
	}
	if r.BootstrapExpect > 1 && len(r.RetryJoin) < r.BootstrapExpect-1 {
		return configError(path, "raft.retry_join", "lists %d servers; raft.bootstrap_expect %d needs the addresses of the other %d", len(r.RetryJoin), r.BootstrapExpect, r.BootstrapExpect-1)
	}
	if len(r.ClusterID) > 64 || strings.IndexFunc(r.ClusterID, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}) >= 0 {
		return configError(path, "raft.cluster_id", "%q: up to 64 letters, digits, '-', '_' or '.'", r.ClusterID)
	}
	if len(r.RetryJoin) == 0 {
		r.RetryJoin = nil // "retry_join: []" and no retry_join are the same
	}
	if err := checkSnapshots(path, c); err != nil {
		return err
	}
	finds := r.BootstrapExpect > 1 || len(r.RetryJoin) > 0
	if r.Bootstrap == nil {
		b := !finds
		r.Bootstrap = &b
	}
	if *r.Bootstrap && finds {
		return configError(path, "raft.bootstrap", "true with raft.bootstrap_expect or raft.retry_join: a node that bootstraps alone forms a cluster of its own; remove raft.bootstrap (the servers form the cluster together)")
	}
	return checkJoinSecret(path, r.JoinSecretFile, finds, &r.joinSecret)
}

// Bounds of the raft snapshot keys: a snapshot at most every 16 entries or 100ms (each one writes the
// whole state), and at most 10 million log entries kept or between snapshots.
const (
	minSnapshotEntries  = 16
	maxSnapshotEntries  = 10_000_000
	minSnapshotInterval = 100 * time.Millisecond
	maxSnapshotInterval = 24 * time.Hour
)

// checkSnapshots validates raft.snapshot_threshold, raft.snapshot_interval and raft.trailing_logs and
// fills their defaults (storage's).
func checkSnapshots(path string, c *serverFileConfig) error {
	r := &c.Raft
	r.SnapshotThreshold = cmp.Or(r.SnapshotThreshold, storage.DefaultSnapshotThreshold)
	r.TrailingLogs = cmp.Or(r.TrailingLogs, storage.DefaultTrailingLogs)
	if r.SnapshotInterval == 0 {
		r.SnapshotInterval = storage.DefaultSnapshotInterval
	}
	for _, k := range []struct {
		key string
		n   uint64
	}{{"raft.snapshot_threshold", r.SnapshotThreshold}, {"raft.trailing_logs", r.TrailingLogs}} {
		if k.n < minSnapshotEntries || k.n > maxSnapshotEntries {
			return configError(path, k.key, "%d: must be between %d and %d log entries", k.n, minSnapshotEntries, maxSnapshotEntries)
		}
	}
	if r.SnapshotInterval < minSnapshotInterval || r.SnapshotInterval > maxSnapshotInterval {
		return configError(path, "raft.snapshot_interval", "%s: must be between %s and %s", r.SnapshotInterval, minSnapshotInterval, maxSnapshotInterval)
	}
	return nil
}

// checkJoinSecret reads raft.join_secret_file into secret. The file is required for a node that forms
// or joins a cluster (finds); without it a single server accepts no other servers.
func checkJoinSecret(path, file string, finds bool, secret *[]byte) error {
	const key = "raft.join_secret_file"
	if file == "" {
		if finds {
			return configError(path, key, "is required with raft.bootstrap_expect or raft.retry_join: the servers of a cluster share a join secret (create one with `head -c 32 /dev/urandom | base64 > /etc/signet/join.secret && chmod 600 /etc/signet/join.secret` and copy it to every server)")
		}
		return nil
	}
	if err := requireAbs(path, key, file); err != nil {
		return err
	}
	b, err := cluster.ReadJoinSecretFile(file)
	if err != nil {
		return configError(path, key, "%v", err)
	}
	*secret = b
	return nil
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
