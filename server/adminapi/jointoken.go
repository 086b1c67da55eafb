package adminapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/issuer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// maxJoinTokenTTL is the longest a join token may wait for its node.
const maxJoinTokenTTL = 30 * 24 * time.Hour

// Join tokens are ID.SECRET: the ID 16 hex digits, the secret 32 random bytes in unpadded base64url; the
// agent API (agentapi) parses them in this form.
// NewJoinToken returns a token ID, the secret to hand to the agent (ID.SECRET) and the secret's hash.
func NewJoinToken() (id, token string, hash []byte, err error) {
	var idb [8]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", nil, fmt.Errorf("generate join token: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", "", nil, fmt.Errorf("generate join token: %w", err)
	}
	id = hex.EncodeToString(idb[:])
	secret := base64.RawURLEncoding.EncodeToString(sec[:])
	sum := sha256.Sum256([]byte(secret))
	return id, id + "." + secret, sum[:], nil
}

// validateTokenRequest checks an admin's join token request and returns its TTL.
func validateTokenRequest(td spiffeid.TrustDomain, owner string, ttlSeconds int64, spiffeID string) (time.Duration, error) {
	if err := validateOwnerName("owner", owner); err != nil {
		return 0, fmt.Errorf("join token: %w (every node is vouched for by an owner: --owner NAME)", err)
	}
	if ttlSeconds <= 0 {
		return 0, fmt.Errorf("join token: ttl_seconds %d: %w: must be positive", ttlSeconds, apierr.ErrInvalidArgument)
	}
	if ttlSeconds > int64(maxJoinTokenTTL/time.Second) {
		return 0, fmt.Errorf("join token: ttl_seconds %d: %w: at most %s", ttlSeconds, apierr.ErrInvalidArgument, maxJoinTokenTTL)
	}
	if spiffeID != "" {
		id, err := spiffeid.FromString(spiffeID)
		if err != nil || id.TrustDomain() != td || id.Path() == "" {
			return 0, fmt.Errorf("join token: spiffe_id %q: %w: want a SPIFFE ID with a path in trust domain %q", spiffeID, apierr.ErrInvalidArgument, td.Name())
		}
		// An agent ID outside the agent path would let the node hold a workload's, or a server's, identity.
		if !strings.HasPrefix(id.Path(), issuer.AgentPathPrefix) {
			return 0, fmt.Errorf("join token: spiffe_id %q: %w: agent IDs are under %s (e.g. spiffe://%s%sweb-1)",
				spiffeID, apierr.ErrInvalidArgument, issuer.AgentPathPrefix, td.Name(), issuer.AgentPathPrefix)
		}
	}
	return time.Duration(ttlSeconds) * time.Second, nil
}
