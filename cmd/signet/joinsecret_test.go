package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/testkit"
)

// TestConfigJoinSecretFile: raft.join_secret_file is read when the config is loaded; a file others can
// read, a too-short secret and a symlink are refused naming the key and the file (never the secret).
func TestConfigJoinSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := func(name, content string, mode os.FileMode) string {
		return testkit.WriteFileMode(t, dir, name, content, mode)
	}
	secret := strings.Repeat("s3cr", 11)
	good := secretFile("good.secret", secret+"\n", 0o600)
	cfg := func(file string) string {
		return cfgWriteTemp(t, "trust_domain: example.org\ndata_dir: /var/lib/signet\nraft:\n  bootstrap_expect: 3\n  retry_join: [10.0.0.2:8300, 10.0.0.3:8300]\n  join_secret_file: "+file+"\n")
	}
	c, _, err := loadServerConfig(cfg(good))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "raft.join_secret_file's secret", string(c.Raft.joinSecret), secret)

	link := filepath.Join(dir, "link.secret")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"readable by others", secretFile("open.secret", secret, 0o644), []string{"open.secret", "mode 0644", "chmod 600"}},
		{"group-readable", secretFile("group.secret", secret, 0o640), []string{"group.secret", "mode 0640", "chmod 600"}},
		{"too short", secretFile("short.secret", "tooshort\n", 0o600), []string{"short.secret", "8 bytes, want at least 32"}},
		{"symlink", link, []string{"link.secret", "symlink"}},
		{"missing", filepath.Join(dir, "missing.secret"), []string{"missing.secret", "no such file"}},
	} {
		path := cfg(tc.file)
		_, _, err := loadServerConfig(path)
		if err == nil {
			t.Fatalf("%s: loaded", tc.name)
		}
		if prefix := "config " + path + ": raft.join_secret_file: "; !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s: %v; want it to start with %q", tc.name, err, prefix)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("%s: the error shows the secret: %v", tc.name, err)
		}
	}
}

// TestConfigJoinSecretRefusedAtStart: 'signet server' with a join secret file others can read exits at
// once, naming the file, its mode and the fix, before it touches its data dir.
func TestConfigJoinSecretRefusedAtStart(t *testing.T) {
	s := newTestServer(t)
	file := testkit.WriteFileMode(t, s.dir, "join.secret", strings.Repeat("x", 44), 0o644)
	s.writeConfig(t, "example.org", "  bind_address: 127.0.0.1:1\n  bootstrap_expect: 3\n  retry_join: [127.0.0.1:2, 127.0.0.1:3]\n  join_secret_file: "+file+"\n")
	_, stderr, code := runCLI(t, nil, "server", "--config", s.config)
	if code == 0 {
		t.Fatal("the server started with a join secret file of mode 0644")
	}
	for _, w := range []string{"raft.join_secret_file", file, "mode 0644", "chmod 600 " + file} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not say %q", stderr, w)
		}
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the refused server created its data dir: %v", err)
	}
}
