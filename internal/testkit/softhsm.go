package testkit

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SoftHSMModule is Debian's SoftHSM2 PKCS#11 module, installed by .ci/run (apt-get install softhsm2).
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// WriteSoftHSMConf writes a SoftHSM2 configuration whose tokens live in dir/tokens and returns its
// path, for SOFTHSM2_CONF: tests never touch the machine's own tokens. The module reads SOFTHSM2_CONF
// when it is initialised, so a process should use one configuration for its lifetime.
func WriteSoftHSMConf(dir string) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	content := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	return conf, os.WriteFile(conf, []byte(content), 0o600)
}

// NewSoftHSMToken initialises a fresh token with label and user PIN pin in the SoftHSM2 of conf. It
// fails (never skips) when SoftHSM2 is missing, saying how to install it.
func NewSoftHSMToken(tb testing.TB, conf, label, pin string) {
	tb.Helper()
	if _, err := os.Stat(SoftHSMModule); err != nil {
		tb.Fatalf("SoftHSM2 is not installed (%v): run the install step of .ci/run (apt-get install -y softhsm2)", err)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		tb.Fatalf("softhsm2-util not found (%v): run the install step of .ci/run (apt-get install -y softhsm2)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin+"-so")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
}

// NoPrivateKeyFiles fails tb if any file under dir holds a PEM private key: keys in an HSM or KMS never
// reach the disk.
func NoPrivateKeyFiles(tb testing.TB, dir string) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(data), "PRIVATE KEY") {
			tb.Errorf("%s holds a private key", path)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
}
