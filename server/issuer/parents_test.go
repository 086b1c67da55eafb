package issuer

import (
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
)

// parentsOf: an agent may issue its own entries and those of every active node alias whose node
// selectors are all among its own.
func TestParentsOfNodeAliases(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	serverID := ServerID(testTD).String()
	now := time.Now()
	alice := selector.Selector{Type: "join_token", Value: "owner:alice"}
	tokenX := selector.Selector{Type: "join_token", Value: "id:0123456789abcdef"}
	bob := selector.Selector{Type: "join_token", Value: "owner:bob"}
	for _, a := range []struct {
		id, parent string
		sels       []selector.Selector
		mod        func(*storage.Entry)
	}{
		{"spiffe://example.org/nodes/alice", serverID, []selector.Selector{alice}, nil},
		{"spiffe://example.org/nodes/alice-x", serverID, []selector.Selector{alice, tokenX}, nil},
		{"spiffe://example.org/nodes/bob", serverID, []selector.Selector{bob}, nil},
		{"spiffe://example.org/nodes/alice-disabled", serverID, []selector.Selector{alice}, func(en *storage.Entry) { en.Disabled = true }},
		{"spiffe://example.org/nodes/alice-pending", serverID, []selector.Selector{alice}, func(en *storage.Entry) { en.Pending = true }},
		{"spiffe://example.org/nodes/alice-expired", serverID, []selector.Selector{alice}, func(en *storage.Entry) { en.ExpiresAt = now.Add(-time.Minute) }},
		// Not an alias: parented to an agent, not to the server.
		{"spiffe://example.org/nodes/not-alias", agentB.String(), []selector.Selector{alice}, nil},
	} {
		id, err := newEntryID()
		if err != nil {
			t.Fatal(err)
		}
		en := storage.Entry{ID: id, SPIFFEID: a.id, ParentID: a.parent, Owner: "alice", Purpose: "alias",
			Selectors: a.sels, X509TTL: time.Hour, JWTTTL: time.Hour, CreatedAt: now.UTC()}
		if a.mod != nil {
			a.mod(&en)
		}
		if _, err := e.st.CreateEntry(testCtx(t), en); err != nil {
			t.Fatalf("CreateEntry %s: %v", a.id, err)
		}
	}
	tests := []struct {
		name string
		sels []selector.Selector
		want []string
	}{
		{"no node selectors", nil, []string{agentA.String()}},
		{"owner alice", []selector.Selector{alice}, []string{"spiffe://example.org/nodes/alice", agentA.String()}},
		{"owner alice, token x", []selector.Selector{tokenX, alice},
			[]string{"spiffe://example.org/nodes/alice", "spiffe://example.org/nodes/alice-x", agentA.String()}},
		{"token x only", []selector.Selector{tokenX}, []string{agentA.String()}},
		{"owner bob", []selector.Selector{bob}, []string{"spiffe://example.org/nodes/bob", agentA.String()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			caller := Caller{AgentID: agentA, Selectors: tc.sels}
			want := slices.Sorted(slices.Values(tc.want))
			if got := parentsOf(e.st, serverID, caller, now); !slices.Equal(got, want) {
				t.Fatalf("parentsOf = %v, want %v", got, want)
			}
			if got := e.srv.Issuer.Parents(caller, now); !slices.Equal(got, want) {
				t.Fatalf("Issuer.Parents = %v, want %v", got, want)
			}
		})
	}
}
