package peercred

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// readPeerCred reads SO_PEERCRED from c: the credentials of the process that connected, as
// recorded by the kernel at connect time.
func readPeerCred(c *net.UnixConn) (Info, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Info{}, fmt.Errorf("peercred: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Info{}, fmt.Errorf("peercred: peer credentials: %w", err)
	}
	if credErr != nil {
		return Info{}, fmt.Errorf("peercred: peer credentials: getsockopt SO_PEERCRED: %w", credErr)
	}
	return Info{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}
