package credential

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// PEM block types read as certificates; every other block is ignored.
var certBlockTypes = []string{"CERTIFICATE", "X509 CERTIFICATE"}

// parsePEM reads every CERTIFICATE block of text. Blocks of other types (keys, CSRs, ...) are
// skipped without looking at them; their contents never reach an error message.
func parsePEM(text []byte) (Credential, error) {
	var certs []*x509.Certificate
	armoured := 0 // CERTIFICATE BEGIN lines seen, to notice blocks pem.Decode silently skipped
	for _, t := range certBlockTypes {
		armoured += bytes.Count(text, []byte("-----BEGIN "+t+"-----"))
	}
	others := 0
	for rest := text; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !isCertBlock(block.Type) {
			others++
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return Credential{}, fmt.Errorf("%w: PEM CERTIFICATE block %d: not a certificate (%s)", ErrMalformed, len(certs)+1, safeReason(err))
		}
		certs = append(certs, cert)
	}
	switch {
	case len(certs) < armoured:
		return Credential{}, fmt.Errorf("%w: PEM: %d of %d CERTIFICATE blocks could not be decoded (bad base64, headers or END line)",
			ErrMalformed, armoured-len(certs), armoured)
	case len(certs) > 0:
		return fromCertificates(certs), nil
	case others > 0:
		return Credential{}, fmt.Errorf("%w (PEM input holds no CERTIFICATE block; %d other block(s) ignored)", ErrUnrecognized, others)
	default:
		return Credential{}, fmt.Errorf("%w: PEM: found a BEGIN line but no block could be decoded", ErrMalformed)
	}
}

func isCertBlock(typ string) bool {
	for _, t := range certBlockTypes {
		if typ == t {
			return true
		}
	}
	return false
}

// parseDER reads one or more concatenated DER certificates; trailing whitespace is ignored. what
// names the encoding in error messages.
func parseDER(der []byte, what string) (Credential, error) {
	var certs []*x509.Certificate
	for rest := der; len(bytes.TrimSpace(rest)) > 0; {
		var elem asn1.RawValue
		r, err := asn1.Unmarshal(rest, &elem)
		if err != nil || elem.Class != asn1.ClassUniversal || elem.Tag != asn1.TagSequence || !elem.IsCompound {
			if len(certs) == 0 {
				return Credential{}, fmt.Errorf("%w: %s certificate: truncated or bad length", ErrMalformed, what)
			}
			return Credential{}, fmt.Errorf("%w: %s: trailing data after certificate %d", ErrMalformed, what, len(certs))
		}
		cert, err := x509.ParseCertificate(elem.FullBytes)
		if err != nil {
			return Credential{}, fmt.Errorf("%w: %s certificate %d: not a certificate (%s)", ErrMalformed, what, len(certs)+1, safeReason(err))
		}
		certs = append(certs, cert)
		rest = r
	}
	return fromCertificates(certs), nil
}

// looksLikeCertDER reports whether b starts like a DER certificate: a SEQUENCE with a long-form
// length (every certificate is over 127 bytes, and long-form lengths are not ASCII, so text never
// matches) whose first element is itself a SEQUENCE (the TBSCertificate). Private keys in PKCS#1,
// PKCS#8 or SEC 1 form start with an INTEGER instead and are not taken for certificates.
func looksLikeCertDER(b []byte) bool {
	if len(b) < 2 || b[0] != 0x30 || b[1] < 0x81 || b[1] > 0x84 {
		return false
	}
	hdr := 2 + int(b[1]&0x7f)
	return len(b) > hdr && b[hdr] == 0x30
}

// decodeBase64 decodes text as standard or URL-safe base64, with or without padding, ignoring
// whitespace (line wrapping).
func decodeBase64(text []byte) ([]byte, bool) {
	s := strings.TrimRight(removeSpace(string(text)), "=")
	if s == "" {
		return nil, false
	}
	s = strings.NewReplacer("-", "+", "_", "/").Replace(s)
	der, err := base64.RawStdEncoding.DecodeString(s)
	return der, err == nil
}

// fromCertificates describes the leaf of certs: the first certificate that is not a CA, or the
// first one if all are CAs.
func fromCertificates(certs []*x509.Certificate) Credential {
	leaf := certs[0]
	for _, c := range certs {
		if !c.IsCA {
			leaf = c
			break
		}
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	c := Credential{
		Kind:            KindX509,
		Issuer:          leaf.Issuer.String(),
		NotBefore:       leaf.NotBefore,
		NotAfter:        leaf.NotAfter,
		PublicKeySHA256: hex.EncodeToString(sum[:]),
		Chain:           len(certs),
		Leaf:            leaf,
	}
	if leaf.SerialNumber != nil {
		c.ID = leaf.SerialNumber.Text(16)
	}
	if len(leaf.AuthorityKeyId) > 0 {
		c.AuthorityKeyID = bytes.Clone(leaf.AuthorityKeyId)
	}
	if len(leaf.URIs) == 1 && strings.EqualFold(leaf.URIs[0].Scheme, "spiffe") {
		c.SPIFFEID = leaf.URIs[0].String()
		c.TrustDomain = trustDomainOf(c.SPIFFEID)
	}
	return c
}

// trustDomainOf returns the trust domain name of id, or "" if id is not a valid SPIFFE ID.
func trustDomainOf(id string) string {
	parsed, err := spiffeid.FromString(id)
	if err != nil {
		return ""
	}
	return parsed.TrustDomain().Name()
}
