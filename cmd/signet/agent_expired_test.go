package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentStartWithExpiredSVID: an agent started without a join token on a data dir whose agent SVID
// has expired (it was down past its expiry) exits saying the SVID expired, and how to attest again; it
// used to say there was no agent SVID "yet".
func TestAgentStartWithExpiredSVID(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := url.Parse("spiffe://example.org/signet/agent/expired")
	notAfter := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), URIs: []*url.URL{id}, NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dataDir, "agent_svid.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(dataDir, "agent_svid.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	config := filepath.Join(dir, "agent.yaml")
	writeFile(t, config, fmt.Sprintf("trust_domain: example.org\nserver_address: 127.0.0.1:1\ndata_dir: %s\nsocket_path: %s\ninsecure_bootstrap: true\n",
		dataDir, filepath.Join(dir, "agent.sock")))

	p := startProc(t, "agent", "agent", "--config", config)
	code := p.waitExit(30 * time.Second)
	stderr := p.stderr.String()
	if code != exitFailure || !strings.Contains(stderr, "expired at "+notAfter.Format(time.RFC3339)) ||
		!strings.Contains(stderr, "--join-token-file") || strings.Contains(stderr, "yet") {
		t.Fatalf("agent with an expired SVID and no join token: exit %d, stderr:\n%s", code, stderr)
	}
}
