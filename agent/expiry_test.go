package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server"
)

// TestRenewalStopsOnceTheSVIDExpired: an agent cut off from its server for the second half of its SVID's
// life cannot renew it any more (no server accepts an expired SVID): RunRenewal returns an error that
// says so and wraps ErrNoIdentity, rather than retrying for ever. The SVID is a real one of 2 s, signed
// by the trust domain's CA and stored as the agent stores its own.
func TestRenewalStopsOnceTheSVIDExpired(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	authority := testkit.NewCA(t, testTD, 0)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := authority.SignX509SVID(ca.X509SVIDParams{SPIFFEID: agentA, PublicKey: key.Public(), TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		keyFile:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		certFile:   ca.CertificatesPEM([]*x509.Certificate{cert}),
		bundleFile: ca.CertificatesPEM([]*x509.Certificate{authority.X509Authority()}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	id, err := agent.LoadIdentity(dir, testTD, time.Now())
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	conn, err := agent.Dial(freeAddr(t), id, testTD) // no server there
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	err = conn.RunRenewal(ctx, testLogger(t))
	if !errors.Is(err, agent.ErrNoIdentity) || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("RunRenewal with the server unreachable past the SVID's expiry: %v; want an expiry error wrapping ErrNoIdentity", err)
	}
	if ctx.Err() != nil || time.Now().Before(cert.NotAfter) {
		t.Fatalf("RunRenewal returned %v at %s, SVID valid until %s", err, time.Now().Format(time.RFC3339Nano), cert.NotAfter.Format(time.RFC3339Nano))
	}
}

// TestAttestWaitsForServerDiskSpace: a server whose disk is nearly full refuses attestation with
// ResourceExhausted (consuming nothing); the agent retries, logging each refusal, instead of exiting
// (a restart loop that systemd gives up on), and attests once the server has room again.
func TestAttestWaitsForServerDiskSpace(t *testing.T) {
	t.Parallel()
	var full atomic.Bool
	full.Store(true)
	e := newTLSEnvWith(t, 0, func(c *server.Config) {
		c.DataDir, c.MinFreeDisk = t.TempDir(), 4<<20
		c.FreeDisk = func(string) (uint64, error) {
			if full.Load() {
				return 2 << 20, nil
			}
			return 16 << 20, nil
		}
	})
	token, _ := e.joinToken(t)
	logger, retries := newLogCounter(t, "refused attestation for a limit of its own")
	done := make(chan error, 1)
	go func() {
		_, err := agent.Attest(testCtx(t, testDeadline), agent.AttestConfig{Address: e.addr, TrustDomain: testTD, DataDir: t.TempDir(),
			JoinToken: token, Bundle: e.roots(), Logger: logger})
		done <- err
	}()
	deadline := time.After(testDeadline)
	for retries.count() == 0 {
		select {
		case err := <-done:
			t.Fatalf("Attest on a nearly full server returned %v, want it to retry", err)
		case <-deadline:
			t.Fatal("Attest never logged a refusal")
		case <-time.After(10 * time.Millisecond):
		}
	}
	full.Store(false)
	e.clock.set(time.Minute) // past the server's cached reading of its free space
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Attest once the server has room: %v", err)
		}
	case <-deadline:
		t.Fatal("Attest did not succeed once the server had room")
	}
}
