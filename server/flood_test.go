package server

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// auditCount is how many audit records the store holds, and how many refusals they stand for.
func auditCount(tb testing.TB, st *storage.Store) (records, refused int) {
	tb.Helper()
	for _, r := range auditRecords(tb, st, "") {
		records++
		if r.Outcome == storage.AuditDenied {
			refused += refusals(tb, r)
		}
	}
	return records, refused
}

// A compromised agent flooding the server with refused requests — long entry IDs, IDs that quoting
// escapes, other agents' entries, each one different — costs a bounded number of log lines and audit
// records.
func TestRefusalFloodFromOneAgentIsBounded(t *testing.T) {
	var logs testkit.SyncBuffer
	// One denial window for the whole flood (stop writes what it held back), so the bound below does not
	// depend on how fast this machine makes the calls.
	e := newEnvConfig(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }, oneDenialWindow)
	e.owner(t, "alice")
	theirs := e.entry(t, "spiffe://example.org/b", agentB, "alice", nil)
	before, _ := auditCount(t, e.st)
	client := e.agentAPI(t)
	const n = 4000
	for i := range n {
		var id string
		switch i % 4 {
		case 0:
			id = strings.Repeat("x", 10_000) + strconv.Itoa(i) // beyond maxEntryIDLen
		case 1:
			id = fmt.Sprintf("\"%d\\\x01", i) // quoting escapes each of these
		case 2:
			id = theirs.ID
		case 3:
			id = fmt.Sprintf("%032x", i)
		}
		var err error
		if i%8 < 4 {
			_, err = client.SignJWTSVID(testCtx(t), jwtRequest(id))
		} else {
			var resp *agentv1.SignX509SVIDsResponse
			resp, err = client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: id, Csr: []byte{1}}}})
			if err == nil {
				err = status.Error(codes.Code(resp.Results[0].ErrorCode), resp.Results[0].ErrorMessage)
			}
		}
		if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
			t.Fatalf("request %d: %v; want a refusal", i, err)
		}
	}
	e.stop() // writes the repeats the denial log holds

	out := logs.String()
	if lines := strings.Count(out, "\n"); lines > 100 || len(out) > 64<<10 {
		t.Fatalf("%d refused requests logged %d lines, %d bytes; want at most 100 lines, 64 KiB", n, lines, len(out))
	}
	if strings.Contains(out, strings.Repeat("x", 100)) {
		t.Fatal("an over-long entry ID reached the log")
	}
	records, refused := auditCount(t, e.st)
	if records-before > 12 {
		t.Fatalf("%d refused requests made %d audit records; want a handful", n, records-before)
	}
	if refused == 0 {
		t.Fatal("no refusal was audited")
	}
}

// A local user who is not an admin flooding the admin socket with refused calls — every method, each
// call naming a different object — costs a bounded number of log lines and audit records, as a
// refusal flood on the agent API does.
func TestAdminRefusalFloodIsBounded(t *testing.T) {
	var logs testkit.SyncBuffer
	e := newEnvConfig(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.AdminAuth = adminapi.UnixAdminAuth(uint32(os.Getuid()) + 1) // not this process's uid
	}, oneDenialWindow)
	before, _ := auditCount(t, e.st)
	c := adminClient(t, e.srv.Admin)
	const n = 2000
	for i := range n {
		id := fmt.Sprintf("%032x", i)
		var err error
		switch i % 5 {
		case 0:
			_, err = c.GetEntry(testCtx(t), &adminv1.GetEntryRequest{Id: id})
		case 1:
			_, err = c.DeleteEntry(testCtx(t), &adminv1.DeleteEntryRequest{Id: id})
		case 2:
			_, err = c.SetEntryState(testCtx(t), &adminv1.SetEntryStateRequest{Id: id, Action: "approve", Reason: "r" + id})
		case 3:
			_, err = c.CreateOwner(testCtx(t), &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: "o" + id}})
		case 4:
			_, err = c.EvictAgent(testCtx(t), &adminv1.EvictAgentRequest{Id: "spiffe://example.org/signet/agent/" + id})
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("call %d from a uid that is not an admin: %v; want PermissionDenied", i, err)
		}
	}
	e.stop() // writes the repeats the denial log holds

	out := logs.String()
	if lines := strings.Count(out, "\n"); lines > 100 || len(out) > 64<<10 {
		t.Fatalf("%d refused admin calls logged %d lines, %d bytes; want at most 100 lines, 64 KiB", n, lines, len(out))
	}
	records, refused := auditCount(t, e.st)
	if records-before > 12 {
		t.Fatalf("%d refused admin calls made %d audit records; want a handful", n, records-before)
	}
	if refused != n {
		t.Fatalf("the audit records stand for %d refusals, want all %d", refused, n)
	}
}

// oneDenialWindow makes the server's denial window outlast a test: a flood of refusals then makes the
// same audit records on a loaded machine as on an idle one.
func oneDenialWindow(s *Server) { s.Denials.SetWindow(time.Hour) }
