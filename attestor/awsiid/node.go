package awsiid

import (
	"context"
	"errors"
	"time"

	"github.com/signet-id/signet/attestor/nodeattest"
)

// Node is the attestor behind the server's node attestor seam (agentapi.NodeAttestor): it maps an
// Attestation onto nodeattest's, and the refusals onto nodeattest's errors (their text unchanged).
// Without an InstanceLog the attestation is FirstUseOnly unless re-attestation is allowed: the server
// decides trust on first use in the replicated store.
type Node struct{ *Attestor }

// Attest attests the instance and returns the seam's attestation.
func (n Node) Attest(ctx context.Context, p []byte, now time.Time) (nodeattest.Attestation, error) {
	att, err := n.Attestor.Attest(ctx, p, now)
	out := nodeattest.Attestation{Subject: Type}
	if att.InstanceKey != "" {
		out.Subject = Type + "/" + att.InstanceKey
	}
	if err != nil {
		return out, seamError(err)
	}
	out.AgentID, out.Selectors, out.Owner, out.Reason = att.AgentID, att.Selectors, att.Owner, att.Reason
	out.Reattestable = att.Reattestable
	out.FirstUseOnly = !att.Reattestable && n.instances == nil
	return out, nil
}

// seamError wraps err in the nodeattest error that decides how the refusal is answered: malformed
// (logged), refused (audited), or unavailable (the EC2 or IAM API did not answer: the agent retries).
func seamError(err error) error {
	kind := nodeattest.ErrUnavailable
	switch {
	case errors.Is(err, ErrMalformed):
		kind = nodeattest.ErrMalformed
	case errors.Is(err, ErrRefused):
		kind = nodeattest.ErrRefused
	}
	return &mappedError{err: err, kind: kind}
}

type mappedError struct{ err, kind error }

func (e *mappedError) Error() string   { return e.err.Error() }
func (e *mappedError) Unwrap() []error { return []error{e.err, e.kind} }
