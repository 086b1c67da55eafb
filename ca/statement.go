package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrBadStatementSignature is returned (wrapped) by VerifyStatement when no given root signed the
// statement.
var ErrBadStatementSignature = errors.New("ca: statement signature does not verify against any given root")

// Statements are small documents the node vouches for with its X.509 root key, such as audit-log
// checkpoints, so they can be checked offline against the trust bundle. The signed digest is
// SHA-256("signet-statement\x00" || purpose || "\x00" || message): the prefix keeps a statement
// signature from ever being valid over a certificate (a TBSCertificate starts with an ASN.1 SEQUENCE
// byte), and the purpose keeps a statement of one kind from being replayed as another.
const statementPrefix = "signet-statement\x00"

func statementDigest(purpose string, msg []byte) ([]byte, error) {
	if purpose == "" {
		return nil, fmt.Errorf("%w: statement purpose is required", ErrInvalidParams)
	}
	h := sha256.New()
	h.Write([]byte(statementPrefix))
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(msg)
	return h.Sum(nil), nil
}

// SignStatement signs msg for purpose with this node's X.509 root key (ECDSA: ASN.1 signature; RSA:
// PKCS #1 v1.5 with SHA-256).
func (c *CA) SignStatement(purpose string, msg []byte) ([]byte, error) {
	digest, err := statementDigest(purpose, msg)
	if err != nil {
		return nil, err
	}
	sig, err := c.rootSigner.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("ca: sign %s statement: %w", purpose, err)
	}
	return sig, nil
}

// VerifyStatement checks that one of roots signed msg for purpose with SignStatement, and returns it.
func VerifyStatement(roots []*x509.Certificate, purpose string, msg, sig []byte) (*x509.Certificate, error) {
	digest, err := statementDigest(purpose, msg)
	if err != nil {
		return nil, err
	}
	for _, root := range roots {
		switch k := root.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if ecdsa.VerifyASN1(k, digest, sig) {
				return root, nil
			}
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil {
				return root, nil
			}
		}
	}
	return nil, fmt.Errorf("%w (%d roots tried)", ErrBadStatementSignature, len(roots))
}
