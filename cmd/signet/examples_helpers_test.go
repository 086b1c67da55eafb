package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers of the tests of examples/: the examples' programs built once, and their scripts run.

var exampleBuilds sync.Map // package directory -> *exampleBuild

type exampleBuild struct {
	once sync.Once
	path string
	err  error
}

// exampleBin builds the example's main package in dir (relative to the repository root, e.g.
// examples/mtls/server) once per test binary, next to the signet binary, and returns its path with
// symlinks resolved: unix:path selectors name the executable so.
func exampleBin(t testing.TB, dir string) string {
	t.Helper()
	v, _ := exampleBuilds.LoadOrStore(dir, &exampleBuild{})
	b := v.(*exampleBuild)
	b.once.Do(func() {
		out := filepath.Join(filepath.Dir(signetBin), "examples", strings.ReplaceAll(dir, "/", "-"))
		build := exec.Command("go", "build", "-o", out, "../../"+dir)
		if msg, err := build.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, msg)
			return
		}
		b.path, b.err = filepath.EvalSymlinks(out)
	})
	if b.err != nil {
		t.Fatalf("example %s did not build: %v", dir, b.err)
	}
	return b.path
}

// withEnv is a setup hook for startBinWith: the test's environment plus env.
func withEnv(env ...string) func(*exec.Cmd) {
	return func(c *exec.Cmd) { c.Env = append(os.Environ(), env...) }
}

// runExampleScript runs a POSIX sh script of the examples with env added, and returns its combined
// output and exit code.
func runExampleScript(t testing.TB, env []string, script string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("sh %s %v: %v", script, args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// copyFile copies src to dst, created with mode.
func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}
