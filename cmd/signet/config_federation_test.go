package main

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
	cfgEq(t, "poll.min_interval", c.Federation.Poll.MinInterval, federation.DefaultMinPollInterval)
	cfgEq(t, "poll.max_interval", c.Federation.Poll.MaxInterval, federation.DefaultMaxPollInterval)
	if c.Federation.pollerConfig().WebRoots != nil {
		t.Error("web roots without web_roots_file: want nil (the system's)")
	}
	roots := filepath.Join(t.TempDir(), "roots.pem")
	writeFile(t, roots, string(ca.CertificatesPEM([]*x509.Certificate{testkit.NewCA(t, spiffeid.RequireTrustDomainFromString("other.org"), 0).X509Authority()})))
	c, _, err = loadServerConfig(cfgWriteTemp(t, base+"federation:\n  poll:\n    min_interval: 2h\n  web_roots_file: "+roots+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfgEq(t, "poll.max_interval raised to min_interval", c.Federation.Poll.MaxInterval, 2*time.Hour)
	if c.Federation.pollerConfig().WebRoots == nil {
		t.Error("web_roots_file not read")
	}
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
	for name, tc := range map[string]struct{ yaml, key, want string }{
		"poll too short": {"poll:\n    min_interval: 100ms", "federation.poll", "out of range"},
		"poll max below": {"poll:\n    min_interval: 1m\n    max_interval: 30s", "federation.poll", "below"},
		"roots relative": {"web_roots_file: roots.pem", "federation.web_roots_file", "absolute path"},
		"roots missing":  {"web_roots_file: /nonexistent/roots.pem", "federation.web_roots_file", "no such file"},
		"roots not PEM":  {"web_roots_file: " + cfgWriteTemp(t, "not pem"), "federation.web_roots_file", "no PEM certificate"},
	} {
		_, _, err := loadServerConfig(cfgWriteTemp(t, base+"federation:\n  "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s with %q", name, err, tc.key, tc.want)
		}
	}
}
