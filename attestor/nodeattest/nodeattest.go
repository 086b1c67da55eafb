// Package nodeattest holds what every node attestor shares: the result of attesting a node
// (Attestation) and the errors that decide how a refusal is answered. The interfaces themselves are
// declared by their consumers: the server's agent API (agentapi.NodeAttestor: a typed payload in, an
// Attestation out) and the agent (agent.NodeAttestor: produce the payload). A node attestor is a package
// (attestor/jointoken, attestor/k8spsat) implementing either side, plus a line of wiring in cmd/signet.
package nodeattest

import (
	"errors"

	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxPayload bounds an attestation payload in a request (a projected service account token is a few
// KiB; a join token far less).
const MaxPayload = 16 << 10

// MaxTypeLen bounds an attestation type name in a request.
const MaxTypeLen = 64

// Errors a node attestor wraps; the agent API maps them to gRPC codes (server/apierr).
var (
	// ErrMalformed: the payload cannot be a credential at all (InvalidArgument). Anyone can send one: it
	// is logged, rate-limited, and never audited.
	ErrMalformed = errors.New("malformed node attestation")
	// ErrRefused: the credential is well formed but does not attest this node (PermissionDenied):
	// unknown, used, expired, another audience or cluster, a service account not allowed. Audited.
	ErrRefused = errors.New("node attestation refused")
	// ErrUnavailable: what the attestor must ask (the Kubernetes API, a JWKS URL) did not answer
	// (Unavailable): the agent retries.
	ErrUnavailable = errors.New("node attestation backend unavailable")
)

// Attestation is what a server-side node attestor concluded about a node.
type Attestation struct {
	// Subject names the credential presented (a join token's ID; a cluster and service account), never a
	// secret. An attestor sets it as soon as it is known, also when it refuses: it is the object of the
	// refusal's audit record.
	Subject string
	// AgentID is the agent's SPIFFE ID (under /signet/agent/).
	AgentID spiffeid.ID
	// Selectors are the node's selectors, of the attestor's own type.
	Selectors []selector.Selector
	// Owner owns the agent SVID's ledger record (a join token's owner; a cluster's configured owner).
	Owner string
	// Reattestable: the node may attest again under the same agent ID with a new credential (k8s_psat),
	// so an agent whose SVID could not be renewed attests again instead of stopping.
	Reattestable bool
	// ConsumeJoinToken is the single-use join token the attestation uses up: consumed in the same Raft
	// command that registers the agent and records its SVID. Empty for attestors that consume nothing.
	ConsumeJoinToken string
	// Reason says what attested the node, for the audit record of the attestation.
	Reason string
}
