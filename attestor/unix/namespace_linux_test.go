package unix

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/waitfor"
)

// Environment of the "bind-exec" helper (see TestMain).
const (
	bindSrcEnv = "SIGNET_UNIX_ATTESTOR_BIND_SRC"
	bindDstEnv = "SIGNET_UNIX_ATTESTOR_BIND_DST"
)

// bindAndExec runs in a child process inside its own mount namespace: it bind-mounts src over dst
// there and executes dst, which now runs src's file under dst's name. It returns only on failure.
func bindAndExec(src, dst string) {
	// Keep the bind mount in this namespace, whatever the propagation of the parent's mounts.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		os.Stderr.WriteString("make mounts private: " + err.Error() + "\n")
		return
	}
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		os.Stderr.WriteString("bind mount: " + err.Error() + "\n")
		return
	}
	env := append(os.Environ(), helperEnv+"=wait")
	err := syscall.Exec(dst, []string{dst, "-test.run=^$"}, env)
	os.Stderr.WriteString("exec: " + err.Error() + "\n")
}

// TestAttestBindMountedExecutable: a process in its own user and mount namespace that bind-mounts its
// own binary over a trusted path and runs it there shows that path in /proc/<pid>/exe, but the path
// names another file in the agent's namespace: it gets no path selector.
func TestAttestBindMountedExecutable(t *testing.T) {
	trusted, _ := copyTestBinary(t, "trusted")
	fake, _ := copyTestBinary(t, "fake")
	var fakeStat syscall.Stat_t
	if err := syscall.Stat(fake, &fakeStat); err != nil {
		t.Fatal(err)
	}

	start := func(attr *syscall.SysProcAttr) (*exec.Cmd, error) {
		cmd := exec.Command(testBinary(t), "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=bind-exec", bindSrcEnv+"="+fake, bindDstEnv+"="+trusted)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = attr
		return cmd, cmd.Start()
	}
	// An unprivileged user can do this in a user namespace of its own; where user namespaces are
	// disabled, root can still use a mount namespace alone.
	cmd, err := start(&syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	})
	if err != nil && os.Getuid() == 0 {
		t.Logf("user namespace refused (%v); using a mount namespace alone, as root", err)
		cmd, err = start(&syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS})
	}
	if err != nil {
		t.Skipf("cannot create a user and mount namespace here (unprivileged user namespaces unavailable, and not root): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := int32(cmd.Process.Pid)

	// Wait for the exec: /proc/<pid>/exe then opens the fake binary (in the child's namespace).
	a := newAttestor(t, Config{})
	exe := a.procPath(pid, "exe")
	waitfor.Condition(t, 30*time.Second, "the child to run the bind-mounted binary", func() bool {
		var st syscall.Stat_t
		return syscall.Stat(exe, &st) == nil && st.Dev == fakeStat.Dev && st.Ino == fakeStat.Ino
	})
	link, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	if link != trusted {
		t.Fatalf("/proc/%d/exe shows %q, want the trusted path %q (the path an attacker would borrow)", pid, link, trusted)
	}

	sels, err := attestNow(t, a, context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	got := values(t, sels)
	if p, ok := got["path"]; ok {
		t.Fatalf("path = %q for a binary bind-mounted over it in another mount namespace, want no path selector", p)
	}
	if got["sha256"] == "" {
		t.Error("no sha256 selector: the digest of what the process runs is still wanted")
	}
}
