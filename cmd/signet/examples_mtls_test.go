package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

const (
	mtlsServerID = "spiffe://example.org/example/mtls-server"
	mtlsClientID = "spiffe://example.org/example/mtls-client"
)

var mtlsRequestLine = regexp.MustCompile(`^request (\d+): 200 OK conn=(new|reused) server_serial=([0-9a-f]+) client_id=(\S+) client_serial=([0-9a-f]+)$`)

// TestExampleMTLSScript runs examples/mtls/run.sh, what `make example-mtls` runs: its own signet dev,
// the two entries, the server and three requests of the client, all of which succeed.
func TestExampleMTLSScript(t *testing.T) {
	server, client := exampleBin(t, "examples/mtls/server"), exampleBin(t, "examples/mtls/client")
	out, code := runExampleScript(t, []string{"SIGNET=" + signetBin, "SERVER=" + server, "CLIENT=" + client, "REQUESTS=3", "TMPDIR=" + t.TempDir()}, "../../examples/mtls/run.sh")
	if code != 0 {
		t.Fatalf("run.sh: exit %d\n%s", code, out)
	}
	var ok int
	for _, line := range strings.Split(out, "\n") {
		if m := mtlsRequestLine.FindStringSubmatch(line); m != nil && m[4] == mtlsClientID {
			ok++
		}
	}
	if ok != 3 || !strings.Contains(out, "mtls example: 3 requests over mutual TLS") {
		t.Fatalf("run.sh made %d successful requests, want 3:\n%s", ok, out)
	}
}

// TestExampleMTLSRotation runs the example's server and client as real processes on a real signet dev,
// told apart by unix:path selectors. The client's keep-alive pool makes requests while the CA keys
// rotate and both entries change, which re-mints both SVIDs: every request succeeds, pooled
// connections keep working, new ones present the new SVIDs on both sides. A client with another
// identity is refused by the server, and the client refuses a server that is not the one it expects.
func TestExampleMTLSRotation(t *testing.T) {
	serverBin, clientBin := exampleBin(t, "examples/mtls/server"), exampleBin(t, "examples/mtls/client")
	d := startDev(t, newDevDirs(t))
	devID, owner := devIdentity(t)
	uid := strconv.Itoa(os.Getuid())
	entryIDs := map[string]string{}
	for id, bin := range map[string]string{mtlsServerID: serverBin, mtlsClientID: clientBin} {
		e := decodeJSON[entryView](t, d.mustCLI("entry", "create", "--spiffe-id", id, "--selector", "unix:uid:"+uid,
			"--selector", "unix:path:"+bin, "--owner", owner, "--purpose", "mTLS example", "-o", "json"))
		entryIDs[id] = e.ID
	}
	env := withEnv("SPIFFE_ENDPOINT_SOCKET=unix://" + d.socket)
	strict := withEnv("SPIFFE_ENDPOINT_SOCKET=unix://"+d.socket, "API_KEY=") // no API key: SVIDs only
	server := startBinWith(t, "mtls server", serverBin, strict, "-addr", "127.0.0.1:0", "-id", mtlsServerID, "-client-id", mtlsClientID, "-max-conn-age", "300ms")
	addr, _, _ := strings.Cut(strings.TrimPrefix(server.waitLine("listening on ", time.Minute), "listening on "), ",")
	url := "https://" + addr + "/"
	client := startBinWith(t, "mtls client", clientBin, env, "-url", url, "-id", mtlsClientID, "-server-id", mtlsServerID, "-requests", "0", "-interval", "20ms")

	// requests parses the client's output so far; every line must be a successful request.
	type request struct {
		reused                     bool
		serverSerial, clientSerial string
	}
	requests := func() []request {
		var rs []request
		for _, line := range strings.Split(strings.TrimSpace(client.stdout.String()), "\n") {
			if line == "" {
				continue
			}
			m := mtlsRequestLine.FindStringSubmatch(line)
			if m == nil || m[4] != mtlsClientID {
				t.Fatalf("client printed %q, want a successful request as %s\nclient stderr:\n%s\nserver stderr:\n%s", line, mtlsClientID, client.stderr.String(), server.stderr.String())
			}
			rs = append(rs, request{m[2] == "reused", m[3], m[5]})
		}
		if !client.running() {
			t.Fatalf("the client exited (a request failed)\nstdout:\n%s\nstderr:\n%s\nserver stderr:\n%s", client.stdout.String(), client.stderr.String(), server.stderr.String())
		}
		return rs
	}
	eventually(t, time.Minute, "the client's first pooled requests", func() bool {
		rs := requests()
		return len(rs) >= 2 && rs[len(rs)-1].reused
	})
	first := requests()[0]

	d.mustCLI("ca", "rotate", "--reason", "mTLS example test")
	for _, id := range entryIDs {
		d.mustCLI("entry", "update", id, "--x509-ttl", "59m", "--reason", "mTLS example test: re-mint the SVIDs")
	}
	before := len(requests())
	eventually(t, time.Minute, "a pooled connection presenting both new SVIDs", func() bool {
		rs := requests()
		for _, r := range rs[before:] {
			if r.reused && r.serverSerial != first.serverSerial && r.clientSerial != first.clientSerial {
				return true
			}
		}
		return false
	})
	client.stop()
	if code := client.waitExit(time.Second); code != 0 {
		t.Fatalf("client exit %d after SIGINT\nstderr:\n%s", code, client.stderr.String())
	}

	// Another program of the same user has only the dev identity: the server refuses it.
	otherDir := t.TempDir()
	other := filepath.Join(otherDir, "mtls-client")
	copyFile(t, clientBin, other, 0o755)
	stranger := startBinWith(t, "unregistered client", other, env, "-url", url, "-server-id", mtlsServerID, "-requests", "1")
	if code := stranger.waitExit(time.Minute); code != 1 || !strings.Contains(stranger.stderr.String(), "request 1:") {
		t.Fatalf("unregistered client: exit %d, want 1 and the refused request\nstdout:\n%s\nstderr:\n%s", code, stranger.stdout.String(), stranger.stderr.String())
	}
	eventually(t, 30*time.Second, "the server's log of the refused ID", func() bool {
		return strings.Contains(server.stderr.String(), `unexpected ID "`+devID+`"`)
	})

	// The registered client refuses a server that is not the one it was told to expect.
	wary := startBinWith(t, "client expecting another server", clientBin, env, "-url", url, "-id", mtlsClientID, "-server-id", "spiffe://example.org/example/not-the-server", "-requests", "1")
	if code := wary.waitExit(time.Minute); code != 1 || !strings.Contains(wary.stderr.String(), `unexpected ID "`+mtlsServerID+`"`) {
		t.Fatalf("client expecting another server: exit %d, want 1 naming %s\nstderr:\n%s", code, mtlsServerID, wary.stderr.String())
	}
}

// TestExampleMTLSAPIKeyTransition is the transition of docs/migrating-from-api-keys.md on the example's
// real server: with API_KEY in its environment it accepts the registered client by its SVID and a
// client without a certificate by the key (and logs that), refuses a wrong key or none, and refuses
// an SVID of another ID even now. Restarted without API_KEY, it refuses the key in the handshake and
// still accepts the SVID.
func TestExampleMTLSAPIKeyTransition(t *testing.T) {
	serverBin, clientBin := exampleBin(t, "examples/mtls/server"), exampleBin(t, "examples/mtls/client")
	d := startDev(t, newDevDirs(t))
	_, owner := devIdentity(t)
	uid := strconv.Itoa(os.Getuid())
	for id, bin := range map[string]string{mtlsServerID: serverBin, mtlsClientID: clientBin} {
		d.mustCLI("entry", "create", "--spiffe-id", id, "--selector", "unix:uid:"+uid, "--selector", "unix:path:"+bin,
			"--owner", owner, "--purpose", "mTLS example", "-o", "json")
	}
	// A caller not moved yet: no SVID, the API key, and the server authenticated by its SPIFFE ID
	// against the trust bundle that 'signet svid fetch --write' wrote.
	bundleDir := t.TempDir()
	d.mustCLI("svid", "fetch", "--write", bundleDir)
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), filepath.Join(bundleDir, "bundle.0.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(mtlsServerID)))}}
	defer keyClient.CloseIdleConnections()
	callWithKey := func(url, key string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := keyClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body)), err
	}
	const apiKey = "3b1f0c52d7a94e6f8a2c5d9e0f4b7a16"
	env := "SPIFFE_ENDPOINT_SOCKET=unix://" + d.socket
	startServer := func(extraEnv ...string) (*proc, string) {
		p := startBinWith(t, "mtls server", serverBin, withEnv(append([]string{env}, extraEnv...)...), "-addr", "127.0.0.1:0", "-id", mtlsServerID, "-client-id", mtlsClientID)
		addr, _, _ := strings.Cut(strings.TrimPrefix(p.waitLine("listening on ", time.Minute), "listening on "), ",")
		return p, "https://" + addr + "/"
	}
	runClient := func(bin, url string, args ...string) *proc {
		c := startBinWith(t, "mtls client", bin, withEnv(env), append([]string{"-url", url, "-server-id", mtlsServerID, "-requests", "1"}, args...)...)
		c.waitExit(time.Minute)
		return c
	}

	server, url := startServer("API_KEY=" + apiKey)
	if c := runClient(clientBin, url, "-id", mtlsClientID); !mtlsRequestLine.MatchString(strings.TrimSpace(c.stdout.String())) {
		t.Fatalf("the registered client during the transition: %s\nstderr:\n%s", c.stdout.String(), c.stderr.String())
	}
	if code, body, err := callWithKey(url, apiKey); err != nil || code != http.StatusOK || body != "authenticated_by=api_key" {
		t.Fatalf("a caller with the key during the transition: %d %q %v, want 200", code, body, err)
	}
	eventually(t, 30*time.Second, "the server's log of the request authenticated by the key", func() bool {
		return strings.Contains(server.stderr.String(), "request authenticated by the API key: move this client to an SVID")
	})
	for _, key := range []string{"", "not-the-key"} {
		if code, body, err := callWithKey(url, key); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("a caller with key %q during the transition: %d %q %v, want 401", key, code, body, err)
		}
	}
	other := filepath.Join(t.TempDir(), "mtls-client")
	copyFile(t, clientBin, other, 0o755)
	if c := runClient(other, url); !strings.Contains(c.stderr.String(), "request 1: 403 Forbidden: client certificate refused") {
		t.Fatalf("an unregistered client (the dev identity) during the transition: stdout %q, stderr %q, want 403", c.stdout.String(), c.stderr.String())
	}

	// The key dropped: the same caller is refused in the handshake; the SVID still works.
	server.stop()
	_, url = startServer("API_KEY=")
	if _, _, err := callWithKey(url, apiKey); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("a caller with the key once it is dropped: %v, want the handshake refused (certificate required)", err)
	}
	if c := runClient(clientBin, url, "-id", mtlsClientID); !mtlsRequestLine.MatchString(strings.TrimSpace(c.stdout.String())) {
		t.Fatalf("the registered client once the key is dropped: %s\nstderr:\n%s", c.stdout.String(), c.stderr.String())
	}
}
