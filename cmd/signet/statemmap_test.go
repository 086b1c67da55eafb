package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestServerMapsStateWithConfiguredSize: state_mmap_size reaches the store: the server process maps its
// state.db with that many bytes (read from the real /proc/PID/maps), far beyond the file.
func TestServerMapsStateWithConfiguredSize(t *testing.T) {
	s := newTestServer(t)
	s.appendConfig(t, "state_mmap_size: 3GiB\n")
	s.start(t)
	maps, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(s.dir, "data", "server", "state.db")
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[len(f)-1] != state {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad maps line %q", line)
		}
		if b-a != 3<<30 {
			t.Fatalf("state.db mapped with %d bytes, want 3 GiB", b-a)
		}
		return
	}
	t.Fatalf("the server does not map %s:\n%s", state, maps)
}
