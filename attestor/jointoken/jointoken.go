// Package jointoken is the join-token node attestor. The server side (Attestor) checks a single-use
// token (ID.SECRET; only SHA-256 of the secret is stored, compared in constant time) and names the
// token for the agent API to consume in the Raft command that registers the agent; the agent side
// (package payload, kept apart so that agents do not link the server's storage) sends the token. Node selectors: join_token:id:<id>, join_token:owner:<owner>.
package jointoken

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/signet-id/signet/attestor/jointoken/payload"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Type names the join-token node attestation: in requests, agent records, selectors and the ledger.
const Type = payload.Type

// MaxTokenLen bounds a join token (ID.SECRET) in a request.
const MaxTokenLen = 256

// AgentPathPrefix is the path under which agent IDs live (issuer.AgentPathPrefix).
const agentPathPrefix = "/signet/agent/"

var tokenIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Store is what the attestor reads: the replicated join tokens, and a read barrier for a token created
// through another server a moment ago (storage.Store).
type Store interface {
	JoinToken(id string) (storage.JoinToken, error)
	ReadBarrier(ctx context.Context) error
}

// Attestor is the server side of join-token attestation.
type Attestor struct {
	Store       Store
	TrustDomain spiffeid.TrustDomain
}

// Type returns "join_token".
func (a *Attestor) Type() string { return Type }

// AgentID is the agent ID of a node attested with the token tokenID (unless the token names one).
func AgentID(td spiffeid.TrustDomain, tokenID string) spiffeid.ID {
	return spiffeid.RequireFromPath(td, agentPathPrefix+Type+"/"+tokenID)
}

// Attest checks the token in payload: it must exist, match in constant time, and be unused, unexpired
// and not revoked (the store checks all of this again when consuming it). It consumes nothing itself.
func (a *Attestor) Attest(ctx context.Context, token []byte, now time.Time) (nodeattest.Attestation, error) {
	id, secret, err := Parse(string(token))
	if err != nil {
		return nodeattest.Attestation{}, err
	}
	out := nodeattest.Attestation{Subject: id}
	t, err := a.Store.JoinToken(id)
	if errors.Is(err, storage.ErrTokenNotFound) && a.Store.ReadBarrier(ctx) == nil {
		t, err = a.Store.JoinToken(id)
	}
	sum := sha256.Sum256([]byte(secret))
	if err != nil || subtle.ConstantTimeCompare(sum[:], t.SecretHash) != 1 {
		// Wrong secrets and unknown IDs get the same answer.
		return out, fmt.Errorf("join token %s: %w: unknown token (create one with 'signet token create')", id, nodeattest.ErrRefused)
	}
	if !t.UsedAt.IsZero() {
		return out, fmt.Errorf("join token %s: %w: already used by %s at %s; tokens are single use", id, nodeattest.ErrRefused, t.UsedBy, t.UsedAt.Format(time.RFC3339))
	}
	if !now.Before(t.ExpiresAt) {
		return out, fmt.Errorf("join token %s: %w: expired at %s", id, nodeattest.ErrRefused, t.ExpiresAt.Format(time.RFC3339))
	}
	if t.Revoked {
		return out, fmt.Errorf("join token %s: %w: revoked (its owner %s was offboarded)", id, nodeattest.ErrRefused, t.Owner)
	}
	out.AgentID = AgentID(a.TrustDomain, t.ID)
	if t.SPIFFEID != "" {
		if out.AgentID, err = spiffeid.FromString(t.SPIFFEID); err != nil {
			return out, fmt.Errorf("join token %s: stored SPIFFE ID: %w", t.ID, err)
		}
	}
	out.Selectors = selector.Normalize([]selector.Selector{{Type: Type, Value: "id:" + t.ID}, {Type: Type, Value: "owner:" + t.Owner}})
	out.Owner, out.ConsumeJoinToken = t.Owner, t.ID
	out.Reason = "join token " + t.ID + " of " + t.Owner
	return out, nil
}

// Parse splits ID.SECRET. The secret itself never appears in errors.
func Parse(token string) (id, secret string, err error) {
	if len(token) > MaxTokenLen {
		return "", "", fmt.Errorf("join token: %w: longer than %d bytes", nodeattest.ErrMalformed, MaxTokenLen)
	}
	id, secret, ok := strings.Cut(strings.TrimSpace(token), ".")
	if !ok || !tokenIDRE.MatchString(id) || secret == "" {
		return "", "", fmt.Errorf("join token: %w: want ID.SECRET exactly as printed by 'signet token create'", nodeattest.ErrMalformed)
	}
	return id, secret, nil
}
