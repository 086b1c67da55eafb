package credential_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/credential"
)

// ---- certificate fixtures ----

type certOpts struct {
	serial    *big.Int
	uris      []string
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
	cn        string
}

type issued struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func randomSerial(tb testing.TB) *big.Int {
	tb.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	b[0] |= 0x10 // non-zero top nibble; the leading-zero case has its own test
	return new(big.Int).SetBytes(b)
}

// issue creates a certificate described by o, signed by parent (self-signed when parent is nil).
func issue(tb testing.TB, o certOpts, parent *issued) *issued {
	tb.Helper()
	key := newKey(tb)
	if o.serial == nil {
		o.serial = randomSerial(tb)
	}
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	}
	if o.notAfter.IsZero() {
		o.notAfter = o.notBefore.Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          o.serial,
		Subject:               pkix.Name{Organization: []string{"Signet test"}, CommonName: o.cn},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  o.isCA,
	}
	if o.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	for _, u := range o.uris {
		parsed, err := url.Parse(u)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &issued{cert: cert, der: der, key: key}
}

func pemCert(c *issued) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})
}

func pemKey(tb testing.TB, k *ecdsa.PrivateKey) (pemBytes, der []byte) {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), der
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// pki is one root, one intermediate and leaves of various kinds.
type pki struct {
	root, inter, leaf, expired, twoURIs *issued
}

const spiffeID = "spiffe://example.org/ns/prod/sa/web"

func newPKI(tb testing.TB) *pki {
	tb.Helper()
	root := issue(tb, certOpts{isCA: true, cn: "root", uris: []string{"spiffe://example.org"}}, nil)
	inter := issue(tb, certOpts{isCA: true, cn: "intermediate", uris: []string{"spiffe://example.org"}}, root)
	past := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	return &pki{
		root:    root,
		inter:   inter,
		leaf:    issue(tb, certOpts{uris: []string{spiffeID}}, inter),
		expired: issue(tb, certOpts{uris: []string{spiffeID}, notBefore: past, notAfter: past.Add(time.Hour)}, inter),
		twoURIs: issue(tb, certOpts{uris: []string{spiffeID, "spiffe://example.org/other"}}, inter),
	}
}

// ---- JWT fixtures ----

type jwtFixture struct {
	token            string // full, signed
	header, payload  string // base64url segments
	jti, sub, kid    string
	iat, exp         int64
	signingInputHash [32]byte
}

// signJWT builds header.payload.signature by hand, signing ES256 (RFC 7518 §3.4: R||S, 32 bytes
// each) over a real P-256 key, and checks the signature before returning.
func signJWT(tb testing.TB, key *ecdsa.PrivateKey, headerJSON, claimsJSON string) string {
	tb.Helper()
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString([]byte(headerJSON)) + "." + b64.EncodeToString([]byte(claimsJSON))
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	if !ecdsa.Verify(&key.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		tb.Fatal("fixture signature does not verify")
	}
	return input + "." + b64.EncodeToString(sig)
}

func segments(tok string) []string { return strings.Split(tok, ".") }

// ---- table ----

type testCase struct {
	name    string
	input   []byte
	wantErr error
	errHas  string // substring the error message must contain
	check   func(t *testing.T, c credential.Credential)
}

const (
	jwtKID = "kid-2024-01"
	jwtJTI = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	jwtIAT = int64(1700000000)
	jwtEXP = int64(1700000300)
)

func jwtHeader() string { return `{"alg":"ES256","kid":"` + jwtKID + `","typ":"JWT"}` }

func jwtClaims(aud string, withJTI bool) string {
	s := `{"aud":` + aud + fmt.Sprintf(`,"exp":%d,"iat":%d`, jwtEXP, jwtIAT)
	if withJTI {
		s += `,"jti":"` + jwtJTI + `"`
	}
	return s + `,"sub":"` + spiffeID + `"}`
}

func cases(tb testing.TB) []testCase {
	tb.Helper()
	p := newPKI(tb)
	jwtKey := newKey(tb)
	full := signJWT(tb, jwtKey, jwtHeader(), jwtClaims(`["reports","audit"]`, true))
	segs := segments(full)
	audString := signJWT(tb, jwtKey, jwtHeader(), jwtClaims(`"reports"`, true))
	noJTI := signJWT(tb, jwtKey, jwtHeader(), jwtClaims(`["reports"]`, false))
	b64 := base64.RawURLEncoding
	algNone := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + segs[1] + "."
	floatTimes := signJWT(tb, jwtKey, jwtHeader(),
		`{"aud":["x"],"exp":1700000300.5,"nbf":1699999999,"jti":"f","sub":"`+spiffeID+`","iss":"https://issuer.example"}`)
	padded := func(s string) string {
		for len(s)%4 != 0 {
			s += "="
		}
		return s
	}
	keyPEM, _ := pemKey(tb, p.leaf.key)

	leafOK := func(leaf *issued, chain int) func(t *testing.T, c credential.Credential) {
		return func(t *testing.T, c credential.Credential) {
			t.Helper()
			checkX509(t, c, leaf, p.inter, chain)
		}
	}
	jwtOK := func(aud []string, id string, sig bool) func(t *testing.T, c credential.Credential) {
		return func(t *testing.T, c credential.Credential) {
			t.Helper()
			checkJWT(t, c, aud, id, sig)
		}
	}

	// garbage bytes inside a well-formed CERTIFICATE PEM block
	garbagePEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("this is not DER at all, just text")})
	// certificate-looking DER that is truncated
	truncatedDER := p.leaf.der[:len(p.leaf.der)/2]

	return []testCase{
		{name: "pem_single", input: pemCert(p.leaf), check: leafOK(p.leaf, 1)},
		{name: "pem_chain_leaf_first", input: concat(pemCert(p.leaf), pemCert(p.inter)), check: leafOK(p.leaf, 2)},
		{name: "pem_chain_root_first", input: concat(pemCert(p.root), pemCert(p.inter), pemCert(p.leaf)), check: leafOK(p.leaf, 3)},
		{name: "pem_private_key_first", input: concat(keyPEM, pemCert(p.leaf)), check: leafOK(p.leaf, 1)},
		{name: "pem_with_text_around", input: concat([]byte("subject=...\nissuer=...\n"), pemCert(p.leaf), []byte("\ntrailing\n")), check: leafOK(p.leaf, 1)},
		{name: "pem_only_ca", input: pemCert(p.inter), check: func(t *testing.T, c credential.Credential) {
			if c.Kind != credential.KindX509 || c.ID != p.inter.cert.SerialNumber.Text(16) || c.Chain != 1 {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "der", input: p.leaf.der, check: leafOK(p.leaf, 1)},
		{name: "der_trailing_newline", input: concat(p.leaf.der, []byte("\n")), check: leafOK(p.leaf, 1)},
		{name: "der_chain_root_first", input: concat(p.root.der, p.inter.der, p.leaf.der), check: leafOK(p.leaf, 3)},
		{name: "base64_der", input: []byte(base64.StdEncoding.EncodeToString(p.leaf.der) + "\n"), check: leafOK(p.leaf, 1)},
		{name: "base64_der_wrapped", input: []byte(wrap(base64.StdEncoding.EncodeToString(p.leaf.der), 64)), check: leafOK(p.leaf, 1)},
		{name: "base64url_der_unpadded", input: []byte(base64.RawURLEncoding.EncodeToString(p.leaf.der)), check: leafOK(p.leaf, 1)},
		{name: "expired_certificate", input: pemCert(p.expired), check: func(t *testing.T, c credential.Credential) {
			checkX509(t, c, p.expired, p.inter, 1)
			if !c.NotAfter.Before(time.Now()) {
				t.Errorf("NotAfter %s is not in the past", c.NotAfter)
			}
		}},
		{name: "two_uri_sans", input: pemCert(p.twoURIs), check: func(t *testing.T, c credential.Credential) {
			if c.Kind != credential.KindX509 || c.ID != p.twoURIs.cert.SerialNumber.Text(16) {
				t.Errorf("Kind/ID = %s/%q, want x509 %q", c.Kind, c.ID, p.twoURIs.cert.SerialNumber.Text(16))
			}
			if c.SPIFFEID != "" || c.TrustDomain != "" {
				t.Errorf("SPIFFEID/TrustDomain = %q/%q, want empty", c.SPIFFEID, c.TrustDomain)
			}
		}},

		{name: "jwt_full", input: []byte(full), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_surrounding_whitespace", input: []byte("\n\t " + full + " \r\n"), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_signature_stripped_trailing_dot", input: []byte(segs[0] + "." + segs[1] + "."), check: jwtOK([]string{"reports", "audit"}, jwtJTI, false)},
		{name: "jwt_signature_stripped_no_dot", input: []byte(segs[0] + "." + segs[1]), check: jwtOK([]string{"reports", "audit"}, jwtJTI, false)},
		{name: "jwt_padded_segments", input: []byte(padded(segs[0]) + "." + padded(segs[1]) + "." + padded(segs[2])), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_wrapped_lines", input: []byte(wrap(full, 50)), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_bearer", input: []byte("Bearer " + full), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_bearer_lowercase", input: []byte("bearer\t" + full + "\n"), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_authorization_line", input: []byte("authorization: Bearer " + full + "\r\n"), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_authorization_line_among_headers", input: []byte("GET /v1/report HTTP/1.1\r\nHost: reports\r\nAuthorization: Bearer " + full + "\r\nAccept: */*\r\n"), check: jwtOK([]string{"reports", "audit"}, jwtJTI, true)},
		{name: "jwt_aud_string", input: []byte(audString), check: jwtOK([]string{"reports"}, jwtJTI, true)},
		{name: "jwt_without_jti", input: []byte(noJTI), check: jwtOK([]string{"reports"}, "", true)},
		{name: "jwt_alg_none", input: []byte(algNone), check: func(t *testing.T, c credential.Credential) {
			if c.Kind != credential.KindJWT || c.ID != jwtJTI || c.SPIFFEID != spiffeID || c.SignaturePresent || c.KeyID != "" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "jwt_float_exp_nbf_iss", input: []byte(floatTimes), check: func(t *testing.T, c credential.Credential) {
			if want := time.Unix(1700000300, 5e8).UTC(); !c.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", c.NotAfter, want)
			}
			if want := time.Unix(1699999999, 0).UTC(); !c.NotBefore.Equal(want) || !c.IssuedAt.IsZero() {
				t.Errorf("NotBefore/IssuedAt = %s/%s, want %s (nbf) and zero", c.NotBefore, c.IssuedAt, want)
			}
			if c.Issuer != "https://issuer.example" || c.ID != "f" {
				t.Errorf("Issuer/ID = %q/%q", c.Issuer, c.ID)
			}
		}},

		{name: "garbage", input: []byte("hello, what is this? it is not a credential"), wantErr: credential.ErrUnrecognized},
		{name: "garbage_binary", input: []byte{0x00, 0xff, 0x13, 0x37, 0x30, 0x82}, wantErr: credential.ErrUnrecognized},
		{name: "garbage_dotted", input: []byte("www.example.org"), wantErr: credential.ErrUnrecognized},
		{name: "bearer_not_jwt", input: []byte("Bearer s3cr3t-opaque-token-value"), wantErr: credential.ErrUnrecognized},
		{name: "pem_private_key_only", input: keyPEM, wantErr: credential.ErrUnrecognized, errHas: "no CERTIFICATE"},
		{name: "empty", input: nil, wantErr: credential.ErrEmpty},
		{name: "whitespace", input: []byte(" \n\t\r\n "), wantErr: credential.ErrEmpty},
		{name: "max_input_whitespace", input: bytes.Repeat([]byte(" "), credential.MaxInput), wantErr: credential.ErrEmpty},
		{name: "too_large", input: bytes.Repeat([]byte("A"), credential.MaxInput+1), wantErr: credential.ErrTooLarge},
		{name: "jwt_payload_bad_base64", input: []byte(segs[0] + ".!!not*base64!!." + segs[2]), wantErr: credential.ErrMalformed, errHas: "payload"},
		{name: "jwt_payload_malformed_base64", input: []byte(segs[0] + "." + segs[1][:len(segs[1])-1] + "%." + segs[2]), wantErr: credential.ErrMalformed, errHas: "payload"},
		{name: "jwt_payload_base64_wrong_length", input: []byte(segs[0] + "." + segs[1] + "A." + segs[2]), wantErr: credential.ErrMalformed, errHas: "payload"},
		{name: "jwt_payload_not_json", input: []byte(segs[0] + "." + b64.EncodeToString([]byte("not json")) + "." + segs[2]), wantErr: credential.ErrMalformed, errHas: "payload"},
		{name: "jwt_payload_empty", input: []byte(segs[0] + ".." + segs[2]), wantErr: credential.ErrMalformed, errHas: "payload"},
		{name: "jwt_header_bad_json", input: []byte(b64.EncodeToString([]byte(`{"alg":`)) + "." + segs[1] + "." + segs[2]), wantErr: credential.ErrMalformed, errHas: "header"},
		{name: "jwe", input: []byte(b64.EncodeToString([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM"}`)) + ".a.b.c.d"), wantErr: credential.ErrMalformed, errHas: "JWE"},
		{name: "pem_certificate_garbage", input: garbagePEM, wantErr: credential.ErrMalformed, errHas: "CERTIFICATE block 1"},
		{name: "pem_certificate_bad_base64", input: []byte("-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n"), wantErr: credential.ErrMalformed, errHas: "could not be decoded"},
		{name: "pem_chain_second_garbage", input: concat(pemCert(p.leaf), garbagePEM), wantErr: credential.ErrMalformed, errHas: "CERTIFICATE block 2"},
		{name: "der_truncated", input: truncatedDER, wantErr: credential.ErrMalformed, errHas: "DER"},
		{name: "base64_der_truncated", input: []byte(base64.StdEncoding.EncodeToString(truncatedDER)), wantErr: credential.ErrMalformed, errHas: "base64 DER"},
	}
}

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteByte('\n')
		s = s[n:]
	}
	b.WriteString(s)
	b.WriteByte('\n')
	return b.String()
}

func checkX509(t *testing.T, c credential.Credential, leaf, issuer *issued, chain int) {
	t.Helper()
	sum := sha256.Sum256(leaf.cert.RawSubjectPublicKeyInfo)
	want := credential.Credential{
		Kind:            credential.KindX509,
		ID:              leaf.cert.SerialNumber.Text(16),
		SPIFFEID:        spiffeID,
		TrustDomain:     "example.org",
		Issuer:          issuer.cert.Subject.String(),
		AuthorityKeyID:  issuer.cert.SubjectKeyId,
		NotBefore:       leaf.cert.NotBefore,
		NotAfter:        leaf.cert.NotAfter,
		PublicKeySHA256: hex.EncodeToString(sum[:]),
		Chain:           chain,
	}
	if c.Leaf == nil || !c.Leaf.Equal(leaf.cert) {
		t.Errorf("Leaf is not the leaf certificate (serial %s)", leaf.cert.SerialNumber.Text(16))
	}
	got := c
	got.Leaf = nil
	if !equalCredential(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if len(c.AuthorityKeyID) == 0 {
		t.Error("AuthorityKeyID is empty")
	}
}

func checkJWT(t *testing.T, c credential.Credential, aud []string, id string, sig bool) {
	t.Helper()
	want := credential.Credential{
		Kind:             credential.KindJWT,
		ID:               id,
		SPIFFEID:         spiffeID,
		TrustDomain:      "example.org",
		KeyID:            jwtKID,
		Audience:         aud,
		NotBefore:        time.Unix(jwtIAT, 0).UTC(),
		NotAfter:         time.Unix(jwtEXP, 0).UTC(),
		IssuedAt:         time.Unix(jwtIAT, 0).UTC(),
		SignaturePresent: sig,
	}
	if !equalCredential(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func equalCredential(a, b credential.Credential) bool {
	return a.Kind == b.Kind && a.ID == b.ID && a.SPIFFEID == b.SPIFFEID && a.TrustDomain == b.TrustDomain &&
		a.Issuer == b.Issuer && bytes.Equal(a.AuthorityKeyID, b.AuthorityKeyID) && a.KeyID == b.KeyID &&
		slices.Equal(a.Audience, b.Audience) && a.NotBefore.Equal(b.NotBefore) && a.NotAfter.Equal(b.NotAfter) &&
		a.IssuedAt.Equal(b.IssuedAt) && a.PublicKeySHA256 == b.PublicKeySHA256 &&
		a.SignaturePresent == b.SignaturePresent && a.Chain == b.Chain && a.Leaf == b.Leaf
}

func TestParse(t *testing.T) {
	for _, tc := range cases(t) {
		t.Run(tc.name, func(t *testing.T) {
			c, err := credential.Parse(tc.input)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Parse error = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Errorf("error %q does not mention %q", err, tc.errHas)
				}
				if c.Kind != "" {
					t.Errorf("credential %+v returned with an error", c)
				}
			} else if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err != nil {
				t.Logf("error: %v", err)
				checkNoEcho(t, tc.input, err.Error())
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestPrivateKeyNeverEchoed feeds PEM inputs holding a private key next to good, bad and no
// certificates and checks that no form of the key shows up in the output or in errors.
func TestPrivateKeyNeverEchoed(t *testing.T) {
	p := newPKI(t)
	keyPEM, keyDER := pemKey(t, p.leaf.key)
	keyBody := strings.Join(strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[1:], "") // base64 lines
	keyBody = strings.TrimSuffix(keyBody, "-----END PRIVATE KEY-----")
	ecDER, err := x509.MarshalECPrivateKey(p.leaf.key)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	garbage := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x82, 0x01, 0x00, 0x30, 0x01}})
	secrets := [][]byte{keyDER, ecDER, []byte(keyBody), p.leaf.key.D.Bytes(), []byte(hex.EncodeToString(p.leaf.key.D.Bytes()))}

	inputs := map[string][]byte{
		"key_then_cert":         concat(keyPEM, pemCert(p.leaf)),
		"cert_then_key":         concat(pemCert(p.leaf), ecPEM),
		"key_only":              keyPEM,
		"ec_key_only":           ecPEM,
		"key_then_garbage_cert": concat(keyPEM, garbage),
		"key_der":               keyDER,
		"key_base64_der":        []byte(base64.StdEncoding.EncodeToString(keyDER)),
		"bearer_key_pem":        concat([]byte("Bearer "), keyPEM),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			c, err := credential.Parse(in)
			var out []string
			if err != nil {
				out = append(out, err.Error())
			} else {
				out = append(out, fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c))
				if c.Leaf != nil && bytes.Contains(c.Leaf.Raw, keyDER) {
					t.Error("Leaf.Raw contains the private key")
				}
			}
			for _, o := range out {
				for _, s := range secrets {
					if bytes.Contains([]byte(o), s) {
						t.Fatalf("output contains private key material: %q", o)
					}
				}
				checkNoEcho(t, in, o)
			}
		})
	}
}

// TestSerialLeadingZero: a serial whose first nibble is zero is formatted like big.Int.Text(16),
// i.e. without the leading zero, as the ledger records it.
func TestSerialLeadingZero(t *testing.T) {
	for _, serial := range []*big.Int{
		new(big.Int).SetBytes([]byte{0x0a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78}),
		new(big.Int).SetBytes([]byte{0x00, 0x0f, 0xff, 0x01}),
		big.NewInt(1),
	} {
		leaf := issue(t, certOpts{serial: serial, uris: []string{spiffeID}}, nil)
		c, err := credential.Parse(pemCert(leaf))
		if err != nil {
			t.Fatal(err)
		}
		if want := serial.Text(16); c.ID != want {
			t.Errorf("ID = %q, want %q", c.ID, want)
		}
		if strings.HasPrefix(c.ID, "0") || c.ID != strings.ToLower(c.ID) {
			t.Errorf("ID %q has a leading zero or upper case", c.ID)
		}
	}
	// The example the ledger cares about: 0x0abc... is "abc...", not "0abc...".
	c, _ := credential.Parse(pemCert(issue(t, certOpts{serial: big.NewInt(0x0abc), uris: []string{spiffeID}}, nil)))
	if c.ID != "abc" {
		t.Errorf("ID = %q, want %q", c.ID, "abc")
	}
}

// checkNoEcho fails if msg contains more than maxEcho consecutive bytes of input.
func checkNoEcho(tb testing.TB, input []byte, msg string) {
	tb.Helper()
	if w := echoed(input, msg); w != "" {
		tb.Fatalf("message %q contains %d+ bytes of the input: %q", msg, maxEcho+1, w)
	}
}

const maxEcho = 16

// echoed returns a window of maxEcho+1 input bytes found in msg, or "".
func echoed(input []byte, msg string) string {
	if len(msg) <= maxEcho {
		return ""
	}
	for i := 0; i+maxEcho < len(input); i++ {
		w := input[i : i+maxEcho+1]
		if strings.Contains(msg, string(w)) {
			return string(w)
		}
	}
	return ""
}
