package main

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
)

// TestFollowerDeliveryAfterIssuance (issue 10): an X.509-SVID issued through a follower is answered once
// the leader has committed its ledger record, before the follower has applied it; the agent's delivery
// report for it, sent at once to the same follower, is still recorded (the follower takes a read
// barrier for a credential it does not know yet, instead of dropping it as unknown). Several rounds, so
// that some reports arrive before the follower has learnt of the commit.
func TestFollowerDeliveryAfterIssuance(t *testing.T) {
	c := newBenchCluster(t)
	follower := c.servers[(c.leaderIndex(0, 1, 2)+1)%3]
	a := attestLoadAgent(t, follower, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, csr := range newBenchCSRs(t, 10) {
		resp, err := a.conn.SignX509SVIDs(ctx, &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: a.entries[0], Csr: csr}}})
		if err != nil || len(resp.Results) != 1 || len(resp.Results[0].CertChain) == 0 {
			t.Fatalf("round %d: SignX509SVIDs through the follower: %v, %v", i, resp, err)
		}
		cert, err := x509.ParseCertificate(resp.Results[0].CertChain[0])
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UnixNano()
		d := &agentv1.Delivery{CredentialId: cert.SerialNumber.Text(16), FirstDelivered: now, LastDelivered: now, Count: 1,
			Caller: &agentv1.Caller{Uid: 1000, Gid: 100, Pid: 42, StartTime: 9, Path: "/bin/web", Sha256Prefix: "0123456789abcdef"}}
		rep, err := a.conn.ReportDeliveries(ctx, &agentv1.ReportDeliveriesRequest{Deliveries: []*agentv1.Delivery{d}})
		if err != nil || rep.Recorded != 1 {
			t.Fatalf("round %d: delivery report for credential %s, just issued through the same follower: %v, %v; want it recorded", i, d.CredentialId, rep, err)
		}
	}
}
