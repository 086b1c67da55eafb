// Package payload is the agent side of join-token node attestation: it sends the token the agent was
// started with. It is apart from attestor/jointoken (the server side) so that agents do not link the
// server's storage.
package payload

import (
	"context"
	"errors"
)

// Type names the join-token node attestation.
const Type = "join_token"

// JoinToken produces the payload of a join-token attestation: the token (ID.SECRET).
type JoinToken struct {
	Token string
}

// Type returns "join_token".
func (p JoinToken) Type() string { return Type }

// Payload returns the token. A join token is single use: an agent whose SVID expired needs a new one.
func (p JoinToken) Payload(context.Context) ([]byte, error) {
	if p.Token == "" {
		return nil, errors.New("join token: none given (create one with: signet token create --owner NAME)")
	}
	return []byte(p.Token), nil
}
