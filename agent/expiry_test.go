package agent_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
)

// TestRenewalStopsOnceTheSVIDExpired: an agent cut off from its server for the second half of its SVID's
// life cannot renew it any more (no server accepts an expired SVID): RunRenewal returns an error that
// says so and wraps ErrNoIdentity, rather than retrying for ever.
func TestRenewalStopsOnceTheSVIDExpired(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t, 10*time.Second) // the library's shortest
	id, _ := attest(t, e, t.TempDir())
	notAfter, _ := id.NotAfter()
	conn, err := agent.Dial(freeAddr(t), id, testTD) // the server is unreachable from now on
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
	if ctx.Err() != nil || time.Now().Before(notAfter) {
		t.Fatalf("RunRenewal returned %v at %s, SVID valid until %s", err, time.Now().Format(time.RFC3339Nano), notAfter.Format(time.RFC3339Nano))
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
