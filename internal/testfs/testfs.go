// Package testfs is test support only: a small real file system (tmpfs) that tests can fill, to see
// what the code does when the disk is full. Mounting needs root; the tests run as root on CI.
package testfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size (as mount takes it: "48m") in a new temporary directory and returns
// its path; it is unmounted when the test ends. A test that is not run as root fails, saying so.
func Mount(tb testing.TB, size string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this test mounts a tmpfs to fill it: run the tests as root (CI does)")
	}
	dir := filepath.Join(tb.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		tb.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes the file path until its file system is full, to the last 4 KiB block.
func Fill(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for _, n := range []int{len(buf), 64 << 10, 4 << 10} {
		for {
			_, err := f.Write(buf[:n])
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
}
