package adminapi

import (
	"maps"
	"slices"
	"testing"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/apierr"
)

// Every string, bytes and repeated field of every admin request has a bound, and every bound names a
// field.
func TestRequestBoundsCoverEveryField(t *testing.T) {
	for _, problem := range apierr.BoundsProblems(adminv1.File_adminv1_admin_proto.Services().ByName("Admin"), RequestBound, slices.Collect(maps.Keys(requestBounds))) {
		t.Error(problem)
	}
}
