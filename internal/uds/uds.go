// Package uds creates Unix-socket listeners safely: the parent directory with a given mode, a stale
// socket left by a dead process removed, a socket still served by a live process refused, and a
// directory another user controls (one they own, can write to, or a symlink) refused, since whoever
// controls it can replace the socket with their own.
package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrInUse is returned when the socket path is being served by a running process.
var ErrInUse = errors.New("socket is in use by a running server")

// ErrUnsafeDir is returned when a socket's directory, or one above it, could let another user replace
// the socket.
var ErrUnsafeDir = errors.New("unsafe socket directory")

// MaxPathLen is the longest socket path Linux accepts (sun_path is 108 bytes with its NUL).
const MaxPathLen = 107

// Listen listens on the Unix socket at path. The socket's directory is created with dirMode if missing;
// an existing one must be a directory (not a symlink) owned by the effective user and not writable by
// group or others, and the directories above it must be owned by root or that user and not writable by
// others unless sticky (like /tmp). The socket file gets sockMode.
func Listen(path string, dirMode, sockMode os.FileMode) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket %q: must be an absolute path", path)
	}
	if len(path) > MaxPathLen {
		return nil, fmt.Errorf("socket %q: path is %d bytes, Unix sockets allow at most %d: choose a shorter path", path, len(path), MaxPathLen)
	}
	// Missing parents are created 0755 (traversable, like /run); only the socket's own directory gets
	// dirMode, so a 0700 admin directory never hides another service's socket beside it.
	dir := filepath.Dir(path)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("socket %q: create directory: %w", path, err)
	}
	if err := os.Mkdir(dir, dirMode); err == nil {
		// The umask may have narrowed the mode; the directory is new and ours, so set it exactly.
		if err := os.Chmod(dir, dirMode); err != nil {
			return nil, fmt.Errorf("socket %q: set directory mode %o: %w", path, dirMode, err)
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("socket %q: create directory: %w", path, err)
	}
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("socket %q: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %q: a file that is not a socket is in the way; remove it or choose another path", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %q: %w (stop it, or choose another path)", path, ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %q: remove stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket %q: %w", path, err)
	}
	if err := os.Chmod(path, sockMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %q: set mode %o: %w", path, sockMode, err)
	}
	return l, nil
}

// checkDir returns an error wrapping ErrUnsafeDir unless dir is a directory (not a symlink) owned by the
// effective user and not writable by group or others, and every directory above it is owned by root or
// that user and not writable by group or others unless sticky. The error names the directory, its owner and
// mode, and the fix.
func checkDir(dir string) error {
	euid := uint32(os.Geteuid())
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink; remove it, or use a real directory owned by %s with mode 0700 or 0755", ErrUnsafeDir, dir, DescribeUser(euid))
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory; remove it, or choose another socket path", ErrUnsafeDir, dir)
	}
	if owner := Owner(fi); owner != euid || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is owned by %s with mode %04o; it must be owned by the user running signet, %s, and not writable by group or others, or another user could replace the socket: remove it and let signet create it, or choose another socket path",
			ErrUnsafeDir, dir, DescribeUser(owner), fi.Mode().Perm(), DescribeUser(euid))
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	for p := parent; ; p = filepath.Dir(p) {
		pi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("socket directory %s: %w", dir, err)
		}
		owner, perm := Owner(pi), pi.Mode().Perm()
		if (owner != 0 && owner != euid) || (perm&0o022 != 0 && pi.Mode()&fs.ModeSticky == 0) {
			return fmt.Errorf("%w: %s, above the socket directory %s, is owned by %s with mode %04o: another user could replace the directory; choose a socket path under directories owned by root or by the user running signet (%s) that only their owner can write to (or that are sticky, like /tmp)",
				ErrUnsafeDir, p, dir, DescribeUser(owner), perm, DescribeUser(euid))
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// Owner is the uid that owns a file (Unix only).
func Owner(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

// DescribeUser is "name (uid N)", or "uid N" for a uid with no name: how errors about a socket or its
// directory name its owner.
func DescribeUser(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username + " (uid " + id + ")"
	}
	return "uid " + id
}

// OthersCanReach reports whether users other than the owner can connect to the socket at path: every
// directory above it searchable by others, the socket writable by them. If not, it returns the first
// directory (or the socket) in the way and its mode.
func OthersCanReach(path string) (blocker string, mode os.FileMode, ok bool) {
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return p, 0, false
		}
		if fi.Mode().Perm()&0o001 == 0 {
			blocker, mode = p, fi.Mode().Perm()
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	if blocker != "" {
		return blocker, mode, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		return path, 0, false
	}
	if fi.Mode().Perm()&0o002 == 0 {
		return path, fi.Mode().Perm(), false
	}
	return "", 0, true
}
