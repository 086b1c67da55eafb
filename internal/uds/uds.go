// Package uds creates Unix-socket listeners safely: the parent directory with a given mode, a stale
// socket left by a dead process removed, a socket still served by a live process refused.
package uds

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrInUse is returned when the socket path is being served by a running process.
var ErrInUse = errors.New("socket is in use by a running server")

// MaxPathLen is the longest socket path Linux accepts (sun_path is 108 bytes with its NUL).
const MaxPathLen = 107

// Listen listens on the Unix socket at path. The socket's directory is created with dirMode if missing
// (an existing directory is left as it is); the socket file gets sockMode.
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
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("socket %q: create directory: %w", path, err)
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
