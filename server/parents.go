package server

import (
	"slices"
	"time"

	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Reserved paths of the trust domain (under ReservedPathPrefix).
const (
	agentPathPrefix  = ReservedPathPrefix + "agent/"
	serverPath       = "/signet/server"
	serverPathPrefix = serverPath + "/"
)

// ServerID is the parent of node alias entries: spiffe://<td>/signet/server.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, serverPath)
}

// AgentIDForToken is the SPIFFE ID of an agent attested with a join token that names no ID.
func AgentIDForToken(td spiffeid.TrustDomain, tokenID string) spiffeid.ID {
	return spiffeid.RequireFromPath(td, agentPathPrefix+"join_token/"+tokenID)
}

// parentsOf returns the parent IDs whose entries caller may issue, sorted: its agent ID, and every node
// alias (an entry parented to the server) whose node selectors are all among the caller's.
func parentsOf(st *storage.Store, td spiffeid.TrustDomain, caller Caller, now time.Time) []string {
	ids := []string{caller.AgentID.String()}
	if len(caller.Selectors) > 0 {
		for _, alias := range st.EntriesByParent(ServerID(td).String()) {
			if alias.Active(now) && selector.Subset(alias.Selectors, caller.Selectors) {
				ids = append(ids, alias.SPIFFEID)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
