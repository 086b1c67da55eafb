package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
)

// Files LoadOrCreate keeps next to X509CertFile when the CA is an intermediate of an upstream authority.
const (
	// UpstreamRootsFile holds the upstream authority's roots (PEM certificates): what the bundle carries.
	UpstreamRootsFile = "x509-upstream-roots.pem"
	// UpstreamChainFile holds the certificates between the node's intermediate and the upstream roots
	// (PEM, the intermediate's issuer first); absent when the upstream root signed it directly.
	UpstreamChainFile = "x509-upstream-chain.pem"
)

// DefaultUpstreamTimeout bounds one request to an upstream authority when KeyStoreConfig.UpstreamTimeout
// is zero.
const DefaultUpstreamTimeout = 30 * time.Second

// maxUpstreamCerts bounds the certificates an upstream may return (chain plus roots) and a file holds.
const maxUpstreamCerts = 16

// maxUpstreamFileBytes bounds UpstreamRootsFile and UpstreamChainFile.
const maxUpstreamFileBytes = 256 << 10

// Upstream signs the CA's certificate as an intermediate of an existing PKI (package ca/upstream).
type Upstream interface {
	// MintX509CA signs csr (PKCS#10 DER for the CA's key, Subject and URI SAN spiffe://<td>) as a CA
	// certificate valid for at most ttl. It returns the chain, the new certificate first and then any
	// certificates between it and the roots, and the upstream's roots.
	MintX509CA(ctx context.Context, csr []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error)
	// Name names the upstream and its configuration in errors, e.g. "upstream_authority disk".
	Name() string
}

// createIntermediate makes the X.509 authority under ks.up: a key (created in memory, or in ks.keys),
// a CSR, the upstream's signature, and, only once all of that succeeded, the files. An upstream that
// refuses leaves no key file behind.
func (ks keyStore) createIntermediate(now time.Time, ttl time.Duration, subject pkix.Name) (*X509Authority, error) {
	var signer crypto.Signer
	var newKey bool
	keyName := ks.path(X509KeyFile)
	if ks.keys != nil {
		var err error
		if signer, keyName, err = ks.loadOrCreateKey(X509KeyRole, X509KeyFile, "", false, ""); err != nil {
			return nil, err
		}
	} else if keyExists, err := exists(keyName); err != nil {
		return nil, err
	} else if keyExists {
		if signer, err = loadPrivateKey(keyName); err != nil {
			return nil, err
		}
	} else {
		if signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("ca: generate %s key: %w", X509KeyRole, err)
		}
		newKey = true
	}
	if _, err := checkPublicKey(signer.Public()); err != nil {
		return nil, fmt.Errorf("ca: %s: %w", keyName, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject,
		URIs: []*url.URL{ks.td.ID().URL()}}, signer)
	if err != nil {
		return nil, fmt.Errorf("ca: CSR for the CA certificate: %w", err)
	}
	timeout := ks.upTimeout
	if timeout == 0 {
		timeout = DefaultUpstreamTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	chain, roots, err := ks.up.MintX509CA(ctx, csr, ttl)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: sign the CA certificate: %w", ks.up.Name(), err)
	}
	auth, err := checkUpstreamResult(ks, signer, chain, roots, now)
	if err != nil {
		return nil, err
	}
	if newKey {
		if err := WritePrivateKey(ks.dir, X509KeyFile, signer); err != nil {
			return nil, err
		}
	}
	if err := writeFileAtomic(ks.dir, UpstreamRootsFile, encodeCerts(roots)); err != nil {
		return nil, err
	}
	if len(chain) > 1 {
		if err := writeFileAtomic(ks.dir, UpstreamChainFile, encodeCerts(chain[1:])); err != nil {
			return nil, err
		}
	}
	// The certificate last: its presence marks the authority complete.
	if err := writeFileAtomic(ks.dir, X509CertFile, encodeCerts(chain[:1])); err != nil {
		return nil, err
	}
	return auth, nil
}

// checkUpstreamResult checks what an upstream returned: a CA certificate for the signer's key that
// chains to the roots.
func checkUpstreamResult(ks keyStore, signer crypto.Signer, chain, roots []*x509.Certificate, now time.Time) (*X509Authority, error) {
	name := ks.up.Name()
	switch {
	case len(chain) == 0:
		return nil, fmt.Errorf("ca: %s returned no certificate", name)
	case len(roots) == 0:
		return nil, fmt.Errorf("ca: %s returned no root certificate", name)
	case len(chain)+len(roots) > maxUpstreamCerts:
		return nil, fmt.Errorf("ca: %s returned %d certificates, at most %d accepted", name, len(chain)+len(roots), maxUpstreamCerts)
	}
	if !publicKeysEqual(signer.Public(), chain[0].PublicKey) {
		return nil, fmt.Errorf("ca: %s returned a certificate for another key than the CSR's", name)
	}
	if err := checkIntermediate(chain[0], ks.td, chain[1:], roots, now); err != nil {
		return nil, fmt.Errorf("ca: %s returned an unusable CA certificate: %w", name, err)
	}
	return &X509Authority{Certificate: chain[0], Signer: signer, UpstreamChain: chain[1:], UpstreamRoots: roots}, nil
}

// loadUpstreamFiles reads UpstreamRootsFile and UpstreamChainFile; roots is nil when the CA in ks.dir is
// self-signed (no roots file).
func (ks keyStore) loadUpstreamFiles() (chain, roots []*x509.Certificate, err error) {
	rootsPath := ks.path(UpstreamRootsFile)
	ok, err := exists(rootsPath)
	if err != nil || !ok {
		return nil, nil, err
	}
	if roots, err = LoadCertificates(rootsPath); err != nil {
		return nil, nil, err
	}
	chainPath := ks.path(UpstreamChainFile)
	if ok, err := exists(chainPath); err != nil {
		return nil, nil, err
	} else if ok {
		if chain, err = LoadCertificates(chainPath); err != nil {
			return nil, nil, err
		}
	}
	return chain, roots, nil
}

// LoadCertificates reads a PEM file of 1 to 16 certificates (at most 256 KiB); errors name the file.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := fsutil.ReadFileMax(path, maxUpstreamFileBytes)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	var out []*x509.Certificate
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca: %s: want PEM blocks of type CERTIFICATE only", path)
		}
		if len(out) == maxUpstreamCerts {
			return nil, fmt.Errorf("ca: %s: more than %d certificates", path, maxUpstreamCerts)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: certificate %d: %w", path, len(out)+1, err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ca: %s: no certificate", path)
	}
	return out, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // a bytes.Buffer does not fail
	}
	return b.Bytes()
}
