package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// StepCAConfig configures NewStepCA: a step-ca authority (github.com/smallstep/certificates) and one of
// its JWK provisioners, whose X.509 template must let it sign CA certificates (docs/configuration.md).
type StepCAConfig struct {
	// URL (upstream_authority.step_ca.url) is the authority's https:// address.
	URL string
	// Provisioner (upstream_authority.step_ca.provisioner) is the JWK provisioner's name.
	Provisioner string
	// PasswordFile (upstream_authority.step_ca.password_file) holds the password that decrypts the
	// provisioner's key, mode 0600; read at every request, never kept.
	PasswordFile string
	// RootFingerprint (upstream_authority.step_ca.root_fingerprint) is the hex SHA-256 of the
	// authority's root certificate (what `step certificate fingerprint root_ca.crt` prints), or
	// RootFile (upstream_authority.step_ca.root_file) its PEM file: exactly one of the two.
	RootFingerprint string
	RootFile        string
	// Timeout bounds each HTTP request to the authority; 0 means DefaultStepCATimeout.
	Timeout time.Duration
	// Clock dates the one-time tokens and the NotAfter asked for; nil means time.Now.
	Clock func() time.Time
}

// DefaultStepCATimeout bounds each request to a step-ca authority when StepCAConfig.Timeout is zero.
const DefaultStepCATimeout = 15 * time.Second

// Bounds of the step-ca configuration.
const (
	maxURLLen         = 2048
	maxProvisionerLen = 256
	maxPasswordBytes  = 4096
)

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Keys of the step-ca upstream's configuration, named in errors.
const (
	stepURLKey         = "upstream_authority.step_ca.url"
	stepProvisionerKey = "upstream_authority.step_ca.provisioner"
	stepPasswordKey    = "upstream_authority.step_ca.password_file"
	stepFingerprintKey = "upstream_authority.step_ca.root_fingerprint"
	stepRootFileKey    = "upstream_authority.step_ca.root_file"
)

// Validate checks the configuration without contacting the authority; errors name the key.
func (c *StepCAConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return fmt.Errorf("%s is required (the step-ca authority's https:// address)", stepURLKey)
	case len(c.URL) > maxURLLen:
		return fmt.Errorf("%s: at most %d characters", stepURLKey, maxURLLen)
	case err != nil:
		return fmt.Errorf("%s: %w", stepURLKey, err)
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%s %q: want https://host[:port]", stepURLKey, c.URL)
	case c.Provisioner == "":
		return fmt.Errorf("%s is required (the name of a JWK provisioner of the authority)", stepProvisionerKey)
	case len(c.Provisioner) > maxProvisionerLen:
		return fmt.Errorf("%s: at most %d characters", stepProvisionerKey, maxProvisionerLen)
	case c.PasswordFile == "":
		return fmt.Errorf("%s is required (a file, mode 0600, holding the provisioner's password)", stepPasswordKey)
	case (c.RootFingerprint == "") == (c.RootFile == ""):
		return fmt.Errorf("%s or %s: set exactly one (how to trust the authority's TLS certificate)", stepFingerprintKey, stepRootFileKey)
	case c.RootFingerprint != "" && !fingerprintRE.MatchString(strings.ToLower(c.RootFingerprint)):
		return fmt.Errorf("%s %q: want 64 hex digits (the root certificate's SHA-256)", stepFingerprintKey, c.RootFingerprint)
	case c.Timeout < 0:
		return errors.New("step-ca timeout must not be negative")
	}
	return nil
}
