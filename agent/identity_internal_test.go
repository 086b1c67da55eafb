package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	internalTD    = spiffeid.RequireTrustDomainFromString("example.org")
	internalAgent = spiffeid.RequireFromString("spiffe://example.org/signet/agent/a")
)

// issuer signs arbitrary certificates under a real CA root (ca.LoadOrCreate), standing in for a
// server that returns what it should not.
type issuer struct {
	root   *x509.Certificate
	signer crypto.Signer
}

func newIssuer(t *testing.T, td spiffeid.TrustDomain) issuer {
	t.Helper()
	auth, _, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: t.TempDir(), TrustDomain: td})
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return issuer{root: auth.Certificate, signer: auth.Signer}
}

// issue signs a one-hour agent SVID for pub with the URI SAN id ("" for none), after mod adjusts its
// template.
func (is issuer) issue(t *testing.T, pub crypto.PublicKey, id string, mod func(*x509.Certificate)) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if id != "" {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.root, pub, is.signer)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return der
}

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// dirFiles returns the content of every file in dir (nil if dir does not exist).
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = string(data)
	}
	return out
}

// badSVIDs are agent SVIDs a server must not hand out, each for the key it is given, and the words
// the agent's error must contain.
func badSVIDs(t *testing.T, is issuer, other issuer) []struct {
	name   string
	chain  func(key *ecdsa.PrivateKey) [][]byte
	errHas []string
} {
	one := func(der []byte) [][]byte { return [][]byte{der} }
	return []struct {
		name   string
		chain  func(key *ecdsa.PrivateKey) [][]byte
		errHas []string
	}{
		{name: "no certificate", chain: func(*ecdsa.PrivateKey) [][]byte { return nil }, errHas: []string{"no SVID"}},
		{name: "no URI SAN", chain: func(k *ecdsa.PrivateKey) [][]byte { return one(is.issue(t, k.Public(), "", nil)) },
			errHas: []string{"unusable agent SVID", "no URI SAN"}},
		{name: "URI SAN not a SPIFFE ID", chain: func(k *ecdsa.PrivateKey) [][]byte {
			return one(is.issue(t, k.Public(), "https://example.org/signet/agent/a", nil))
		}, errHas: []string{"unusable agent SVID", "scheme"}},
		{name: "wrong trust domain", chain: func(k *ecdsa.PrivateKey) [][]byte {
			return one(is.issue(t, k.Public(), "spiffe://other.org/signet/agent/a", nil))
		}, errHas: []string{"spiffe://other.org/signet/agent/a", "outside this agent's trust domain", `"example.org"`}},
		{name: "another agent's ID", chain: func(k *ecdsa.PrivateKey) [][]byte {
			return one(is.issue(t, k.Public(), "spiffe://example.org/signet/agent/b", nil))
		}, errHas: []string{"spiffe://example.org/signet/agent/b", "this agent is " + internalAgent.String()}},
		{name: "another key", chain: func(*ecdsa.PrivateKey) [][]byte {
			return one(is.issue(t, newTestKey(t).Public(), internalAgent.String(), nil))
		}, errHas: []string{"does not match private key"}},
		{name: "a CA certificate", chain: func(k *ecdsa.PrivateKey) [][]byte {
			return one(is.issue(t, k.Public(), internalAgent.String(), func(c *x509.Certificate) {
				c.IsCA, c.KeyUsage = true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
			}))
		}, errHas: []string{"CA flag"}},
		{name: "signed by a CA outside the bundle", chain: func(k *ecdsa.PrivateKey) [][]byte {
			return one(other.issue(t, k.Public(), internalAgent.String(), nil))
		}, errHas: []string{"does not verify against the trust bundle"}},
		{name: "expired", chain: func(k *ecdsa.PrivateKey) [][]byte {
			return one(is.issue(t, k.Public(), internalAgent.String(), func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			}))
		}, errHas: []string{"does not verify against the trust bundle"}},
	}
}

// TestInstallAttestationRefusesBadSVID checks that an attestation answer with an SVID the agent
// cannot use (as an insecure bootstrap could get from anyone) fails with a clear error and writes
// nothing.
func TestInstallAttestationRefusesBadSVID(t *testing.T) {
	is, other := newIssuer(t, internalTD), newIssuer(t, internalTD)
	for _, tt := range badSVIDs(t, is, other) {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			key := newTestKey(t)
			resp := &agentv1.AttestAgentResponse{SpiffeId: internalAgent.String(), SvidChain: tt.chain(key),
				Bundle: &agentv1.Bundle{TrustDomain: internalTD.Name(), X509Authorities: [][]byte{is.root.Raw}}}
			id, err := installAttestation(AttestConfig{DataDir: dir, TrustDomain: internalTD}, key, resp)
			if err == nil {
				t.Fatalf("installAttestation accepted it as %s", id.ID())
			}
			for _, want := range tt.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if files := dirFiles(t, dir); files != nil {
				t.Errorf("data dir written after a refused SVID: %v", keys(files))
			}
		})
	}
}

// TestSetSVIDRefusesBadRenewal checks that a renewal answer the agent cannot use fails with a clear
// error and leaves the identity, in memory and on disk, as it was.
func TestSetSVIDRefusesBadRenewal(t *testing.T) {
	is, other := newIssuer(t, internalTD), newIssuer(t, internalTD)
	attest := func(t *testing.T) (*Identity, string) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "data")
		key := newTestKey(t)
		resp := &agentv1.AttestAgentResponse{SpiffeId: internalAgent.String(), SvidChain: [][]byte{is.issue(t, key.Public(), internalAgent.String(), nil)},
			Bundle: &agentv1.Bundle{TrustDomain: internalTD.Name(), X509Authorities: [][]byte{is.root.Raw}}}
		id, err := installAttestation(AttestConfig{DataDir: dir, TrustDomain: internalTD}, key, resp)
		if err != nil {
			t.Fatalf("installAttestation of a good SVID: %v", err)
		}
		return id, dir
	}
	for _, tt := range badSVIDs(t, is, other) {
		t.Run(tt.name, func(t *testing.T) {
			id, dir := attest(t)
			before, beforeSerial := dirFiles(t, dir), serial(t, id)
			key := newTestKey(t)
			err := id.setSVID(key, tt.chain(key))
			if err == nil {
				t.Fatalf("setSVID accepted it as %s", id.ID())
			}
			for _, want := range tt.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if id.ID() != internalAgent.String() || serial(t, id) != beforeSerial {
				t.Errorf("the identity in memory changed to %s, serial %s", id.ID(), serial(t, id))
			}
			after := dirFiles(t, dir)
			if len(after) != len(before) {
				t.Errorf("data dir holds %v, had %v", keys(after), keys(before))
			}
			for name, data := range before {
				if after[name] != data {
					t.Errorf("%s was rewritten", name)
				}
			}
		})
	}
	t.Run("good renewal", func(t *testing.T) {
		id, dir := attest(t)
		key := newTestKey(t)
		der := is.issue(t, key.Public(), internalAgent.String(), nil)
		if err := id.setSVID(key, [][]byte{der}); err != nil {
			t.Fatalf("setSVID: %v", err)
		}
		loaded, err := LoadIdentity(dir, internalTD, time.Now())
		if err != nil {
			t.Fatalf("LoadIdentity: %v", err)
		}
		if got, want := serial(t, loaded), serial(t, id); got != want || want != is.serialOf(t, der) {
			t.Fatalf("data dir holds serial %s, the identity %s, the renewal %s", got, want, is.serialOf(t, der))
		}
	})
}

func serial(t *testing.T, id *Identity) string {
	t.Helper()
	svid, err := id.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID: %v", err)
	}
	return svid.Certificates[0].SerialNumber.Text(16)
}

func (issuer) serialOf(t *testing.T, der []byte) string {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
