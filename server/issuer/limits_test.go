package issuer

import (
	"strconv"
	"testing"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Buckets of keys that went idle long enough to refill are dropped: memory follows active keys.
func TestIssuanceBucketsOfIdleKeysExpire(t *testing.T) {
	clock := testkit.NewManualClock()
	e := newEnv(t)
	iss, err := NewIssuer(IssuerConfig{Store: e.st, CA: e.ca, Recorder: e.srv.Recorder, NodeID: "n", Clock: clock.Now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		if err := iss.admit(Caller{AgentID: spiffeid.RequireFromPath(testTD, "/signet/agent/"+strconv.Itoa(i))}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.agents.Len(); n != 5000 {
		t.Fatalf("%d buckets for 5000 active agents", n)
	}
	clock.Advance(iss.agents.RefillTime())
	if err := iss.admit(Caller{AgentID: agentB}, 1); err != nil {
		t.Fatal(err)
	}
	if n := iss.agents.Len(); n != 1 {
		t.Fatalf("%d buckets after the others went idle, want 1", n)
	}
}

func TestIssuanceLimitsValidated(t *testing.T) {
	for _, l := range []IssuanceLimits{{AgentBurst: MaxCSRBatch - 1}, {EntryRate: -1}, {EntryBurst: -1}} {
		if _, err := l.withDefaults(); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}
