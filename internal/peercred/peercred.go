package peercred

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// peerCredAuthType names the peer-credential "security protocol", both as the AuthType of Info
// and as the SecurityProtocol of the credentials' ProtocolInfo.
const peerCredAuthType = "signet-peercred"

// Info is the credentials.AuthInfo that PeerCredentials attaches to each accepted connection:
// the process that connected, as the kernel recorded it when the connection was made (SO_PEERCRED).
//
// PID is the pid in the server's pid namespace, or 0 if the peer's process is not visible there;
// UID and GID are the peer's effective ids at connect time. StartTime is that process's start time
// (clock ticks since boot, field 22 of /proc/<pid>/stat), read during the handshake: (PID, StartTime)
// names the connecting process even after its pid is reused, so attestation of a later call can
// refuse a pid that now names another process. The embedded CommonAuthInfo carries the security
// level credentials.NoSecurity (see PeerCredentials).
type Info struct {
	credentials.CommonAuthInfo
	PID       int32
	UID       uint32
	GID       uint32
	StartTime uint64
}

// AuthType returns "signet-peercred".
func (Info) AuthType() string { return peerCredAuthType }

// FromContext returns the Info of the connection a gRPC call arrived on, if the server
// uses PeerCredentials; ok is false for any other context.
func FromContext(ctx context.Context) (info Info, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p == nil {
		return Info{}, false
	}
	switch ai := p.AuthInfo.(type) {
	case Info:
		return ai, true
	case *Info:
		if ai != nil {
			return *ai, true
		}
	}
	return Info{}, false
}

// PeerCredentials returns server transport credentials for a gRPC server listening on a Unix
// socket: each accepted connection's peer credentials (SO_PEERCRED) are read during the handshake
// and attached to the connection as a Info, which handlers get with FromContext.
// Connections that are not *net.UnixConn fail the handshake.
//
// The credentials do not authenticate or protect the bytes on the connection; they only report
// who connected. The Info's security level is therefore credentials.NoSecurity, so that
// credentials.CheckSecurityLevel refuses anything that asks for integrity or privacy (a zero
// level would make every check pass). The credentials are server-only: ClientHandshake fails.
func Credentials() credentials.TransportCredentials {
	return peerCreds{}
}

// peerCreds implements credentials.TransportCredentials. It has no state.
type peerCreds struct{}

var errClientHandshake = errors.New("peercred: peer credentials are server-side only; clients dial with insecure credentials")

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errClientHandshake
}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peercred: peer credentials need a Unix socket connection, got %T", conn)
	}
	info, err := readPeerCred(uc)
	if err != nil {
		return nil, nil, err
	}
	info.CommonAuthInfo = credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}
	return conn, info, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: peerCredAuthType}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

// OverrideServerName does nothing: there is no server name to verify on a Unix socket.
func (peerCreds) OverrideServerName(string) error { return nil }
