package adminapi

import (
	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	testTD = spiffeid.RequireTrustDomainFromString("example.org")
	agentA = spiffeid.RequireFromString("spiffe://example.org/signet/agent/a")
)

// testSelectors is the selector registry of a server built with the unix workload attestor and join
// tokens, as cmd/signet builds it (without the attestors these tests do not use).
func testSelectors() *selector.Registry {
	reg, err := selector.NewRegistry(unix.SelectorType(), jointoken.SelectorType())
	if err != nil {
		panic(err)
	}
	return reg
}
