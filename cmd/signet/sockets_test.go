package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/uds"
)

// TestDevRefusesSquattedSocketDir: dev mode's fallback socket directory, $TMPDIR/signet-<uid>, created
// beforehand by another user (or left writable by others) is refused with the directory, its owner, its
// mode and the fix; nothing listens there.
func TestDevRefusesSquattedSocketDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner int
		mode  os.FileMode
		want  string
	}{
		{"other owner", 65534, 0o755, "is owned by nobody (uid 65534) with mode 0755"},
		{"world-writable", os.Getuid(), 0o777, "is owned by " + uds.DescribeUser(uint32(os.Getuid())) + " with mode 0777"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			squatted := filepath.Join(tmp, "signet-"+strconv.Itoa(os.Getuid()))
			if err := os.Mkdir(squatted, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(squatted, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(squatted, tc.owner, tc.owner); err != nil {
				t.Fatalf("chown (the tests run as root): %v", err)
			}
			_, stderr, code := runCLI(t, []string{"TMPDIR=" + tmp, "XDG_RUNTIME_DIR=", "SIGNET_ADMIN_SOCKET="},
				"dev", "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-level", "warn")
			if code == 0 || !strings.Contains(stderr, squatted+" "+tc.want) || !strings.Contains(stderr, "remove it and let signet create it") {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if entries, _ := os.ReadDir(squatted); len(entries) != 0 {
				t.Fatalf("signet dev created %v in the squatted directory", entries)
			}
		})
	}
}

// TestAdminClientRefusesForeignSocket: an admin socket owned by another user (not root, not the caller)
// may be planted; admin commands refuse to talk to it and say how to trust the server's own user.
func TestAdminClientRefusesForeignSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatalf("chown (the tests run as root): %v", err)
	}
	for _, args := range [][]string{{"owner", "list"}, {"token", "create", "--owner", "alice"}, {"bundle", "show"}} {
		_, stderr, code := runCLI(t, []string{"SIGNET_ADMIN_SOCKET=" + path, "SIGNET_ADMIN_SOCKET_OWNER="}, args...)
		if code != 1 || !strings.Contains(stderr, "admin socket "+path+" is owned by nobody (uid 65534), not by root or you") ||
			!strings.Contains(stderr, "set SIGNET_ADMIN_SOCKET_OWNER=nobody") {
			t.Fatalf("signet %v: exit %d, stderr:\n%s", args, code, stderr)
		}
	}
	// Naming the server's user lets the command through to the socket (which is no admin API here).
	_, stderr, code := runCLI(t, []string{"SIGNET_ADMIN_SOCKET=" + path, "SIGNET_ADMIN_SOCKET_OWNER=nobody"}, "owner", "list")
	if code == 0 || strings.Contains(stderr, "not by root or you") {
		t.Fatalf("with SIGNET_ADMIN_SOCKET_OWNER: exit %d, stderr:\n%s", code, stderr)
	}
}

// openTempDir is a t.TempDir that every local user can enter, as can its parent (both are 0700).
func openTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDevServesOtherUIDs: dev mode's Workload API serves every local uid; another uid with an entry
// gets its SVID through 'signet svid fetch'.
func TestDevServesOtherUIDs(t *testing.T) {
	base := openTempDir(t)
	d := devDirs{dataDir: filepath.Join(base, "data"), socket: filepath.Join(base, "run", "agent.sock"), adminSocket: filepath.Join(base, "run", "admin.sock")}
	p := startDev(t, d)
	_, owner := devIdentity(t)
	p.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/nobody", "--selector", "unix:uid:65534",
		"--owner", owner, "--purpose", "a second local user")
	var stdout, stderr string
	eventually(t, 20*time.Second, "an SVID for uid 65534", func() bool {
		var code int
		stdout, stderr, code = runCLIAs(t, 65534, nil, "svid", "fetch", "--socket", d.socket, "-o", "json")
		return code == 0
	})
	if !strings.Contains(stdout, `"spiffe_id": "spiffe://example.org/nobody"`) {
		t.Fatalf("svid fetch as uid 65534: %s\n%s", stdout, stderr)
	}
}

// TestWorkloadClientPermissionError: a Workload API socket the caller may not use is reported as a
// permission error naming the socket (or the directory in the way), its owner and mode, not as "is the
// agent running?".
func TestWorkloadClientPermissionError(t *testing.T) {
	base := openTempDir(t)
	listenAt := func(path string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	me := uds.DescribeUser(uint32(os.Getuid()))
	closedSock := filepath.Join(base, "open", "agent.sock")
	listenAt(closedSock, 0o600)
	hiddenDir := filepath.Join(base, "private")
	hiddenSock := filepath.Join(hiddenDir, "agent.sock")
	listenAt(hiddenSock, 0o666)
	if err := os.Chmod(hiddenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, socket, want string
	}{
		{"socket mode", closedSock, "permission denied: you (nobody (uid 65534)) may not connect to the Workload API socket " + closedSock + " (owner " + me + ", mode 0600)"},
		{"directory mode", hiddenSock, "permission denied: Workload API socket " + hiddenSock + ": the directory " + hiddenDir + " (owner " + me + ", mode 0700) does not let you"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{{"svid", "fetch"}, {"jwt", "fetch", "--audience", "a"}} {
				_, stderr, code := runCLIAs(t, 65534, nil, append(args, "--socket", tc.socket)...)
				if code != 1 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "running?") {
					t.Fatalf("signet %v as uid 65534: exit %d, stderr:\n%s", args, code, stderr)
				}
			}
		})
	}
}

// TestDevDefaultSocketsUnderXDGRuntimeDir: without --socket and --admin-socket, dev mode puts both
// sockets in $XDG_RUNTIME_DIR/signet and prints the two export lines the README shows, and a note when
// other users cannot reach the Workload API socket.
func TestDevDefaultSocketsUnderXDGRuntimeDir(t *testing.T) {
	xdg := t.TempDir()
	p := startProcWith(t, "dev", func(c *exec.Cmd) {
		c.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+xdg, "SIGNET_ADMIN_SOCKET=")
	}, "dev", "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-level", "warn")
	want := []string{"export SPIFFE_ENDPOINT_SOCKET=unix://" + filepath.Join(xdg, "signet", "agent.sock"),
		"export SIGNET_ADMIN_SOCKET=" + filepath.Join(xdg, "signet", "admin.sock")}
	for _, w := range want {
		if got := p.waitLine(w[:strings.Index(w, "=")+1], 60*time.Second); got != w {
			t.Fatalf("dev printed %q, want %q", got, w)
		}
	}
	// t.TempDir's directories are 0700: dev says other users cannot reach the socket, and where.
	if got := p.waitLine("Note: ", 10*time.Second); !strings.Contains(got, "other local users cannot reach the Workload API socket: "+filepath.Dir(xdg)+" has mode 0700") {
		t.Fatalf("dev printed %q", got)
	}
}
