package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/internal/waitfor"
)

// StepCA is a real step-ca authority (github.com/smallstep/certificates v0.30.2) running in a process of
// its own, with a root, an intermediate that signs (both valid for years; certificates up to 9000h) (path length 1, so it may sign a Signet node's CA) and
// one JWK provisioner whose template signs CA certificates (path length 0, keyCertSign|cRLSign).
type StepCA struct {
	URL          string
	Root         *x509.Certificate
	RootFile     string // the root, PEM
	Fingerprint  string // hex SHA-256 of the root
	Provisioner  string
	PasswordFile string // the provisioner's password, mode 0600
}

// StepCALeafTemplate is an X.509 template that signs leaf certificates only (step-ca's default kind), which
// an upstream authority must not hand out as a node's CA.
const StepCALeafTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["serverAuth", "clientAuth"]
}`

// StepCAIntermediateTemplate is the provisioner's X.509 template: the node's CA certificate keeps the
// token's subject and SANs and becomes a CA that signs leaves only.
const StepCAIntermediateTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["certSign", "crlSign"],
	"basicConstraints": {"isCA": true, "maxPathLen": 0}
}`

// StartStepCA builds the step-ca program in testdata/stepca (a module of its own: step-ca needs older
// go.step.sm/crypto and go-jose versions than Signet) and runs it until the test ends.
func StartStepCA(tb testing.TB) *StepCA {
	tb.Helper()
	return StartStepCAWithTemplate(tb, StepCAIntermediateTemplate)
}

// StartStepCAWithTemplate is StartStepCA whose provisioner signs with the X.509 template tmpl.
func StartStepCAWithTemplate(tb testing.TB, tmpl string) *StepCA {
	tb.Helper()
	dir := tb.TempDir()
	_, self, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "stepca")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(filepath.Dir(self), "testdata", "stepca")
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build step-ca: %v\n%s", err, out)
	}

	rootKey, interKey := P256(tb), P256(tb)
	now := time.Now().Truncate(time.Second)
	root := certify(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "Step Test Root CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(3 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, rootKey, rootKey)
	inter := certify(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "Step Test Intermediate CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(2 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, root, interKey, rootKey)
	interKeyDER, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		tb.Fatal(err)
	}
	s := &StepCA{Root: root, Provisioner: "signet", RootFile: WriteFileMode(tb, dir, "root_ca.crt", string(PEM(root)), 0o644)}
	sum := sha256.Sum256(root.Raw)
	s.Fingerprint = hex.EncodeToString(sum[:])
	interFile := WriteFileMode(tb, dir, "intermediate_ca.crt", string(PEM(inter)), 0o644)
	interKeyFile := WriteFileMode(tb, dir, "intermediate_ca_key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: interKeyDER})), 0o600)

	const password = "step-test-password"
	s.PasswordFile = WriteFileMode(tb, dir, "password", password+"\n", 0o600)
	jwk := jose.JSONWebKey{Key: P256(tb), Algorithm: "ES256", Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	priv, err := jwk.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.PBES2_HS256_A128KW, Key: []byte(password), PBES2Count: 10000},
		(&jose.EncrypterOptions{}).WithContentType("jwk+json"))
	if err != nil {
		tb.Fatal(err)
	}
	jwe, err := enc.Encrypt(priv)
	if err != nil {
		tb.Fatal(err)
	}
	encrypted, err := jwe.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s.URL = "https://" + addr
	cfg := map[string]any{
		"root": s.RootFile, "crt": interFile, "key": interKeyFile, "address": addr, "dnsNames": []string{"127.0.0.1"},
		"logger": map[string]any{"format": "text"},
		"authority": map[string]any{"provisioners": []any{map[string]any{
			"type": "JWK", "name": s.Provisioner, "key": jwk.Public(), "encryptedKey": encrypted,
			"claims":  map[string]any{"maxTLSCertDuration": "9000h", "defaultTLSCertDuration": "24h"},
			"options": map[string]any{"x509": map[string]any{"template": tmpl}},
		}}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	cfgFile := WriteFileMode(tb, dir, "ca.json", string(cfgJSON), 0o600)
	var log SyncBuffer
	cmd := exec.Command(bin, cfgFile)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("step-ca output:\n%s", log.String())
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(root)
	waitfor.Condition(tb, Deadline, "step-ca to serve TLS on "+addr, func() bool {
		select {
		case <-exited:
			tb.Fatalf("step-ca exited:\n%s", log.String())
		default:
		}
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	return s
}

// certify signs tmpl (a serial is added) for key's public half with parent (nil: self-signed) and signer.
func certify(tb testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}
