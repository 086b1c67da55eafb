package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// federatedDev is a 'signet dev' of trust domain td serving its bundle endpoint on a free port.
type federatedDev struct {
	*devProc
	td, url, endpointID string
}

func startFederatedDev(t *testing.T, td string) *federatedDev {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	d := newDevDirs(t)
	p := startDev(t, d, "--trust-domain", td, "--bundle-endpoint-address", "127.0.0.1:"+port)
	node, err := os.ReadFile(filepath.Join(d.dataDir, "server", "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	return &federatedDev{devProc: p, td: td, url: "https://127.0.0.1:" + port + "/",
		endpointID: "spiffe://" + td + "/signet/server/" + strings.TrimSpace(string(node))}
}

// federateWith makes f federate with other through other's https_spiffe bundle endpoint, its bundle
// given out of band as 'signet bundle show --format jwks' prints it.
func (f *federatedDev) federateWith(t *testing.T, other *federatedDev) {
	t.Helper()
	file := filepath.Join(t.TempDir(), other.td+".json")
	writeFile(t, file, other.mustCLI("bundle", "show", "--format", "jwks"))
	f.mustCLI("federation", "create", "--trust-domain", other.td, "--bundle-endpoint", other.url, "--profile", "https_spiffe",
		"--endpoint-spiffe-id", other.endpointID, "--bundle-file", file, "--reason", "interop")
}

// The federation commands on a real dev process, against another one's real bundle endpoint.
func TestFederationCLI(t *testing.T) {
	a, b := startFederatedDev(t, "example.org"), startFederatedDev(t, "other.org")
	// Refusals name the flag to fix.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--trust-domain", "other.org", "--bundle-endpoint", b.url, "--endpoint-spiffe-id", b.endpointID}, "--bundle-file"},
		{[]string{"--trust-domain", "other.org", "--bundle-endpoint", "http://127.0.0.1/", "--endpoint-spiffe-id", b.endpointID}, "--bundle-endpoint"},
		{[]string{"--trust-domain", "example.org", "--bundle-endpoint", b.url, "--profile", "https_web"}, "own trust domain"},
		{[]string{"--trust-domain", "other.org", "--bundle-endpoint", b.url, "--bundle-file", "/nonexistent.json"}, "--bundle-file"},
	} {
		_, errOut, code := a.cli(append([]string{"federation", "create"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("federation create %v: exit %d, %q; want a refusal naming %s", tc.args, code, errOut, tc.want)
		}
	}
	a.federateWith(t, b)
	// The bundle given equals the one b's endpoint serves (same sequence and refresh hint): fetching it
	// (from this server, now) changes nothing.
	if out := a.mustCLI("federation", "refresh", "other.org"); !strings.Contains(out, "unchanged") {
		t.Errorf("federation refresh: %q, want unchanged", out)
	}
	shown := decodeJSON[struct {
		BundleRevision uint64          `json:"bundle_revision"`
		Bundle         json.RawMessage `json:"bundle"`
	}](t, a.mustCLI("federation", "show", "other.org", "-o", "json"))
	if shown.BundleRevision != 1 || !strings.Contains(string(shown.Bundle), `"spiffe_refresh_hint"`) {
		t.Errorf("federation show -o json: revision %d, bundle %s", shown.BundleRevision, shown.Bundle)
	}
	out := a.mustCLI("federation", "show", "other.org")
	for _, want := range []string{"Trust domain:", "other.org", b.endpointID, "Authorities:", "1 X.509, 1 JWT"} {
		if !strings.Contains(out, want) {
			t.Errorf("federation show: %q lacks %q", out, want)
		}
	}
	if out := a.mustCLI("federation", "list"); !strings.Contains(out, "other.org") || !strings.Contains(out, b.url) {
		t.Errorf("federation list: %q", out)
	}
	if out := a.mustCLI("audit", "list", "--action", "federation.create"); !strings.Contains(out, "other.org") {
		t.Errorf("audit of the create: %q", out)
	}
	a.mustCLI("federation", "delete", "other.org", "--reason", "done")
	if _, errOut, code := a.cli("federation", "show", "other.org"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("show after delete: exit %d, %q", code, errOut)
	}
}
