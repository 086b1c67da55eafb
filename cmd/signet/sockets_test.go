package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
