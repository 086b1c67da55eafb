package upstream_test

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/upstream"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// A real step-ca authority signs the node's CA through its JWK provisioner (root pinned by fingerprint,
// then by file): SVID chains verify to the step-ca root with go-spiffe and openssl. A wrong password, an
// unknown provisioner and a wrong fingerprint are refused with errors naming the key, and leave nothing
// in the node's key directory.
func TestStepCAUpstream(t *testing.T) {
	step := testkit.StartStepCA(t)
	cfg := upstream.StepCAConfig{URL: step.URL, Provisioner: step.Provisioner, PasswordFile: step.PasswordFile, RootFingerprint: step.Fingerprint}
	up, err := upstream.NewStepCA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadCA(t, filepath.Join(t.TempDir(), "ca"), up, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Upstream() || !c.X509Authority().IsCA || len(c.X509Roots()) != 1 || !c.X509Roots()[0].Equal(step.Root) {
		t.Fatalf("node CA: upstream %v, roots %d; want an intermediate under the step-ca root", c.Upstream(), len(c.X509Roots()))
	}
	chain, err := c.SignX509SVIDChain(ca.X509SVIDParams{SPIFFEID: spiffeid.RequireFromPath(td, "/web"), PublicKey: testkit.P256(t).Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) < 2 || !chain[1].Equal(c.X509Authority()) {
		t.Fatalf("chain of %d, want leaf + the node's intermediate (+ step-ca's)", len(chain))
	}
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, []*x509.Certificate{step.Root})); err != nil {
		t.Fatalf("go-spiffe verify to the step-ca root: %v", err)
	}
	testkit.OpenSSLVerify(t, []*x509.Certificate{step.Root}, chain)

	byFile := cfg
	byFile.RootFingerprint, byFile.RootFile = "", step.RootFile
	if up, err = upstream.NewStepCA(byFile); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCA(t, filepath.Join(t.TempDir(), "ca"), up, time.Hour); err != nil {
		t.Fatalf("root_file: %v", err)
	}

	wrong := testkit.WriteFileMode(t, t.TempDir(), "password", "not-the-password", 0o600)
	readable := testkit.WriteFileMode(t, t.TempDir(), "password", "step-test-password", 0o644)
	for name, tc := range map[string]struct {
		mod  func(*upstream.StepCAConfig)
		want string
	}{
		"wrong password":              {func(c *upstream.StepCAConfig) { c.PasswordFile = wrong }, "upstream_authority.step_ca.password_file: the password does not decrypt"},
		"password readable by others": {func(c *upstream.StepCAConfig) { c.PasswordFile = readable }, "chmod 600"},
		"no such provisioner":         {func(c *upstream.StepCAConfig) { c.Provisioner = "nobody" }, "upstream_authority.step_ca.provisioner"},
		"wrong fingerprint":           {func(c *upstream.StepCAConfig) { c.RootFingerprint = strings.Repeat("ab", 32) }, "upstream_authority.step_ca.root_fingerprint"},
	} {
		bad := cfg
		tc.mod(&bad)
		up, err := upstream.NewStepCA(bad)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "ca")
		_, err = loadCA(t, dir, up, time.Hour)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want an error containing %q", name, err, tc.want)
		}
		if names := testkit.DirNames(t, dir); len(names) != 0 {
			t.Fatalf("%s: the refused upstream left %v in the key directory", name, names)
		}
	}
}

// A step-ca provisioner whose template signs leaf certificates: the certificate it returns is refused
// as the node's CA, naming the provisioner key, and nothing is written.
func TestStepCAUpstreamThatSignsNoCA(t *testing.T) {
	step := testkit.StartStepCAWithTemplate(t, testkit.StepCALeafTemplate)
	up, err := upstream.NewStepCA(upstream.StepCAConfig{URL: step.URL, Provisioner: step.Provisioner, PasswordFile: step.PasswordFile, RootFile: step.RootFile})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	_, err = loadCA(t, dir, up, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "upstream_authority.step_ca.provisioner") || !strings.Contains(err.Error(), "not a CA certificate") {
		t.Fatalf("a provisioner that signs leaves: %v", err)
	}
	if names := testkit.DirNames(t, dir); len(names) != 0 {
		t.Fatalf("the refused certificate left %v in the key directory", names)
	}
}

// The step-ca configuration is checked before anything is contacted, each error naming the key.
func TestStepCAConfigValidate(t *testing.T) {
	ok := upstream.StepCAConfig{URL: "https://ca.example:9000", Provisioner: "signet", PasswordFile: "/etc/signet/step-password", RootFingerprint: strings.Repeat("0a", 32)}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for want, mod := range map[string]func(*upstream.StepCAConfig){
		"upstream_authority.step_ca.url is required":     func(c *upstream.StepCAConfig) { c.URL = "" },
		"want https://host[:port]":                       func(c *upstream.StepCAConfig) { c.URL = "http://ca.example" },
		"upstream_authority.step_ca.provisioner":         func(c *upstream.StepCAConfig) { c.Provisioner = "" },
		"upstream_authority.step_ca.password_file":       func(c *upstream.StepCAConfig) { c.PasswordFile = "" },
		"set exactly one":                                func(c *upstream.StepCAConfig) { c.RootFile = "/etc/root.pem" },
		"upstream_authority.step_ca.root_fingerprint \"": func(c *upstream.StepCAConfig) { c.RootFingerprint = "abc" },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v, want an error containing %q", err, want)
		}
	}
}
