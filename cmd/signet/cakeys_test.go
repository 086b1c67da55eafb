package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// withCAKeys appends a ca section to the server's config.
func (s *testServer) withCAKeys(t testing.TB, section string) *testServer {
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.config, string(cfg)+"ca:\n"+section)
	return s
}

// TestServerWithPKCS11Keys: a server whose CA keys are generated in a SoftHSM2 token issues to an
// agent's workload, the SVID verifies with go-spiffe against the served bundle, and the data dir holds
// no private key of the CA. With a wrong PIN the server refuses to start, naming the key manager, and
// creates nothing.
func TestServerWithPKCS11Keys(t *testing.T) {
	conf, err := testkit.WriteSoftHSMConf(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf) // the server processes inherit it
	const pin = "1234-signet"
	testkit.NewSoftHSMToken(t, conf, "signet-e2e", pin)
	pinDir := t.TempDir()
	goodPIN, badPIN := filepath.Join(pinDir, "good.pin"), filepath.Join(pinDir, "bad.pin")
	writeFile(t, goodPIN, pin+"\n")
	writeFile(t, badPIN, "9999-wrong\n")
	section := func(pinFile string) string {
		return `  key_manager: pkcs11
  kms_uri: "pkcs11:module-path=` + testkit.SoftHSMModule + `;token=signet-e2e?pin-source=` + pinFile + `"
`
	}

	// A wrong PIN: refused before anything is created.
	bad := newTestServer(t).withCAKeys(t, section(badPIN))
	bad.proc = startProc(t, "server", "server", "--config", bad.config)
	if code := bad.waitExit(30 * time.Second); code == 0 {
		t.Fatal("server with a wrong PIN exited 0")
	}
	if msg := bad.stderr.String(); !strings.Contains(msg, "key manager pkcs11") || !strings.Contains(msg, "CKR_PIN_INCORRECT") || strings.Contains(msg, "9999-wrong") {
		t.Fatalf("stderr of a server with a wrong PIN: %s", msg)
	}
	if _, err := os.Stat(filepath.Join(bad.dir, "data")); !os.IsNotExist(err) {
		t.Fatalf("data dir after a refused start: %v, want none", err)
	}

	s := newTestServer(t).withCAKeys(t, section(goodPIN)).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/hsm", "--selector", myUID, "--owner", "alice", "--purpose", "hsm", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/hsm")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x509ctx, svid := fetchOneSVID(t, ctx, newClient(t, ctx, a.socket), "spiffe://example.org/hsm")
	if _, _, err := x509svid.Verify(svid.Certificates, x509ctx.Bundles); err != nil {
		t.Fatalf("x509svid.Verify: %v", err)
	}

	// The keys rotate: the CA directory holds the slots' metadata and, per slot, only the certificate,
	// the kid and the names of the slot's keys in the token.
	caDir := filepath.Join(s.dir, "data", "ca")
	if names := testkit.DirNames(t, caDir); !slices.Equal(names, []string{"slot-1", "slots.json"}) {
		t.Fatalf("CA directory holds %q, want the first slot and its metadata", names)
	}
	slotDir := filepath.Join(caDir, "slot-1")
	names := testkit.DirNames(t, slotDir)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(slotDir, name))
		if err != nil || strings.Contains(string(data), "PRIVATE KEY") {
			t.Fatalf("%s in the slot's directory: %v, or a private key", name, err)
		}
	}
	if !slices.Equal(names, []string{ca.JWTKeyIDFile, keymanager.SlotKeysFile, ca.X509CertFile}) {
		t.Fatalf("slot directory holds %q, want only the certificate, the kid and the key names", names)
	}
}
