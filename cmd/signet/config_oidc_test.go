package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
)

// TestConfigOIDC: the oidc section's accepted forms and what a server node runs of each; a TLS key
// others can read is refused at load, naming the key and the fix.
func TestConfigOIDC(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	testkit.WriteTLSCert(t, dir, "oidc", 0o600)
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	const head = "trust_domain: example.org\ndata_dir: /var/lib/signet\n"

	for _, tc := range []struct {
		name, section string
		want          oidcSetup // TLS compared as set or not
		wantTLS       bool
	}{
		{"off", "", oidcSetup{}, false},
		{"iss only", "oidc:\n  issuer: https://oidc.example.org\n", oidcSetup{Issuer: "https://oidc.example.org"}, false},
		{"https", "oidc:\n  issuer: https://oidc.example.org/td\n  listen_address: 127.0.0.1:8443\n  cache_max_age: 1m\n  tls:\n    cert_file: " + crt + "\n    key_file: " + key + "\n",
			oidcSetup{Issuer: "https://oidc.example.org/td", Listen: "127.0.0.1:8443", ListenKey: "oidc.listen_address", MaxAge: time.Minute}, true},
		{"behind a proxy", "oidc:\n  issuer: https://oidc.example.org\n  listen_address: :8080\n  insecure_http: true\n",
			oidcSetup{Issuer: "https://oidc.example.org", Listen: ":8080", ListenKey: "oidc.listen_address", AllowHTTP: true, MaxAge: 5 * time.Minute}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := loadServerConfig(cfgWriteTemp(t, head+tc.section))
			if err != nil {
				t.Fatal(err)
			}
			got := c.OIDC.setup
			if (got.TLS != nil) != tc.wantTLS {
				t.Errorf("TLS configured: %v, want %v", got.TLS != nil, tc.wantTLS)
			}
			got.TLS = nil
			cfgEq(t, "oidc setup", got, tc.want)
		})
	}

	testkit.WriteTLSCert(t, dir, "oidc", 0o644)
	path := cfgWriteTemp(t, head+"oidc:\n  issuer: https://oidc.example.org\n  listen_address: 127.0.0.1:8443\n  tls:\n    cert_file: "+crt+"\n    key_file: "+key+"\n")
	_, _, err := loadServerConfig(path)
	if err == nil || !strings.HasPrefix(err.Error(), "config "+path+": oidc.tls: ") || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Errorf("key file of mode 0644: %v, want an error naming oidc.tls and chmod 600 %s", err, key)
	}
}
