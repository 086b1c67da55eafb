package unix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/signet-id/signet/selector"
)

// hashBufferSize is the read size used while hashing an executable.
const hashBufferSize = 128 << 10

func supported() error { return nil }

// procInfo is what attest reads about a process from proc.
type procInfo struct {
	uid, gid uint32
	path     string // "" when the path does not name the executable in the agent's namespace
	digest   string // "" when the executable was not hashed
}

func (a *Attestor) attest(ctx context.Context, pid int32, start uint64) ([]selector.Selector, error) {
	// The pid must still name the process that connected...
	if err := a.checkSameProcess(pid, start); err != nil {
		return nil, err
	}

	info, readErr := a.readProcess(ctx, pid)

	// ...and still after everything was read, whether reading succeeded or not: a failure in between
	// is most likely the process exiting.
	if err := a.checkSameProcess(pid, start); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}

	sels := make([]selector.Selector, 0, 6)
	add := func(key, value string) {
		s := selector.Selector{Type: selectorType, Value: key + ":" + value}
		if err := a.selectors.Validate(s); err != nil {
			a.log.Debug("skipping selector that is not valid", "pid", pid, "error", err)
			return
		}
		sels = append(sels, s)
	}
	add("uid", strconv.FormatUint(uint64(info.uid), 10))
	add("gid", strconv.FormatUint(uint64(info.gid), 10))
	if name := a.name(pid, nameKey{id: info.uid}); name != "" {
		add("user", name)
	}
	if name := a.name(pid, nameKey{group: true, id: info.gid}); name != "" {
		add("group", name)
	}
	if info.path != "" {
		add("path", info.path)
	}
	if info.digest != "" {
		add("sha256", info.digest)
	}
	return selector.Normalize(sels), nil
}

// readProcess reads the ids, executable path and executable digest of pid.
func (a *Attestor) readProcess(ctx context.Context, pid int32) (procInfo, error) {
	var info procInfo
	var err error
	if info.uid, info.gid, err = a.readIDs(pid); err != nil {
		return info, fmt.Errorf("%s: pid %d: reading ids: %w", errPrefix, pid, err)
	}

	exe := a.procPath(pid, "exe")
	link, err := os.Readlink(exe)
	if err != nil {
		// Kernel threads and zombies have no executable: the link cannot be read although the
		// process exists.
		return info, fmt.Errorf("%s: pid %d: reading executable path: %w", errPrefix, pid, err)
	}
	// Stat the file the process runs (the link followed), not the path: the path may have been
	// replaced or removed. It is opened only if it must be hashed.
	key, err := statExe(exe)
	if err != nil {
		return info, fmt.Errorf("%s: pid %d: executable %q: %w", errPrefix, pid, link, err)
	}
	// Read the link again: if the process called exec between the first reading and the stat,
	// the path and the file could belong to different programs.
	if again, err := os.Readlink(exe); err != nil {
		return info, fmt.Errorf("%s: pid %d: reading executable path: %w", errPrefix, pid, err)
	} else if again != link {
		return info, fmt.Errorf("%s: pid %d: executable changed from %q to %q during attestation", errPrefix, pid, link, again)
	}

	// The link shows the path in the process's own mount namespace, where anyone who can create a user
	// and mount namespace can bind-mount any file over any path. Report the path only if it names the
	// very file the process runs here, in the agent's namespace. (An executable removed or replaced
	// since the process started has " (deleted)" appended to the link: that names no file, or another.)
	info.path = link
	if err := sameFile(link, key); err != nil {
		a.log.Debug("executable path does not name the running executable in the agent's mount namespace; no path selector",
			"pid", pid, "path", link, "reason", err)
		info.path = ""
	}

	if a.digestWanted != nil && !a.digestWanted() {
		return info, nil // no entry uses a digest: do not pay for one
	}
	if key.size > a.maxHashSize {
		a.log.Debug("executable too large to hash; no sha256 selector",
			"pid", pid, "path", link, "size", key.size, "max_hash_size", a.maxHashSize)
		return info, nil
	}
	if d, ok := a.digests.cached(key); ok {
		info.digest = d // the common case: no need to open the executable
		return info, nil
	}
	f, err := os.Open(exe)
	if err != nil {
		return info, fmt.Errorf("%s: pid %d: opening executable: %w", errPrefix, pid, err)
	}
	defer f.Close()
	// The process may have called exec since the stat: hash only the file that was attested.
	if opened, err := statFile(f); err != nil {
		return info, fmt.Errorf("%s: pid %d: executable %q: %w", errPrefix, pid, link, err)
	} else if opened != key {
		return info, fmt.Errorf("%s: pid %d: executable %q changed during attestation", errPrefix, pid, link)
	}
	if info.digest, err = a.digest(ctx, f, key, info.uid); err != nil {
		return info, fmt.Errorf("%s: pid %d: hashing executable %q: %w", errPrefix, pid, link, err)
	}
	return info, nil
}

// digest returns the hex sha256 of f, whose version is key, from the cache or by reading f. Concurrent
// attestations of processes running the same new executable read it once (digestCache.digest); a
// read takes one of the slots of uid, the uid of the process being attested (hashSlots).
func (a *Attestor) digest(ctx context.Context, f *os.File, key fileKey, uid uint32) (string, error) {
	return a.digests.digest(ctx, key, func() (string, error) {
		release, err := a.hashSlots.acquire(ctx, uid)
		if err != nil {
			return "", err
		}
		defer release()
		return a.hash(ctx, f, key)
	})
}

// hash reads f, whose version is key, and returns its hex sha256.
func (a *Attestor) hash(ctx context.Context, f *os.File, key fileKey) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if a.onHash != nil {
		a.onHash()
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx: ctx, r: f}, make([]byte, hashBufferSize))
	if err != nil {
		return "", err
	}
	// A file modified while it was read would give a digest of neither version.
	after, err := statFile(f)
	if err != nil {
		return "", err
	}
	if after != key || n != key.size {
		return "", errors.New("executable was modified while it was hashed")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// statFile returns the version key of the open file f, which must be regular.
func statFile(f *os.File) (fileKey, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fileKey{}, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return keyOf(&st)
}

// statExe returns the version key of the file exe (/proc/<pid>/exe, followed to the executable
// itself), which must be regular.
func statExe(exe string) (fileKey, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		return fileKey{}, &os.PathError{Op: "stat", Path: exe, Err: err}
	}
	return keyOf(&st)
}

func keyOf(st *syscall.Stat_t) (fileKey, error) {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fileKey{}, fmt.Errorf("not a regular file (mode %#o)", st.Mode)
	}
	// Dev is narrower than 64 bits on some architectures, hence the conversion.
	return fileKey{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}, nil
}

// sameFile returns nil if path, resolved in this process's mount namespace, is the file key describes
// (same device and inode), and otherwise an error saying what it is instead.
func sameFile(path string, key fileKey) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if uint64(st.Dev) != key.dev || st.Ino != key.ino {
		return fmt.Errorf("it names device %d inode %d, the process runs device %d inode %d", st.Dev, st.Ino, key.dev, key.ino)
	}
	return nil
}

// checkSameProcess returns an error wrapping ErrProcessGone unless pid still exists with start time start.
func (a *Attestor) checkSameProcess(pid int32, start uint64) error {
	now, err := a.readStartTime(pid)
	switch {
	case err != nil && isGone(err):
		return goneError(pid, err.Error())
	case err != nil:
		return fmt.Errorf("%s: pid %d: reading start time: %w", errPrefix, pid, err)
	case now != start:
		return goneError(pid, fmt.Sprintf("pid now names another process: start time %d, the caller's was %d", now, start))
	}
	return nil
}

// name returns the user or group name of k, or "" (logged at debug level) if there is none.
func (a *Attestor) name(pid int32, k nameKey) string {
	name, cached, err := a.names.name(k)
	if name == "" && !cached {
		kind := "user"
		if k.group {
			kind = "group"
		}
		a.log.Debug("id has no name; no "+kind+" selector", "pid", pid, "id", k.id, "error", err)
	}
	return name
}

// isGone reports whether err, from reading a proc file, means the process no longer exists.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

func goneError(pid int32, detail string) error {
	return fmt.Errorf("%s: pid %d: %w (%s)", errPrefix, pid, ErrProcessGone, detail)
}

// ctxReader stops reading once its context is done, so a long hash can be abandoned.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
