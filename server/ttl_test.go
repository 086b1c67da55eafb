package server

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"google.golang.org/grpc/codes"
)

// Entries cannot ask for SVIDs shorter than the minimum TTLs, whether created, imported or updated; the
// error names the field and the minimum.
func TestEntryTTLMinimums(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	admin := e.srv.Admin
	wantRefused := func(what string, err error, msg string) {
		t.Helper()
		wantStatus(t, what, err, codes.InvalidArgument, msg)
	}
	short := adminEntry("spiffe://example.org/short", agentA.String(), "alice")
	short.X509TtlSeconds = 1
	_, err := admin.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: short})
	wantRefused("create with x509_ttl 1s", err, "x509_ttl 1s: invalid argument: at least 1m0s")

	short.X509TtlSeconds, short.JwtTtlSeconds = 0, 10
	resp, err := admin.BatchCreateEntries(testCtx(t), &adminv1.BatchCreateEntriesRequest{Entries: []*adminv1.Entry{short}})
	if err != nil || len(resp.Results) != 1 || !strings.Contains(resp.Results[0].GetErrorMessage(), "jwt_ttl 10s: invalid argument: at least 30s") {
		t.Fatalf("import with jwt_ttl 10s: %v, %v; want it refused naming jwt_ttl and 30s", resp, err)
	}

	ok := adminEntry("spiffe://example.org/ok", agentA.String(), "alice")
	ok.X509TtlSeconds, ok.JwtTtlSeconds = int64(adminapi.MinX509SVIDTTL/time.Second), int64(adminapi.MinJWTSVIDTTL/time.Second)
	created, err := admin.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: ok})
	if err != nil {
		t.Fatalf("create with the minimum TTLs: %v", err)
	}
	_, err = admin.UpdateEntry(testCtx(t), &adminv1.UpdateEntryRequest{Entry: &adminv1.Entry{Id: created.Id, Revision: created.Revision,
		X509TtlSeconds: 30}, UpdateMask: []string{"x509_ttl_seconds"}, Reason: "shorter"})
	wantRefused("update to x509_ttl 30s", err, "x509_ttl 30s: invalid argument: at least 1m0s")
}
