package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
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
