package storage

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// stateMapping returns the size of this process's mapping of path, read from the real /proc/self/maps.
func stateMapping(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[len(fields)-1] != path {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad /proc/self/maps line %q", sc.Text())
		}
		return int64(b - a)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("%s is not mapped", path)
	return 0
}

// TestStateMappedWithHeadroom: state.db is mapped with Config.StateMmapSize bytes (default
// DefaultStateMmapSize), far beyond the file, so that a write growing the file during a long snapshot
// read needs no remap (which would wait for the snapshot to end); out-of-range sizes are refused with an
// error naming the field and the range.
func TestStateMappedWithHeadroom(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	path := filepath.Join(dir, stateFile)
	if got := stateMapping(t, path); got != DefaultStateMmapSize {
		t.Fatalf("state.db mapped with %d bytes, want the default %d", got, int64(DefaultStateMmapSize))
	}
	s.Close()

	s, err := Open(Config{Dir: dir, Logger: testLogger(t), StateMmapSize: 3 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if got := stateMapping(t, path); got != 3<<30 {
		t.Fatalf("state.db mapped with %d bytes, want the configured %d", got, 3<<30)
	}
	s.Close()

	for _, size := range []int64{-1, MinStateMmapSize - 1, MaxStateMmapSize + 1} {
		s, err := Open(Config{Dir: dir, Logger: testLogger(t), StateMmapSize: size})
		if err == nil {
			s.Close()
			t.Fatalf("StateMmapSize %d accepted", size)
		}
		if !strings.Contains(err.Error(), "StateMmapSize") || !strings.Contains(err.Error(), "1 GiB") {
			t.Fatalf("StateMmapSize %d: %v does not name the field and its range", size, err)
		}
	}
}
