package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/signet-id/signet/internal/uds"
)

// statSocket stats the Unix socket at path for a client command, so that a socket it cannot reach is
// reported for what it is: missing (with hint, what to do), or out of reach because a directory above it
// is not searchable by the caller (a permission error naming that directory, its owner and mode). what
// names the socket ("Workload API socket").
func statSocket(path, what, hint string) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s %s is not a socket: %s", what, path, hint)
		}
		return fi, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no %s at %s (%w): %s", what, path, fs.ErrNotExist, hint)
	case errors.Is(err, fs.ErrPermission):
		dir := filepath.Dir(path)
		// The first directory from the root down whose child cannot be looked up is the one in the way.
		for p := filepath.Dir(path); p != filepath.Dir(p); p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				dir = p
				break
			}
		}
		if di, err := os.Stat(dir); err == nil {
			return nil, fmt.Errorf("permission denied: %s %s: the directory %s (owner %s, mode %04o) does not let you (%s) reach it; ask its owner to open it to you, or run as a user who may use the socket",
				what, path, dir, uds.DescribeUser(uds.Owner(di)), di.Mode().Perm(), uds.DescribeUser(uint32(os.Geteuid())))
		}
		return nil, fmt.Errorf("permission denied: %s %s: %w", what, path, err)
	default:
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
}

// probeSocket connects once to the socket statSocket returned fi for, so that a refused connection is
// reported as what it is: a permission error naming the socket's owner and mode, or a socket nobody
// serves any more.
func probeSocket(ctx context.Context, path string, fi fs.FileInfo, what, hint string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case err == nil:
		return c.Close()
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("permission denied: you (%s) may not connect to the %s %s (owner %s, mode %04o); run as a user who may, or have its owner widen its mode: %w",
			uds.DescribeUser(uint32(os.Geteuid())), what, path, uds.DescribeUser(uds.Owner(fi)), fi.Mode().Perm(), syscall.EACCES)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing serves the %s %s (a socket left by a process that stopped): %s: %w", what, path, hint, syscall.ECONNREFUSED)
	default:
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
}

// reachSocket is statSocket then probeSocket.
func reachSocket(ctx context.Context, path, what, hint string) error {
	fi, err := statSocket(path, what, hint)
	if err != nil {
		return err
	}
	return probeSocket(ctx, path, fi, what, hint)
}
