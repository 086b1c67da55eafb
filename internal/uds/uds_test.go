package uds

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestListenRefusesSquattedDirectory: a socket directory another user could control is refused with an
// error naming the directory, its owner and mode, and the fix; nothing is created in it.
func TestListenRefusesSquattedDirectory(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, base string) (sockDir string)
		want  []string
	}{
		{"owned by another user", func(t *testing.T, base string) string {
			dir := mkdir(t, filepath.Join(base, "run"), 0o755)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatalf("chown (the tests run as root): %v", err)
			}
			return dir
		}, []string{"/run is owned by nobody (uid 65534)", "with mode 0755", "remove it and let signet create it"}},
		{"writable by others", func(t *testing.T, base string) string {
			return mkdir(t, filepath.Join(base, "run"), 0o777)
		}, []string{"/run is owned by ", "with mode 0777", "not writable by group or others"}},
		{"writable by group", func(t *testing.T, base string) string {
			return mkdir(t, filepath.Join(base, "run"), 0o770)
		}, []string{"with mode 0770"}},
		{"symlink", func(t *testing.T, base string) string {
			target := mkdir(t, filepath.Join(base, "real"), 0o700)
			link := filepath.Join(base, "run")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, []string{"/run is a symlink"}},
		{"parent writable by others", func(t *testing.T, base string) string {
			parent := mkdir(t, filepath.Join(base, "shared"), 0o777)
			return mkdir(t, filepath.Join(parent, "run"), 0o700)
		}, []string{"/shared, above the socket directory", "with mode 0777"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t, t.TempDir())
			path := filepath.Join(dir, "agent.sock")
			l, err := Listen(path, 0o700, 0o600)
			if err == nil {
				l.Close()
				t.Fatalf("Listen in %s succeeded", dir)
			}
			if !errors.Is(err, ErrUnsafeDir) {
				t.Fatalf("error %v does not wrap ErrUnsafeDir", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a socket was created in the refused directory: %v", err)
			}
		})
	}
}

// TestListenAcceptsSafeDirectories: a directory of our own (0700 or 0755) under a sticky, world-writable
// parent like /tmp is fine, and a directory Listen creates gets exactly dirMode whatever the umask.
func TestListenAcceptsSafeDirectories(t *testing.T) {
	base := t.TempDir()
	sticky := mkdir(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
	existing := mkdir(t, filepath.Join(sticky, "mine"), 0o755)
	listen(t, filepath.Join(existing, "a.sock"), 0o700, 0o600)

	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	created := filepath.Join(sticky, "new", "dir")
	listen(t, filepath.Join(created, "b.sock"), 0o755, 0o666)
	for path, want := range map[string]os.FileMode{created: 0o755, filepath.Join(created, "b.sock"): 0o666} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Fatalf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func listen(t *testing.T, path string, dirMode, sockMode os.FileMode) net.Listener {
	t.Helper()
	l, err := Listen(path, dirMode, sockMode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
