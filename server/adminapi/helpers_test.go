package adminapi

import "github.com/spiffe/go-spiffe/v2/spiffeid"

var (
	testTD = spiffeid.RequireTrustDomainFromString("example.org")
	agentA = spiffeid.RequireFromString("spiffe://example.org/signet/agent/a")
)
