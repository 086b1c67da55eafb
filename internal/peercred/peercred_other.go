//go:build !linux

package peercred

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

// readPeerCred fails: SO_PEERCRED is Linux-specific and no other OS is supported yet.
func readPeerCred(*net.UnixConn) (Info, error) {
	return Info{}, fmt.Errorf("peercred: peer credentials: %w: unsupported on this OS (%s)", errors.ErrUnsupported, runtime.GOOS)
}
