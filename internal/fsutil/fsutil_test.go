package fsutil_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/fsutil"
)

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte      // nil: no file before
		oldMode  os.FileMode // mode of the existing file
		data     []byte
		perm     os.FileMode
	}{
		{name: "new key file", data: []byte("new"), perm: 0o600},
		{name: "new public file", data: []byte("new"), perm: 0o644},
		{name: "replace narrows mode", existing: []byte("old content, longer than the new"), oldMode: 0o644, data: []byte("new"), perm: 0o600},
		{name: "replace widens mode", existing: []byte("old"), oldMode: 0o600, data: []byte("new"), perm: 0o644},
		{name: "replace with empty data", existing: []byte("old"), oldMode: 0o600, perm: 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "f")
			if tt.existing != nil {
				if err := os.WriteFile(target, tt.existing, tt.oldMode); err != nil {
					t.Fatal(err)
				}
			}
			if err := fsutil.WriteFileAtomic(dir, "f", tt.data, tt.perm); err != nil {
				t.Fatalf("WriteFileAtomic: %v", err)
			}
			got, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("content %q, want %q", got, tt.data)
			}
			fi, err := os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode %04o, want %04o", fi.Mode().Perm(), tt.perm)
			}
			if names := entries(t, dir); len(names) != 1 || names[0] != "f" {
				t.Errorf("directory holds %q, want only the target (no temporary file left)", names)
			}
		})
	}
}

func TestWriteFileAtomicFailureLeavesNoTemp(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // prepares dir so that writing dir/target fails
	}{
		{name: "target is a directory", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "target"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "target is a non-empty directory", setup: func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "target", "sub"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			before := entries(t, dir)
			err := fsutil.WriteFileAtomic(dir, "target", []byte("secret key material"), 0o600)
			if err == nil {
				t.Fatal("WriteFileAtomic succeeded, want an error")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, "target")) {
				t.Errorf("error %q does not name the target", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q contains the data", err)
			}
			if after := entries(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("directory holds %q after the failure, want %q (temporary file left?)", after, before)
			}
		})
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	err := fsutil.WriteFileAtomic(dir, "f", []byte("x"), 0o600)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want one wrapping os.ErrNotExist", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := fsutil.SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir: %v", err)
	}
	if err := fsutil.SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SyncDir of a missing directory: %v, want os.ErrNotExist", err)
	}
}

func TestReadPrivateFile(t *testing.T) {
	const secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
	write := func(mode os.FileMode) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name     string
		setup    func(t *testing.T, path string)
		notExist bool     // errors.Is(err, os.ErrNotExist)
		errHas   []string // "" for success; the path is always expected in an error
	}{
		{name: "owner read-write", setup: write(0o600)},
		{name: "owner read-only", setup: write(0o400)},
		{name: "group readable", setup: write(0o640), errHas: []string{"0640", "chmod 600"}},
		{name: "group writable", setup: write(0o620), errHas: []string{"0620", "chmod 600"}},
		{name: "others readable", setup: write(0o604), errHas: []string{"0604", "chmod 600"}},
		{name: "link to a private file", setup: func(t *testing.T, path string) {
			write(0o600)(t, path+".real")
			if err := os.Symlink(path+".real", path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "link to a file others can read", setup: func(t *testing.T, path string) {
			write(0o644)(t, path+".real")
			if err := os.Symlink(path+".real", path); err != nil {
				t.Fatal(err)
			}
		}, errHas: []string{"0644", "chmod 600"}},
		{name: "directory", setup: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, errHas: []string{"not a regular file"}},
		{name: "missing", setup: func(*testing.T, string) {}, notExist: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			tt.setup(t, path)
			data, err := fsutil.ReadPrivateFile(path)
			if tt.errHas == nil && !tt.notExist {
				if err != nil || string(data) != secret {
					t.Fatalf("ReadPrivateFile = %q, %v; want the content", data, err)
				}
				return
			}
			if err == nil {
				t.Fatal("ReadPrivateFile succeeded, want an error")
			}
			if data != nil {
				t.Error("content returned with an error")
			}
			if tt.notExist != errors.Is(err, os.ErrNotExist) {
				t.Errorf("error %v: os.ErrNotExist wanted: %v", err, tt.notExist)
			}
			for _, want := range append(tt.errHas, path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("error %q contains the file's content", err)
			}
		})
	}
}

func TestReadFileMax(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := fsutil.ReadFileMax(path, 5); err != nil || string(b) != "12345" {
		t.Errorf("at the bound: %q, %v", b, err)
	}
	if _, err := fsutil.ReadFileMax(path, 4); !errors.Is(err, fsutil.ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Errorf("over the bound: %v, want ErrTooLarge naming the file", err)
	}
	if _, err := fsutil.ReadFileMax(path+".missing", 4); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}

// FreeBytes measures a real file system, and a missing directory is an error naming it.
func TestFreeBytes(t *testing.T) {
	dir := t.TempDir()
	before, err := fsutil.FreeBytes(dir)
	if err != nil || before == 0 {
		t.Fatalf("FreeBytes(%s): %d, %v", dir, before, err)
	}
	if _, err := fsutil.FreeBytes(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing directory: %v, want an error naming it", err)
	}
}
