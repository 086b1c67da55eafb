package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
)

// signetBin is the real binary under test, built once by TestMain.
var signetBin string

func TestMain(m *testing.M) {
	if os.Getenv(fetchClientEnv) != "" { // this binary run as BenchmarkFetchProcesses's client
		os.Exit(runFetchClient())
	}
	if os.Getenv(tokenKeysEnv) != "" { // this binary run to list a SoftHSM2 token's keys (tokenKeys)
		os.Exit(runTokenKeys())
	}
	dir, err := os.MkdirTemp("", "signet-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Traversable, so that tests can run the binary as another uid too.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	signetBin = filepath.Join(dir, "signet")
	build := exec.Command("go", "build", "-o", signetBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build signet:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// devProc is a running 'signet dev' subprocess.
type devProc struct {
	t           testing.TB
	cmd         *exec.Cmd
	dataDir     string
	socket      string
	adminSocket string
	stderr      *testkit.SyncBuffer
	// stdout is every line the process printed.
	stdout *testkit.SyncBuffer
	exited chan error
}

// devDirs are the paths of one dev instance; reusing them restarts the same instance.
type devDirs struct {
	dataDir, socket, adminSocket string
}

func newDevDirs(t testing.TB) devDirs {
	base := t.TempDir()
	return devDirs{dataDir: filepath.Join(base, "data"), socket: filepath.Join(base, "run", "agent.sock"), adminSocket: filepath.Join(base, "run", "admin.sock")}
}

// startDev starts 'signet dev' and waits until it prints its socket.
func startDev(t testing.TB, d devDirs, extra ...string) *devProc {
	t.Helper()
	p, err := tryStartDev(t, d, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tryStartDev(t testing.TB, d devDirs, extra ...string) (*devProc, error) {
	args := append([]string{"dev", "--data-dir", d.dataDir, "--socket", d.socket, "--admin-socket", d.adminSocket, "--log-level", "warn"}, extra...)
	cmd := exec.Command(signetBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &devProc{t: t, cmd: cmd, dataDir: d.dataDir, socket: d.socket, adminSocket: d.adminSocket, stderr: &testkit.SyncBuffer{}, stdout: &testkit.SyncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.stdout, line)
			if strings.HasPrefix(line, "export SPIFFE_ENDPOINT_SOCKET=") {
				ready <- line
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(p.stop)
	select {
	case line := <-ready:
		if want := "export SPIFFE_ENDPOINT_SOCKET=unix://" + d.socket; line != want {
			return nil, fmt.Errorf("dev printed %q, want %q", line, want)
		}
		return p, nil
	case err := <-p.exited:
		p.exited <- err
		return nil, fmt.Errorf("signet dev exited before it was ready: %v\nstderr:\n%s", err, p.stderr.String())
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("signet dev not ready after 60s\nstderr:\n%s", p.stderr.String())
	}
}

// stop interrupts the process (as Ctrl-C does) and waits for it.
func (p *devProc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		p.t.Errorf("signet dev did not stop on SIGINT within 15s\nstderr:\n%s", p.stderr.String())
	}
}

// kill9 kills the process with SIGKILL: no cleanup of any kind runs.
func (p *devProc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	err := <-p.exited
	p.exited <- err
}

// cli runs the real binary with args against this instance's admin socket.
func (p *devProc) cli(args ...string) (stdout, stderr string, code int) {
	return runCLI(p.t, []string{"SIGNET_ADMIN_SOCKET=" + p.adminSocket, "SPIFFE_ENDPOINT_SOCKET=unix://" + p.socket}, args...)
}

// mustCLI runs a command that must succeed.
func (p *devProc) mustCLI(args ...string) string {
	p.t.Helper()
	out, errOut, code := p.cli(args...)
	if code != 0 {
		p.t.Fatalf("signet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func runCLI(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runCLIWith(t, nil, env, args...)
}

// runCLIAs runs the real binary as another uid (and gid of the same number), from /.
func runCLIAs(t testing.TB, uid uint32, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runCLIWith(t, func(c *exec.Cmd) {
		c.Dir = "/"
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}, env, args...)
}

// runCLIWith runs the real binary with setup applied to its command first.
func runCLIWith(t testing.TB, setup func(*exec.Cmd), env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, signetBin, args...)
	cmd.Env = append(os.Environ(), env...)
	if setup != nil {
		setup(cmd)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run signet %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errOut.String(), code
}

func decodeJSON[T any](t testing.TB, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// devIdentity is the SPIFFE ID and owner dev mode registers for the user running the tests.
func devIdentity(t testing.TB) (spiffeID, owner string) {
	name := "uid-" + strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil && regexp.MustCompile(`^[A-Za-z0-9._-]+$`).MatchString(u.Username) {
		name = u.Username
	}
	return "spiffe://example.org/dev/" + name, name
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.Condition(t, timeout, what, cond)
}
