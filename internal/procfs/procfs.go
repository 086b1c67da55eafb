// Package procfs parses the few proc(5) fields Signet identifies processes by. The start time of a
// process (field 22 of /proc/<pid>/stat, clock ticks since boot) together with its pid names one
// process for as long as the machine runs: a reused pid gets a new start time.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// startTimeField is the 1-based index of starttime in /proc/<pid>/stat (see proc(5)).
const startTimeField = 22

// StartTime reads the start time of pid from <root>/<pid>/stat; root is normally /proc.
func StartTime(root string, pid int32) (uint64, error) {
	var buf [BufSize]byte
	b, err := ReadFile(filepath.Join(root, strconv.FormatInt(int64(pid), 10), "stat"), buf[:])
	if err != nil {
		return 0, err
	}
	return ParseStartTime(b)
}

// ParseStartTime extracts field 22 from the contents of /proc/<pid>/stat. The second field is the
// command name in parentheses; the name is chosen by the process and may itself contain spaces and
// parentheses, so the fields after it are found after the last ')' in the line.
func ParseStartTime(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 || bytes.IndexByte(stat[:end], '(') < 0 {
		return 0, errors.New("stat: no parenthesized command name")
	}
	// Fields after the command name start with field 3 (state).
	// Walked without splitting: this runs on every Workload API connection and call.
	const i = startTimeField - 3
	rest, n := stat[end+1:], 0
	for {
		rest = bytes.TrimLeft(rest, " \t\n")
		if len(rest) == 0 {
			return 0, fmt.Errorf("stat: %d fields after the command name, want at least %d", n, i+1)
		}
		field := rest
		if j := bytes.IndexAny(rest, " \t\n"); j >= 0 {
			field, rest = rest[:j], rest[j:]
		} else {
			rest = nil
		}
		if n == i {
			t, err := strconv.ParseUint(string(field), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("stat: start time %q is not a number", string(field))
			}
			return t, nil
		}
		n++
	}
}

// procFileMax bounds what is read of one /proc file; stat and status are far smaller.
const procFileMax = 16 << 10

// BufSize is the size of a buffer that holds a /proc/<pid>/stat or status file whole: callers of
// ReadFile declare one on their stack.
const BufSize = 4096

// ReadFile reads a small /proc file into buf (growing it if the file is larger, up to 16 KiB) with
// raw open, read and close system calls: os.ReadFile would also register the file with the runtime's
// poller, fstat it (size 0 for /proc files), read again to see EOF and allocate, and the Workload API
// reads several on every connection and call. A /proc text file is generated whole by the first
// read that has room for it.
func ReadFile(path string, buf []byte) ([]byte, error) {
	fd, err := openReadOnly(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer closeFD(fd)
	if len(buf) == 0 {
		buf = make([]byte, BufSize)
	}
	n := 0
	for {
		m, err := readFD(fd, buf[n:])
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		n += m
		if m == 0 || n < len(buf) {
			return buf[:n], nil
		}
		if len(buf) >= procFileMax {
			return nil, fmt.Errorf("%s: larger than %d bytes", path, procFileMax)
		}
		buf = append(buf, make([]byte, len(buf))...)
	}
}

// Root checks a configured proc root: "" means "/proc"; anything else must be an absolute path to a
// directory. It returns the cleaned path.
func Root(root string) (string, error) {
	if root == "" {
		root = "/proc"
	}
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("proc root %q is not an absolute path", root)
	}
	if fi, err := os.Stat(root); err != nil {
		return "", fmt.Errorf("proc root: %w", err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("proc root %q is not a directory", root)
	}
	return filepath.Clean(root), nil
}
