// Package awsiidtest is test support for the aws_iid attestor: a signing certificate standing in for
// AWS's (a locally generated RSA-2048 key, configured as trusted in tests), instance identity documents
// in the metadata service's JSON shape, and a local instance metadata service with IMDSv2 token
// semantics. Only tests import it.
package awsiidtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/awsiid/payload"
	"github.com/smallstep/pkcs7"
)

// Signer signs documents as AWS does for /rsa2048: PKCS#7 signed data with the document inside,
// SHA-256 and an RSA-2048 key (unlike AWS, it includes its certificate, which the attestor must ignore).
type Signer struct {
	Cert *x509.Certificate
	key  *rsa.PrivateKey
}

// NewSigner generates a self-signed RSA-2048 signing certificate named like AWS's.
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	name := pkix.Name{Country: []string{"US"}, Province: []string{"Washington State"}, Locality: []string{"Seattle"},
		Organization: []string{"Amazon Web Services LLC"}}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: name, Issuer: name,
		NotBefore: time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2195, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	return selfSigned(t, tmpl, key)
}

// selfSigned is a signer whose certificate, made from tmpl, key signs itself.
func selfSigned(t testing.TB, tmpl *x509.Certificate, key *rsa.PrivateKey) *Signer {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{Cert: cert, key: key}
}

// CertPEM is the signing certificate in PEM.
func (s *Signer) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Cert.Raw})
}

// Sign returns the /rsa2048 form of doc: base64 of the PKCS#7, wrapped at 64 columns as the metadata
// service serves it.
func (s *Signer) Sign(t testing.TB, doc []byte) string {
	t.Helper()
	return s.sign(t, doc, nil)
}

// SignOther returns a signature made over signed whose PKCS#7 carries content instead: the signed
// attributes' digest covers other bytes than those inside.
func (s *Signer) SignOther(t testing.TB, signed, content []byte) string {
	t.Helper()
	return s.sign(t, signed, content)
}

// SignDetached returns a signature of doc that does not carry doc.
func (s *Signer) SignDetached(t testing.TB, doc []byte) string {
	t.Helper()
	return s.signWith(t, doc, nil, pkcs7.OIDDigestAlgorithmSHA256, true)
}

// SignSHA1 returns a signature of doc made with SHA-1.
func (s *Signer) SignSHA1(t testing.TB, doc []byte) string {
	t.Helper()
	return s.signWith(t, doc, nil, pkcs7.OIDDigestAlgorithmSHA1, false)
}

// Impostor is a signer with a new key whose certificate copies s's subject, issuer and serial: a
// PKCS#7 it signs names s's certificate as its signer.
func Impostor(t testing.TB, s *Signer) *Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *s.Cert
	tmpl.PublicKey = &key.PublicKey
	return selfSigned(t, &tmpl, key)
}

func (s *Signer) sign(t testing.TB, doc, replace []byte) string {
	return s.signWith(t, doc, replace, pkcs7.OIDDigestAlgorithmSHA256, false)
}

func (s *Signer) signWith(t testing.TB, doc, replace []byte, digest asn1.ObjectIdentifier, detach bool) string {
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(digest)
	if err := sd.AddSigner(s.Cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	if replace != nil {
		octets, err := asn1.Marshal(replace)
		if err != nil {
			t.Fatal(err)
		}
		sd.GetSignedData().ContentInfo.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: octets, IsCompound: true}
	}
	if detach {
		sd.Detach()
	}
	// Unlike AWS's, the PKCS#7 carries the signer's certificate: the attestor must ignore it.
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return wrap(base64.StdEncoding.EncodeToString(der))
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s)
	return b.String()
}

// Doc is an instance identity document in the metadata service's JSON shape.
type Doc struct {
	AccountID          string    `json:"accountId"`
	Architecture       string    `json:"architecture"`
	AvailabilityZone   string    `json:"availabilityZone"`
	BillingProducts    []string  `json:"billingProducts"`
	DevpayProductCodes []string  `json:"devpayProductCodes"`
	MarketplaceCodes   []string  `json:"marketplaceProductCodes"`
	ImageID            string    `json:"imageId"`
	InstanceID         string    `json:"instanceId"`
	InstanceType       string    `json:"instanceType"`
	KernelID           *string   `json:"kernelId"`
	PendingTime        time.Time `json:"pendingTime"`
	PrivateIP          string    `json:"privateIp"`
	RamdiskID          *string   `json:"ramdiskId"`
	Region             string    `json:"region"`
	Version            string    `json:"version"`
}

// NewDoc is a document of an instance in us-east-1 that started at pending.
func NewDoc(account, instanceID string, pending time.Time) Doc {
	return Doc{AccountID: account, Architecture: "x86_64", AvailabilityZone: "us-east-1a", ImageID: "ami-0abcdef1234567890",
		InstanceID: instanceID, InstanceType: "m5.large", PendingTime: pending.UTC().Truncate(time.Second),
		PrivateIP: "10.0.0.12", Region: "us-east-1", Version: "2017-09-30"}
}

// JSON is the document as the metadata service serves it (pretty-printed).
func (d Doc) JSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// IMDS is a local instance metadata service: PUT /latest/api/token issues session tokens; the identity
// paths answer 401 without a valid token unless V1 is set; with NoV2 the token path answers 404 (a
// service before IMDSv2).
type IMDS struct {
	*httptest.Server
	mu        sync.Mutex
	document  []byte
	signature string
	tokens    map[string]bool
	v1, noV2  bool
	reject    bool
	requests  int
}

// IMDSOption configures a local IMDS.
type IMDSOption func(*IMDS)

// V1 lets the identity paths answer without a token.
func V1() IMDSOption { return func(m *IMDS) { m.v1 = true } }

// NoV2 makes the token path answer 404, and the identity paths answer without a token.
func NoV2() IMDSOption { return func(m *IMDS) { m.noV2, m.v1 = true, true } }

// RejectTokens makes the service issue tokens that it then refuses, as if each expired at once.
func RejectTokens() IMDSOption { return func(m *IMDS) { m.reject = true } }

// NewIMDS starts a local IMDS serving document and its /rsa2048 signature; it stops with the test.
func NewIMDS(t testing.TB, document []byte, signature string, opts ...IMDSOption) *IMDS {
	m := &IMDS{document: document, signature: signature, tokens: map[string]bool{}}
	for _, o := range opts {
		o(m)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", m.token)
	mux.HandleFunc("GET /latest/dynamic/instance-identity/document", m.serve(func() []byte { return m.document }))
	mux.HandleFunc("GET /latest/dynamic/instance-identity/rsa2048", m.serve(func() []byte { return []byte(m.signature) }))
	m.Server = httptest.NewServer(mux)
	t.Cleanup(m.Close)
	return m
}

// ExpireTokens makes every token issued so far invalid.
func (m *IMDS) ExpireTokens() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.tokens)
}

// Requests counts the requests answered.
func (m *IMDS) Requests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests
}

func (m *IMDS) token(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	if m.noV2 {
		http.NotFound(w, r)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	if err != nil || ttl < 1 || ttl > 21600 {
		http.Error(w, "bad X-aws-ec2-metadata-token-ttl-seconds", http.StatusBadRequest)
		return
	}
	token := rand.Text()
	m.tokens[token] = !m.reject
	_, _ = w.Write([]byte(token))
}

func (m *IMDS) serve(body func() []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.requests++
		token := r.Header.Get("X-aws-ec2-metadata-token")
		if !m.tokens[token] && !(token == "" && m.v1) {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(body())
	}
}

// Read reads the payload from the service as an agent does (the real client, IMDSv2).
func (m *IMDS) Read(t testing.TB) []byte {
	t.Helper()
	c, err := payload.New(payload.Config{Endpoint: m.URL})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
