package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"
)

// This file is the fast signing path for X.509-SVIDs. When the root's Signer is an in-process
// *ecdsa.PrivateKey on P-256 or P-384, the TBSCertificate (RFC 5280 §4.1) is written as DER
// directly from the template and signed with ecdsa.SignASN1, instead of going through
// x509.CreateCertificate. CreateCertificate re-encodes every constant part on each call through
// reflection-driven encoding/asn1 and, more importantly, verifies the signature it just made
// (an ECDSA verification costs about twice a signature). See DESIGN.md for numbers.
//
// The output is byte-for-byte the TBSCertificate CreateCertificate produces for the same template,
// public key and root; TestX509TBSMatchesCreateCertificate checks exactly that, so the set, order,
// criticality and encoding of every field and extension is pinned to crypto/x509's own.

// DER identifier octets used below (X.690 §8.1.2).
const (
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagOctetString     = 0x04
	tagPrintableString = 0x13
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30 // constructed
	tagSet             = 0x31 // constructed
	tagExplicit3       = 0xa3 // [3] EXPLICIT, constructed: TBSCertificate.extensions
	tagGeneralNameDNS  = 0x82 // [2] IMPLICIT IA5String: GeneralName dNSName (RFC 5280 §4.2.1.6)
	tagGeneralNameURI  = 0x86 // [6] IMPLICIT IA5String: GeneralName uniformResourceIdentifier
)

var (
	// tbsVersion3 is "version [0] EXPLICIT Version DEFAULT v1" with the value v3 (2).
	tbsVersion3 = []byte{0xa0, 0x03, tagInteger, 0x01, 0x02}

	// Encoded OBJECT IDENTIFIERs (type, length and value) of the per-call parts.
	derOIDSubjectKeyID   = []byte{0x06, 0x03, 0x55, 0x1d, 0x0e} // 2.5.29.14
	derOIDSubjectAltName = []byte{0x06, 0x03, 0x55, 0x1d, 0x11} // 2.5.29.17
	derOIDSerialNumber   = []byte{0x06, 0x03, 0x55, 0x04, 0x05} // 2.5.4.5, X.520 serialNumber

	oidSignatureECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSignatureECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidExtensionKeyUsage        = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtensionExtKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtensionBasicConstraint = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtensionAuthorityKeyID  = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtKeyUsageServerAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidExtKeyUsageClientAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// x509TBSSigner holds everything about X.509-SVID signing that is constant for one CA, already
// DER-encoded, plus a private copy of the root's ECDSA key. It is built once in New and never
// modified, so it is safe for concurrent use.
type x509TBSSigner struct {
	key  *ecdsa.PrivateKey // re-derived from the configured key in New; its public half is the root's
	hash crypto.Hash       // SHA-256 for P-256, SHA-384 for P-384 (what crypto/x509 picks)

	// sigAlg is the AlgorithmIdentifier ecdsa-with-SHA256 or -SHA384 with the parameters field
	// absent (RFC 5758 §3.2). It appears twice: in the TBSCertificate and after it.
	sigAlg []byte
	// issuer is the root's RawSubject, copied verbatim (RFC 5280 §4.1.2.4: the issuer field must
	// match the issuer's subject, and verbatim bytes make chain building match byte for byte).
	issuer []byte
	// subjectRDNs is the DER of the constant RelativeDistinguishedNames of every leaf Subject
	// (O=Signet), without the enclosing SEQUENCE header. The serialNumber RDN is appended per call.
	subjectRDNs []byte
	// leadingExts is keyUsage (critical, digitalSignature), extKeyUsage (serverAuth, clientAuth)
	// and basicConstraints (critical, cA=false), each a complete Extension, in this order.
	leadingExts []byte
	// akiExt is the authorityKeyIdentifier Extension holding the root's SubjectKeyId.
	akiExt []byte
}

// newX509TBSSigner returns the fast signer for root and signer, or nil if signer is not an
// in-process ECDSA P-256/P-384 key (the caller then uses x509.CreateCertificate). leafSubject is
// the constant part of every leaf Subject (newLeafProto). New has already checked that signer's
// public key equals root's; this also checks the private scalar, by deriving the public key from
// it, so the fast path can never sign with a key that does not belong to the root.
func newX509TBSSigner(root *x509.Certificate, signer crypto.Signer, leafSubject pkix.Name) (*x509TBSSigner, error) {
	priv, ok := signer.(*ecdsa.PrivateKey)
	if !ok || priv == nil {
		return nil, nil
	}
	var hash crypto.Hash
	var sigOID asn1.ObjectIdentifier
	switch priv.Curve {
	case elliptic.P256():
		hash, sigOID = crypto.SHA256, oidSignatureECDSAWithSHA256
	case elliptic.P384():
		hash, sigOID = crypto.SHA384, oidSignatureECDSAWithSHA384
	default:
		return nil, nil
	}

	// A private copy derived from the scalar alone: the public key is recomputed, so a key whose
	// D does not match its X, Y is caught here, and later changes to the caller's value cannot
	// affect signing.
	raw, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("invalid ECDSA private key: %w", err)
	}
	key, err := ecdsa.ParseRawPrivateKey(priv.Curve, raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid ECDSA private key: %w", err)
	}
	if !key.PublicKey.Equal(root.PublicKey) {
		return nil, errors.New("the ECDSA private key does not match the public key of X509.Certificate")
	}

	s := &x509TBSSigner{key: key, hash: hash, issuer: append([]byte(nil), root.RawSubject...)}
	// Constant parts are encoded once with encoding/asn1, using the same Go types crypto/x509 uses,
	// so they are exactly what CreateCertificate would write.
	if s.sigAlg, err = asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: sigOID}); err != nil {
		return nil, err
	}
	subject, err := asn1.Marshal(leafSubject.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	if s.subjectRDNs, _, ok = derElement(subject, tagSequence); !ok {
		return nil, errors.New("internal error: leaf subject is not a DER SEQUENCE")
	}

	// keyUsage: BIT STRING with only bit 0 (digitalSignature) set, i.e. 03 02 07 80.
	ku, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
	if err != nil {
		return nil, err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidExtKeyUsageServerAuth, oidExtKeyUsageClientAuth})
	if err != nil {
		return nil, err
	}
	// basicConstraints: cA DEFAULT FALSE and no pathLenConstraint, so the value is an empty
	// SEQUENCE.
	bc := []byte{tagSequence, 0x00}
	aki, err := asn1.Marshal(struct {
		KeyID []byte `asn1:"optional,tag:0"`
	}{root.SubjectKeyId})
	if err != nil {
		return nil, err
	}
	for _, e := range []pkix.Extension{
		{Id: oidExtensionKeyUsage, Critical: true, Value: ku},
		{Id: oidExtensionExtKeyUsage, Value: eku},
		{Id: oidExtensionBasicConstraint, Critical: true, Value: bc},
	} {
		der, err := asn1.Marshal(e)
		if err != nil {
			return nil, err
		}
		s.leadingExts = append(s.leadingExts, der...)
	}
	if s.akiExt, err = asn1.Marshal(pkix.Extension{Id: oidExtensionAuthorityKeyID, Value: aki}); err != nil {
		return nil, err
	}
	return s, nil
}

// signCertificate encodes the TBSCertificate for tmpl and pub, signs it and returns the DER
// Certificate (RFC 5280 §4.1.1):
//
//	Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
//
// The signature is not verified here: the key was checked against the root in New, and
// ecdsa.SignASN1 with an in-process key is not an external signer that could misbehave.
func (s *x509TBSSigner) signCertificate(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	tbs, err := s.encodeTBS(tmpl, pub)
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch s.hash {
	case crypto.SHA256:
		digest := sha256.Sum256(tbs)
		sig, err = ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	case crypto.SHA384:
		digest := sha512.Sum384(tbs)
		sig, err = ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	default:
		err = fmt.Errorf("internal error: unsupported hash %v", s.hash)
	}
	if err != nil {
		return nil, err
	}

	b := derBuilder{buf: make([]byte, 0, len(tbs)+len(s.sigAlg)+len(sig)+16)}
	cert := b.open(tagSequence)
	b.raw(tbs)
	b.raw(s.sigAlg)
	bits := b.open(tagBitString)
	b.buf = append(b.buf, 0) // no unused bits
	b.raw(sig)
	b.close(bits)
	b.close(cert)
	return b.buf, nil
}

// encodeTBS returns the DER TBSCertificate (RFC 5280 §4.1) for tmpl: the fields the template
// step fills in per call (serial, Subject serialNumber, validity, URI and DNS SANs, subject key ID)
// around the constants computed in newX509TBSSigner. Other template fields are ignored: they are
// the same for every X.509-SVID and already encoded. Extensions appear in crypto/x509's order:
// keyUsage, extKeyUsage, basicConstraints, subjectKeyIdentifier, authorityKeyIdentifier,
// subjectAltName. The SAN extension is not critical because the Subject is never empty
// (RFC 5280 §4.2.1.6, X509-SVID §3.1).
func (s *x509TBSSigner) encodeTBS(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() <= 0 {
		return nil, errors.New("serial number must be positive")
	}
	if len(tmpl.URIs) != 1 {
		return nil, fmt.Errorf("want exactly one URI SAN, got %d", len(tmpl.URIs))
	}
	if !isHex(tmpl.Subject.SerialNumber) {
		return nil, fmt.Errorf("subject serialNumber %q is not hexadecimal", tmpl.Subject.SerialNumber)
	}
	uri := tmpl.URIs[0].String()
	if !isIA5(uri) {
		return nil, fmt.Errorf("URI SAN %q is not ASCII", uri)
	}
	sanLen := len(uri) + 4
	for _, name := range tmpl.DNSNames {
		if !isIA5(name) {
			return nil, fmt.Errorf("DNS SAN %q is not ASCII", name)
		}
		sanLen += len(name) + 4
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	serial := tmpl.SerialNumber.Bytes() // minimal big-endian, non-empty since positive

	size := 64 + len(serial) + len(s.sigAlg) + len(s.issuer) + 2*17 + len(s.subjectRDNs) +
		len(tmpl.Subject.SerialNumber) + 16 + len(spki) + len(s.leadingExts) + len(tmpl.SubjectKeyId) +
		16 + len(s.akiExt) + sanLen + 24
	b := derBuilder{buf: make([]byte, 0, size)}

	tbs := b.open(tagSequence)
	b.raw(tbsVersion3)
	// serialNumber: a positive INTEGER, so a leading zero octet when the top bit is set.
	n := b.open(tagInteger)
	if serial[0]&0x80 != 0 {
		b.buf = append(b.buf, 0)
	}
	b.raw(serial)
	b.close(n)
	b.raw(s.sigAlg)
	b.raw(s.issuer)

	validity := b.open(tagSequence)
	if err := b.time(tmpl.NotBefore); err != nil {
		return nil, fmt.Errorf("notBefore: %w", err)
	}
	if err := b.time(tmpl.NotAfter); err != nil {
		return nil, fmt.Errorf("notAfter: %w", err)
	}
	b.close(validity)

	// subject: the constant RDNs, then SET { SEQUENCE { serialNumber, PrintableString } }, which is
	// where pkix.Name.ToRDNSequence puts serialNumber (after O, OU and CN).
	subject := b.open(tagSequence)
	b.raw(s.subjectRDNs)
	rdn := b.open(tagSet)
	atv := b.open(tagSequence)
	b.raw(derOIDSerialNumber)
	b.primitiveString(tagPrintableString, tmpl.Subject.SerialNumber)
	b.close(atv)
	b.close(rdn)
	b.close(subject)

	b.raw(spki)

	exts := b.open(tagExplicit3)
	list := b.open(tagSequence)
	b.raw(s.leadingExts)
	if len(tmpl.SubjectKeyId) > 0 {
		ext := b.open(tagSequence)
		b.raw(derOIDSubjectKeyID)
		value := b.open(tagOctetString)
		b.primitive(tagOctetString, tmpl.SubjectKeyId)
		b.close(value)
		b.close(ext)
	}
	b.raw(s.akiExt)
	// subjectAltName: GeneralNames with the DNS names first, then the URI, as crypto/x509 orders
	// them.
	ext := b.open(tagSequence)
	b.raw(derOIDSubjectAltName)
	value := b.open(tagOctetString)
	names := b.open(tagSequence)
	for _, name := range tmpl.DNSNames {
		b.primitiveString(tagGeneralNameDNS, name)
	}
	b.primitiveString(tagGeneralNameURI, uri)
	b.close(names)
	b.close(value)
	b.close(ext)
	b.close(list)
	b.close(exts)

	b.close(tbs)
	return b.buf, nil
}

// derBuilder appends DER to buf. open writes an identifier octet and a one-octet length
// placeholder and returns the content offset; close fills in the length once the content is
// written, moving the content to make room when the long form is needed (X.690 §8.1.3).
type derBuilder struct {
	buf []byte
}

func (b *derBuilder) open(tag byte) int {
	b.buf = append(b.buf, tag, 0)
	return len(b.buf)
}

func (b *derBuilder) close(start int) {
	n := len(b.buf) - start
	if n < 0x80 {
		b.buf[start-1] = byte(n)
		return
	}
	k := 0
	for v := n; v > 0; v >>= 8 {
		k++
	}
	b.buf = append(b.buf, make([]byte, k)...)
	copy(b.buf[start+k:], b.buf[start:start+n])
	b.buf[start-1] = 0x80 | byte(k)
	for i := k - 1; i >= 0; i-- {
		b.buf[start+i] = byte(n)
		n >>= 8
	}
}

func (b *derBuilder) raw(der []byte) { b.buf = append(b.buf, der...) }

// primitive appends a primitive element with the given identifier octet and contents.
func (b *derBuilder) primitive(tag byte, contents []byte) {
	start := b.open(tag)
	b.buf = append(b.buf, contents...)
	b.close(start)
}

// primitiveString is primitive for string contents.
func (b *derBuilder) primitiveString(tag byte, contents string) {
	start := b.open(tag)
	b.buf = append(b.buf, contents...)
	b.close(start)
}

// time appends t as an X.509 Time (RFC 5280 §4.1.2.5): UTCTime YYMMDDHHMMSSZ for the years 1950
// through 2049, GeneralizedTime YYYYMMDDHHMMSSZ otherwise, always in UTC, with whole seconds
// (fractions are dropped, as encoding/asn1 does).
func (b *derBuilder) time(t time.Time) error {
	t = t.UTC()
	year := t.Year()
	switch {
	case year >= 1950 && year < 2050:
		b.buf = append(b.buf, tagUTCTime, 13)
		b.buf = appendDigits(b.buf, year%100, 2)
	case year >= 0 && year <= 9999:
		b.buf = append(b.buf, tagGeneralizedTime, 15)
		b.buf = appendDigits(b.buf, year, 4)
	default:
		return fmt.Errorf("year %d cannot be encoded", year)
	}
	b.buf = appendDigits(b.buf, int(t.Month()), 2)
	b.buf = appendDigits(b.buf, t.Day(), 2)
	b.buf = appendDigits(b.buf, t.Hour(), 2)
	b.buf = appendDigits(b.buf, t.Minute(), 2)
	b.buf = appendDigits(b.buf, t.Second(), 2)
	b.buf = append(b.buf, 'Z')
	return nil
}

// appendDigits appends the non-negative v as exactly width (at most 4) decimal digits, keeping the
// low-order digits.
func appendDigits(dst []byte, v, width int) []byte {
	var d [4]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, d[:width]...)
}

// isIA5 reports whether s is ASCII, the IA5String repertoire of dNSName and URI SANs.
func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isHex reports whether s is a non-empty string of hexadecimal digits (a subset of PrintableString).
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F') {
			return false
		}
	}
	return true
}
