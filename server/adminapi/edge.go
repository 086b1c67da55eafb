package adminapi

import (
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/server/apierr"
	"google.golang.org/grpc/codes"
)

// The API edge's sentinel errors (server/apierr), under the names this package's handlers wrap: the
// same values, so errors.Is matches either name.
var (
	ErrInvalidArgument   = apierr.ErrInvalidArgument
	ErrPermissionDenied  = apierr.ErrPermissionDenied
	ErrUnauthenticated   = apierr.ErrUnauthenticated
	ErrPolicyViolation   = apierr.ErrPolicyViolation
	ErrPolicyUnusable    = apierr.ErrPolicyUnusable
	ErrOtherTrustDomain  = apierr.ErrOtherTrustDomain
	ErrResourceExhausted = apierr.ErrResourceExhausted
	ErrKeysDoNotRotate   = apierr.ErrKeysDoNotRotate
	ErrKeyNotFound       = apierr.ErrKeyNotFound
	ErrKeyRevoked        = apierr.ErrKeyRevoked
	ErrFederationOff     = apierr.ErrFederationOff
)

// codeOf is the gRPC code of err (apierr.Code: the one place errors become codes).
func codeOf(err error) codes.Code { return apierr.Code(err) }

// toStatus is err as a gRPC status error (apierr.ToStatus).
func toStatus(err error) error { return apierr.ToStatus(err) }

func newRefusalLogLimiter() *ratelimit.Lines { return apierr.NewRefusalLogLimiter() }
