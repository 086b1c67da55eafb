package unix

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/signet-id/signet/internal/procfs"
)

// procPath returns the path of file name in the proc directory of pid.
func (a *Attestor) procPath(pid int32, name string) string {
	return filepath.Join(a.procRoot, strconv.FormatInt(int64(pid), 10), name)
}

// readStartTime returns the start time of pid, in clock ticks since boot.
func (a *Attestor) readStartTime(pid int32) (uint64, error) {
	b, err := readProcFile(a.procPath(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return procfs.ParseStartTime(b)
}

// readIDs returns the real user and group ids of pid from /proc/<pid>/status.
func (a *Attestor) readIDs(pid int32) (uid, gid uint32, err error) {
	b, err := readProcFile(a.procPath(pid, "status"))
	if err != nil {
		return 0, 0, err
	}
	return parseIDs(b)
}

// parseIDs parses the "Uid:" and "Gid:" lines of /proc/<pid>/status, each holding the real,
// effective, saved and file-system id in that order, and returns the real ones.
func parseIDs(status []byte) (uid, gid uint32, err error) {
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "Uid" && key != "Gid") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, 0, fmt.Errorf("status: empty %s line", key)
		}
		n, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("status: %s %q is not a number", key, fields[0])
		}
		if key == "Uid" {
			uid, haveUID = uint32(n), true
		} else {
			gid, haveGID = uint32(n), true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("status: %w", err)
	}
	if !haveUID || !haveGID {
		return 0, 0, errors.New("status: no Uid or Gid line")
	}
	return uid, gid, nil
}

// procFileMax bounds what is read of one /proc file; stat and status are far smaller.
const procFileMax = 16 << 10

// readProcFile reads a small /proc file with raw open, read and close system calls: os.ReadFile would
// also register the file with the runtime's poller, fstat it (size 0 for /proc files) and read again to
// see EOF, and attestation runs on every Workload API call. A /proc text file is generated whole by the
// first read that has room for it.
func readProcFile(path string) ([]byte, error) {
	fd, err := openReadOnly(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer closeFD(fd)
	buf := make([]byte, 4096)
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
