package agentapi

import (
	"maps"
	"slices"
	"testing"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/apierr"
)

// Every string, bytes and repeated field of every agent request has a bound, and every bound names a
// field.
func TestRequestBoundsCoverEveryField(t *testing.T) {
	for _, problem := range apierr.BoundsProblems(agentv1.File_agentv1_agent_proto.Services().ByName("Agent"), RequestBound, slices.Collect(maps.Keys(requestBounds))) {
		t.Error(problem)
	}
}
