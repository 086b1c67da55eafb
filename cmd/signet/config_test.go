package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/k8s"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"go.yaml.in/yaml/v3"
)

const (
	configTestdata  = "testdata/config"
	exampleServer   = "../../examples/config/server.yaml"
	exampleAgent    = "../../examples/config/agent.yaml"
	configReference = "../../docs/configuration.md"
)

// cfgLoadAs loads path with the server or the agent loader and returns only the error.
func cfgLoadAs(kind, path string) error {
	switch kind {
	case "server":
		_, _, err := loadServerConfig(path)
		return err
	case "agent":
		_, _, _, err := loadAgentConfig(path)
		return err
	}
	panic("unknown config kind " + kind)
}

// TestConfigErrors loads each fixture in testdata/config/ that must be refused and checks that the error
// names the file, the key (when the loader knows it) and, for YAML-level errors, the line.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		kind string // "server" or "agent": which loader
		// key, if set: the error is a validation error, exactly "config <path>: <key>: ...".
		key string
		// lines, if set: the error is a decoding error, one line per problem, each "<path>:<line>: ...".
		lines []int
		want  []string // further substrings of the error
	}{
		// Decoding: strict YAML.
		{file: "server-empty.yaml", kind: "server", want: []string{"the file is empty"}},
		{file: "server-comments-only.yaml", kind: "server", want: []string{"the file is empty"}},
		{file: "agent-empty.yaml", kind: "agent", want: []string{"the file is empty"}},
		{file: "server-unknown-key.yaml", kind: "server", lines: []int{3}, want: []string{`unknown key "bind_adress"`, "docs/configuration.md"}},
		{file: "server-unknown-nested-key.yaml", kind: "server", lines: []int{5}, want: []string{`unknown key "raft.bootstrapp"`}},
		{file: "agent-unknown-key.yaml", kind: "agent", lines: []int{3}, want: []string{`unknown key "socket_permissions"`}},
		// A server configuration given to the agent: the first server-only key is reported.
		{file: "server-all-keys.yaml", kind: "agent", lines: []int{4, 5, 6, 8, 9, 18, 26, 31, 32}, want: []string{
			`unknown key "bind_address"`, `unknown key "admin_socket"`, `unknown key "admin_uids"`,
			`unknown key "agent_svid_ttl"`, `unknown key "ca"`, `unknown key "raft"`, `unknown key "issuance_limits"`,
			`unknown key "min_free_disk"`, `unknown key "state_mmap_size"`}},
		// Wrong types. yaml names the line, the value and the Go type, not the key (see the report).
		{file: "server-wrong-type.yaml", kind: "server", lines: []int{3}, want: []string{`key "agent_svid_ttl"`, "`3600`", "is not a duration"}},
		{file: "server-duration-bad-unit.yaml", kind: "server", lines: []int{4}, want: []string{`key "ca.ttl"`, "`1y`", "is not a duration"}},
		{file: "server-wrong-type-bootstrap.yaml", kind: "server", lines: []int{4}, want: []string{`key "raft.bootstrap"`, "`maybe`", "true or false"}},
		{file: "server-wrong-type-admin-uids.yaml", kind: "server", lines: []int{3}, want: []string{`key "admin_uids"`, "`-1`", "whole number"}},
		{file: "agent-wrong-type.yaml", kind: "agent", lines: []int{3}, want: []string{`key "insecure_bootstrap"`, "`maybe`", "true or false"}},
		{file: "server-not-a-mapping.yaml", kind: "server", lines: []int{1}, want: []string{"cannot unmarshal !!seq"}},
		// Every problem of a file is reported at once, each with its line.
		{file: "server-multiple-errors.yaml", kind: "server", lines: []int{3, 4, 5}, want: []string{
			`unknown key "bind_adress"`, "`1d`", `unknown key "log_levle"`}},
		{file: "server-duplicate-key.yaml", kind: "server", lines: []int{3}, want: []string{`mapping key "trust_domain" already defined at line 1`}},
		{file: "server-syntax-error.yaml", kind: "server", want: []string{"line 2:"}},

		// Validation: the key is named.
		{file: "server-missing-trust-domain.yaml", kind: "server", key: "trust_domain", want: []string{"is required"}},
		{file: "server-bad-trust-domain.yaml", kind: "server", key: "trust_domain", want: []string{`"Example.ORG"`}},
		{file: "server-missing-data-dir.yaml", kind: "server", key: "data_dir", want: []string{"is required"}},
		{file: "server-relative-data-dir.yaml", kind: "server", key: "data_dir", want: []string{`"var/lib/signet" must be an absolute path`}},
		{file: "server-relative-admin-socket.yaml", kind: "server", key: "admin_socket", want: []string{`"admin.sock" must be an absolute path`}},
		{file: "server-bad-log-level.yaml", kind: "server", key: "log_level", want: []string{`"verbose"`, "debug, info, warn or error"}},
		{file: "server-agent-svid-ttl-too-short.yaml", kind: "server", key: "agent_svid_ttl", want: []string{"30s", "between 1m and 720h"}},
		{file: "server-agent-svid-ttl-too-long.yaml", kind: "server", key: "agent_svid_ttl", want: []string{"721h", "between 1m and 720h"}},
		{file: "server-ca-ttl-too-short.yaml", kind: "server", key: "ca.ttl", want: []string{"1m0s", "at least 2m0s"}},
		{file: "server-prepare-before-below-max-svid-ttl.yaml", kind: "server", key: "ca.rotation.prepare_before", want: []string{
			"1h0m0s is shorter than the longest SVID TTL 2h0m0s (ca.rotation.max_svid_ttl)"}},
		{file: "server-prepare-before-past-half-life.yaml", kind: "server", key: "ca.rotation.prepare_before", want: []string{
			"12h0m0s must be shorter than half of ca.ttl (12h0m0s)"}},
		{file: "server-min-ttl-above-max-svid-ttl.yaml", kind: "server", key: "min_x509_svid_ttl", want: []string{
			"10m0s is longer than the longest SVID TTL 7m30s (ca.rotation.max_svid_ttl)"}},
		{file: "server-ca-key-manager-unknown.yaml", kind: "server", key: "ca.key_manager", want: []string{`"vault"`, "disk, softkms, pkcs11, awskms, cloudkms or azurekms"}},
		{file: "server-ca-kms-uri-with-disk.yaml", kind: "server", key: "ca.kms_uri", want: []string{"only with a ca.key_manager other than disk"}},
		{file: "server-prepare-before-with-kms.yaml", kind: "server", key: "ca.rotation.prepare_before", want: []string{
			"keys in key_manager awskms do not rotate", "Signet creates no cloud KMS keys"}},
		{file: "server-min-free-disk-no-unit.yaml", kind: "server", key: "min_free_disk", want: []string{`"512"`, "unit KiB, MiB, GiB or TiB"}},
		{file: "server-min-free-disk-too-small.yaml", kind: "server", key: "min_free_disk", want: []string{`"512KiB"`, "at least 1MiB"}},
		{file: "server-state-mmap-size-too-small.yaml", kind: "server", key: "state_mmap_size", want: []string{`"512MiB"`, "want 1GiB to 1TiB"}},
		{file: "server-state-mmap-size-no-unit.yaml", kind: "server", key: "state_mmap_size", want: []string{`"64"`, "unit KiB, MiB, GiB or TiB"}},
		{file: "server-agent-burst-below-batch.yaml", kind: "server", key: "issuance_limits.agent_burst", want: []string{"999", "between 1000 and"}},
		{file: "server-entry-rate-negative.yaml", kind: "server", key: "issuance_limits.entry_rate", want: []string{"-1", "SVIDs per second"}},
		{file: "agent-missing-trust-domain.yaml", kind: "agent", key: "trust_domain", want: []string{"is required"}},
		{file: "agent-missing-server-address.yaml", kind: "agent", key: "server_address", want: []string{"is required", "host:port"}},
		{file: "agent-relative-data-dir.yaml", kind: "agent", key: "data_dir", want: []string{`"./agent-data" must be an absolute path`}},
		{file: "agent-relative-socket-path.yaml", kind: "agent", key: "socket_path", want: []string{`"agent.sock" must be an absolute path`}},
		{file: "agent-relative-trust-bundle-path.yaml", kind: "agent", key: "trust_bundle_path", want: []string{`"bundle.pem" must be an absolute path`}},
		{file: "agent-bad-log-level.yaml", kind: "agent", key: "log_level", want: []string{`"INFO"`}},
		{file: "agent-bundle-and-insecure.yaml", kind: "agent", key: "insecure_bootstrap", want: []string{"choose one"}},
		{file: "server-trust-domain-spiffe-id.yaml", kind: "server", key: "trust_domain", want: []string{`"spiffe://example.org/a/b"`, `want the trust domain name alone, e.g. "example.org"`}},
		{file: "server-second-document.yaml", kind: "server", want: []string{"more than one YAML document"}},
		{file: "agent-socket-mode-not-octal.yaml", kind: "agent", key: "socket_mode", want: []string{`"rw-rw-rw-"`, `want an octal file mode such as "0666"`}},
		{file: "agent-socket-mode-decimal.yaml", kind: "agent", key: "socket_mode", want: []string{`"438"`}},
		{file: "agent-socket-mode-0o-prefix.yaml", kind: "agent", key: "socket_mode", want: []string{`"0o666"`}},
		{file: "agent-socket-mode-too-large.yaml", kind: "agent", key: "socket_mode", want: []string{`"01777"`}},
		{file: "agent-jwt-mint-rate-negative.yaml", kind: "agent", key: "jwt_mint_rate", want: []string{"-1", "more than 0"}},
		{file: "agent-jwt-mint-burst-too-large.yaml", kind: "agent", key: "jwt_mint_burst", want: []string{"100001", "between 1 and 100000"}},
		{file: "agent-max-hash-size-too-large.yaml", kind: "agent", key: "max_hash_size", want: []string{"4294967297", "between 1 and 4294967296"}},
		{file: "agent-jwt-cache-size-negative.yaml", kind: "agent", key: "jwt_cache_size", want: []string{"-5", "between 1 and 1000000"}},
		// The k8s workload attestor's keys, checked by attestor/k8s and named here.
		{file: "agent-k8s-poll-attempts-negative.yaml", kind: "agent", key: "workload_attestors.k8s.poll_attempts", want: []string{"-1", "at most 600"}},
		{file: "agent-k8s-kubelet-url-http.yaml", kind: "agent", key: "workload_attestors.k8s.kubelet_url", want: []string{`"http://127.0.0.1:10255": want https://host:port`}},
		{file: "agent-k8s-ca-and-skip.yaml", kind: "agent", key: "workload_attestors.k8s.kubelet_ca_path and skip_kubelet_verification", want: []string{"give one, not both"}},
		{file: "agent-k8s-unknown-key.yaml", kind: "agent", lines: []int{5}, want: []string{`unknown key "workload_attestors.k8s.kubelet_port"`}},
		{file: "agent-sds-unknown-key.yaml", kind: "agent", lines: []int{4}, want: []string{`unknown key "sds.default_name"`}},
		{file: "agent-sds-name-spiffe-id.yaml", kind: "agent", key: "sds.default_bundle_name", want: []string{`"spiffe://example.org"`, "without the spiffe: scheme"}},
		{file: "agent-sds-names-equal.yaml", kind: "agent", key: "sds.default_all_bundles_name", want: []string{`"ROOTCA" is also sds.default_bundle_name`, "must differ"}},
		{file: "agent-sds-not-bool.yaml", kind: "agent", lines: []int{4}, want: []string{`"sds.disable_spiffe_cert_validation"`}},
		{file: "agent-k8s-node-name-env-unset.yaml", kind: "agent", key: "workload_attestors.k8s.node_name_env", want: []string{`"SIGNET_TEST_NODE_NAME_NOT_SET" is empty or not set`}},
		{file: "agent-k8s-relative-token-path.yaml", kind: "agent", key: "workload_attestors.k8s.token_path", want: []string{`"token" is not an absolute path`}},
		// host:port keys.
		{file: "agent-server-address-no-port.yaml", kind: "agent", key: "server_address", want: []string{`"127.0.0.1": missing port (want host:port)`}},
		{file: "agent-server-address-and-addresses.yaml", kind: "agent", key: "server_addresses", want: []string{"choose one"}},
		{file: "agent-server-addresses-no-port.yaml", kind: "agent", key: "server_addresses[1]", want: []string{`"127.0.0.2": missing port`}},
		{file: "agent-server-address-ipv6-unbracketed.yaml", kind: "agent", key: "server_address", want: []string{`"::1:8081"`, "[::1]:8081"}},
		{file: "agent-server-address-no-host.yaml", kind: "agent", key: "server_address", want: []string{`":8081": missing host (want host:port)`}},
		{file: "agent-server-address-named-port.yaml", kind: "agent", key: "server_address", want: []string{`port "https": want a number from 1 to 65535`}},
		{file: "agent-server-address-port-zero.yaml", kind: "agent", key: "server_address", want: []string{`port "0": want a number from 1 to 65535`}},
		{file: "server-bind-address-no-port.yaml", kind: "server", key: "bind_address", want: []string{`"0.0.0.0": missing port (want host:port)`}},
		{file: "server-bind-address-port-too-large.yaml", kind: "server", key: "bind_address", want: []string{`port "99999"`}},
		{file: "server-raft-bind-address-no-port.yaml", kind: "server", key: "raft.bind_address", want: []string{`"127.0.0.1": missing port`}},
		{file: "server-raft-advertise-address-no-port.yaml", kind: "server", key: "raft.advertise_address", want: []string{`"signet-1.example.com": missing port`}},
		// Cluster keys.
		{file: "server-raft-bootstrap-expect-even.yaml", kind: "server", key: "raft.bootstrap_expect", want: []string{"2: use 1", "3 or 5"}},
		{file: "server-raft-retry-join-too-few.yaml", kind: "server", key: "raft.retry_join", want: []string{"lists 1 servers", "needs the addresses of the other 2"}},
		{file: "server-raft-retry-join-no-port.yaml", kind: "server", key: "raft.retry_join[0]", want: []string{`"10.0.0.2": missing port`}},
		{file: "server-raft-bootstrap-and-retry-join.yaml", kind: "server", key: "raft.bootstrap", want: []string{"forms a cluster of its own", "remove raft.bootstrap"}},
		{file: "server-raft-cluster-id-space.yaml", kind: "server", key: "raft.cluster_id", want: []string{`"blue team"`, "letters, digits"}},
		{file: "server-raft-join-secret-required.yaml", kind: "server", key: "raft.join_secret_file", want: []string{"is required with raft.bootstrap_expect or raft.retry_join", "head -c 32 /dev/urandom"}},
		// Node attestors.
		{file: "server-k8s-psat-no-clusters.yaml", kind: "server", key: "node_attestors.k8s_psat.clusters", want: []string{"is required", "service_account_allow_list"}},
		{file: "server-k8s-psat-bad-name.yaml", kind: "server", key: "node_attestors.k8s_psat", want: []string{"clusters[0]", `name "Prod_1"`, "lowercase letters"}},
		{file: "server-k8s-psat-jwks-url-http.yaml", kind: "server", key: "node_attestors.k8s_psat.clusters[0].jwks_url", want: []string{"https://"}},
		{file: "server-k8s-psat-no-kubeconfig.yaml", kind: "server", key: "node_attestors.k8s_psat.clusters[0].kubeconfig", want: []string{"/nonexistent/kubeconfig"}},
		{file: "agent-k8s-psat-no-cluster.yaml", kind: "agent", key: "node_attestor.k8s_psat.cluster", want: []string{"is required"}},
		{file: "server-aws-iid-no-accounts.yaml", kind: "server", key: "node_attestors.aws_iid.accounts", want: []string{"is required", "AWS account IDs"}},
		{file: "server-aws-iid-cert-relative.yaml", kind: "server", key: "node_attestors.aws_iid.certificates.us-gov-west-1", want: []string{`"aws-us-gov-west-1.pem" must be an absolute path`}},
		{file: "server-aws-iid-template-no-instance.yaml", kind: "server", key: "node_attestors", want: []string{"aws_iid: agent_id_template", "must contain {instance_id}"}},
		{file: "server-aws-iid-max-age-short.yaml", kind: "server", key: "node_attestors", want: []string{"aws_iid: max_document_age 1s", "want 1m0s to"}},
		{file: "agent-aws-iid-bad-endpoint.yaml", kind: "agent", key: "node_attestor", want: []string{`aws_iid: imds_endpoint "169.254.169.254"`, "http://169.254.169.254"}},
		{file: "agent-aws-iid-timeout-long.yaml", kind: "agent", key: "node_attestor", want: []string{"aws_iid: imds_timeout 2m0s", "at most 1m0s"}},
		{file: "agent-aws-iid-and-k8s-psat.yaml", kind: "agent", key: "node_attestor", want: []string{"both k8s_psat and aws_iid", "choose one"}},
		{file: "server-raft-join-secret-relative.yaml", kind: "server", key: "raft.join_secret_file", want: []string{`"join.secret" must be an absolute path`}},
		{file: "server-raft-snapshot-threshold-small.yaml", kind: "server", key: "raft.snapshot_threshold", want: []string{"3: must be between 16 and 10000000 log entries"}},
		{file: "server-raft-trailing-logs-large.yaml", kind: "server", key: "raft.trailing_logs", want: []string{"20000000: must be between 16 and 10000000"}},
		{file: "server-raft-snapshot-interval-short.yaml", kind: "server", key: "raft.snapshot_interval", want: []string{"1ms: must be between 100ms and 24h0m0s"}},
		// The OIDC discovery provider.
		{file: "server-oidc-issuer-http.yaml", kind: "server", key: "oidc.issuer", want: []string{`"http://oidc.example.org": want https`, "oidc.insecure_http"}},
		{file: "server-oidc-issuer-trailing-slash.yaml", kind: "server", key: "oidc.issuer", want: []string{`no trailing slash`, `write "https://oidc.example.org"`}},
		{file: "server-oidc-listen-without-issuer.yaml", kind: "server", key: "oidc.issuer", want: []string{"is required with the other oidc keys"}},
		{file: "server-oidc-no-tls.yaml", kind: "server", key: "oidc.tls.cert_file", want: []string{"is required to serve HTTPS", "insecure_http: true"}},
		{file: "server-oidc-tls-and-insecure.yaml", kind: "server", key: "oidc.tls", want: []string{"insecure_http: true; choose one"}},
		{file: "server-oidc-cache-max-age-long.yaml", kind: "server", key: "oidc.cache_max_age", want: []string{"24h0m0s: want between 10s and 1h0m0s"}},
		{file: "server-oidc-tls-key-missing.yaml", kind: "server", key: "oidc.tls", want: []string{"/nonexistent/signet-oidc/fullchain.pem"}},
		{file: "server-oidc-listen-no-port.yaml", kind: "server", key: "oidc.listen_address", want: []string{`"0.0.0.0": missing port`}},
		// Upstream authority.
		{file: "server-upstream-type-unknown.yaml", kind: "server", key: "upstream_authority.type", want: []string{`"vault": want disk or step-ca`}},
		{file: "server-upstream-no-type.yaml", kind: "server", key: "upstream_authority.type", want: []string{"is required: disk or step-ca"}},
		{file: "server-upstream-disk-relative.yaml", kind: "server", key: "upstream_authority.disk.cert_file", want: []string{`"upstream.crt" must be an absolute path`}},
		{file: "server-upstream-with-kms.yaml", kind: "server", key: "upstream_authority", want: []string{"needs ca.key_manager disk"}},
		{file: "server-upstream-step-ca-http.yaml", kind: "server", key: "upstream_authority", want: []string{"upstream_authority.step_ca.url", "want https://host[:port]"}},
		{file: "server-upstream-step-ca-with-disk.yaml", kind: "server", key: "upstream_authority.disk", want: []string{"upstream_authority.type is step-ca: remove it"}},
		{file: "server-upstream-disk-missing.yaml", kind: "server", key: "upstream_authority", want: []string{"upstream_authority.disk.cert_file", "/nonexistent/upstream.crt"}},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.file, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(configTestdata, tt.file)
			err := cfgLoadAs(tt.kind, path)
			if err == nil {
				t.Fatalf("%s loaded as %s config without error", path, tt.kind)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error does not name the file %s:\n%s", path, msg)
			}
			if tt.key != "" {
				if prefix := "config " + path + ": " + tt.key + ": "; !strings.HasPrefix(msg, prefix) {
					t.Errorf("error does not start with %q (file and key):\n%s", prefix, msg)
				}
			}
			if tt.lines != nil {
				got := strings.Split(msg, "\n")
				if len(got) != len(tt.lines) {
					t.Errorf("got %d error lines, want %d (one per problem):\n%s", len(got), len(tt.lines), msg)
				}
				for i, n := range tt.lines {
					prefix := path + ":" + strconv.Itoa(n) + ": "
					if i >= len(got) || !strings.HasPrefix(got[i], prefix) {
						t.Errorf("error line %d does not start with %q (file and line):\n%s", i+1, prefix, msg)
					}
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestConfigTrustDomainURI: trust_domain takes the name or its spiffe:// URI, normalized to the name.
func TestConfigTrustDomainURI(t *testing.T) {
	t.Parallel()
	c, td, err := loadServerConfig(filepath.Join(configTestdata, "server-trust-domain-uri.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "server trust domain", td.Name(), "example.org")
	cfgEq(t, "bind_address", c.BindAddress, ":8081")
	cfgEq(t, "raft.advertise_address", c.Raft.AdvertiseAddress, "[::1]:8300")
	a, td, _, err := loadAgentConfig(filepath.Join(configTestdata, "agent-trust-domain-uri.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "agent trust domain", td.Name(), "example.org")
	cfgEq(t, "server_address", a.ServerAddress, "[::1]:8081")
	for _, tc := range []struct{ in, want, wantErr string }{
		{in: "example.org", want: "example.org"},
		{in: "spiffe://example.org", want: "example.org"},
		{in: "spiffe://example.org/", want: "example.org"},
		{in: "spiffe://example.org/a", wantErr: `"spiffe://example.org/a": want the trust domain name alone, e.g. "example.org"`},
		{in: "Example.ORG", wantErr: `"Example.ORG"`},
		{in: "https://example.org", wantErr: `"https://example.org"`},
	} {
		td, err := parseTrustDomain(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseTrustDomain(%q) = %v, %v; want error %q", tc.in, td, err, tc.wantErr)
			}
		} else if err != nil || td.Name() != tc.want {
			t.Errorf("parseTrustDomain(%q) = %v, %v; want %s", tc.in, td, err, tc.want)
		}
	}
}

func TestConfigMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	for _, kind := range []string{"server", "agent"} {
		err := cfgLoadAs(kind, path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: missing file: got %v, want a not-exist error naming %s", kind, err, path)
		}
	}
}

func TestConfigTooLarge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "huge.yaml")
	body := "trust_domain: example.org\ndata_dir: /var/lib/signet\n" + strings.Repeat("# padding\n", maxConfigSize/10+1)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var c serverFileConfig
	err := decodeConfig(path, &c)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Fatalf("decodeConfig of a %d-byte file: got %v, want a size error naming the file", len(body), err)
	}
}

// TestConfigDecodeStrict calls decodeConfig directly: the same file decodes into the type that has its
// keys and is refused, key by key, by the type that lacks them.
func TestConfigDecodeStrict(t *testing.T) {
	t.Parallel()
	path := filepath.Join(configTestdata, "agent-all-keys.yaml")
	var a agentFileConfig
	if err := decodeConfig(path, &a); err != nil {
		t.Fatalf("decode %s as agent config: %v", path, err)
	}
	if a.SocketMode != "0660" || a.TrustBundlePath != "/etc/signet/bundle.pem" {
		t.Errorf("decoded %+v", a)
	}
	var s serverFileConfig
	err := decodeConfig(path, &s)
	if err == nil {
		t.Fatalf("decode %s as server config: no error", path)
	}
	for _, want := range []string{
		path + `:3: unknown key "server_address"`, path + `:5: unknown key "socket_path"`,
		path + `:6: unknown key "socket_mode"`, path + `:7: unknown key "trust_bundle_path"`,
		path + `:8: unknown key "insecure_bootstrap"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func TestConfigServerDefaults(t *testing.T) {
	t.Parallel()
	c, td, err := loadServerConfig(filepath.Join(configTestdata, "server-minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if td.Name() != "example.org" || c.DataDir != "/var/lib/signet" {
		t.Errorf("trust domain %q, data_dir %q", td.Name(), c.DataDir)
	}
	cfgEq(t, "bind_address", c.BindAddress, "0.0.0.0:8081")
	cfgEq(t, "admin_socket", c.AdminSocket, "/run/signet/admin/admin.sock")
	cfgEq(t, "log_level", c.LogLevel, "info")
	cfgEq(t, "agent_svid_ttl", c.AgentSVIDTTL, time.Hour)
	cfgEq(t, "issuance_limits.agent_rate", c.IssuanceLimits.AgentRate, issuer.DefaultAgentIssueRate)
	cfgEq(t, "issuance_limits.agent_burst", c.IssuanceLimits.AgentBurst, issuer.DefaultAgentIssueBurst)
	cfgEq(t, "issuance_limits.entry_rate", c.IssuanceLimits.EntryRate, issuer.DefaultEntryIssueRate)
	cfgEq(t, "issuance_limits.entry_burst", c.IssuanceLimits.EntryBurst, issuer.DefaultEntryIssueBurst)
	cfgEq(t, "min_free_disk", c.minFreeDisk, uint64(issuer.DefaultMinFreeDisk))
	cfgEq(t, "state_mmap_size", c.stateMmapSize, int64(storage.DefaultStateMmapSize))
	cfgEq(t, "ca.ttl", c.CA.TTL, 8760*time.Hour)
	cfgEq(t, "ca.key_manager", c.CA.KeyManager, "disk")
	cfgEq(t, "ca.rotation.max_svid_ttl", c.CA.Rotation.MaxSVIDTTL, 720*time.Hour)
	cfgEq(t, "ca.rotation.prepare_before", c.CA.Rotation.PrepareBefore, 720*time.Hour)
	cfgEq(t, "raft.bind_address", c.Raft.BindAddress, "127.0.0.1:8300")
	cfgEq(t, "raft.node_id", c.Raft.NodeID, "")
	cfgEq(t, "raft.advertise_address", c.Raft.AdvertiseAddress, "")
	cfgEq(t, "raft.snapshot_threshold", c.Raft.SnapshotThreshold, uint64(storage.DefaultSnapshotThreshold))
	cfgEq(t, "raft.snapshot_interval", c.Raft.SnapshotInterval, storage.DefaultSnapshotInterval)
	cfgEq(t, "raft.trailing_logs", c.Raft.TrailingLogs, uint64(storage.DefaultTrailingLogs))
	if c.Raft.Bootstrap == nil || !*c.Raft.Bootstrap {
		t.Errorf("raft.bootstrap = %v, want true", c.Raft.Bootstrap)
	}
	// The admin uids default is filled when the server starts (its own uid plus root), not by the loader.
	if len(c.AdminUIDs) != 0 {
		t.Errorf("admin_uids = %v, want empty (the server fills the default)", c.AdminUIDs)
	}
	cfgEq(t, "adminUIDs(1000)", adminUIDs(1000), []uint32{1000, 0})
	cfgEq(t, "adminUIDs(0)", adminUIDs(0), []uint32{0})
}

func TestConfigServerValuesKept(t *testing.T) {
	t.Parallel()
	c, td, err := loadServerConfig(filepath.Join(configTestdata, "server-all-keys.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "trust_domain", td.Name(), "prod.example.com")
	cfgEq(t, "data_dir", c.DataDir, "/srv/signet")
	cfgEq(t, "bind_address", c.BindAddress, "10.0.0.5:9081")
	cfgEq(t, "admin_socket", c.AdminSocket, "/run/signet-admin/admin.sock")
	cfgEq(t, "admin_uids", c.AdminUIDs, []uint32{0, 1000, 1001})
	cfgEq(t, "log_level", c.LogLevel, "debug")
	cfgEq(t, "agent_svid_ttl", c.AgentSVIDTTL, 4*time.Hour)
	cfgEq(t, "issuance_limits.agent_rate", c.IssuanceLimits.AgentRate, 50.0)
	cfgEq(t, "issuance_limits.agent_burst", c.IssuanceLimits.AgentBurst, 20000)
	cfgEq(t, "issuance_limits.entry_rate", c.IssuanceLimits.EntryRate, 2.5)
	cfgEq(t, "issuance_limits.entry_burst", c.IssuanceLimits.EntryBurst, 20)
	cfgEq(t, "min_free_disk", c.minFreeDisk, uint64(2<<30))
	cfgEq(t, "state_mmap_size", c.stateMmapSize, int64(128<<30))
	cfgEq(t, "ca.ttl", c.CA.TTL, 43800*time.Hour)
	cfgEq(t, "ca keys", c.caKeys(), keymanager.Config{Kind: keymanager.PKCS11,
		URI:     "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-source=/etc/signet/hsm.pin",
		X509Key: "pkcs11:id=01;object=ca", JWTKey: "pkcs11:id=02;object=jwt"})
	cfgEq(t, "ca.rotation.max_svid_ttl", c.CA.Rotation.MaxSVIDTTL, 48*time.Hour)
	cfgEq(t, "ca.rotation.prepare_before", c.CA.Rotation.PrepareBefore, 72*time.Hour) // keys in pkcs11 rotate
	cfgEq(t, "raft.node_id", c.Raft.NodeID, "signet-1")
	cfgEq(t, "raft.bind_address", c.Raft.BindAddress, "10.0.0.5:9300")
	cfgEq(t, "raft.advertise_address", c.Raft.AdvertiseAddress, "signet-1.example.com:9300")
	cfgEq(t, "raft.snapshot_threshold", c.Raft.SnapshotThreshold, uint64(1000))
	cfgEq(t, "raft.snapshot_interval", c.Raft.SnapshotInterval, 30*time.Second)
	cfgEq(t, "raft.trailing_logs", c.Raft.TrailingLogs, uint64(500))
	if c.Raft.Bootstrap == nil || *c.Raft.Bootstrap {
		t.Errorf("raft.bootstrap = %v, want false as written", c.Raft.Bootstrap)
	}
}

func TestConfigAgentDefaults(t *testing.T) {
	t.Parallel()
	c, td, mode, err := loadAgentConfig(filepath.Join(configTestdata, "agent-minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "trust_domain", td.Name(), "example.org")
	cfgEq(t, "server_address", c.ServerAddress, "signet.example.org:8081")
	cfgEq(t, "data_dir", c.DataDir, "/var/lib/signet/agent")
	cfgEq(t, "socket_path", c.SocketPath, "/run/signet/agent.sock")
	cfgEq(t, "socket_mode", c.SocketMode, "0666")
	cfgEq(t, "socket mode", mode, os.FileMode(0o666))
	cfgEq(t, "trust_bundle_path", c.TrustBundlePath, "")
	cfgEq(t, "insecure_bootstrap", c.InsecureBootstrap, false)
	cfgEq(t, "log_level", c.LogLevel, "info")
	cfgEq(t, "jwt_mint_rate", c.JWTMintRate, float64(agent.DefaultJWTMintRate))
	cfgEq(t, "jwt_mint_burst", c.JWTMintBurst, agent.DefaultJWTMintBurst)
	cfgEq(t, "jwt_cache_size", c.JWTCacheSize, agent.DefaultJWTCacheSize)
	cfgEq(t, "max_hash_size", c.MaxHashSize, unix.DefaultMaxHashSize)
	cfgEq(t, "sds", c.SDS.sdsConfig(), workloadapi.SDSConfig{DefaultSVIDName: "default", DefaultBundleName: "ROOTCA", DefaultAllBundlesName: "ALL"})
}

func TestConfigAgentValuesKept(t *testing.T) {
	t.Parallel()
	c, td, mode, err := loadAgentConfig(filepath.Join(configTestdata, "agent-all-keys.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "trust_domain", td.Name(), "prod.example.com")
	cfgEq(t, "server_address", c.ServerAddress, "10.0.0.5:9081")
	cfgEq(t, "data_dir", c.DataDir, "/srv/signet-agent")
	cfgEq(t, "socket_path", c.SocketPath, "/run/spire/sockets/agent.sock")
	cfgEq(t, "socket mode", mode, os.FileMode(0o660))
	cfgEq(t, "trust_bundle_path", c.TrustBundlePath, "/etc/signet/bundle.pem")
	cfgEq(t, "insecure_bootstrap", c.InsecureBootstrap, false)
	cfgEq(t, "log_level", c.LogLevel, "warn")
	cfgEq(t, "jwt_mint_rate", c.JWTMintRate, 2.5)
	cfgEq(t, "jwt_mint_burst", c.JWTMintBurst, 7)
	cfgEq(t, "jwt_cache_size", c.JWTCacheSize, 300)
	cfgEq(t, "max_hash_size", c.MaxHashSize, int64(1<<20))
	cfgEq(t, "sds", c.SDS.sdsConfig(), workloadapi.SDSConfig{DisableSPIFFECertValidation: true, DefaultSVIDName: "svid", DefaultBundleName: "bundle", DefaultAllBundlesName: "bundles"})

	// An unquoted 0600 is read as the string "0600", so quoting the mode is optional.
	_, _, mode, err = loadAgentConfig(filepath.Join(configTestdata, "agent-socket-mode-unquoted.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "unquoted socket mode", mode, os.FileMode(0o600))
}

// TestConfigAgentWorkloadAttestors: without the section the unix attestor runs alone; with it, the
// attestors it names ("unix:" with no value counts), with their keys kept and defaults filled.
func TestConfigAgentWorkloadAttestors(t *testing.T) { // not parallel: t.Setenv
	c, _, _, err := loadAgentConfig(filepath.Join(configTestdata, "agent-minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "attestors without the section", c.attestors, enabledAttestors{unix: true})
	if c.k8sConfig() != nil {
		t.Error("k8s attestor configured without the section")
	}
	c, _, _, err = loadAgentConfig(filepath.Join(configTestdata, "agent-k8s-only.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "attestors of k8s: {}", c.attestors, enabledAttestors{k8s: true})
	k := c.k8sConfig()
	cfgEq(t, "default kubelet_url", k.KubeletURL, "https://127.0.0.1:10250")
	cfgEq(t, "default token_path", k.TokenPath, k8s.DefaultTokenPath)
	cfgEq(t, "default kubelet_ca_path", k.KubeletCAPath, k8s.DefaultKubeletCAPath)
	cfgEq(t, "default poll_attempts", k.PollAttempts, k8s.DefaultPollAttempts)
	cfgEq(t, "default pod_list_ttl", k.PodListTTL, k8s.DefaultPodListTTL)

	c, _, _, err = loadAgentConfig(filepath.Join(configTestdata, "agent-k8s-all-keys.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "attestors of unix: + k8s:", c.attestors, enabledAttestors{unix: true, k8s: true})
	cfgEq(t, "k8s config", *c.k8sConfig(), k8s.Config{ProcRoot: "/host/proc", KubeletURL: "https://10.0.0.7:10250", NodeName: "node-7",
		TokenPath: "/var/run/secrets/tokens/signet-agent", SkipKubeletVerification: true, PodListTTL: 5 * time.Second,
		PollInterval: 100 * time.Millisecond, PollAttempts: 30, RequestTimeout: 3 * time.Second, MaxPodListBytes: 8 << 20})

	t.Setenv("SIGNET_TEST_NODE", "node-9")
	c, _, _, err = loadAgentConfig(cfgWriteTemp(t, "trust_domain: example.org\nserver_address: 127.0.0.1:8081\nworkload_attestors:\n  k8s:\n    node_name_env: SIGNET_TEST_NODE\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "node name from the environment", c.k8sConfig().NodeName, "node-9")
	cfgEq(t, "kubelet_url from the node name", c.k8sConfig().KubeletURL, "https://node-9:10250")
}

// TestConfigExamples: the commented examples load, contain every key, and show the defaults.
func TestConfigExamples(t *testing.T) {
	t.Parallel()
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		c, td, err := loadServerConfig(exampleServer)
		if err != nil {
			t.Fatal(err)
		}
		cfgEq(t, "keys", cfgExampleKeys(t, exampleServer), cfgKeys(reflect.TypeFor[serverFileConfig](), ""))
		// Loading a file with only the required keys gives the same configuration: the example shows
		// the defaults.
		minimal := cfgWriteTemp(t, "trust_domain: "+td.Name()+"\ndata_dir: "+c.DataDir+"\n")
		d, _, err := loadServerConfig(minimal)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.AdminUIDs) != 0 {
			t.Errorf("example admin_uids = %v, want [] (the default)", c.AdminUIDs)
		}
		c.AdminUIDs = nil
		if !reflect.DeepEqual(c, d) {
			t.Errorf("example differs from the defaults:\nexample:  %+v\ndefaults: %+v", c, d)
		}
		if c.Raft.Bootstrap == nil || !*c.Raft.Bootstrap {
			t.Errorf("example raft.bootstrap = %v, want true", c.Raft.Bootstrap)
		}
	})
	t.Run("agent", func(t *testing.T) {
		t.Parallel()
		c, td, mode, err := loadAgentConfig(exampleAgent)
		if err != nil {
			t.Fatal(err)
		}
		cfgEq(t, "keys", cfgExampleKeys(t, exampleAgent), cfgKeys(reflect.TypeFor[agentFileConfig](), ""))
		cfgEq(t, "socket mode", mode, os.FileMode(0o666))
		if c.InsecureBootstrap {
			t.Error("the example enables insecure_bootstrap")
		}
		if c.TrustBundlePath == "" {
			t.Error("the example has no trust_bundle_path: its first attestation would fail")
		}
		minimal := cfgWriteTemp(t, "trust_domain: "+td.Name()+"\nserver_address: "+c.ServerAddress+"\n")
		d, _, _, err := loadAgentConfig(minimal)
		if err != nil {
			t.Fatal(err)
		}
		c.TrustBundlePath = "" // the one key without a default that the example sets
		if !reflect.DeepEqual(c, d) {
			t.Errorf("example differs from the defaults:\nexample:  %+v\ndefaults: %+v", c, d)
		}
	})
}

// TestConfigReferenceCoversEveryKey: docs/configuration.md names every key of both files.
func TestConfigReferenceCoversEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(configReference)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	keys := append(cfgKeys(reflect.TypeFor[serverFileConfig](), ""), cfgKeys(reflect.TypeFor[agentFileConfig](), "")...)
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("%s does not document `%s`", configReference, k)
		}
	}
}

// cfgKeys lists the dotted YAML keys of a config struct type, sorted.
func cfgKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, cfgKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	slices.Sort(keys)
	return keys
}

// cfgExampleKeys lists the dotted keys present in a YAML file, sorted.
func cfgExampleKeys(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.MappingNode {
				walk(v, prefix+k.Value+".")
				continue
			}
			keys = append(keys, prefix+k.Value)
		}
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("%s is not one YAML mapping", path)
	}
	walk(doc.Content[0], "")
	slices.Sort(keys)
	return keys
}

func cfgWriteTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cfgEq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
