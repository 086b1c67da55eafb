package issuer

import (
	"github.com/signet-id/signet/attestor/jointoken"
	"slices"
	"time"

	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ReservedPathPrefix is the part of the trust domain's ID space that Signet assigns itself (agents,
// servers); entries cannot claim IDs under it.
const ReservedPathPrefix = "/signet/"

// Reserved paths of the trust domain (under ReservedPathPrefix): AgentPathPrefix is where agent IDs are.
const (
	AgentPathPrefix = ReservedPathPrefix + "agent/"
	serverPath      = "/signet/server"
)

// ServerID is the parent of node alias entries: spiffe://<td>/signet/server.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, serverPath)
}

// AgentIDForToken is the SPIFFE ID of an agent attested with a join token that names no ID.
func AgentIDForToken(td spiffeid.TrustDomain, tokenID string) spiffeid.ID {
	return jointoken.AgentID(td, tokenID)
}

// parentsOf returns the parent IDs whose entries caller may issue, sorted: its agent ID, and every node
// alias (an entry parented to serverID, the server's ID) whose node selectors are all among the
// caller's.
func parentsOf(st *storage.Store, serverID string, caller Caller, now time.Time) []string {
	ids := st.AppendNodeAliases([]string{caller.AgentID.String()}, serverID, caller.Selectors, now)
	slices.Sort(ids)
	return slices.Compact(ids)
}
