package adminapi

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/apierr"
	"google.golang.org/grpc/codes"
)

// Join tokens give agent IDs only: under /signet/agent/ in the trust domain, never a workload's ID or a
// server's.
func TestValidateTokenRequestSPIFFEID(t *testing.T) {
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"none: derived from the token", "", true},
		{"token-derived form", "spiffe://example.org/signet/agent/join_token/0123456789abcdef", true},
		{"named agent", "spiffe://example.org/signet/agent/web-1", true},
		{"nested agent path", "spiffe://example.org/signet/agent/eu/web-1", true},
		{"workload ID", "spiffe://example.org/web", false},
		{"workload-looking host ID", "spiffe://example.org/host/web-1", false},
		{"server ID", "spiffe://example.org/signet/server", false},
		{"a server node's ID", "spiffe://example.org/signet/server/node-1", false},
		{"agent path itself", "spiffe://example.org/signet/agent", false},
		{"agent prefix without separator", "spiffe://example.org/signet/agents/web-1", false},
		{"reserved root", "spiffe://example.org/signet", false},
		{"other trust domain", "spiffe://other.org/signet/agent/web-1", false},
		{"no path", "spiffe://example.org", false},
		{"not a SPIFFE ID", "web-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ttl, err := validateTokenRequest(testTD, "alice", 600, tc.id)
			if tc.ok {
				if err != nil || ttl != 10*time.Minute {
					t.Fatalf("validateTokenRequest(%q): %s, %v; want accepted", tc.id, ttl, err)
				}
				return
			}
			if apierr.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spiffe_id") {
				t.Fatalf("validateTokenRequest(%q): %v; want InvalidArgument naming spiffe_id", tc.id, err)
			}
		})
	}
}
