package apierr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("layer: %w", fmt.Errorf("inner: %w", err)) }
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"context canceled", wrap(context.Canceled), codes.Canceled},
		{"context deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{"server invalid argument", wrap(ErrInvalidArgument), codes.InvalidArgument},
		{"server permission denied", wrap(ErrPermissionDenied), codes.PermissionDenied},
		{"server unauthenticated", wrap(ErrUnauthenticated), codes.Unauthenticated},
		{"selector invalid", wrap(selector.ErrInvalid), codes.InvalidArgument},
		{"ca invalid params", wrap(ca.ErrInvalidParams), codes.InvalidArgument},
		{"ca expired", wrap(ca.ErrCAExpired), codes.FailedPrecondition},
		{"storage invalid", wrap(storage.ErrInvalid), codes.InvalidArgument},
		{"federation not found", wrap(storage.ErrFederationNotFound), codes.NotFound},
		{"federation exists", wrap(storage.ErrFederationExists), codes.AlreadyExists},
		{"federation bad bundle", wrap(federation.ErrBadBundle), codes.FailedPrecondition},
		{"federation endpoint unavailable", wrap(federation.ErrEndpointUnavailable), codes.Unavailable},
		{"federation off", wrap(ErrFederationOff), codes.FailedPrecondition},
		{"node attestation malformed", wrap(nodeattest.ErrMalformed), codes.InvalidArgument},
		{"node attestation refused", wrap(nodeattest.ErrRefused), codes.PermissionDenied},
		{"node attestation backend unavailable", wrap(nodeattest.ErrUnavailable), codes.Unavailable},
		{"storage owner not found", wrap(storage.ErrOwnerNotFound), codes.FailedPrecondition},
		{"storage entry not found", wrap(storage.ErrEntryNotFound), codes.NotFound},
		{"storage issuance not found", wrap(storage.ErrIssuanceNotFound), codes.NotFound},
		{"storage owner exists", wrap(storage.ErrOwnerExists), codes.AlreadyExists},
		{"storage entry exists", wrap(storage.ErrEntryExists), codes.AlreadyExists},
		{"storage not leader", wrap(storage.ErrNotLeader), codes.Unavailable},
		{"storage closed", wrap(storage.ErrClosed), codes.Unavailable},
		{"storage upgrade in progress", wrap(storage.ErrUpgradeInProgress), codes.Unavailable},
		{"unknown error", errors.New("disk on fire"), codes.Internal},
		{"joined: invalid wins over internal", errors.Join(errors.New("x"), ErrInvalidArgument), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Code(tc.err); got != tc.want {
				t.Fatalf("Code(%v) = %s, want %s", tc.err, got, tc.want)
			}
			st := status.Convert(ToStatus(tc.err))
			if st.Code() != tc.want {
				t.Fatalf("ToStatus(%v) code = %s, want %s", tc.err, st.Code(), tc.want)
			}
			if tc.err != nil && st.Message() != tc.err.Error() {
				t.Fatalf("ToStatus message = %q, want %q", st.Message(), tc.err.Error())
			}
		})
	}
	t.Run("status errors pass through", func(t *testing.T) {
		in := status.Error(codes.ResourceExhausted, "slow down")
		if got := ToStatus(in); status.Code(got) != codes.ResourceExhausted || got != in {
			t.Fatalf("ToStatus(%v) = %v", in, got)
		}
	})
}
