package peercred

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/signet-id/signet/internal/procfs"
	"golang.org/x/sys/unix"
)

// readPeerCred reads SO_PEERCRED from c, the credentials of the process that connected as the kernel
// recorded them at connect time, and that process's start time, which pins the pid to it: a pid is a
// number the kernel hands out again once its process is reaped, a (pid, start time) pair is not.
//
// The start time is read from /proc/<pid>/stat, and could belong to a process that got the pid after
// the connecting one exited. Where the kernel offers SO_PEERPIDFD (Linux 6.5), a pidfd of the
// connecting process is taken first and checked after the read: if it still has the pid, the pid was
// not reused in between. Older kernels leave that window open for the few microseconds of the
// handshake; the whole pid space would have to be cycled within it.
func readPeerCred(c *net.UnixConn) (Info, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Info{}, fmt.Errorf("peercred: peer credentials: %w", err)
	}
	var (
		cred    *unix.Ucred
		credErr error
		pidfd   = -1
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = pfd // older kernels: ENOPROTOOPT, and the start time alone pins the pid
			}
		}
	}); err != nil {
		return Info{}, fmt.Errorf("peercred: peer credentials: %w", err)
	}
	if credErr != nil {
		return Info{}, fmt.Errorf("peercred: peer credentials: getsockopt SO_PEERCRED: %w", credErr)
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	info := Info{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	if info.PID <= 0 {
		return info, nil // the peer is in a pid namespace this process cannot see
	}
	if info.StartTime, err = procfs.StartTime("/proc", info.PID); err != nil {
		return Info{}, fmt.Errorf("peercred: pid %d: the connecting process is gone or unreadable: %w", info.PID, err)
	}
	if pidfd >= 0 {
		pid, err := pidfdPID(pidfd)
		if err != nil {
			return Info{}, fmt.Errorf("peercred: pid %d: %w", info.PID, err)
		}
		if pid != info.PID {
			return Info{}, fmt.Errorf("peercred: pid %d: the connecting process exited during the handshake", info.PID)
		}
	}
	return info, nil
}

// pidfdPID returns the pid the pidfd's process has now, -1 once it has been reaped (proc(5), "Pid:"
// in /proc/self/fdinfo/<pidfd>).
func pidfdPID(pidfd int) (int32, error) {
	var buf [procfs.BufSize]byte
	b, err := procfs.ReadFile("/proc/self/fdinfo/"+strconv.Itoa(pidfd), buf[:])
	if err != nil {
		return 0, fmt.Errorf("reading pidfd info: %w", err)
	}
	for rest := b; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("Pid:")); ok {
			pid, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("pidfd info: Pid %q is not a number", string(bytes.TrimSpace(v)))
			}
			return int32(pid), nil
		}
	}
	return 0, errors.New("pidfd info has no Pid line")
}
