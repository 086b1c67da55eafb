package awsiid

import (
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
	"path"
	"slices"
	"strings"
)

// The RSA-2048 certificates AWS publishes for verifying the /rsa2048 signature of instance identity
// documents, one file per commercial region, copied from "Use the RSA-2048 signature to verify the
// instance identity document" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/verify-rsa2048.html,
// the per-region list now at https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/regions-certs.html).
// China and GovCloud regions, and regions opened after that list was taken (see docs/aws.md), are
// configured as extra certificates.
//
//go:embed certs/*.pem
var embedded embed.FS

// EmbeddedRegions lists the regions whose certificate is built in, sorted.
func EmbeddedRegions() []string {
	entries, err := embedded.ReadDir("certs")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	regions := make([]string, 0, len(entries))
	for _, e := range entries {
		regions = append(regions, strings.TrimSuffix(e.Name(), ".pem"))
	}
	slices.Sort(regions)
	return regions
}

// EmbeddedCertificates returns the built-in certificates by region.
func EmbeddedCertificates() (map[string][]*x509.Certificate, error) {
	out := map[string][]*x509.Certificate{}
	for _, region := range EmbeddedRegions() {
		b, err := embedded.ReadFile(path.Join("certs", region+".pem"))
		if err != nil {
			return nil, err
		}
		certs, err := ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("awsiid: embedded certificate of %s: %w", region, err)
		}
		out[region] = certs
	}
	return out, nil
}

// ParseCertificates parses PEM certificates (text outside the blocks is ignored); at least one is
// required, and every block must be a certificate.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q: want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return out, nil
}
