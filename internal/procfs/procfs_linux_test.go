package procfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ReadFile reads a real /proc file whole, as os.ReadFile does.
func TestReadFileProc(t *testing.T) {
	got, err := ReadFile("/proc/self/cmdline", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("ReadFile(/proc/self/cmdline) = %q, want %q", got, want)
	}
	start, err := StartTime("/proc", int32(os.Getpid()))
	if err != nil || start == 0 {
		t.Fatalf("StartTime(self) = %d, %v; want a start time", start, err)
	}
}

// Files longer than the first read buffer are read whole up to the bound; longer ones are refused,
// naming the file; a missing file is fs.ErrNotExist naming it.
func TestReadFileBounds(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long")
	content := strings.Repeat("x", procFileMax-1)
	if err := os.WriteFile(long, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(long, make([]byte, 10)); err != nil || string(got) != content {
		t.Fatalf("ReadFile(%d bytes) = %d bytes, %v; want all of it", len(content), len(got), err)
	}
	tooLong := filepath.Join(dir, "too-long")
	if err := os.WriteFile(tooLong, []byte(strings.Repeat("x", procFileMax+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(tooLong, nil); err == nil || !strings.Contains(err.Error(), tooLong) {
		t.Fatalf("ReadFile(too long) error = %v, want one naming %s", err, tooLong)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := ReadFile(missing, nil); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("ReadFile(missing, nil) error = %v, want fs.ErrNotExist naming %s", err, missing)
	}
}
