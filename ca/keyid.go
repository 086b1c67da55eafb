package ca

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
)

// Key IDs name the key that signed a credential, as the ledger records it (the "signed by" of every
// record). A JWT key's ID is its kid. An X.509 authority's is its Subject Key Identifier in lowercase hex
// (RFC 5280 §4.2.1.2; checkRoot requires one): every certificate it signs carries the same bytes as its
// Authority Key Identifier, so the signer of any certificate, even one found in the wild, is read from
// the certificate alone (openssl prints it, upper case with colons, as "X509v3 Authority Key
// Identifier").

// X509KeyID returns the key ID of the X.509 authority root: its Subject Key Identifier in lowercase hex.
func X509KeyID(root *x509.Certificate) string { return hex.EncodeToString(root.SubjectKeyId) }

// SignerKeyID returns the key ID of the X.509 authority that signed cert: its Authority Key Identifier
// in lowercase hex (empty if it has none).
func SignerKeyID(cert *x509.Certificate) string { return hex.EncodeToString(cert.AuthorityKeyId) }

// X509KeyID returns the key ID of this CA's X.509 authority (see the package function X509KeyID).
func (c *CA) X509KeyID() string { return X509KeyID(c.root) }

// CheckKeyID refuses a string that cannot be a key ID: a kid (1 to 128 characters of A-Z a-z 0-9 - _ .
// ~) or an X.509 authority's key ID (hex digits, which that set covers).
func CheckKeyID(id string) error {
	if err := checkKeyID(id); err != nil {
		return fmt.Errorf("key ID %q %w", id, err)
	}
	return nil
}
