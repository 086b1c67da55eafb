package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReportDeliveries: an agent's report is stored against the ledger record (group-committed by the
// server's delivery recorder), a report sent again counts nothing twice, another agent's credential
// is dropped, and reports past the bounds are refused naming the field.
func TestReportDeliveries(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	mine := e.entry(t, "spiffe://example.org/a/web", agentA, "alice", nil)
	// The server's own agent service: the one with the group-committing recorder.
	conn := serveBufconn(t, func(g *grpc.Server) { agentv1.RegisterAgentServer(g, e.srv.Agent) })
	client := agentv1.NewAgentClient(conn)
	tok, err := client.SignJWTSVID(testCtx(t), &agentv1.SignJWTSVIDRequest{EntryId: mine.ID, Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UnixNano()
	d := &agentv1.Delivery{CredentialId: tok.Id, Caller: &agentv1.Caller{Uid: 1000, Gid: 100, Pid: 42, StartTime: 9, Path: "/bin/web", Sha256Prefix: "0123456789abcdef"},
		FirstDelivered: t0, LastDelivered: t0 + 1, Count: 2}
	for range 2 { // the same report twice: after a lost reply, or a server restart
		resp, err := client.ReportDeliveries(testCtx(t), &agentv1.ReportDeliveriesRequest{Deliveries: []*agentv1.Delivery{d}})
		if err != nil || resp.Recorded != 1 {
			t.Fatalf("ReportDeliveries: %v, %v; want 1 recorded", resp, err)
		}
	}
	ds, err := e.st.Deliveries(tok.Id)
	if err != nil || len(ds) != 1 || ds[0].Count != 2 || ds[0].Caller.Path != "/bin/web" || ds[0].Agent != agentA.String() {
		t.Fatalf("stored deliveries %+v, %v; want one, count 2, path /bin/web, agent %s", ds, err, agentA)
	}
	if st, _ := e.st.EntryDeliveries(mine.ID); st.Count != 2 {
		t.Fatalf("entry delivery count %d, want 2", st.Count)
	}

	// Another agent reporting this credential: dropped, not refused (it would retry forever).
	other := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentB}))
	if resp, err := other.ReportDeliveries(testCtx(t), &agentv1.ReportDeliveriesRequest{Deliveries: []*agentv1.Delivery{d}}); err != nil || resp.Recorded != 0 {
		t.Fatalf("another agent's report: %v, %v; want none recorded", resp, err)
	}

	many := make([]*agentv1.Delivery, agentapi.MaxDeliveriesPerReport+1)
	for i := range many {
		many[i] = d
	}
	long := &agentv1.Caller{Uid: 1000, Path: "/" + strings.Repeat("p", agentapi.MaxDeliveryPathLen)}
	for _, tc := range []struct {
		name string
		ds   []*agentv1.Delivery
		want string
	}{
		{"too many", many, "1001 values, at most 1000"},
		{"path too long", []*agentv1.Delivery{{CredentialId: tok.Id, Caller: long, FirstDelivered: t0, LastDelivered: t0, Count: 1}}, "1025 bytes, at most 1024"},
		{"no caller", []*agentv1.Delivery{{CredentialId: tok.Id, FirstDelivered: t0, LastDelivered: t0, Count: 1}}, "deliveries[0].caller is required"},
		{"no credential", []*agentv1.Delivery{{Caller: d.Caller, FirstDelivered: t0, LastDelivered: t0, Count: 1}}, "deliveries[0].credential_id"},
		{"zero count", []*agentv1.Delivery{{CredentialId: tok.Id, Caller: d.Caller, FirstDelivered: t0, LastDelivered: t0}}, "deliveries[0].count"},
		{"last before first", []*agentv1.Delivery{{CredentialId: tok.Id, Caller: d.Caller, FirstDelivered: t0, LastDelivered: t0 - 1, Count: 1}}, "deliveries[0].first_delivered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.ReportDeliveries(testCtx(t), &agentv1.ReportDeliveriesRequest{Deliveries: tc.ds})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReportDeliveries: %v; want InvalidArgument saying %q", err, tc.want)
			}
		})
	}
}

// TestReviewGoesByDeliveries: an entry minted but never delivered (a prefetch entry nothing uses) is
// "never used", saying it was minted; one delivered long ago is "not used since"; one delivered
// recently is not flagged; entry reads show deliveries beside minting.
func TestReviewGoesByDeliveries(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	mintedOnly := e.entry(t, "spiffe://example.org/a/minted", agentA, "alice", nil)
	old := e.entry(t, "spiffe://example.org/a/old", agentA, "alice", nil)
	recent := e.entry(t, "spiffe://example.org/a/recent", agentA, "alice", nil)
	client := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA}))
	now := time.Now().Add(10 * 24 * time.Hour) // the review's clock: ten days on
	for _, en := range []struct {
		id   string
		last time.Time // zero: never delivered
	}{{mintedOnly.ID, time.Time{}}, {old.ID, time.Now()}, {recent.ID, now.Add(-time.Hour)}} {
		tok, err := client.SignJWTSVID(testCtx(t), &agentv1.SignJWTSVIDRequest{EntryId: en.id, Audience: []string{"db"}})
		if err != nil {
			t.Fatal(err)
		}
		if en.last.IsZero() {
			continue
		}
		d := &agentv1.Delivery{CredentialId: tok.Id, Caller: &agentv1.Caller{Uid: 1}, FirstDelivered: en.last.UnixNano(), LastDelivered: en.last.UnixNano(), Count: 1}
		if _, err := client.ReportDeliveries(testCtx(t), &agentv1.ReportDeliveriesRequest{Deliveries: []*agentv1.Delivery{d}}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := adminapi.NewAdminService(adminapi.AdminServiceConfig{Store: e.st, CA: e.ca, TrustDomain: testTD, Selectors: testSelectors(), Logger: testLogger(t),
		Authenticate: func(context.Context) (string, error) { return "test-admin", nil }, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.Review(testCtx(t), &adminv1.ReviewRequest{StaleSeconds: 7 * 24 * 3600})
	if err != nil {
		t.Fatal(err)
	}
	findings := map[string]string{}
	for _, it := range r.Items {
		findings[it.Id] = strings.Join(it.Findings, "; ")
	}
	for id, want := range map[string]string{mintedOnly.ID: "never used: no SVID delivered to a workload since it was created on", old.ID: "not used since"} {
		if !strings.Contains(findings[id], want) {
			t.Errorf("entry %s findings %q lack %q", id, findings[id], want)
		}
	}
	if !strings.Contains(findings[mintedOnly.ID], "minted 1 times, never delivered") {
		t.Errorf("the minted-only entry's findings %q do not say it was minted", findings[mintedOnly.ID])
	}
	if strings.Contains(findings[recent.ID], "used") {
		t.Errorf("the recently delivered entry is flagged: %q", findings[recent.ID])
	}
	got, err := svc.GetEntry(testCtx(t), &adminv1.GetEntryRequest{Id: old.ID})
	if err != nil || got.IssuedCount != 1 || got.DeliveredCount != 1 || got.LastDeliveredAt == 0 {
		t.Fatalf("GetEntry: issued %d, delivered %d at %d (%v); want 1, 1, set", got.GetIssuedCount(), got.GetDeliveredCount(), got.GetLastDeliveredAt(), err)
	}
}
