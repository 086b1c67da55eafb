// Package apierr is the API edge of a server node, shared by the agent API (server/agentapi), the admin
// API (server/adminapi) and the issuer (server/issuer): the sentinel errors their refusals wrap, the one
// mapping of errors from every layer to gRPC codes, and how often refusals may be logged.
package apierr

import (
	"context"
	"errors"
	"time"

	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/groupcommit"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors of a server node.
var (
	// ErrInvalidArgument marks a request whose content is wrong; the message names the field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrPermissionDenied marks a caller asking for something it is not entitled to.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated marks a caller whose identity could not be established.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPolicyViolation marks a change to existing entries (an offboarding's reassignment) that the
	// entry policy denies: the entries or the policy must change first.
	ErrPolicyViolation = errors.New("entry policy violated")
	// ErrPolicyUnusable marks a replicated entry policy this server cannot compile (set by a newer
	// signet with functions this one lacks): writes the policy decides are refused here until it is
	// upgraded.
	ErrPolicyUnusable = errors.New("the cluster's entry policy does not compile on this server")
	// ErrOtherTrustDomain marks a snapshot of another trust domain than this cluster's.
	ErrOtherTrustDomain = errors.New("snapshot of another trust domain")
	// ErrResourceExhausted marks a request refused because a limit of the server was reached: an
	// issuance rate limit, or the free space of the server's disk. The message names the limit.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrKeysDoNotRotate: a key rotation was asked of a server whose CA keys do not rotate.
	ErrKeysDoNotRotate = errors.New("this server's CA keys do not rotate")
	// ErrKeyNotFound: a CA key named by a request is not in the bundle.
	ErrKeyNotFound = errors.New("CA key not found")
	// ErrKeyRevoked: a CA key named by a request was revoked already.
	ErrKeyRevoked = errors.New("CA key revoked")
	// ErrFederationOff: a federation refresh was asked of a server built without a bundle poller.
	ErrFederationOff = errors.New("this server does not fetch federated bundles")
)

// Code maps an error from any layer to the gRPC code the API returns. This is the one place where
// internal errors become wire codes.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, selector.ErrInvalid),
		errors.Is(err, ca.ErrInvalidParams), errors.Is(err, storage.ErrInvalid),
		errors.Is(err, nodeattest.ErrMalformed):
		return codes.InvalidArgument
	case errors.Is(err, ErrPermissionDenied), errors.Is(err, storage.ErrTokenUsed), errors.Is(err, storage.ErrTokenExpired),
		errors.Is(err, storage.ErrTokenNotFound), errors.Is(err, storage.ErrAgentBanned), errors.Is(err, storage.ErrAgentAttested), errors.Is(err, storage.ErrAgentSVIDMismatch),
		errors.Is(err, storage.ErrSameApprover), errors.Is(err, nodeattest.ErrRefused):
		return codes.PermissionDenied
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, ErrResourceExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, storage.ErrOwnerNotFound), errors.Is(err, storage.ErrOwnerOffboarded), errors.Is(err, storage.ErrNotPending),
		errors.Is(err, storage.ErrAuditBroken), errors.Is(err, storage.ErrAuditEmpty), errors.Is(err, ErrPolicyViolation),
		errors.Is(err, storage.ErrStateTooNew), errors.Is(err, ErrOtherTrustDomain), errors.Is(err, ErrPolicyUnusable),
		errors.Is(err, ca.ErrCAExpired),
		errors.Is(err, ErrKeysDoNotRotate), errors.Is(err, ErrKeyRevoked), errors.Is(err, ErrFederationOff), errors.Is(err, federation.ErrBadBundle):
		// An owner that does not exist or was offboarded, an entry that waits for no approval: the state
		// must change before the request can succeed.
		return codes.FailedPrecondition
	case errors.Is(err, storage.ErrConflict):
		// The object changed since the caller read it: read it again and retry.
		return codes.Aborted
	case errors.Is(err, storage.ErrEntryNotFound), errors.Is(err, storage.ErrIssuanceNotFound), errors.Is(err, storage.ErrAgentNotFound),
		errors.Is(err, ErrKeyNotFound),
		errors.Is(err, storage.ErrFederationNotFound):
		return codes.NotFound
	case errors.Is(err, storage.ErrOwnerExists), errors.Is(err, storage.ErrEntryExists), errors.Is(err, storage.ErrFederationExists):
		return codes.AlreadyExists
	case errors.Is(err, storage.ErrDiskFull):
		// The server's disk is full: writes fail until space is freed (not a caller's quota, but the
		// code gRPC documents for a full file system).
		return codes.ResourceExhausted
	case errors.Is(err, storage.ErrNotLeader), errors.Is(err, storage.ErrClosed), errors.Is(err, groupcommit.ErrStopped),
		errors.Is(err, nodeattest.ErrUnavailable), errors.Is(err, federation.ErrEndpointUnavailable):
		return codes.Unavailable
	case errors.Is(err, storage.ErrUpgradeInProgress):
		// A server of the cluster runs an older signet that would not understand the write: it succeeds
		// once the upgrade is done.
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// ToStatus converts err into a gRPC status error carrying the right code and the error's message.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// RefusalLogEvery and RefusalLogBurst bound the log lines of refused requests: a flood of refusals costs
// RefusalLogBurst lines per RefusalLogEvery, and the next line says how many were held back.
const (
	RefusalLogEvery = 10 * time.Second
	RefusalLogBurst = 10
)

// NewRefusalLogLimiter returns a log-line limiter for refused requests (RefusalLogEvery, RefusalLogBurst).
func NewRefusalLogLimiter() *ratelimit.Lines {
	return &ratelimit.Lines{Every: RefusalLogEvery, Burst: RefusalLogBurst}
}
