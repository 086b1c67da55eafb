package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/ca"
)

// StepCA asks a step-ca authority, through a JWK provisioner, to sign node CA certificates. It speaks
// step-ca's HTTP API (/root, /provisioners, /1.0/sign, /roots) the way its `ca` client package does:
// that package cannot be linked into Signet (github.com/smallstep/certificates v0.30.2 needs the older
// go.step.sm/crypto and go-jose APIs; see docs/performance.md).
type StepCA struct {
	cfg StepCAConfig
}

// Bounds of what the authority may send.
const (
	maxStepResponseBytes = 1 << 20
	maxProvisionerPages  = 10
	tokenLifetime        = 5 * time.Minute
)

// NewStepCA checks cfg and returns the step-ca upstream. It does not contact the authority: a node whose
// keys are all signed starts while the authority is down; the first key slot that needs it asks.
func NewStepCA(cfg StepCAConfig) (*StepCA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.RootFingerprint = strings.ToLower(cfg.RootFingerprint)
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultStepCATimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &StepCA{cfg: cfg}, nil
}

// Name names the upstream in errors.
func (s *StepCA) Name() string {
	return "upstream_authority step-ca (" + s.cfg.URL + ", provisioner " + s.cfg.Provisioner + ")"
}

// MintX509CA asks the authority to sign csr for ttl with a one-time token of the provisioner. The token
// names the CSR's Common Name as subject and its URI SAN (spiffe://<td>) as the only SAN; the
// provisioner's X.509 template makes the certificate a CA (docs/configuration.md). The chain is what the
// authority returns (the new certificate, then its intermediates), the roots those it serves.
func (s *StepCA) MintX509CA(ctx context.Context, csrDER []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error) {
	csr, err := parseCSR(csrDER)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	key, err := s.provisionerKey(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	tok, err := s.token(key, csr.Subject.CommonName, csr.URIs[0].String())
	if err != nil {
		return nil, nil, err
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	body, err := json.Marshal(map[string]string{"csr": string(csrPEM), "ott": tok,
		"notAfter": s.cfg.Clock().Add(ttl).UTC().Format(time.RFC3339)})
	if err != nil {
		return nil, nil, fmt.Errorf("sign request: %w", err)
	}
	var signed struct {
		Crt   string   `json:"crt"`
		CA    string   `json:"ca"`
		Chain []string `json:"certChain"`
	}
	if err := c.do(ctx, http.MethodPost, "/1.0/sign", body, &signed); err != nil {
		return nil, nil, fmt.Errorf("the authority refused to sign the node CA (%s): %w", stepProvisionerKey, err)
	}
	pems := signed.Chain
	if len(pems) == 0 {
		pems = []string{signed.Crt, signed.CA}
	}
	if chain, err = parsePEMs(pems); err != nil {
		return nil, nil, fmt.Errorf("the signed certificate: %w", err)
	}
	if c := chain[0]; !c.BasicConstraintsValid || !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("%s %q signed a certificate that is not a CA certificate (cA %v, keyCertSign %v): its X.509 template must make CA certificates (docs/configuration.md)",
			stepProvisionerKey, s.cfg.Provisioner, c.IsCA, c.KeyUsage&x509.KeyUsageCertSign != 0)
	}
	var rootsResp struct {
		Crts []string `json:"crts"`
	}
	if err := c.do(ctx, http.MethodGet, "/roots", nil, &rootsResp); err != nil {
		return nil, nil, fmt.Errorf("the authority's roots: %w", err)
	}
	if roots, err = parsePEMs(rootsResp.Crts); err != nil {
		return nil, nil, fmt.Errorf("the authority's roots: %w", err)
	}
	// A root the authority lists in the chain too is no intermediate.
	kept := chain[:1]
	for _, cert := range chain[1:] {
		isRoot := false
		for _, r := range roots {
			isRoot = isRoot || r.Equal(cert)
		}
		if !isRoot {
			kept = append(kept, cert)
		}
	}
	return kept, roots, nil
}

// stepClient is an HTTPS client of the authority that trusts its root only.
type stepClient struct {
	base *url.URL
	http *http.Client
}

// client trusts root_file, or the root whose SHA-256 is root_fingerprint: fetched from /root/<sum> over
// an unverified connection and kept only if its hash is that sum (as step's own bootstrap does).
func (s *StepCA) client(ctx context.Context) (*stepClient, error) {
	base, err := url.Parse(s.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stepURLKey, err)
	}
	pool := x509.NewCertPool()
	if s.cfg.RootFile != "" {
		certs, err := ca.LoadCertificates(s.cfg.RootFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stepRootFileKey, err)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	} else {
		boot := &stepClient{base: base, http: &http.Client{Timeout: s.cfg.Timeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}}} //nolint:gosec // the root fetched is checked by its hash
		var resp struct {
			CA string `json:"ca"`
		}
		if err := boot.do(ctx, http.MethodGet, "/root/"+s.cfg.RootFingerprint, nil, &resp); err != nil {
			return nil, fmt.Errorf("fetch the root %s (%s): %w", s.cfg.RootFingerprint, stepFingerprintKey, err)
		}
		certs, err := parsePEMs([]string{resp.CA})
		if err != nil {
			return nil, fmt.Errorf("the root (%s): %w", stepFingerprintKey, err)
		}
		if sum := sha256.Sum256(certs[0].Raw); hex.EncodeToString(sum[:]) != s.cfg.RootFingerprint {
			return nil, fmt.Errorf("%s: the authority's root has SHA-256 %s, not %s", stepFingerprintKey, hex.EncodeToString(sum[:]), s.cfg.RootFingerprint)
		}
		pool.AddCert(certs[0])
	}
	return &stepClient{base: base, http: &http.Client{Timeout: s.cfg.Timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}}, nil
}

// do sends a request for path (with its query) and decodes the JSON answer into out; an error status carries the authority's
// message.
func (c *stepClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	ref, err := url.Parse(path)
	if err != nil {
		return err
	}
	u := c.base.ResolveReference(ref)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxStepResponseBytes+1))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if len(data) > maxStepResponseBytes {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxStepResponseBytes)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &e) // the status alone says enough if the body is not JSON
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Message)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// provisionerKey finds the JWK provisioner by name and decrypts its key with the password file.
func (s *StepCA) provisionerKey(ctx context.Context, c *stepClient) (*jose.JSONWebKey, error) {
	password, err := readPrivate(stepPasswordKey, s.cfg.PasswordFile, maxPasswordBytes)
	if err != nil {
		return nil, err
	}
	defer clear(password)
	password = bytes.TrimRight(password, "\r\n")
	cursor, found := "", false
	for range maxProvisionerPages {
		var page struct {
			Provisioners []struct {
				Type         string `json:"type"`
				Name         string `json:"name"`
				EncryptedKey string `json:"encryptedKey"`
			} `json:"provisioners"`
			NextCursor string `json:"nextCursor"`
		}
		q := url.Values{"limit": {"100"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		if err := c.do(ctx, http.MethodGet, "/provisioners?"+q.Encode(), nil, &page); err != nil {
			return nil, fmt.Errorf("list the provisioners: %w", err)
		}
		for _, p := range page.Provisioners {
			if p.Name != s.cfg.Provisioner || !strings.EqualFold(p.Type, "JWK") || p.EncryptedKey == "" {
				continue
			}
			found = true
			if key, err := decryptJWK(p.EncryptedKey, password); err == nil {
				return key, nil
			}
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if found {
		return nil, fmt.Errorf("%s: the password does not decrypt the key of provisioner %q", stepPasswordKey, s.cfg.Provisioner)
	}
	return nil, fmt.Errorf("%s: the authority has no JWK provisioner %q with an encrypted key", stepProvisionerKey, s.cfg.Provisioner)
}

func decryptJWK(encrypted string, password []byte) (*jose.JSONWebKey, error) {
	jwe, err := jose.ParseEncrypted(encrypted, []jose.KeyAlgorithm{jose.PBES2_HS256_A128KW, jose.PBES2_HS384_A192KW, jose.PBES2_HS512_A256KW},
		[]jose.ContentEncryption{jose.A128GCM, jose.A192GCM, jose.A256GCM})
	if err != nil {
		return nil, err
	}
	data, err := jwe.Decrypt(password)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	if key.IsPublic() || key.KeyID == "" {
		return nil, errors.New("not a private key with a key ID")
	}
	return &key, nil
}

// token is a one-time token of the provisioner for a signing request.
func (s *StepCA) token(key *jose.JSONWebKey, subject, san string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("provisioner %q: its key cannot sign a token: %w", s.cfg.Provisioner, err)
	}
	var jti [32]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	base, _ := url.Parse(s.cfg.URL) // checked by Validate
	now := s.cfg.Clock()
	claims := struct {
		jwt.Claims
		SANs []string `json:"sans"`
	}{Claims: jwt.Claims{Issuer: s.cfg.Provisioner, Subject: subject, ID: hex.EncodeToString(jti[:]),
		Audience:  jwt.Audience{base.ResolveReference(&url.URL{Path: "/1.0/sign"}).String()},
		NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(tokenLifetime))},
		SANs: []string{san}}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("provisioner %q: sign the token: %w", s.cfg.Provisioner, err)
	}
	return tok, nil
}

func parsePEMs(pems []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range pems {
		block, _ := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, errors.New("not a PEM certificate")
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}
