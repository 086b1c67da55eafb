package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// runtimeDir is where sockets go by default: $XDG_RUNTIME_DIR/signet, else /tmp/signet-<uid>.
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "signet")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("signet-%d", os.Getuid()))
}

// defaultDevDataDir is where 'signet dev' keeps its state: $XDG_DATA_HOME/signet/dev, else
// ~/.local/share/signet/dev.
func defaultDevDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "signet", "dev")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "signet", "dev")
	}
	return filepath.Join(runtimeDir(), "dev-data")
}

// defaultAdminSocket is $SIGNET_ADMIN_SOCKET, else <runtime dir>/admin.sock.
func defaultAdminSocket() string {
	if s := os.Getenv("SIGNET_ADMIN_SOCKET"); s != "" {
		return s
	}
	return filepath.Join(runtimeDir(), "admin.sock")
}

// defaultWorkloadSocket is the dev agent's Workload API socket.
func defaultWorkloadSocket() string { return filepath.Join(runtimeDir(), "agent.sock") }
