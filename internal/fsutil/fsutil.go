// Package fsutil writes files so that a crash leaves either the old content or the new, reads files
// that hold private keys only when nobody else can read them, and other files only up to a bound, and
// measures the free space of a file system.
package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic replaces dir/name with data, created with mode perm. The data goes to a new,
// uniquely named temporary file in dir whose mode is set to perm before anything is written to it;
// that file is synced, renamed over dir/name, and then dir itself is synced, so after a crash
// dir/name holds either its old content or data, never a mix. On any failure the temporary file is
// removed and dir/name is left as it was (unless the final directory sync fails, after the rename).
//
// Errors name the target file, never the data.
func WriteFileAtomic(dir, name string, data []byte, perm os.FileMode) (err error) {
	target := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600; set the wanted mode before the data is in it.
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", target, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	if err = os.Rename(tmp, target); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("sync directory of %s: %w", target, err)
	}
	return nil
}

// SyncDir fsyncs the directory dir, making the renames and removals done in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadPrivateFile returns the content of the file at path, which must be a regular file that group
// and others have no access to (a private key). The checks are made on the opened file, so what is
// read is what was checked. The error for a file others can access names it and says to chmod 600
// it; no error ever contains the file's content. An error for a missing file wraps os.ErrNotExist.
// The caller should clear the returned slice once it has parsed the key.
func ReadPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o and is accessible by group or others; run `chmod 600 %s`", path, perm, path)
	}
	var buf bytes.Buffer
	buf.Grow(int(info.Size()) + bytes.MinRead)
	if _, err := buf.ReadFrom(f); err != nil {
		clear(buf.Bytes())
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// ErrTooLarge is returned (wrapped, naming the file and the bound) by ReadFileMax.
var ErrTooLarge = errors.New("file too large")

// ReadFileMax returns the content of the file at path, refusing one larger than max bytes without
// reading more than max+1. An error for a missing file wraps os.ErrNotExist.
func ReadFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, max)
	}
	return b, nil
}

// FreeBytes returns the space available to unprivileged users on the file system holding dir (the
// root reserve is not counted on).
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return st.Bavail * uint64(st.Bsize), nil
}
