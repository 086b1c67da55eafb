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
	"strings"
)

// startTimeField is the 1-based index of starttime in /proc/<pid>/stat (see proc(5)).
const startTimeField = 22

// StartTime reads the start time of pid from <root>/<pid>/stat; root is normally /proc.
func StartTime(root string, pid int32) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.FormatInt(int64(pid), 10), "stat"))
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
	fields := strings.Fields(string(stat[end+1:]))
	const i = startTimeField - 3
	if len(fields) <= i {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least %d", len(fields), i+1)
	}
	t, err := strconv.ParseUint(fields[i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: start time %q is not a number", fields[i])
	}
	return t, nil
}
