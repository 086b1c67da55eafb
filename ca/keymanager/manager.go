package keymanager

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/fsutil"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"
	"go.step.sm/crypto/kms/softkms"
	"go.step.sm/crypto/kms/uri"
)

// Kind is the ca.key_manager setting.
type Kind string

// The key managers. Disk is ca.LoadOrCreate's own key files and needs no Manager.
const (
	Disk     Kind = "disk"
	SoftKMS  Kind = "softkms"
	PKCS11   Kind = "pkcs11"
	AWSKMS   Kind = "awskms"
	CloudKMS Kind = "cloudkms"
	AzureKMS Kind = "azurekms"
)

// Kinds lists every key manager name, for messages.
const Kinds = "disk, softkms, pkcs11, awskms, cloudkms or azurekms"

// Bounds of what Open reads.
const (
	// MaxURILength bounds Config.URI and each key name.
	MaxURILength = 2048
	// MaxPINLength bounds a PKCS#11 PIN (the content of its pin-source file).
	MaxPINLength = 256
)

// Default key names in a PKCS#11 token (CKA_ID and CKA_LABEL; step's pkcs11 creates keys only with both).
const (
	DefaultPKCS11X509Key = "pkcs11:id=5301;object=signet-x509-ca"
	DefaultPKCS11JWTKey  = "pkcs11:id=5302;object=signet-jwt"
)

// Config configures Open.
type Config struct {
	Kind Kind
	// URI is the KMS's own configuration, in go.step.sm/crypto/kms's URI form. pkcs11:
	// "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-source=/etc/signet/hsm.pin"
	// (module-path, one of token, serial or slot-id; the PIN only through pin-source, a file that
	// group and others cannot read; pin-value and pin-prompt are refused). awskms, cloudkms,
	// azurekms: passed through as is (e.g. "awskms:region=eu-west-1"). softkms: empty.
	URI string
	// X509Key and JWTKey name the two keys in the KMS. Defaults: pkcs11 DefaultPKCS11X509Key and
	// DefaultPKCS11JWTKey; softkms Dir/ca.X509KeyFile and Dir/ca.JWTKeyFile (a path, or
	// "softkms:path=PATH"). Required for the cloud KMSes, whose keys must already exist.
	X509Key, JWTKey string
	// Dir is the CA directory, where softkms keeps its key files by default.
	Dir string
	// CredentialsFile is the credentials file of awskms or cloudkms (optional).
	CredentialsFile string
}

// Manager holds one open key manager. It implements ca.KeyManager; Close releases it.
type Manager struct {
	kind     Kind
	km       apiv1.KeyManager
	x509Key  string
	jwtKey   string
	canMake  bool // softkms and pkcs11 create missing keys; the cloud KMSes do not
	describe string
	// explicit: x509_key or jwt_key was configured (not a default).
	explicit bool
}

// Open validates cfg and opens the key manager. Errors name the key manager and the config field
// at fault (Kind "pkcs11" is "key manager pkcs11: ..."); they never contain a PIN.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	prefix := "key manager " + string(cfg.Kind)
	if len(cfg.URI) > MaxURILength || len(cfg.X509Key) > MaxURILength || len(cfg.JWTKey) > MaxURILength {
		return nil, fmt.Errorf("%s: the KMS URI and key names are at most %d characters each", prefix, MaxURILength)
	}
	m := &Manager{kind: cfg.Kind, x509Key: cfg.X509Key, jwtKey: cfg.JWTKey, explicit: cfg.X509Key != "" || cfg.JWTKey != ""}
	var err error
	switch cfg.Kind {
	case SoftKMS:
		err = m.openSoftKMS(ctx, cfg)
	case PKCS11:
		err = m.openPKCS11(ctx, cfg)
	case AWSKMS, CloudKMS, AzureKMS:
		err = m.openCloud(ctx, cfg)
	case Disk:
		return nil, fmt.Errorf("%s: the disk key manager is the CA directory's own key files; it needs no Open", prefix)
	default:
		return nil, fmt.Errorf("key manager %q is not known; want %s", cfg.Kind, Kinds)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	return m, nil
}

// checkDistinct refuses one key for both roles; called once the defaults are filled in, before the
// KMS opens.
func (m *Manager) checkDistinct() error {
	if m.x509Key == m.jwtKey {
		return fmt.Errorf("x509_key and jwt_key are both %q; they must be two keys", m.x509Key)
	}
	return nil
}

func (m *Manager) openSoftKMS(ctx context.Context, cfg Config) error {
	if cfg.URI != "" {
		return errors.New("kms_uri: softkms takes none (its keys are files named by x509_key and jwt_key)")
	}
	if cfg.X509Key == "" {
		m.x509Key = filepath.Join(cfg.Dir, ca.X509KeyFile)
	}
	if cfg.JWTKey == "" {
		m.jwtKey = filepath.Join(cfg.Dir, ca.JWTKeyFile)
	}
	var err error
	if m.x509Key, err = checkSoftKMSName("x509_key", m.x509Key); err != nil {
		return err
	}
	if m.jwtKey, err = checkSoftKMSName("jwt_key", m.jwtKey); err != nil {
		return err
	}
	if err := m.checkDistinct(); err != nil {
		return err
	}
	km, err := softkms.New(ctx, apiv1.Options{Type: apiv1.SoftKMS})
	if err != nil {
		return err
	}
	m.km, m.canMake, m.describe = km, true, "softkms key"
	return nil
}

func (m *Manager) openPKCS11(ctx context.Context, cfg Config) error {
	if cfg.URI == "" {
		return errors.New("kms_uri is required, e.g. pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-source=/etc/signet/hsm.pin")
	}
	u, err := uri.ParseWithScheme(string(PKCS11), cfg.URI)
	if err != nil {
		return errors.New("kms_uri: not a pkcs11: URI (pkcs11:module-path=...;token=...?pin-source=FILE)")
	}
	values := uri.Values(u)
	switch {
	case values.Has("pin-value"):
		return errors.New("kms_uri: pin-value puts the PIN in the configuration; write the PIN to a file only the server's user can read (chmod 600) and name it with pin-source")
	case values.Has("pin-prompt"):
		return errors.New("kms_uri: pin-prompt needs a terminal; use pin-source=FILE")
	case values.Get("module-path") == "":
		return errors.New("kms_uri: module-path is required (the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)")
	}
	var pin string
	src := values.Get("pin-source")
	if src != "" {
		if pin, err = readPIN(src); err != nil {
			return fmt.Errorf("kms_uri: pin-source: %w", err)
		}
		values.Del("pin-source")
	}
	if cfg.X509Key == "" {
		m.x509Key = DefaultPKCS11X509Key
	}
	if cfg.JWTKey == "" {
		m.jwtKey = DefaultPKCS11JWTKey
	}
	for _, k := range []struct{ field, name string }{{"x509_key", m.x509Key}, {"jwt_key", m.jwtKey}} {
		if err := checkPKCS11Name(k.field, k.name); err != nil {
			return err
		}
	}
	if err := m.checkDistinct(); err != nil {
		return err
	}
	// The PIN travels in Options.Pin only: the URI the module sees, and any error quoting it, has
	// no pin-source left to read again.
	conn := uri.New(string(PKCS11), values).String()
	km, err := pkcs11.New(ctx, apiv1.Options{Type: apiv1.PKCS11, URI: conn, Pin: pin})
	if err != nil {
		where := "module " + values.Get("module-path")
		for _, k := range []string{"token", "serial", "slot-id"} {
			if v := values.Get(k); v != "" {
				where += ", " + k + " " + v
			}
		}
		if strings.Contains(err.Error(), "PIN_INCORRECT") {
			err = fmt.Errorf("%w (check the PIN in pin-source %s)", err, src)
		}
		return fmt.Errorf("open %s (kms_uri): %w", where, err)
	}
	m.km, m.canMake, m.describe = km, true, "pkcs11 key"
	return nil
}

// checkSoftKMSName checks a softkms key name (field names it in the error) and returns its clean path.
func checkSoftKMSName(field, name string) (string, error) {
	path := strings.TrimPrefix(name, "softkms:path=")
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%s %q: want an absolute file path (or softkms:path=PATH)", field, name)
	}
	return filepath.Clean(path), nil
}

// checkPKCS11Name checks a pkcs11 key name (field names it in the error): step's pkcs11 creates keys only
// with both an id and an object (CKA_ID and CKA_LABEL).
func checkPKCS11Name(field, name string) error {
	ku, err := uri.ParseWithScheme(string(PKCS11), name)
	if err != nil || len(ku.GetEncoded("id")) == 0 || ku.Get("object") == "" {
		return fmt.Errorf("%s %q: want a pkcs11: URI with id and object, e.g. %s", field, name, DefaultPKCS11X509Key)
	}
	return nil
}

// readPIN reads a PIN file that group and others cannot access, without its trailing newline.
func readPIN(path string) (string, error) {
	data, err := fsutil.ReadPrivateFile(path)
	if err != nil {
		return "", err
	}
	defer clear(data)
	pin := bytes.TrimRight(data, "\r\n")
	switch {
	case len(pin) == 0:
		return "", fmt.Errorf("%s is empty", path)
	case len(pin) > MaxPINLength:
		return "", fmt.Errorf("%s holds more than %d bytes; a PIN is shorter", path, MaxPINLength)
	}
	return string(pin), nil
}

func (m *Manager) openCloud(ctx context.Context, cfg Config) error {
	if cfg.X509Key == "" || cfg.JWTKey == "" {
		return errors.New("x509_key and jwt_key are required: name two existing ECDSA P-256 signing keys in the KMS (Signet does not create cloud keys)")
	}
	if err := m.checkDistinct(); err != nil {
		return err
	}
	km, err := openCloudKMS(ctx, cfg.Kind, apiv1.Options{Type: apiv1.Type(cfg.Kind), URI: cfg.URI, CredentialsFile: cfg.CredentialsFile})
	if err != nil {
		return err
	}
	m.km, m.describe = km, string(cfg.Kind)+" key"
	return nil
}

// name returns role's configured key name in the KMS.
func (m *Manager) name(role ca.KeyRole) string {
	return pick(role, m.x509Key, m.jwtKey)
}

// pick returns x509 for the X.509 role and jwt for the JWT role.
func pick(role ca.KeyRole, x509, jwt string) string {
	if role == ca.JWTKeyRole {
		return jwt
	}
	return x509
}

// KeyName implements ca.KeyManager: "pkcs11 key pkcs11:id=5301;object=signet-x509-ca".
func (m *Manager) KeyName(role ca.KeyRole) string { return m.describeKey(m.name(role)) }

// LoadKey implements ca.KeyManager.
func (m *Manager) LoadKey(role ca.KeyRole) (crypto.Signer, error) { return m.loadKey(m.name(role)) }

// CreateKey implements ca.KeyManager: an ECDSA P-256 key. A pkcs11 key is generated inside the
// token and is not extractable; a softkms key is written as PKCS#8 PEM with mode 0600.
func (m *Manager) CreateKey(role ca.KeyRole) (crypto.Signer, error) { return m.createKey(m.name(role)) }

func (m *Manager) describeKey(name string) string { return m.describe + " " + name }

func (m *Manager) loadKey(name string) (crypto.Signer, error) {
	if m.kind == SoftKMS {
		data, err := fsutil.ReadPrivateFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ca.ErrKeyNotFound, name)
		}
		if err != nil {
			return nil, err
		}
		defer clear(data)
		return m.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKeyPEM: data})
	}
	signer, err := m.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: name})
	if err != nil {
		if keyMissing(err) {
			return nil, fmt.Errorf("%w: %v", ca.ErrKeyNotFound, err)
		}
		return nil, err
	}
	return signer, nil
}

// keyMissing reports whether err from CreateSigner means the key does not exist. step's pkcs11
// reports a missing key as a plain "key with uri ... not found" error (its NotFoundError type is
// only used by some KMSes); TestPKCS11 creates the keys through this very path.
func keyMissing(err error) bool {
	return errors.Is(err, apiv1.NotFoundError{}) || strings.HasSuffix(err.Error(), " not found")
}

func (m *Manager) createKey(name string) (crypto.Signer, error) {
	if !m.canMake {
		return nil, fmt.Errorf("%s %s does not exist; create an ECDSA P-256 signing key with that name in the KMS (Signet creates keys only in softkms and pkcs11)", m.kind, name)
	}
	resp, err := m.km.CreateKey(&apiv1.CreateKeyRequest{Name: name, SignatureAlgorithm: apiv1.ECDSAWithSHA256})
	if err != nil {
		return nil, err
	}
	if m.kind == SoftKMS {
		signer, ok := resp.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("softkms created a %T, not a signing key", resp.PrivateKey)
		}
		if err := ca.WritePrivateKey(filepath.Dir(name), filepath.Base(name), signer); err != nil {
			return nil, err
		}
	}
	return m.km.CreateSigner(&resp.CreateSignerRequest)
}

// Kind is the key manager's kind.
func (m *Manager) Kind() Kind { return m.kind }

// Close releases the key manager (for pkcs11, the module's sessions).
func (m *Manager) Close() error { return m.km.Close() }

var _ ca.KeyManager = (*Manager)(nil)
