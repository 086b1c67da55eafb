package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigRaftAdvertiseAddressEnv: raft.advertise_address_env fills raft.advertise_address from the
// environment, so one ConfigMap serves every pod of a StatefulSet; a missing variable, a bad name, a
// bad address in it, or both keys at once are refused naming the key (and the variable).
func TestConfigRaftAdvertiseAddressEnv(t *testing.T) {
	const head = "trust_domain: example.org\ndata_dir: /var/lib/signet\nraft:\n"
	t.Setenv("SIGNET_TEST_ADVERTISE", "signet-server-1.signet-server.signet.svc.cluster.local:8300")
	t.Setenv("SIGNET_TEST_ADVERTISE_NO_PORT", "signet-server-1.signet-server")
	t.Setenv("SIGNET_TEST_ADVERTISE_LONG", strings.Repeat("a", 300)+":8300")
	t.Setenv("SIGNET_TEST_ADVERTISE_EMPTY", "")
	dir := t.TempDir()

	path := filepath.Join(dir, "ok.yaml")
	writeFile(t, path, head+"  advertise_address_env: SIGNET_TEST_ADVERTISE\n")
	c, _, err := loadServerConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "raft.advertise_address", c.Raft.AdvertiseAddress, "signet-server-1.signet-server.signet.svc.cluster.local:8300")

	for _, tt := range []struct{ name, raft, want string }{
		{"unset", "  advertise_address_env: SIGNET_TEST_ADVERTISE_NOT_SET\n",
			`raft.advertise_address_env: environment variable "SIGNET_TEST_ADVERTISE_NOT_SET" is empty or not set`},
		{"empty", "  advertise_address_env: SIGNET_TEST_ADVERTISE_EMPTY\n",
			`raft.advertise_address_env: environment variable "SIGNET_TEST_ADVERTISE_EMPTY" is empty or not set`},
		{"bad-name", "  advertise_address_env: $(POD_NAME)\n",
			`raft.advertise_address_env: "$(POD_NAME)": want an environment variable name`},
		{"both", "  advertise_address_env: SIGNET_TEST_ADVERTISE\n  advertise_address: a.example:8300\n",
			"raft.advertise_address_env: cannot be set together with raft.advertise_address"},
		{"no-port", "  advertise_address_env: SIGNET_TEST_ADVERTISE_NO_PORT\n",
			`raft.advertise_address_env (SIGNET_TEST_ADVERTISE_NO_PORT): "signet-server-1.signet-server": missing port`},
		{"too-long", "  advertise_address_env: SIGNET_TEST_ADVERTISE_LONG\n",
			"raft.advertise_address_env (SIGNET_TEST_ADVERTISE_LONG): " + `"aaaa`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".yaml")
			writeFile(t, path, head+tt.raft)
			_, _, err := loadServerConfig(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want one naming %s and containing %q", err, path, tt.want)
			}
		})
	}
}
