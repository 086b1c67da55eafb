package main

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/federation"
)

func TestConfigFederation(t *testing.T) {
	t.Parallel()
	base := "trust_domain: example.org\ndata_dir: /var/lib/signet\n"
	c, _, err := loadServerConfig(cfgWriteTemp(t, base+"federation:\n  bundle_endpoint:\n    listen_address: 0.0.0.0:8443\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "profile", c.Federation.BundleEndpoint.Profile, federation.ProfileHTTPSSPIFFE)
	cfgEq(t, "refresh_hint", c.Federation.BundleEndpoint.RefreshHint, federation.DefaultRefreshHint)
	c, _, err = loadServerConfig(cfgWriteTemp(t, base+"federation:\n  bundle_endpoint:\n    listen_address: :8443\n    profile: https_web\n"+
		"    cert_file: /etc/signet/bundle.crt\n    key_file: /etc/signet/bundle.key\n    refresh_hint: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "refresh_hint", c.Federation.BundleEndpoint.RefreshHint, time.Minute)
	for name, tc := range map[string]struct{ yaml, key, want string }{
		"bad address":        {"listen_address: 8443", "listen_address", "missing port"},
		"unknown profile":    {"listen_address: :8443\n    profile: http", "profile", `"http"`},
		"web without cert":   {"listen_address: :8443\n    profile: https_web", "cert_file", "is required"},
		"web relative key":   {"listen_address: :8443\n    profile: https_web\n    cert_file: /a.crt\n    key_file: a.key", "key_file", "absolute path"},
		"spiffe with a cert": {"listen_address: :8443\n    cert_file: /a.crt", "cert_file", "only with profile https_web"},
		"cert while off":     {"profile: https_web\n    cert_file: /a.crt\n    key_file: /a.key", "listen_address", "is required"},
		"hint too short":     {"listen_address: :8443\n    refresh_hint: 1s", "refresh_hint", "out of range"},
		"hint too long":      {"listen_address: :8443\n    refresh_hint: 25h", "refresh_hint", "out of range"},
	} {
		_, _, err := loadServerConfig(cfgWriteTemp(t, base+"federation:\n  bundle_endpoint:\n    "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), "federation.bundle_endpoint."+tc.key+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming federation.bundle_endpoint.%s with %q", name, err, tc.key, tc.want)
		}
	}
}
