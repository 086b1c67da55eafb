package unix

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/signet-id/signet/internal/procfs"
)

// procPath returns the path of file name in the proc directory of pid.
func (a *Attestor) procPath(pid int32, name string) string {
	return filepath.Join(a.procRoot, strconv.FormatInt(int64(pid), 10), name)
}

// readStartTime returns the start time of pid, in clock ticks since boot.
func (a *Attestor) readStartTime(pid int32) (uint64, error) {
	var buf [procfs.BufSize]byte
	b, err := procfs.ReadFile(a.procPath(pid, "stat"), buf[:])
	if err != nil {
		return 0, err
	}
	return procfs.ParseStartTime(b)
}

// readIDs returns the real user and group ids of pid from /proc/<pid>/status.
func (a *Attestor) readIDs(pid int32) (uid, gid uint32, err error) {
	var buf [procfs.BufSize]byte
	b, err := procfs.ReadFile(a.procPath(pid, "status"), buf[:])
	if err != nil {
		return 0, 0, err
	}
	return parseIDs(b)
}

// parseIDs parses the "Uid:" and "Gid:" lines of /proc/<pid>/status, each holding the real,
// effective, saved and file-system id in that order, and returns the real ones.
func parseIDs(status []byte) (uid, gid uint32, err error) {
	var haveUID, haveGID bool
	for rest := status; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		key, ids, ok := bytes.Cut(line, []byte{':'})
		if !ok || (string(key) != "Uid" && string(key) != "Gid") {
			continue
		}
		first := bytes.TrimLeft(ids, " \t\r")
		if i := bytes.IndexAny(first, " \t\r"); i >= 0 {
			first = first[:i] // the real id; effective, saved and file-system ids follow
		}
		if len(first) == 0 {
			return 0, 0, fmt.Errorf("status: empty %s line", string(key))
		}
		n, err := strconv.ParseUint(string(first), 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("status: %s %q is not a number", string(key), string(first))
		}
		if string(key) == "Uid" {
			uid, haveUID = uint32(n), true
		} else {
			gid, haveGID = uint32(n), true
		}
	}
	if !haveUID || !haveGID {
		return 0, 0, errors.New("status: no Uid or Gid line")
	}
	return uid, gid, nil
}
