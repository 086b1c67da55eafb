package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHealthcheckWaitsAndTakesURIs: healthcheck started before the agent is up waits within --timeout
// until it serves; it takes the unix:// form the agent prints; a socket nothing serves fails after the
// timeout with that said; a non-unix URI is a usage error.
func TestHealthcheckWaitsAndTakesURIs(t *testing.T) {
	d := newDevDirs(t)
	hc := startProc(t, "healthcheck", "healthcheck", "--socket", "unix://"+d.socket, "--timeout", "90s")
	p := startDev(t, d)
	if code := hc.waitExit(90 * time.Second); code != 0 || !strings.Contains(hc.stdout.String(), "agent at "+d.socket+": SERVING") {
		t.Fatalf("healthcheck started before the agent: exit %d\nstdout: %s\nstderr: %s", code, hc.stdout.String(), hc.stderr.String())
	}
	if out := p.mustCLI("healthcheck", "--admin-socket", "unix://"+d.adminSocket); !strings.Contains(out, "server at "+d.adminSocket+": SERVING") {
		t.Fatalf("admin healthcheck: %s", out)
	}

	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, stderr, code := runCLI(t, nil, "healthcheck", "--socket", stale, "--timeout", "1s"); code != 1 ||
		!strings.Contains(stderr, "agent not healthy after 1s: nothing serves the agent socket "+stale) {
		t.Fatalf("stale socket: exit %d, stderr %s", code, stderr)
	}
	if _, stderr, code := runCLI(t, nil, "healthcheck", "--socket", "tcp://127.0.0.1:1"); code != 2 || !strings.Contains(stderr, "want a Unix socket path or unix:///path") {
		t.Fatalf("tcp URI: exit %d, stderr %s", code, stderr)
	}
}
