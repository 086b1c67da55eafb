package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/fsutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Files of an agent's identity in its data dir.
const (
	identityKeyFile    = "agent_svid.key"
	identityCertFile   = "agent_svid.pem"
	identityBundleFile = "bundle.pem"
	// identityPrevKeyFile holds the previous key while a new key and SVID replace the old pair.
	identityPrevKeyFile = "agent_svid.key.prev"
)

// ErrNoIdentity is returned by LoadIdentity when the data dir holds no usable agent SVID.
var ErrNoIdentity = errors.New("no usable agent SVID")

// Identity is the agent's own SVID and the trust bundle it verifies servers with. It is an
// x509svid.Source and an x509bundle.Source for TLS, and keeps itself on disk (key 0600) so a restarted
// agent needs no new join token.
type Identity struct {
	dir string
	td  spiffeid.TrustDomain

	// saveMu serializes writes to dir: the renewal goroutine saves the SVID and the entry sync saves
	// the bundle, and the key's replacement (through identityPrevKeyFile) must not interleave with
	// another save.
	saveMu sync.Mutex

	mu     sync.RWMutex
	svid   *x509svid.SVID // nil before attestation and after Remove; never modified once set
	bundle []*x509.Certificate
}

// NewIdentity returns an identity with only a bootstrap bundle (before attestation).
func NewIdentity(dir string, td spiffeid.TrustDomain, bundle []*x509.Certificate) *Identity {
	return &Identity{dir: dir, td: td, bundle: bundle}
}

// LoadIdentity reads the agent SVID, key and bundle from dir. It returns ErrNoIdentity (wrapped) when
// there is none or the SVID has expired: the agent must attest again.
func LoadIdentity(dir string, td spiffeid.TrustDomain, now time.Time) (*Identity, error) {
	certPath := filepath.Join(dir, identityCertFile)
	svid, err := loadSVID(dir, certPath)
	if err != nil {
		return nil, err
	}
	if svid.ID.TrustDomain() != td {
		return nil, fmt.Errorf("agent: %s is for trust domain %q, this agent is configured for %q", certPath, svid.ID.TrustDomain().Name(), td.Name())
	}
	if !now.Before(svid.Certificates[0].NotAfter) {
		return nil, fmt.Errorf("agent: %s expired at %s: %w", certPath, svid.Certificates[0].NotAfter.Format(time.RFC3339), ErrNoIdentity)
	}
	bundlePath := filepath.Join(dir, identityBundleFile)
	bundle, err := x509bundle.Load(td, bundlePath)
	if err != nil {
		return nil, fmt.Errorf("agent: %s: %w", bundlePath, err)
	}
	return &Identity{dir: dir, td: td, svid: svid, bundle: bundle.X509Authorities()}, nil
}

// loadSVID reads the agent SVID at certPath with its key. A save moves the old key aside to
// identityPrevKeyFile before it writes the new key and certificate, so after a crash in between the
// certificate may still belong to the previous key: when the key is missing or does not fit, the
// previous key is tried. Both key files must be private regular files (fsutil.ReadPrivateFile).
func loadSVID(dir, certPath string) (*x509svid.SVID, error) {
	var certPEM []byte
	var parseErr error
	for _, name := range []string{identityKeyFile, identityPrevKeyFile} {
		keyPEM, err := fsutil.ReadPrivateFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("agent: private key: %w", err)
		}
		if certPEM == nil {
			if certPEM, err = os.ReadFile(certPath); err != nil {
				clear(keyPEM)
				return nil, fmt.Errorf("agent: read %s: %w", certPath, err)
			}
		}
		svid, err := x509svid.Parse(certPEM, keyPEM)
		clear(keyPEM)
		if err == nil {
			return svid, nil
		}
		if parseErr == nil {
			parseErr = err
		}
	}
	if parseErr == nil {
		return nil, fmt.Errorf("agent: %s: %w", dir, ErrNoIdentity)
	}
	return nil, fmt.Errorf("agent: %s: %w", certPath, parseErr)
}

// ID returns the agent's SPIFFE ID ("" before attestation).
func (id *Identity) ID() string {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.svid == nil {
		return ""
	}
	return id.svid.ID.String()
}

// NotAfter returns the agent SVID's expiry and the time to renew it (half its life).
func (id *Identity) NotAfter() (notAfter, renewAt time.Time) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.svid == nil {
		return time.Time{}, time.Time{}
	}
	c := id.svid.Certificates[0]
	// NotBefore is backdated for clock skew (ca.Backdate): halve the life counted from issuance.
	life := c.NotAfter.Sub(c.NotBefore)
	if life > ca.Backdate {
		life -= ca.Backdate
	}
	return c.NotAfter, c.NotAfter.Add(-life / 2)
}

// GetX509SVID implements x509svid.Source.
func (id *Identity) GetX509SVID() (*x509svid.SVID, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.svid == nil {
		return nil, errors.New("agent: not attested yet")
	}
	return id.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (id *Identity) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != id.td {
		return nil, fmt.Errorf("agent: no bundle for trust domain %q", td.Name())
	}
	id.mu.RLock()
	defer id.mu.RUnlock()
	return x509bundle.FromX509Authorities(td, id.bundle), nil
}

// checkSVID parses chainDER, the SVID the server returned for key, and checks it before anything is
// installed or written: it must be an X509-SVID for key (go-spiffe's rules: one URI SAN holding a
// SPIFFE ID with a path, not a CA, digitalSignature usage, the key's certificate), in the agent's
// trust domain, for want, and it must verify against the identity's bundle.
func (id *Identity) checkSVID(key crypto.Signer, chainDER [][]byte, want spiffeid.ID) (*x509svid.SVID, error) {
	if len(chainDER) == 0 {
		return nil, errors.New("agent: server returned no SVID")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("agent: encode key: %w", err)
	}
	defer clear(keyDER)
	svid, err := x509svid.ParseRaw(bytes.Join(chainDER, nil), keyDER)
	if err != nil {
		return nil, fmt.Errorf("agent: server returned an unusable agent SVID: %w", err)
	}
	if svid.ID.TrustDomain() != id.td {
		return nil, fmt.Errorf("agent: server returned an agent SVID for %s, outside this agent's trust domain %q", svid.ID, id.td.Name())
	}
	if svid.ID != want {
		return nil, fmt.Errorf("agent: server returned an agent SVID for %s, this agent is %s", svid.ID, want)
	}
	id.mu.RLock()
	bundle := x509bundle.FromX509Authorities(id.td, id.bundle)
	id.mu.RUnlock()
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		return nil, fmt.Errorf("agent: agent SVID %s from the server does not verify against the trust bundle: %w", svid.ID, err)
	}
	return svid, nil
}

// setSVID installs a renewed SVID for key (checked by checkSVID, for the agent's current ID) and
// writes it to disk.
func (id *Identity) setSVID(key crypto.Signer, chainDER [][]byte) error {
	id.mu.RLock()
	svid := id.svid
	id.mu.RUnlock()
	if svid == nil {
		return errors.New("agent: not attested yet")
	}
	renewed, err := id.checkSVID(key, chainDER, svid.ID)
	if err != nil {
		return err
	}
	return id.install(renewed)
}

// install makes svid, already checked, the agent's SVID and writes it to disk.
func (id *Identity) install(svid *x509svid.SVID) error {
	id.mu.Lock()
	id.svid = svid
	id.mu.Unlock()
	return id.saveSVID()
}

// SetBundle replaces the trust bundle (from the server's sync stream) and writes it to disk. Only the
// bundle file is written: the key and SVID are left alone.
func (id *Identity) SetBundle(roots []*x509.Certificate) error {
	id.mu.Lock()
	id.bundle = roots
	id.mu.Unlock()
	return id.saveBundle()
}

// mkdir creates the data dir (0700) if it is missing. The caller holds saveMu.
func (id *Identity) mkdir() error {
	if err := os.MkdirAll(id.dir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir %s: %w", id.dir, err)
	}
	return nil
}

// saveBundle writes the current bundle atomically into the data dir.
func (id *Identity) saveBundle() error {
	id.saveMu.Lock()
	defer id.saveMu.Unlock()
	if err := id.mkdir(); err != nil {
		return err
	}
	// Read under saveMu: of two concurrent saves, the later one writes the newer bundle.
	id.mu.RLock()
	bundle := ca.CertificatesPEM(id.bundle)
	id.mu.RUnlock()
	if err := fsutil.WriteFileAtomic(id.dir, identityBundleFile, bundle, 0o644); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// saveSVID writes the current key (0600) and SVID atomically into the data dir.
func (id *Identity) saveSVID() error {
	id.saveMu.Lock()
	defer id.saveMu.Unlock()
	if err := id.mkdir(); err != nil {
		return err
	}
	id.mu.RLock()
	svid := id.svid
	id.mu.RUnlock()
	if svid == nil {
		return nil
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return fmt.Errorf("agent: encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	defer clear(keyPEM)
	// The key and the certificate are two files, replaced one after the other. The old key is kept as
	// identityPrevKeyFile until both are in place, so a crash between the two renames leaves a pair
	// LoadIdentity can still use (the old certificate with the old key).
	keyPath := filepath.Join(id.dir, identityKeyFile)
	prevPath := filepath.Join(id.dir, identityPrevKeyFile)
	if err := os.Rename(keyPath, prevPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: keep previous key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(id.dir, identityKeyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := fsutil.WriteFileAtomic(id.dir, identityCertFile, ca.CertificatesPEM(svid.Certificates), 0o644); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := os.Remove(prevPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: remove previous key: %w", err)
	}
	return nil
}

// Remove deletes the agent's SVID and key from disk (after eviction); the bundle stays.
func (id *Identity) Remove() error {
	id.saveMu.Lock()
	defer id.saveMu.Unlock()
	id.mu.Lock()
	id.svid = nil
	id.mu.Unlock()
	var errs []error
	for _, f := range []string{identityKeyFile, identityCertFile, identityPrevKeyFile} {
		if err := os.Remove(filepath.Join(id.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
