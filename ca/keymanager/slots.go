package keymanager

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/fsutil"
	"go.step.sm/crypto/kms/apiv1"
)

// SlotKeysFile, in a rotation slot's directory, names the slot's two keys in the key manager (JSON, mode
// 0600; names only, never key material). It is written when the slot is first loaded and read on every
// later load and when the slot is pruned, so a changed x509_key or jwt_key never loses a slot's keys.
const SlotKeysFile = "kms-keys.json"

// maxSlotKeysBytes bounds SlotKeysFile: two names of at most MaxURILength and the JSON around them.
const maxSlotKeysBytes = 2*MaxURILength + 256

// Rotates reports whether CA keys kept by kind rotate (ca/rotation): Signet creates, names and deletes a
// key pair per slot on disk, in softkms and in pkcs11. The cloud KMSes' keys must exist already (Signet
// creates none), so a node with them keeps one key pair.
func Rotates(kind Kind) bool {
	switch kind {
	case "", Disk, SoftKMS, PKCS11:
		return true
	}
	return false
}

type slotKeyNames struct {
	X509Key string `json:"x509_key"`
	JWTKey  string `json:"jwt_key"`
}

// PKCS11SlotKey is the name in the token of role's key of rotation slot on server node node:
// "pkcs11:id=<hex>;object=signet-<node>-<x509|jwt>-<slot>". The id is the first 8 bytes of SHA-256 over
// node, role and slot, so nodes sharing a token never meet; in the label, characters of node other than
// A-Z, a-z, 0-9, '.', '_' and '-' become '_'.
func PKCS11SlotKey(node string, role ca.KeyRole, slot string) string {
	short := pick(role, "x509", "jwt")
	sum := sha256.Sum256([]byte("signet\x00" + node + "\x00" + string(role) + "\x00" + slot))
	label := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, node)
	return "pkcs11:id=" + hex.EncodeToString(sum[:8]) + ";object=signet-" + label + "-" + short + "-" + slot
}

// SlotKeys returns, for server node node, the keys of each rotation slot: the ca.KeyManager of the slot
// whose directory is dir. Pass it to rotation.KeyManagerFactory. A slot's names are those recorded in
// dir/SlotKeysFile; a slot loaded for the first time gets them recorded:
//
//   - slot 1 takes x509_key and jwt_key (or their defaults) when they were configured, or when dir
//     already holds the CA certificate: the keys of a node from before keys rotated, adopted as they
//     are (a softkms key file the adoption moved into dir is found there);
//   - every other slot: softkms dir/x509-ca.key and dir/jwt.key; pkcs11 PKCS11SlotKey(node, role, slot).
//
// The cloud KMSes have no slots (Rotates): every slot takes x509_key and jwt_key.
func (m *Manager) SlotKeys(node string) func(slot, dir string) (ca.KeyManager, error) {
	return func(slot, dir string) (ca.KeyManager, error) {
		names, err := m.slotNames(node, slot, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: slot %s: %w", m.kind, slot, err)
		}
		return &slotKeys{m: m, names: names}, nil
	}
}

// slotNames reads dir/SlotKeysFile, or chooses the slot's names and records them there.
func (m *Manager) slotNames(node, slot, dir string) (slotKeyNames, error) {
	names, err := m.readSlotNames(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return names, err
	}
	_, certErr := os.Lstat(filepath.Join(dir, ca.X509CertFile))
	switch {
	case !Rotates(m.kind) || slot == "1" && (m.explicit || certErr == nil):
		names = slotKeyNames{X509Key: m.x509Key, JWTKey: m.jwtKey}
		if m.kind == SoftKMS {
			names.X509Key, names.JWTKey = movedInto(dir, names.X509Key), movedInto(dir, names.JWTKey)
		}
	case m.kind == SoftKMS:
		names = slotKeyNames{X509Key: filepath.Join(dir, ca.X509KeyFile), JWTKey: filepath.Join(dir, ca.JWTKeyFile)}
	default:
		names = slotKeyNames{X509Key: PKCS11SlotKey(node, ca.X509KeyRole, slot), JWTKey: PKCS11SlotKey(node, ca.JWTKeyRole, slot)}
	}
	b, err := json.Marshal(names)
	if err != nil {
		return names, err
	}
	if err := fsutil.WriteFileAtomic(dir, SlotKeysFile, append(b, '\n'), 0o600); err != nil {
		return names, err
	}
	return names, nil
}

// movedInto returns dir/<base of path> when the softkms key file path is missing and that one exists:
// the adoption of a key store from before keys rotated moves the default key files into slot 1.
func movedInto(dir, path string) string {
	moved := filepath.Join(dir, filepath.Base(path))
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(moved); err == nil {
			return moved
		}
	}
	return path
}

// readSlotNames reads and checks dir/SlotKeysFile; a missing file is an error wrapping fs.ErrNotExist.
func (m *Manager) readSlotNames(dir string) (slotKeyNames, error) {
	path := filepath.Join(dir, SlotKeysFile)
	b, err := fsutil.ReadFileMax(path, maxSlotKeysBytes)
	if err != nil {
		return slotKeyNames{}, err
	}
	var names slotKeyNames
	if err := json.Unmarshal(b, &names); err != nil {
		return names, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range []struct{ field, name string }{{"x509_key", names.X509Key}, {"jwt_key", names.JWTKey}} {
		switch {
		case k.name == "" || len(k.name) > MaxURILength:
			err = fmt.Errorf("%s: want a name of 1 to %d characters", k.field, MaxURILength)
		case m.kind == PKCS11:
			err = checkPKCS11Name(k.field, k.name)
		case m.kind == SoftKMS:
			_, err = checkSoftKMSName(k.field, k.name)
		}
		if err != nil {
			return names, fmt.Errorf("%s: %w (restore the file, or remove the slot's directory to start with new keys)", path, err)
		}
	}
	if names.X509Key == names.JWTKey {
		return names, fmt.Errorf("%s: x509_key and jwt_key are both %q; a slot has two keys", path, names.X509Key)
	}
	return names, nil
}

// DestroySlot deletes the keys of the pruned rotation slot whose directory is dir (a rotation.Destroyer):
// softkms removes its key files, pkcs11 destroys both keys in the token. It fails for a key manager that
// cannot delete keys, naming them, and when dir records no names.
func (m *Manager) DestroySlot(slot, dir string) error {
	names, err := m.readSlotNames(dir)
	if err != nil {
		return fmt.Errorf("%s: slot %s: its key names: %w", m.kind, slot, err)
	}
	var errs []error
	for _, name := range []string{names.X509Key, names.JWTKey} {
		if err := m.deleteKey(name); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", m.describeKey(name), err))
		}
	}
	return errors.Join(errs...)
}

// deleteKey deletes one key; a key already gone is no error.
func (m *Manager) deleteKey(name string) error {
	if m.kind == SoftKMS {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	switch km := m.km.(type) {
	case interface{ DeleteKey(string) error }: // step's pkcs11
		return km.DeleteKey(name)
	case apiv1.KeyDeleter:
		return km.DeleteKey(&apiv1.DeleteKeyRequest{Name: name})
	}
	return fmt.Errorf("key manager %s cannot delete keys; delete it in the KMS", m.kind)
}

// slotKeys is one slot's pair of keys: a ca.KeyManager over the Manager's KMS.
type slotKeys struct {
	m     *Manager
	names slotKeyNames
}

func (k *slotKeys) name(role ca.KeyRole) string { return pick(role, k.names.X509Key, k.names.JWTKey) }

// KeyName implements ca.KeyManager.
func (k *slotKeys) KeyName(role ca.KeyRole) string { return k.m.describeKey(k.name(role)) }

// LoadKey implements ca.KeyManager.
func (k *slotKeys) LoadKey(role ca.KeyRole) (crypto.Signer, error) { return k.m.loadKey(k.name(role)) }

// CreateKey implements ca.KeyManager.
func (k *slotKeys) CreateKey(role ca.KeyRole) (crypto.Signer, error) {
	return k.m.createKey(k.name(role))
}
