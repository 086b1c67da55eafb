package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: --version prints the version Go recorded in the binary, or the one set with
// -ldflags -X main.version (as 'make build' does).
func TestVersion(t *testing.T) {
	out, stderr, code := runCLI(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "signet ") || !strings.HasSuffix(out, " "+runtime.Version()+"\n") {
		t.Fatalf("signet --version: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	bin := filepath.Join(t.TempDir(), "signet")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	got, err := exec.Command(bin, "--version").Output()
	if err != nil || string(got) != "signet v9.8.7-test\n" {
		t.Fatalf("--version of a build with -X main.version: %q, %v", got, err)
	}
}
