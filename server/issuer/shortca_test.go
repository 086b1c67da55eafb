package issuer

import (
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestAgentAndServerSVIDsUnderAShortLivedKey: with rotating keys of a few minutes, the active key may
// have only a minute left; agent and server SVIDs are then cut to three quarters of it instead of failing.
func TestAgentAndServerSVIDsUnderAShortLivedKey(t *testing.T) {
	authority := testkit.NewCA(t, testTD, time.Minute) // under a minute left by the time it signs
	st := openStore(t)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(IssuerConfig{Store: st, CA: authority, Recorder: rec, NodeID: st.NodeID(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/signet/agent/a")
	chain, _, err := iss.SignAgentSVID(AgentSVIDRequest{ID: id, CSR: testkit.CSR(t, newP256(t), nil), TTL: time.Hour, Owner: "alice"})
	if err != nil {
		t.Fatalf("agent SVID under a key with under a minute left: %v", err)
	}
	cert := chain[0]
	if cert.NotAfter.After(authority.NotAfter()) || cert.NotAfter.Sub(cert.NotBefore) < 30*time.Second {
		t.Fatalf("agent SVID %s–%s under a key ending %s", cert.NotBefore, cert.NotAfter, authority.NotAfter())
	}
	sc, err := iss.ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Sign(); err != nil {
		t.Fatalf("server SVID under a key with under a minute left: %v", err)
	}
}
