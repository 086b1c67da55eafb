package upstream

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/fsutil"
)

// DiskConfig configures NewDisk. The paths are read again at every MintX509CA, so replacing the files
// (a new upstream CA) takes effect at the next key slot without a restart.
type DiskConfig struct {
	// CertFile (upstream_authority.disk.cert_file) holds the upstream CA certificate (PEM), optionally
	// followed by the certificates above it up to, not including, the root. It must be a CA
	// certificate with key usage keyCertSign.
	CertFile string
	// KeyFile (upstream_authority.disk.key_file) holds its private key: PEM PKCS#8, SEC 1 (EC PRIVATE
	// KEY) or PKCS#1 (RSA PRIVATE KEY), mode 0600.
	KeyFile string
	// BundleFile (upstream_authority.disk.bundle_file) holds the roots (PEM). Empty means CertFile's
	// first certificate is itself the (self-signed) root.
	BundleFile string
	// Clock is the time the node's certificates start from; nil means time.Now.
	Clock func() time.Time
}

// Disk signs node CA certificates with a CA key kept in a file.
type Disk struct {
	cfg DiskConfig
}

// Keys of the disk upstream's configuration, named in errors.
const (
	diskCertKey   = "upstream_authority.disk.cert_file"
	diskKeyKey    = "upstream_authority.disk.key_file"
	diskBundleKey = "upstream_authority.disk.bundle_file"
)

// maxPEMFileBytes bounds every file the disk upstream reads.
const maxPEMFileBytes = 256 << 10

// NewDisk checks cfg and the files it names (by loading them once) and returns the disk upstream.
func NewDisk(cfg DiskConfig) (*Disk, error) {
	if cfg.CertFile == "" {
		return nil, fmt.Errorf("%s is required", diskCertKey)
	}
	if cfg.KeyFile == "" {
		return nil, fmt.Errorf("%s is required", diskKeyKey)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	d := &Disk{cfg: cfg}
	if _, err := d.load(cfg.Clock()); err != nil {
		return nil, err
	}
	return d, nil
}

// Name names the upstream in errors.
func (d *Disk) Name() string { return "upstream_authority disk (" + d.cfg.CertFile + ")" }

// diskCA is the upstream CA as loaded from the files.
type diskCA struct {
	cert   *x509.Certificate
	chain  []*x509.Certificate // above cert, below the roots
	roots  []*x509.Certificate
	signer crypto.Signer
}

// load reads and checks the files at time now.
func (d *Disk) load(now time.Time) (*diskCA, error) {
	certs, err := ca.LoadCertificates(d.cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", diskCertKey, err)
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s %s: %q is not a CA certificate (basic constraints cA is not true): use the certificate of a CA that may sign intermediates", diskCertKey, d.cfg.CertFile, cert.Subject.String())
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s %s: %q lacks key usage keyCertSign: use the certificate of a CA that may sign certificates", diskCertKey, d.cfg.CertFile, cert.Subject.String())
	}
	if cert.MaxPathLenZero {
		return nil, fmt.Errorf("%s %s: %q has path length 0: it may not sign the node's intermediate CA", diskCertKey, d.cfg.CertFile, cert.Subject.String())
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("%s %s: %q is valid from %s to %s, not now (%s)", diskCertKey, d.cfg.CertFile, cert.Subject.String(),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	signer, err := loadKey(d.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	if eq, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s %s does not match the certificate in %s %s", diskKeyKey, d.cfg.KeyFile, diskCertKey, d.cfg.CertFile)
	}
	out := &diskCA{cert: cert, chain: certs[1:], signer: signer}
	if d.cfg.BundleFile == "" {
		if !bytes.Equal(cert.RawIssuer, cert.RawSubject) || cert.CheckSignatureFrom(cert) != nil {
			return nil, fmt.Errorf("%s %s: %q is not self-signed: set %s to the file of its roots", diskCertKey, d.cfg.CertFile, cert.Subject.String(), diskBundleKey)
		}
		out.roots = []*x509.Certificate{cert}
		out.chain = nil
	} else if out.roots, err = ca.LoadCertificates(d.cfg.BundleFile); err != nil {
		return nil, fmt.Errorf("%s: %w", diskBundleKey, err)
	}
	if err := ca.VerifyChain(cert, out.chain, out.roots, now); err != nil {
		return nil, fmt.Errorf("%s %s does not chain to the roots (%s): %w", diskCertKey, d.cfg.CertFile, diskBundleKey, err)
	}
	return out, nil
}

// MintX509CA signs csr as the node's intermediate CA: pathlen 0, keyCertSign|cRLSign, the CSR's Subject
// and single URI SAN, valid from now-ca.Backdate (not before the upstream's NotBefore) for ttl, cut at
// the upstream certificate's NotAfter.
func (d *Disk) MintX509CA(ctx context.Context, csrDER []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	now := d.cfg.Clock().UTC().Truncate(time.Second)
	up, err := d.load(now)
	if err != nil {
		return nil, nil, err
	}
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	notBefore, notAfter := now.Add(-ca.Backdate), now.Add(ttl)
	if notBefore.Before(up.cert.NotBefore) {
		notBefore = up.cert.NotBefore
	}
	if notAfter.After(up.cert.NotAfter) {
		notAfter = up.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: csr.Subject, URIs: csr.URIs,
		NotBefore: notBefore, NotAfter: notAfter,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, up.cert, csr.PublicKey, up.signer)
	if err != nil {
		return nil, nil, fmt.Errorf("sign with %s %s: %w", diskKeyKey, d.cfg.KeyFile, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the signed certificate: %w", err)
	}
	chain = []*x509.Certificate{cert}
	if !up.selfSigned() {
		chain = append(chain, up.cert)
		chain = append(chain, up.chain...)
	}
	return chain, up.roots, nil
}

// readPrivate reads a file only its owner may access (fsutil.ReadPrivateFile), of at most max bytes;
// errors name the configuration key and the file, never the content.
func readPrivate(key, path string, max int64) ([]byte, error) {
	if info, err := os.Stat(path); err == nil && info.Size() > max {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", key, path, max)
	}
	data, err := fsutil.ReadPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if int64(len(data)) > max {
		clear(data)
		return nil, fmt.Errorf("%s %s: larger than %d bytes", key, path, max)
	}
	return data, nil
}

func (u *diskCA) selfSigned() bool { return len(u.roots) == 1 && u.roots[0] == u.cert }

// parseCSR checks the node's CSR: signed by its key, exactly one URI SAN.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR: signature: %w", err)
	}
	if len(csr.URIs) != 1 {
		return nil, fmt.Errorf("CSR: want exactly one URI SAN (the trust domain's SPIFFE ID), found %d", len(csr.URIs))
	}
	return csr, nil
}

// loadKey reads a private key file that only its owner may access. Errors name the file, never the key.
func loadKey(path string) (crypto.Signer, error) {
	data, err := readPrivate(diskKeyKey, path, maxPEMFileBytes)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s %s: no PEM block", diskKeyKey, path)
	}
	defer clear(block.Bytes)
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s %s: PEM block %q: want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", diskKeyKey, path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", diskKeyKey, path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New(diskKeyKey + " " + path + ": the key cannot sign")
	}
	return signer, nil
}
