package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSignReviewEntryIDs(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	en := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	many := make([]string, adminapi.MaxBatchEntries+1)
	for i := range many {
		many[i] = fmt.Sprintf("%032x", i)
	}
	tests := []struct {
		name string
		ids  []string
		all  bool
		code codes.Code
		want string // in the error
	}{
		{"one entry", []string{en.ID}, false, codes.OK, ""},
		{"too many", many, false, codes.InvalidArgument, fmt.Sprintf("entry_ids: invalid argument: %d values, at most %d", len(many), adminapi.MaxBatchEntries)},
		{"IDs and all", []string{en.ID}, true, codes.InvalidArgument, "not both"},
		{"none", nil, false, codes.InvalidArgument, "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.srv.Admin.SignReview(testCtx(t), &adminv1.SignReviewRequest{Reviewer: "alice", EntryIds: tc.ids, All: tc.all,
				Decision: storage.ReviewKeep, Note: "checked"})
			if status.Code(err) != tc.code || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("SignReview: %v; want %s saying %q", err, tc.code, tc.want)
			}
			if tc.code == codes.OK && (resp.ReviewId == "" || resp.Decisions != int32(len(tc.ids))) {
				t.Fatalf("SignReview: %+v; want %d decisions", resp, len(tc.ids))
			}
		})
	}
}
