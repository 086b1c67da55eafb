package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
)

// proc is a running subprocess: signet (server or agent), or an example's program.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdout *testkit.SyncBuffer
	stderr *testkit.SyncBuffer
	exited chan error
	lines  chan string
}

// startProc starts signet with args; stdout lines are also delivered on p.lines.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	return startProcWith(t, name, nil, args...)
}

// startProcWith is startProc with a hook that adjusts the command (environment, stdin, credentials)
// before it starts.
func startProcWith(t testing.TB, name string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	return startBinWith(t, name, signetBin, setup, args...)
}

// startBinWith is startProcWith for another program than signet (the examples' servers and clients).
func startBinWith(t testing.TB, name, bin string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if setup != nil {
		setup(cmd)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, stdout: &testkit.SyncBuffer{}, stderr: &testkit.SyncBuffer{}, exited: make(chan error, 1), lines: make(chan string, 100)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.stdout.Write([]byte(sc.Text() + "\n"))
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(p.stop)
	return p
}

// waitLine waits for a stdout line with the given prefix, or fails with the process's output.
func (p *proc) waitLine(prefix string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case err := <-p.exited:
			p.exited <- err
			p.t.Fatalf("%s exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", p.name, err, prefix, p.stdout.String(), p.stderr.String())
		case <-deadline:
			p.t.Fatalf("%s did not print %q within %s\nstderr:\n%s", p.name, prefix, timeout, p.stderr.String())
		}
	}
}

// waitExit waits for the process to exit on its own and returns its exit code.
func (p *proc) waitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	case <-time.After(timeout):
		p.t.Fatalf("%s still running after %s\nstderr:\n%s", p.name, timeout, p.stderr.String())
		return -1
	}
}

func (p *proc) running() bool {
	select {
	case err := <-p.exited:
		p.exited <- err
		return false
	default:
		return true
	}
}

func (p *proc) stop() {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		p.t.Errorf("%s did not stop on SIGINT within 15s\nstderr:\n%s", p.name, p.stderr.String())
	}
}

func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	err := <-p.exited
	p.exited <- err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testServer is a 'signet server' subprocess and its paths.
type testServer struct {
	*proc
	dir, config, adminSocket, address, bundlePath string
	// env is added to the server process's environment (e.g. SOFTHSM2_CONF), so parallel tests need
	// no t.Setenv.
	env []string
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newTestServer writes a server config in a fresh directory (without starting anything).
func newTestServer(t testing.TB) *testServer {
	dir := t.TempDir()
	s := &testServer{dir: dir, config: filepath.Join(dir, "server.yaml"), adminSocket: filepath.Join(dir, "admin.sock"),
		address: fmt.Sprintf("127.0.0.1:%d", freePort(t)), bundlePath: filepath.Join(dir, "bundle.pem")}
	s.writeConfig(t, "example.org", fmt.Sprintf("  bind_address: 127.0.0.1:%d\n", freePort(t)))
	return s
}

// writeConfig writes the server's config: trust domain td, its paths, and raft, the raft section's lines.
func (s *testServer) writeConfig(t testing.TB, td, raft string) {
	writeFile(t, s.config, fmt.Sprintf(`trust_domain: %s
data_dir: %s
bind_address: %s
admin_socket: %s
log_level: warn
raft:
%s`, td, filepath.Join(s.dir, "data"), s.address, s.adminSocket, raft))
}

// appendConfig adds lines (top-level keys) to the server's config file.
func (s *testServer) appendConfig(t testing.TB, lines string) {
	t.Helper()
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.config, string(cfg)+lines)
}

// start runs the server and waits until it serves and its bundle is written to bundlePath.
func (s *testServer) start(t testing.TB) *testServer {
	t.Helper()
	s.proc = startProcWith(t, "server", func(cmd *exec.Cmd) {
		if len(s.env) > 0 {
			cmd.Env = append(os.Environ(), s.env...)
		}
	}, "server", "--config", s.config)
	s.waitLine("Agent API:", 60*time.Second)
	writeFile(t, s.bundlePath, s.mustCLI("bundle", "show"))
	return s
}

func (s *testServer) cli(args ...string) (string, string, int) {
	return runCLI(s.t, []string{"SIGNET_ADMIN_SOCKET=" + s.adminSocket}, args...)
}

func (s *testServer) mustCLI(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("signet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// token creates a join token for owner and returns it.
func (s *testServer) token(owner string, extra ...string) string {
	s.t.Helper()
	out := s.mustCLI(append([]string{"token", "create", "--owner", owner, "-o", "json"}, extra...)...)
	return decodeJSON[struct {
		Token string `json:"token"`
	}](s.t, out).Token
}

// testAgent is a 'signet agent' subprocess and its paths.
type testAgent struct {
	*proc
	dir, config, socket, id string
}

func (s *testServer) newAgent(t testing.TB, extraConfig string) *testAgent {
	dir := t.TempDir()
	a := &testAgent{dir: dir, config: filepath.Join(dir, "agent.yaml"), socket: filepath.Join(dir, "agent.sock")}
	bundle := "trust_bundle_path: " + s.bundlePath + "\n"
	if strings.Contains(extraConfig, "insecure_bootstrap") {
		bundle = "" // the two are exclusive
	}
	writeFile(t, a.config, fmt.Sprintf(`trust_domain: example.org
server_address: %s
data_dir: %s
socket_path: %s
%slog_level: info
%s`, s.address, filepath.Join(dir, "data"), a.socket, bundle, extraConfig))
	return a
}

// useServers rewrites the agent's config to name several servers (server_addresses) instead of one.
func (a *testAgent) useServers(t testing.TB, addrs []string) {
	t.Helper()
	cfg := string(mustRead(t, a.config))
	writeFile(t, a.config, regexp.MustCompile(`(?m)^server_address: .*$`).ReplaceAllString(cfg, "server_addresses: ["+strings.Join(addrs, ", ")+"]"))
}

// withJoinToken hands the agent a join token the safe way, in SIGNET_JOIN_TOKEN ("" for none).
func withJoinToken(token string) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		if token != "" {
			cmd.Env = append(os.Environ(), joinTokenEnv+"="+token)
		}
	}
}

// start runs the agent (with a join token, if given) and waits until it serves; it records its ID.
func (a *testAgent) start(t testing.TB, token string) *testAgent {
	t.Helper()
	return a.startWith(t, withJoinToken(token))
}

// startWith runs the agent with setup applied to its command and waits until it serves.
func (a *testAgent) startWith(t testing.TB, setup func(*exec.Cmd), extraArgs ...string) *testAgent {
	t.Helper()
	a.proc = startProcWith(t, "agent", setup, append([]string{"agent", "--config", a.config}, extraArgs...)...)
	line := a.waitLine("Signet agent ", 60*time.Second)
	a.id = strings.Fields(line)[2]
	a.waitLine("export SPIFFE_ENDPOINT_SOCKET=", 10*time.Second)
	return a
}

// startFailing runs the agent and returns its exit code and stderr once it exits.
func (a *testAgent) startFailing(t testing.TB, token string) (int, string) {
	t.Helper()
	a.proc = startProcWith(t, "agent", withJoinToken(token), "agent", "--config", a.config)
	code := a.waitExit(30 * time.Second)
	return code, a.stderr.String()
}
