package storage

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestErrorCodesKeepSentinels: every sentinel a follower's caller may branch on survives the trip as a
// code, wrapped or not, with the leader's message.
func TestErrorCodesKeepSentinels(t *testing.T) {
	seen := map[ErrorCode]bool{}
	for _, c := range errorCodes {
		if seen[c.code] {
			t.Fatalf("code %d is used twice", c.code)
		}
		seen[c.code] = true
		err := fmt.Errorf("storage: something %q: %w", "x", c.err)
		got := ErrorFromCode(ErrorCodeOf(err), err.Error())
		if !errors.Is(got, c.err) || got.Error() != err.Error() {
			t.Errorf("%v: came back as %v (Is %v)", c.err, got, errors.Is(got, c.err))
		}
	}
	if ErrorFromCode(ErrorCodeOf(nil), "") != nil {
		t.Fatal("no error came back as one")
	}
	other := ErrorFromCode(ErrorCodeOf(errors.New("boom")), "boom")
	if other == nil || other.Error() != "boom" || errors.Is(other, ErrInvalid) {
		t.Fatalf("an unknown error came back as %v", other)
	}
	// A proposal refused as not appended is retried; a plain not-leader error is not, yet both are
	// ErrNotLeader to callers.
	if ErrorCodeOf(errNotAppended) != codeNotAppended || !errors.Is(ErrorFromCode(codeNotAppended, ""), ErrNotLeader) {
		t.Fatal("errNotAppended does not travel as its own code")
	}
}

// TestResultsRoundTrip: the result of every command type a follower may forward decodes to the type the
// store's methods assert, equal to what the leader's FSM returned.
func TestResultsRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	e := Entry{ID: "e1", SPIFFEID: "spiffe://example.org/web", Owner: "alice", Revision: 3, CreatedAt: now}
	tests := []struct {
		t    commandType
		resp any
	}{
		{cmdOwnerCreate, Owner{Name: "alice", CreatedAt: now}},
		{cmdEntryCreate, e}, {cmdEntryDelete, e}, {cmdEntryUpdate, e}, {cmdEntryState, e},
		{cmdEntryBatch, []BatchResult{{Entry: e}, {Err: fmt.Errorf("entry %q: %w", "x", ErrEntryExists)}}},
		{cmdTokenCreate, JoinToken{ID: "t1", Owner: "alice", ExpiresAt: now}},
		{cmdAgentAttest, Agent{ID: "spiffe://example.org/signet/agent/x", Serial: "1", AttestedAt: now}},
		{cmdAgentRenew, Agent{ID: "a"}}, {cmdAgentEvict, Agent{ID: "a"}}, {cmdAgentBan, Agent{ID: "a", Banned: true}},
		{cmdOwnerOffboard, OffboardResult{Owner: Owner{Name: "bob"}, Entries: []Entry{e}, Revisions: map[string]uint64{"e1": 2}}},
		{cmdOwnerOffboardChecked, OffboardResult{Owner: Owner{Name: "bob"}}},
		{cmdReviewSign, Review{ID: "r1", Reviewer: "carol", SignedAt: now}},
		{cmdLedgerPrune, 4}, {cmdLedgerAppend, 0},
		{cmdLedgerPruneBounded, pruneResult{Batches: 2, Records: 9, Bounded: true}},
		{cmdAuthorityPut, nil}, {cmdAuditAppend, nil},
	}
	for _, tc := range tests {
		b, err := encodeResult(tc.t, tc.resp)
		if err != nil {
			t.Fatalf("%s: %v", tc.t, err)
		}
		got, err := decodeResult(tc.t, b)
		if err != nil {
			t.Fatalf("%s: %v", tc.t, err)
		}
		if br, ok := tc.resp.([]BatchResult); ok {
			gb := got.([]BatchResult)
			if !reflect.DeepEqual(gb[0], br[0]) || !errors.Is(gb[1].Err, ErrEntryExists) || gb[1].Err.Error() != br[1].Err.Error() {
				t.Fatalf("%s: %+v, want %+v", tc.t, gb, br)
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.resp) {
			t.Fatalf("%s: %#v, want %#v", tc.t, got, tc.resp)
		}
	}
}
