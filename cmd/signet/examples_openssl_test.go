package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const opensslSteps = "../../examples/openssl/steps.sh"

// TestExampleOpenSSL runs the steps of examples/openssl against a real signet dev: PEM files written
// by 'signet svid fetch --write', openssl s_server requiring a client certificate from the bundle,
// and openssl s_client. With the client's SVID the handshake is verified both ways and the server
// answers with the client's SPIFFE ID; with no certificate, or a self-signed one claiming the same
// SPIFFE ID, the server refuses the client.
func TestExampleOpenSSL(t *testing.T) {
	needOpenSSL(t)
	d := startDev(t, newDevDirs(t))
	devID, _ := devIdentity(t)
	env := []string{"SIGNET=" + signetBin, "SPIFFE_ENDPOINT_SOCKET=unix://" + d.socket}
	dir := t.TempDir()
	serverDir, clientDir := filepath.Join(dir, "server"), filepath.Join(dir, "client")
	for _, step := range [][]string{{"fetch", serverDir}, {"fetch", clientDir}, {"impostor", clientDir}} {
		if out, code := runExampleScript(t, env, opensslSteps, step...); code != 0 {
			t.Fatalf("steps.sh %v: exit %d\n%s", step, code, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(clientDir, "svid.0.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("svid.0.key: %v, %v; want mode 0600", fi, err)
	}

	port := strconv.Itoa(freePort(t))
	server := startBinWith(t, "s_server", "sh", withEnv(env...), opensslSteps, "serve", serverDir, port)
	server.waitLine("ACCEPT", 30*time.Second)

	out, code := runExampleScript(t, env, opensslSteps, "connect", clientDir, port)
	for _, want := range []string{"Verify return code: 0 (ok)", "HTTP/1.0 200 ok", "URI:" + devID} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("connect with the client's SVID: exit %d, want 0 and %q in the output\n%s\ns_server:\n%s", code, want, out, server.stdout.String()+server.stderr.String())
		}
	}
	for cert, alert := range map[string]string{"none": "alert certificate required", "impostor": "alert unknown ca"} {
		out, code := runExampleScript(t, env, opensslSteps, "connect", clientDir, port, cert)
		if code == 0 || !strings.Contains(out, alert) || strings.Contains(out, "HTTP/1.0 200") {
			t.Errorf("connect with certificate %q: exit %d, want non-zero, %q and no answer\n%s", cert, code, alert, out)
		}
	}
	eventually(t, 30*time.Second, "s_server's log of both refusals", func() bool {
		log := server.stdout.String() + server.stderr.String()
		return strings.Contains(log, "peer did not return a certificate") && strings.Contains(log, "verify error:num=18:self-signed certificate")
	})
}

// TestExampleOpenSSLScript runs examples/openssl/run.sh, what `make example-openssl` runs, with its
// own signet dev: the SVID is accepted, the two other clients refused.
func TestExampleOpenSSLScript(t *testing.T) {
	needOpenSSL(t)
	devID, _ := devIdentity(t)
	out, code := runExampleScript(t, []string{"SIGNET=" + signetBin, "PORT=" + strconv.Itoa(freePort(t)), "TMPDIR=" + t.TempDir()}, "../../examples/openssl/run.sh")
	for _, want := range []string{
		"s_client with its SVID: accepted",
		"Verify return code: 0 (ok)",
		"the client certificate it verified: URI:" + devID,
		"s_client with certificate \"none\": refused\n    s_client verified the server's SVID against the bundle: Verify return code: 0 (ok)\n    the server refused the client: TLS alert certificate required\n",
		"s_client with certificate \"impostor\": refused\n    s_client verified the server's SVID against the bundle: Verify return code: 0 (ok)\n    the server refused the client: TLS alert unknown ca\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("run.sh: exit %d, want 0 and %q in the output\n%s", code, want, out)
		}
	}
}

func needOpenSSL(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("the openssl example needs the openssl command (.ci/run installs it): %v", err)
	}
}
