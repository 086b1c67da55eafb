package unix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/selector"
)

func newAttestor(t testing.TB, cfg Config) *Attestor {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// values maps each selector key to its value, failing on duplicates, invalid or unsorted selectors.
func values(t *testing.T, sels []selector.Selector) map[string]string {
	t.Helper()
	if !slices.IsSortedFunc(sels, selector.Compare) {
		t.Errorf("selectors not sorted: %v", selector.Strings(sels))
	}
	m := make(map[string]string)
	for _, s := range sels {
		if err := SelectorType().Validate(s); err != nil {
			t.Errorf("invalid selector: %v", err)
		}
		if s.Type != "unix" {
			t.Errorf("selector %s has type %q, want unix", s, s.Type)
		}
		k, v, _ := strings.Cut(s.Value, ":")
		if _, dup := m[k]; dup {
			t.Errorf("duplicate key %q in %v", k, selector.Strings(sels))
		}
		m[k] = v
	}
	return m
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// helperEnv, set to "wait", makes the test binary a child process that waits to be killed instead of
// running the tests. Re-executing the test binary needs nothing from the machine (no sleep on PATH),
// so these tests never skip.
const helperEnv = "SIGNET_UNIX_ATTESTOR_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "wait":
		time.Sleep(time.Minute)
		os.Exit(0)
	case "bind-exec":
		bindAndExec(os.Getenv(bindSrcEnv), os.Getenv(bindDstEnv))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// testBinary is this test binary's resolved path.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// startHelper starts bin as a waiting helper, retrying on ETXTBSY until the file can be executed (a
// concurrent fork may hold a freshly written copy open for writing until it execs); it is killed when
// the test ends.
func startHelper(t *testing.T, bin string) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	var err error
	waitFor(t, func() bool {
		cmd = exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=wait")
		err = cmd.Start()
		return !errors.Is(err, syscall.ETXTBSY)
	}, bin+" to be executable (no longer open for writing)")
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// attestNow attests pid with the start time it has now, as a caller that has just connected.
func attestNow(tb testing.TB, a *Attestor, ctx context.Context, pid int32) ([]selector.Selector, error) {
	tb.Helper()
	start, err := a.readStartTime(pid)
	if err != nil {
		tb.Fatalf("pid %d: start time: %v", pid, err)
	}
	return a.Attest(ctx, pid, start)
}

func TestAttestSelf(t *testing.T) {
	a := newAttestor(t, Config{})
	sels, err := attestNow(t, a, context.Background(), int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, sels)

	if want := strconv.Itoa(os.Getuid()); got["uid"] != want {
		t.Errorf("uid = %q, want %q", got["uid"], want)
	}
	if want := strconv.Itoa(os.Getgid()); got["gid"] != want {
		t.Errorf("gid = %q, want %q", got["gid"], want)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	if got["path"] != exe {
		t.Errorf("path = %q, want %q", got["path"], exe)
	}
	if want := fileSHA256(t, exe); got["sha256"] != want {
		t.Errorf("sha256 = %q, want %q", got["sha256"], want)
	}
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil && got["user"] != u.Username {
		t.Errorf("user = %q, want %q", got["user"], u.Username)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(os.Getgid())); err == nil && got["group"] != g.Name {
		t.Errorf("group = %q, want %q", got["group"], g.Name)
	}
	t.Logf("selectors: %v", selector.Strings(sels))
}

func TestAttestChild(t *testing.T) {
	want := testBinary(t)
	cmd := startHelper(t, want)

	a := newAttestor(t, Config{})
	sels, err := attestNow(t, a, context.Background(), int32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, sels)
	if got["path"] != want {
		t.Errorf("path = %q, want %q", got["path"], want)
	}
	if got["sha256"] != fileSHA256(t, want) {
		t.Errorf("sha256 = %q, want the digest of %s", got["sha256"], want)
	}
	if got["uid"] != strconv.Itoa(os.Getuid()) {
		t.Errorf("uid = %q, want %d", got["uid"], os.Getuid())
	}
}

// TestAttestExitedProcess: a caller that connected (its start time recorded) and then exited is
// refused with ErrProcessGone, not attested as whatever holds its pid now.
func TestAttestExitedProcess(t *testing.T) {
	a := newAttestor(t, Config{})
	cmd := startHelper(t, testBinary(t))
	pid := int32(cmd.Process.Pid)
	start, err := a.readStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	sels, err := a.Attest(context.Background(), pid, start)
	if !errors.Is(err, ErrProcessGone) {
		t.Fatalf("Attest of a reaped process = %v, %v; want ErrProcessGone", sels, err)
	}
	if want := fmt.Sprintf("attestor/unix: pid %d: ", pid); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
}

// copyTestBinary copies the test binary into a new directory beside it, which the go tool has just
// executed from, so the copy is never on a noexec mount; it returns the copy's path and content.
func copyTestBinary(t *testing.T, name string) (string, []byte) {
	t.Helper()
	self := testBinary(t)
	content, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(self), "exe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, content
}

// TestAttestDeletedExecutable runs a copy of the test binary, removes the copy, and attests the
// process: the path names no file any more, so there is no path selector, but the digest of what the
// process runs is still read through /proc.
func TestAttestDeletedExecutable(t *testing.T) {
	bin, content := copyTestBinary(t, "copy")
	cmd := startHelper(t, bin)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}

	a := newAttestor(t, Config{})
	sels, err := attestNow(t, a, context.Background(), int32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, sels)
	if p, ok := got["path"]; ok {
		t.Errorf("path = %q for a removed executable, want no path selector", p)
	}
	sum := sha256.Sum256(content)
	if want := hex.EncodeToString(sum[:]); got["sha256"] != want {
		t.Errorf("sha256 = %q, want %q (the removed file's content)", got["sha256"], want)
	}
}

// TestAttestReplacedExecutable: a file renamed over the path after the process started is not what
// the process runs, so the process gets no path selector.
func TestAttestReplacedExecutable(t *testing.T) {
	bin, _ := copyTestBinary(t, "prog")
	cmd := startHelper(t, bin)
	other := bin + ".new"
	if err := os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, bin); err != nil {
		t.Fatal(err)
	}
	a := newAttestor(t, Config{})
	sels, err := attestNow(t, a, context.Background(), int32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := values(t, sels)["path"]; ok {
		t.Errorf("path = %q after another file was renamed over it, want no path selector", p)
	}
}

func TestAttestCachesDigest(t *testing.T) {
	a := newAttestor(t, Config{})
	var hashes atomic.Int32
	a.onHash = func() { hashes.Add(1) }
	pid := int32(os.Getpid())

	first, err := attestNow(t, a, context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	if n := hashes.Load(); n != 1 {
		t.Fatalf("first Attest hashed %d times, want 1", n)
	}
	second, err := attestNow(t, a, context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	if n := hashes.Load(); n != 1 {
		t.Errorf("second Attest hashed again (%d hashes in all), want a cache hit", n)
	}
	if !selector.Equal(first, second) {
		t.Errorf("second Attest = %v, first = %v", selector.Strings(second), selector.Strings(first))
	}
}

// TestAttestHashesNewExecutableOnce checks that concurrent attestations of processes running the same
// executable, not yet in the digest cache, read it once and all get its digest.
func TestAttestHashesNewExecutableOnce(t *testing.T) {
	const n = 16
	p := newFakeProc(t, "a new binary")
	a := newAttestor(t, Config{ProcRoot: p.root})
	var hashes atomic.Int32
	release := make(chan struct{})
	a.onHash = func() {
		hashes.Add(1)
		<-release // hold every hash until all attestations have missed the cache
	}
	start, err := a.readStartTime(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	digests := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			sels, err := a.Attest(context.Background(), p.pid, start)
			errs[i] = err
			for _, s := range sels {
				if d, ok := strings.CutPrefix(s.Value, "sha256:"); ok {
					digests[i] = d
				}
			}
		})
	}
	waitFor(t, func() bool { return hashes.Load() == 1 && waiting(a.digests) == n-1 },
		"one attestation to hash the executable and the others to wait for its digest")
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || digests[i] != sha256Hex("a new binary") {
			t.Errorf("attestation %d: sha256 %q, error %v; want the binary's digest", i, digests[i], errs[i])
		}
	}
	if got := hashes.Load(); got != 1 {
		t.Errorf("%d concurrent attestations of one new executable hashed it %d times, want once", n, got)
	}
}

// fakeProc is a proc tree in a temporary directory holding one process, whose exe link points
// at a regular file of the test's choosing.
type fakeProc struct {
	root string
	pid  int32
	exe  string // the file the exe link points at
}

func newFakeProc(t *testing.T, content string) *fakeProc {
	t.Helper()
	return addFakeProc(t, t.TempDir(), 4321, 4242, content)
}

// addFakeProc adds a process pid of uid (gid uid+1) under the fake proc root, running a file of its
// own with the given content, and returns it.
func addFakeProc(t *testing.T, root string, pid int32, uid int, content string) *fakeProc {
	t.Helper()
	p := &fakeProc{root: root, pid: pid, exe: filepath.Join(root, "bin", fmt.Sprintf("prog-%d", pid))}
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	for _, d := range []string{dir, filepath.Dir(p.exe)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.setStartTime(t, 5000)
	status := fmt.Sprintf("Name:\tprog\nUid:\t%d\t0\t0\t0\nGid:\t%d\t0\t0\t0\n", uid, uid+1)
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	p.writeExe(t, content)
	if err := os.Symlink(p.exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *fakeProc) setStartTime(t *testing.T, start uint64) {
	t.Helper()
	stat := fmt.Sprintf("%d (prog) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", p.pid, start)
	if err := os.WriteFile(filepath.Join(p.root, strconv.Itoa(int(p.pid)), "stat"), []byte(stat), 0o644); err != nil {
		t.Error(err)
	}
}

func (p *fakeProc) writeExe(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(p.exe, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestAttestFakeProc(t *testing.T) {
	p := newFakeProc(t, "#!/bin/true\n")
	a := newAttestor(t, Config{ProcRoot: p.root})
	sels, err := attestNow(t, a, context.Background(), p.pid)
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, sels)
	want := map[string]string{"uid": "4242", "gid": "4243", "path": p.exe, "sha256": sha256Hex("#!/bin/true\n")}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestAttestRehashesChangedExecutable(t *testing.T) {
	p := newFakeProc(t, "version 1")
	a := newAttestor(t, Config{ProcRoot: p.root})
	var hashes atomic.Int32
	a.onHash = func() { hashes.Add(1) }
	attest := func() string {
		t.Helper()
		sels, err := attestNow(t, a, context.Background(), p.pid)
		if err != nil {
			t.Fatal(err)
		}
		return values(t, sels)["sha256"]
	}

	if d := attest(); d != sha256Hex("version 1") {
		t.Fatalf("sha256 = %q, want that of version 1", d)
	}
	attest()
	if n := hashes.Load(); n != 1 {
		t.Fatalf("%d hashes for an unchanged file, want 1", n)
	}

	// Same size, new content; set mtime explicitly so coarse file-system clocks cannot hide it.
	p.writeExe(t, "version 2")
	mtime := time.Now().Add(time.Hour)
	if err := os.Chtimes(p.exe, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if d := attest(); d != sha256Hex("version 2") {
		t.Errorf("sha256 after rewrite = %q, want that of version 2", d)
	}
	if n := hashes.Load(); n != 2 {
		t.Errorf("%d hashes after the file changed, want 2", n)
	}
}

func TestAttestPidReused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, p *fakeProc)
	}{
		{"start time changed", func(t *testing.T, p *fakeProc) { p.setStartTime(t, 5001) }},
		{"process exited", func(t *testing.T, p *fakeProc) {
			if err := os.Remove(filepath.Join(p.root, "4321", "stat")); err != nil {
				t.Error(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeProc(t, "program")
			a := newAttestor(t, Config{ProcRoot: p.root})
			a.onHash = func() { tc.change(t, p) } // runs between the two start-time readings
			sels, err := attestNow(t, a, context.Background(), p.pid)
			if !errors.Is(err, ErrProcessGone) {
				t.Fatalf("Attest = %v, %v; want ErrProcessGone", sels, err)
			}
		})
	}
}

// TestAttestPidReusedSinceConnect: the pid now names a process that started after the caller
// connected (another start time); it is refused before anything is read.
func TestAttestPidReusedSinceConnect(t *testing.T) {
	p := newFakeProc(t, "program")
	a := newAttestor(t, Config{ProcRoot: p.root})
	a.onHash = func() { t.Error("a reused pid was read and hashed") }
	sels, err := a.Attest(context.Background(), p.pid, 4999) // the fake process started at tick 5000
	if !errors.Is(err, ErrProcessGone) || !strings.Contains(err.Error(), "pid now names another process") {
		t.Fatalf("Attest = %v, %v; want ErrProcessGone naming the reuse", sels, err)
	}
}

func TestAttestNoExecutable(t *testing.T) {
	// Kernel threads exist but have no executable; that is an error, but not ErrProcessGone.
	p := newFakeProc(t, "program")
	if err := os.Remove(filepath.Join(p.root, "4321", "exe")); err != nil {
		t.Fatal(err)
	}
	a := newAttestor(t, Config{ProcRoot: p.root})
	_, err := attestNow(t, a, context.Background(), p.pid)
	if err == nil || errors.Is(err, ErrProcessGone) {
		t.Fatalf("Attest = %v, want an error other than ErrProcessGone", err)
	}
}

func TestAttestMaxHashSize(t *testing.T) {
	a := newAttestor(t, Config{MaxHashSize: 1})
	a.onHash = func() { t.Error("executable hashed although larger than MaxHashSize") }
	sels, err := attestNow(t, a, context.Background(), int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, sels)
	if _, ok := got["sha256"]; ok {
		t.Error("sha256 selector for an executable larger than MaxHashSize")
	}
	if got["path"] == "" {
		t.Error("no path selector")
	}
}

func TestAttestCanceled(t *testing.T) {
	a := newAttestor(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := attestNow(t, a, ctx, int32(os.Getpid())); !errors.Is(err, context.Canceled) {
		t.Errorf("Attest with a canceled context = %v, want context.Canceled", err)
	}

	// A context canceled once Attest is under way stops it before the executable is hashed.
	// readProcess is what Attest runs after its own early check.
	p := newFakeProc(t, "program")
	a = newAttestor(t, Config{ProcRoot: p.root})
	a.onHash = func() { t.Error("hashed with a canceled context") }
	if _, err := a.readProcess(ctx, p.pid); !errors.Is(err, context.Canceled) {
		t.Errorf("readProcess with a canceled context = %v, want context.Canceled", err)
	}
}

func TestAttestInvalidPid(t *testing.T) {
	a := newAttestor(t, Config{})
	for _, pid := range []int32{0, -1} {
		if _, err := a.Attest(context.Background(), pid, 1); err == nil || errors.Is(err, ErrProcessGone) {
			t.Errorf("Attest(%d) = %v, want an invalid-pid error", pid, err)
		}
	}
}

func TestNewConfig(t *testing.T) {
	for _, cfg := range []Config{
		{ProcRoot: "proc"},
		{ProcRoot: filepath.Join(t.TempDir(), "missing")},
		{MaxHashSize: -1},
		{MaxHashesPerUID: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
	a := newAttestor(t, Config{})
	if a.procRoot != "/proc" || a.maxHashSize != 128<<20 || a.hashSlots.max != 2 || a.log == nil {
		t.Errorf("defaults: root %q, max hash size %d, hashes per uid %d, logger %v", a.procRoot, a.maxHashSize, a.hashSlots.max, a.log)
	}
}

func TestAttestConcurrent(t *testing.T) {
	a := newAttestor(t, Config{})
	pid := int32(os.Getpid())
	want, err := attestNow(t, a, context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				got, err := attestNow(t, a, context.Background(), pid)
				if err != nil {
					t.Error(err)
					return
				}
				if !selector.Equal(got, want) {
					t.Errorf("concurrent Attest = %v, want %v", selector.Strings(got), selector.Strings(want))
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkAttest(b *testing.B) {
	a := newAttestor(b, Config{})
	pid := int32(os.Getpid())
	ctx := context.Background()
	if _, err := attestNow(b, a, ctx, pid); err != nil { // warm the digest and name caches
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := attestNow(b, a, ctx, pid); err != nil {
			b.Fatal(err)
		}
	}
}
