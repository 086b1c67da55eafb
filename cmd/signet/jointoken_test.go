package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJoinTokenLeavesCommandLine: an agent given --join-token warns and, while it retries an unreachable
// server, its /proc/<pid>/cmdline (readable by every local user) no longer holds the token, in either
// flag form.
func TestJoinTokenLeavesCommandLine(t *testing.T) {
	const token = "0123456789abcdef.c2VjcmV0c2VjcmV0c2VjcmV0"
	for _, form := range [][]string{{"--join-token", token}, {"--join-token=" + token}} {
		t.Run(form[0], func(t *testing.T) {
			s := newTestServer(t) // configured, never started: the agent keeps retrying with the token
			writeFile(t, s.bundlePath, "")
			a := s.newAgent(t, "insecure_bootstrap: true\n")
			a.proc = startProc(t, "agent", append([]string{"agent", "--config", a.config}, form...)...)
			eventually(t, 20*time.Second, "a retry message", func() bool {
				return strings.Contains(a.stderr.String(), "server unreachable; retrying attestation")
			})
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(a.cmd.Process.Pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(cmdline, []byte("c2VjcmV0")) || !bytes.Contains(cmdline, []byte(a.config)) {
				t.Fatalf("cmdline of the running agent: %q", cmdline)
			}
			if !strings.Contains(a.stderr.String(), "warning: --join-token puts the token in the command line") {
				t.Fatalf("no deprecation warning:\n%s", a.stderr.String())
			}
		})
	}
}

// TestJoinTokenSources: a token from a 0600 file, from stdin or from SIGNET_JOIN_TOKEN attests the
// agent; a file others can read, an empty token and two sources at once are refused.
func TestJoinTokenSources(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")

	t.Run("file", func(t *testing.T) {
		a := s.newAgent(t, "")
		path := filepath.Join(a.dir, "token")
		writeFile(t, path, s.token("alice")+"\n")
		a.startWith(t, nil, "--join-token-file", path)
	})
	t.Run("stdin", func(t *testing.T) {
		tok := s.token("alice")
		s.newAgent(t, "").startWith(t, func(c *exec.Cmd) { c.Stdin = strings.NewReader(tok + "\n") }, "--join-token-file", "-")
	})
	t.Run("env", func(t *testing.T) {
		s.newAgent(t, "").start(t, s.token("alice"))
	})

	refused := []struct {
		name  string
		setup func(t *testing.T, a *testAgent) (func(*exec.Cmd), []string)
		code  int
		want  string
	}{
		{"file readable by others", func(t *testing.T, a *testAgent) (func(*exec.Cmd), []string) {
			path := filepath.Join(a.dir, "token")
			writeFile(t, path, s.token("alice"))
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			return nil, []string{"--join-token-file", path}
		}, 1, "mode 0644 lets group or others access the token: chmod 600"},
		{"empty file", func(t *testing.T, a *testAgent) (func(*exec.Cmd), []string) {
			path := filepath.Join(a.dir, "token")
			writeFile(t, path, "\n")
			return nil, []string{"--join-token-file", path}
		}, 2, "the join token is empty"},
		{"two sources", func(t *testing.T, a *testAgent) (func(*exec.Cmd), []string) {
			path := filepath.Join(a.dir, "token")
			writeFile(t, path, s.token("alice"))
			return withJoinToken(s.token("alice")), []string{"--join-token-file", path}
		}, 2, "give it exactly one way"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			a := s.newAgent(t, "")
			setup, args := tc.setup(t, a)
			a.proc = startProcWith(t, "agent", setup, append([]string{"agent", "--config", a.config}, args...)...)
			if code := a.waitExit(30 * time.Second); code != tc.code || !strings.Contains(a.stderr.String(), tc.want) {
				t.Fatalf("exit %d (want %d), stderr does not say %q:\n%s", code, tc.code, tc.want, a.stderr.String())
			}
		})
	}
}

// TestTokenCreateShowsSafeUsage: the token is printed with the ways to pass it that keep it out of argv.
func TestTokenCreateShowsSafeUsage(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	out := s.mustCLI("token", "create", "--owner", "alice")
	if !strings.Contains(out, "--join-token-file") || !strings.Contains(out, joinTokenEnv) {
		t.Fatalf("token create output:\n%s", out)
	}
}

// TestJoinTokenFromEnvironmentIsRemoved: the token is taken from SIGNET_JOIN_TOKEN and the variable is
// gone afterwards, so nothing the agent starts inherits it; an empty variable counts as unset.
func TestJoinTokenFromEnvironmentIsRemoved(t *testing.T) {
	t.Setenv(joinTokenEnv, "abc.def")
	tok, err := joinTokenSources{}.resolve(strings.NewReader(""), io.Discard)
	if err != nil || tok != "abc.def" {
		t.Fatalf("resolve = %q, %v", tok, err)
	}
	if v, ok := os.LookupEnv(joinTokenEnv); ok {
		t.Fatalf("%s still set to %q", joinTokenEnv, v)
	}
	t.Setenv(joinTokenEnv, "")
	if tok, err := (joinTokenSources{file: "-"}).resolve(strings.NewReader("ghi.jkl\n"), io.Discard); err != nil || tok != "ghi.jkl" {
		t.Fatalf("empty variable and stdin: %q, %v", tok, err)
	}
}

// TestArgsWithoutJoinToken: both flag forms are taken out; a token that would stay anywhere else is
// reported, so the agent does not re-execute with it still in argv.
func TestArgsWithoutJoinToken(t *testing.T) {
	tests := []struct {
		args, want []string
		ok         bool
	}{
		{[]string{"signet", "agent", "--join-token", "T", "--config", "c"}, []string{"signet", "agent", "--config", "c"}, true},
		{[]string{"signet", "agent", "--config", "c", "--join-token=T"}, []string{"signet", "agent", "--config", "c"}, true},
		{[]string{"signet", "agent", "--join-token", "T", "--config", "T.yaml"}, nil, false},
		{[]string{"signet", "agent", "--join-token=T", "--", "T"}, nil, false},
	}
	for _, tc := range tests {
		got, ok := argsWithoutJoinToken(tc.args, "T")
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("argsWithoutJoinToken(%q) = %q, %v; want %q, %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
}
