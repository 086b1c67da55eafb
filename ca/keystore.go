package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultCATTL is the lifetime of a root created by LoadOrCreate when KeyStoreConfig.TTL is zero.
const DefaultCATTL = 365 * 24 * time.Hour

// Names of the files LoadOrCreate keeps in KeyStoreConfig.Dir.
const (
	X509KeyFile  = "x509-ca.key" // PKCS#8 PEM, mode 0600
	X509CertFile = "x509-ca.crt" // PEM certificate
	JWTKeyFile   = "jwt.key"     // PKCS#8 PEM, mode 0600
	JWTKeyIDFile = "jwt.kid"     // the kid, one line
)

// KeyStoreConfig configures LoadOrCreate.
type KeyStoreConfig struct {
	// Dir holds the key files. It is created with mode 0700 if missing; files are written 0600.
	Dir         string
	TrustDomain spiffeid.TrustDomain
	// TTL is the root lifetime used when creating it; 0 means DefaultCATTL. Ignored when loading.
	TTL   time.Duration
	Clock func() time.Time // nil means time.Now
	// Subject of a newly created root. Empty means O=Signet, CN=Signet CA <random hex>.
	Subject pkix.Name
	// Keys, when set, holds the private keys instead of Dir: an HSM or KMS (package ca/keymanager).
	// Dir then keeps only the public material (the root certificate and the JWT kid). Nil means the
	// key files X509KeyFile and JWTKeyFile in Dir.
	Keys KeyManager
	// Upstream, when set, signs a newly created X.509 authority as an intermediate of an existing PKI
	// instead of it being self-signed (package ca/upstream); Dir then also keeps UpstreamRootsFile and
	// UpstreamChainFile. An authority loaded from Dir is what its files say, whatever Upstream is.
	Upstream Upstream
	// UpstreamTimeout bounds the request to Upstream; 0 means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
}

// KeyRole names one of the CA's two keys for a KeyManager.
type KeyRole string

// The CA's keys.
const (
	X509KeyRole KeyRole = "x509-ca" // the X.509 root's key
	JWTKeyRole  KeyRole = "jwt"     // the JWT-SVID signing key
)

// ErrKeyNotFound is returned (wrapped) by a KeyManager whose key for a role does not exist yet.
var ErrKeyNotFound = errors.New("ca: key not found")

// KeyManager keeps the CA's private keys where they never leave (an HSM or KMS): signing goes
// through the crypto.Signer it returns.
type KeyManager interface {
	// LoadKey returns the signer of role's key, or an error wrapping ErrKeyNotFound if the key
	// does not exist.
	LoadKey(role KeyRole) (crypto.Signer, error)
	// CreateKey creates an ECDSA P-256 key for role and returns its signer.
	CreateKey(role KeyRole) (crypto.Signer, error)
	// KeyName names role's key in errors and logs, e.g. "pkcs11 key pkcs11:id=5301;object=signet-x509-ca".
	KeyName(role KeyRole) string
}

// LoadOrCreate loads the X.509 root (key and certificate) and the JWT signing key (and its kid)
// from cfg.Dir, creating whatever is missing on first use. With cfg.Keys the two private keys live
// in that key manager instead, and cfg.Dir keeps only the certificate and the kid. Every file is written atomically
// (temporary file, fsync, rename, fsync of the directory) with mode 0600.
//
// What it loads is validated: private key files must not be accessible by group or others (the
// error names the file and says to chmod 600 it), the certificate must be a CA whose URI SAN is
// spiffe://<trust domain> for the configured trust domain, must match its key and must not be
// expired. A key without certificate gets a fresh certificate (this only happens if creation was
// interrupted); a certificate or kid without its key is an error. Rotation of an expired root is
// not automatic: the error says which files to remove.
//
// Private key material never appears in errors. LoadOrCreate must not run concurrently on the same
// Dir (one server node owns one directory).
func LoadOrCreate(cfg KeyStoreConfig) (*X509Authority, *JWTAuthority, error) {
	if cfg.Dir == "" {
		return nil, nil, errors.New("ca: key store config: Dir is required")
	}
	if cfg.TrustDomain.IsZero() {
		return nil, nil, errors.New("ca: key store config: TrustDomain is required")
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultCATTL
	}
	if ttl < time.Minute {
		return nil, nil, fmt.Errorf("ca: key store config: TTL %s is too short (minimum 1m)", cfg.TTL)
	}
	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	subject := cfg.Subject
	if len(subject.ToRDNSequence()) == 0 {
		var suffix [4]byte
		if _, err := rand.Read(suffix[:]); err != nil {
			return nil, nil, fmt.Errorf("ca: generate CA subject: %w", err)
		}
		subject = pkix.Name{Organization: []string{"Signet"}, CommonName: "Signet CA " + hex.EncodeToString(suffix[:])}
	}
	if err := ensureDir(cfg.Dir); err != nil {
		return nil, nil, err
	}

	ks := keyStore{dir: cfg.Dir, td: cfg.TrustDomain, keys: cfg.Keys, up: cfg.Upstream, upTimeout: cfg.UpstreamTimeout}
	x509Auth, err := ks.loadOrCreateX509(clock(), ttl, subject)
	if err != nil {
		return nil, nil, err
	}
	jwtAuth, err := ks.loadOrCreateJWT()
	if err != nil {
		return nil, nil, err
	}
	jwtAuth.NotAfter = x509Auth.Certificate.NotAfter
	return x509Auth, jwtAuth, nil
}

type keyStore struct {
	dir  string
	td   spiffeid.TrustDomain
	keys KeyManager // nil: key files in dir
	// up signs new X.509 authorities as intermediates (nil: self-signed roots).
	up        Upstream
	upTimeout time.Duration
}

func (ks keyStore) path(name string) string { return filepath.Join(ks.dir, name) }

func (ks keyStore) loadOrCreateX509(now time.Time, ttl time.Duration, subject pkix.Name) (*X509Authority, error) {
	certPath := ks.path(X509CertFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	if !certExists && ks.up != nil {
		return ks.createIntermediate(now, ttl, subject)
	}
	signer, keyName, err := ks.loadOrCreateKey(X509KeyRole, X509KeyFile, certPath, certExists, "create a new CA")
	if err != nil {
		return nil, err
	}
	if _, err := checkPublicKey(signer.Public()); err != nil {
		return nil, fmt.Errorf("ca: %s: %w", keyName, err)
	}

	if !certExists {
		cert, err := newRootCertificate(ks.td, signer, subject, now, ttl)
		if err != nil {
			return nil, err
		}
		block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		if err := writeFileAtomic(ks.dir, X509CertFile, block); err != nil {
			return nil, err
		}
		return &X509Authority{Certificate: cert, Signer: signer}, nil
	}

	cert, err := loadCertificate(certPath)
	if err != nil {
		return nil, err
	}
	upChain, upRoots, err := ks.loadUpstreamFiles()
	if err != nil {
		return nil, err
	}
	if upRoots == nil {
		err = checkRoot(cert, ks.td)
	} else {
		// The chain is checked at a time inside the certificate's validity, so that an expired or
		// not yet valid certificate gets the clearer errors below.
		at := now
		if at.Before(cert.NotBefore) {
			at = cert.NotBefore
		} else if at.After(cert.NotAfter) {
			at = cert.NotAfter
		}
		err = checkIntermediate(cert, ks.td, upChain, upRoots, at)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", certPath, err)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("ca: private key %s does not match certificate %s", keyName, certPath)
	}
	if !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("ca: CA certificate %s expired at %s (now %s); remove %s and %s to create a new CA",
			certPath, cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), certPath, keyName)
	}
	if now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("ca: CA certificate %s is not valid before %s (now %s); check the clock",
			certPath, cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return &X509Authority{Certificate: cert, Signer: signer, UpstreamChain: upChain, UpstreamRoots: upRoots}, nil
}

func (ks keyStore) loadOrCreateJWT() (*JWTAuthority, error) {
	kidPath := ks.path(JWTKeyIDFile)
	kidExists, err := exists(kidPath)
	if err != nil {
		return nil, err
	}
	signer, keyName, err := ks.loadOrCreateKey(JWTKeyRole, JWTKeyFile, kidPath, kidExists, "create a new JWT key")
	if err != nil {
		return nil, err
	}
	if pub, ok := signer.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("ca: %s: want an ECDSA P-256 key for ES256, got %s", keyName, describeKey(signer.Public()))
	}

	var kid string
	if kidExists {
		data, err := os.ReadFile(kidPath)
		if err != nil {
			return nil, fmt.Errorf("ca: read %s: %w", kidPath, err)
		}
		kid = string(bytes.TrimSpace(data))
		if err := checkKeyID(kid); err != nil {
			return nil, fmt.Errorf("ca: %s: key ID %w", kidPath, err)
		}
	} else {
		var raw [24]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, fmt.Errorf("ca: generate JWT key ID: %w", err)
		}
		kid = base64.RawURLEncoding.EncodeToString(raw[:]) // 32 characters
		if err := writeFileAtomic(ks.dir, JWTKeyIDFile, []byte(kid+"\n")); err != nil {
			return nil, err
		}
	}
	return &JWTAuthority{KeyID: kid, Signer: signer}, nil
}

// loadOrCreateKey returns role's key, from ks.keys or from dir/file, and its name for messages. A
// missing key is created unless its public counterpart (pubPath: the certificate or kid) exists, since
// a new key would not match it; the error then says to remove pubPath to fix.
func (ks keyStore) loadOrCreateKey(role KeyRole, file, pubPath string, pubExists bool, fix string) (crypto.Signer, string, error) {
	if ks.keys != nil {
		name := ks.keys.KeyName(role)
		signer, err := ks.keys.LoadKey(role)
		switch {
		case err == nil:
			return signer, name, nil
		case !errors.Is(err, ErrKeyNotFound):
			return nil, name, fmt.Errorf("ca: load %s: %w", name, err)
		case pubExists:
			return nil, name, fmt.Errorf("ca: %s exists but its private key %s does not; remove %s to %s", pubPath, name, pubPath, fix)
		}
		if signer, err = ks.keys.CreateKey(role); err != nil {
			return nil, name, fmt.Errorf("ca: create %s: %w", name, err)
		}
		return signer, name, nil
	}

	keyPath := ks.path(file)
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, keyPath, err
	}
	if keyExists {
		signer, err := loadPrivateKey(keyPath)
		return signer, keyPath, err
	}
	if pubExists {
		return nil, keyPath, fmt.Errorf("ca: %s exists but its private key %s is missing; remove %s to %s", pubPath, keyPath, pubPath, fix)
	}
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, keyPath, fmt.Errorf("ca: generate %s key: %w", role, err)
	}
	if err := WritePrivateKey(ks.dir, file, signer); err != nil {
		return nil, keyPath, err
	}
	return signer, keyPath, nil
}

// newRootCertificate self-signs the root of td: CA=true, key usage keyCertSign|cRLSign (critical),
// URI SAN spiffe://<td> without path, 128-bit random serial, valid from now-Backdate to now+ttl.
func newRootCertificate(td spiffeid.TrustDomain, signer crypto.Signer, subject pkix.Name, now time.Time, ttl time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: create CA certificate: %w", err)
	}
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-Backdate),
		NotAfter:     now.Add(ttl),
		// X509-SVID §4.1: signing certificates MUST set cA=true. No pathLenConstraint (§4.1 MAY):
		// leaving it open lets a later design add intermediates under an existing root.
		BasicConstraintsValid: true,
		IsCA:                  true,
		// X509-SVID §4.3: signing certificates MUST set keyCertSign, MAY set cRLSign; crypto/x509
		// marks the extension critical as §4.3 requires.
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// X509-SVID §3.2 / SPIFFE-ID §3: the signing certificate is an SVID for the trust domain
		// itself, with no path. Subject key ID is generated by crypto/x509 for CA certificates.
		URIs: []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("ca: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse new CA certificate: %w", err)
	}
	if err := checkRoot(cert, td); err != nil {
		return nil, fmt.Errorf("ca: new CA certificate: %w", err)
	}
	return cert, nil
}

// loadPrivateKey reads a PKCS#8 PEM private key, refusing a file that group or others can access.
// Errors name the file but never include its contents.
func loadPrivateKey(path string) (crypto.Signer, error) {
	data, err := fsutil.ReadPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: private key: %w", err)
	}
	defer clear(data)

	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("ca: private key %s: want exactly one PEM block of type PRIVATE KEY (PKCS#8)", path)
	}
	defer clear(block.Bytes)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// The parser's errors describe structure only, never key bytes.
		return nil, fmt.Errorf("ca: private key %s: not a valid PKCS#8 key: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: private key %s: %T cannot sign", path, key)
	}
	return signer, nil
}

// WritePrivateKey stores key as PKCS#8 PEM in dir/name with mode 0600, atomically (temporary file,
// fsync, rename, fsync of dir). Errors name the file, never the key.
func WritePrivateKey(dir, name string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: encode private key %s: %w", name, err)
	}
	block := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	defer clear(block)
	return writeFileAtomic(dir, name, block)
}

// writeFileAtomic writes data to dir/name with mode 0600, atomically (fsutil.WriteFileAtomic).
func writeFileAtomic(dir, name string, data []byte) error {
	if err := fsutil.WriteFileAtomic(dir, name, data, 0o600); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// loadCertificate reads a file holding exactly one PEM certificate.
func loadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: read CA certificate: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("ca: CA certificate %s: want exactly one PEM block of type CERTIFICATE", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: CA certificate %s: %w", path, err)
	}
	return cert, nil
}

// ensureDir creates dir with mode 0700 if it does not exist.
func ensureDir(dir string) error {
	info, err := os.Stat(dir)
	switch {
	case err == nil:
		if !info.IsDir() {
			return fmt.Errorf("ca: key directory %s is not a directory", dir)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("ca: create key directory: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("ca: key directory: %w", err)
	}
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("ca: %w", err)
	}
}
