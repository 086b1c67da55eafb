package agentapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

// newIssuer returns a real store and an issuer on it, its recorder running.
func newIssuer(tb testing.TB) (*storage.Store, *issuer.Issuer) {
	tb.Helper()
	st := testkit.OpenStore(tb, nil)
	rec, err := issuer.NewRecorder(issuer.RecorderConfig{Appender: st})
	if err != nil {
		tb.Fatal(err)
	}
	testkit.Run(tb, testkit.Deadline, rec.Run)
	iss, err := issuer.NewIssuer(issuer.IssuerConfig{Store: st, CA: testkit.NewCA(tb, testTD, 0), Recorder: rec, NodeID: st.NodeID(), Logger: testkit.Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return st, iss
}

// The agent service refuses agent SVIDs shorter than minAgentSVIDTTL (the configuration's minimum,
// MinAgentSVIDTTL, is enforced by cmd/signet: see its config tests).
func TestAgentSVIDTTLMinimum(t *testing.T) {
	st, iss := newIssuer(t)
	cfg := AgentServiceConfig{Store: st, Issuer: iss, TrustDomain: testTD, Authenticate: func(context.Context) (Caller, error) { return Caller{}, nil },
		AgentSVIDTTL: minAgentSVIDTTL - time.Second}
	if _, err := NewAgentService(cfg); err == nil || !strings.Contains(err.Error(), "AgentSVIDTTL 9s: at least 10s") {
		t.Fatalf("AgentSVIDTTL below the minimum: %v", err)
	}
	for _, ttl := range []time.Duration{minAgentSVIDTTL, MinAgentSVIDTTL} {
		cfg.AgentSVIDTTL = ttl
		if _, err := NewAgentService(cfg); err != nil {
			t.Fatalf("AgentSVIDTTL %s: %v", ttl, err)
		}
	}
}
