package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signet-id/signet/selector"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Errors of join tokens and agents.
var (
	// ErrTokenNotFound: no join token with that ID.
	ErrTokenNotFound = errors.New("join token not found")
	// ErrTokenUsed: the join token was already used (tokens are single use).
	ErrTokenUsed = errors.New("join token already used")
	// ErrTokenExpired: the join token's expiry has passed.
	ErrTokenExpired = errors.New("join token expired")
	// ErrAgentNotFound: no agent with that ID (never attested, or evicted).
	ErrAgentNotFound = errors.New("agent not found")
	// ErrAgentBanned: the agent is banned and may not attest or renew.
	ErrAgentBanned = errors.New("agent is banned")
	// ErrAgentSVIDMismatch: the SVID presented is not the agent's current one.
	ErrAgentSVIDMismatch = errors.New("agent SVID is not the current one")
)

var (
	bucketTokens = []byte("join_tokens")
	bucketAgents = []byte("agents")
)

// JoinToken is a single-use credential for attesting a node. Only the SHA-256 of its secret is stored.
type JoinToken struct {
	ID         string    `json:"id"`
	SecretHash []byte    `json:"secret_hash"`
	Owner      string    `json:"owner"`
	SPIFFEID   string    `json:"spiffe_id,omitempty"` // the agent ID to assign, if set at creation
	ExpiresAt  time.Time `json:"expires_at"`
	CreatedAt  time.Time `json:"created_at"`
	CreatedBy  string    `json:"created_by,omitempty"`
	UsedAt     time.Time `json:"used_at,omitzero"`
	UsedBy     string    `json:"used_by,omitempty"` // the agent that used it
	// Revoked tokens cannot be used (their owner was offboarded with --disable).
	Revoked bool `json:"revoked,omitempty"`
}

// auditView is the token as the audit log records it: without the hash of its secret, which the log (read
// by every admin, kept forever) need not carry. Every audit record of a token goes through it.
func (t JoinToken) auditView() *JoinToken {
	t.SecretHash = nil
	return &t
}

// Agent is an attested node agent.
type Agent struct {
	ID              string              `json:"id"`
	AttestationType string              `json:"attestation_type"`
	Selectors       []selector.Selector `json:"selectors"` // node selectors
	Owner           string              `json:"owner"`     // owner of the credential that attested the node
	TokenID         string              `json:"token_id,omitempty"`
	// Serial is the agent's current SVID; PrevSerial the one before it, still accepted until it expires
	// so connections opened before a renewal keep working.
	Serial        string    `json:"serial"`
	PrevSerial    string    `json:"prev_serial,omitempty"`
	SVIDExpiresAt time.Time `json:"svid_expires_at"`
	AttestedAt    time.Time `json:"attested_at"`
	RenewedAt     time.Time `json:"renewed_at,omitzero"`
	Banned        bool      `json:"banned,omitempty"`
	BannedAt      time.Time `json:"banned_at,omitzero"`
	BannedBy      string    `json:"banned_by,omitempty"`
}

type tokenCreateCmd struct {
	Token JoinToken `json:"token"`
	Meta  auditMeta `json:"meta"`
}

type agentAttestCmd struct {
	TokenID string    `json:"token_id"`
	Now     time.Time `json:"now"`
	Agent   Agent     `json:"agent"`
	// Ledger is the ledger batch (wire form, without type byte) recording the agent SVID.
	Ledger []byte `json:"ledger"`
}

// agentAttestNodeCmd registers an agent attested by a node attestor that consumes nothing (a new
// credential each time, like k8s_psat), with its SVID's ledger batch. Reason says what attested it.
type agentAttestNodeCmd struct {
	Now    time.Time
	Agent  Agent
	Ledger []byte
	Reason string
}

type agentRenewCmd struct {
	ID              string    `json:"id"`
	PresentedSerial string    `json:"presented_serial"`
	Serial          string    `json:"serial"`
	SVIDExpiresAt   time.Time `json:"svid_expires_at"`
	Now             time.Time `json:"now"`
	Ledger          []byte    `json:"ledger"`
}

type agentEvictCmd struct {
	ID   string    `json:"id"`
	Meta auditMeta `json:"meta"`
}

type agentBanCmd struct {
	ID  string    `json:"id"`
	By  string    `json:"by"`
	Now time.Time `json:"now"`
}

func applyTokenCreate(tx *bolt.Tx, c tokenCreateCmd) (applied, error) {
	b := tx.Bucket(bucketTokens)
	if b.Get([]byte(c.Token.ID)) != nil {
		return applied{}, fmt.Errorf("join token %q: %w: ID already in use", c.Token.ID, ErrInvalid)
	}
	if err := checkOwnerUsable(tx, c.Token.Owner); err != nil {
		return applied{}, fmt.Errorf("join token: %w", err)
	}
	t := c.Token
	mustPut(b, []byte(t.ID), mustJSON(&t))
	appendAudit(tx, c.Meta.record("token.create", t.ID), nil, t.auditView())
	return applied{resp: t, publish: func(r *registry) { r.tokenPut(&t) }}, nil
}

func applyAgentAttest(tx *bolt.Tx, index uint64, c agentAttestCmd, signed bool) (applied, error) {
	tokens := tx.Bucket(bucketTokens)
	v := tokens.Get([]byte(c.TokenID))
	if v == nil {
		return applied{}, fmt.Errorf("join token %q: %w", c.TokenID, ErrTokenNotFound)
	}
	var t JoinToken
	if err := decodeStored("join token", c.TokenID, v, &t); err != nil {
		return applied{}, err
	}
	if !t.UsedAt.IsZero() {
		return applied{}, fmt.Errorf("join token %q: %w (by %s at %s)", t.ID, ErrTokenUsed, t.UsedBy, t.UsedAt.Format(time.RFC3339))
	}
	if !c.Now.Before(t.ExpiresAt) {
		return applied{}, fmt.Errorf("join token %q: %w at %s", t.ID, ErrTokenExpired, t.ExpiresAt.Format(time.RFC3339))
	}
	if t.Revoked {
		return applied{}, fmt.Errorf("join token %q: %w (revoked when its owner was offboarded)", t.ID, ErrTokenUsed)
	}
	agents := tx.Bucket(bucketAgents)
	if err := refuseBanned(agents, c.Agent.ID); err != nil {
		return applied{}, err
	}
	t.UsedAt, t.UsedBy = c.Now, c.Agent.ID
	mustPut(tokens, []byte(t.ID), mustJSON(&t))
	a := c.Agent
	mustPut(agents, []byte(a.ID), mustJSON(&a))
	if _, err := applyLedgerAppend(tx, index, c.Ledger, signed); err != nil {
		return applied{}, err
	}
	rev := nextRevision(tx)
	appendAudit(tx, AuditRecord{Time: c.Now, Actor: "agent:" + a.ID, Action: "agent.attest", Object: a.ID,
		Reason: "join token " + t.ID + " of " + t.Owner}, nil, &a)
	return applied{resp: a, publish: func(r *registry) {
		r.tokenPut(&t)
		r.agentPut(&a, rev)
	}}, nil
}

func applyAgentAttestNode(tx *bolt.Tx, index uint64, c agentAttestNodeCmd) (applied, error) {
	if c.Agent.ID == "" || c.Agent.AttestationType == "" {
		return applied{}, fmt.Errorf("agent %q: %w: agent ID and attestation type are required", c.Agent.ID, ErrInvalid)
	}
	agents := tx.Bucket(bucketAgents)
	if err := refuseBanned(agents, c.Agent.ID); err != nil {
		return applied{}, err
	}
	a := c.Agent
	mustPut(agents, []byte(a.ID), mustJSON(&a))
	// Type 43 comes after signed_by (command version 4): its records may carry it.
	if _, err := applyLedgerAppend(tx, index, c.Ledger, true); err != nil {
		return applied{}, err
	}
	rev := nextRevision(tx)
	appendAudit(tx, AuditRecord{Time: c.Now, Actor: "agent:" + a.ID, Action: "agent.attest", Object: a.ID, Reason: c.Reason}, nil, &a)
	return applied{resp: a, publish: func(r *registry) { r.agentPut(&a, rev) }}, nil
}

// refuseBanned refuses (re-)registering an agent that is banned.
func refuseBanned(agents *bolt.Bucket, id string) error {
	v := agents.Get([]byte(id))
	if v == nil {
		return nil
	}
	var old Agent
	if err := decodeStored("agent", id, v, &old); err != nil {
		return err
	}
	if old.Banned {
		return fmt.Errorf("agent %q: %w", id, ErrAgentBanned)
	}
	return nil
}

func applyAgentRenew(tx *bolt.Tx, index uint64, c agentRenewCmd, signed bool) (applied, error) {
	agents := tx.Bucket(bucketAgents)
	v := agents.Get([]byte(c.ID))
	if v == nil {
		return applied{}, fmt.Errorf("agent %q: %w", c.ID, ErrAgentNotFound)
	}
	var a Agent
	if err := decodeStored("agent", c.ID, v, &a); err != nil {
		return applied{}, err
	}
	if a.Banned {
		return applied{}, fmt.Errorf("agent %q: %w", c.ID, ErrAgentBanned)
	}
	if c.PresentedSerial != a.Serial && c.PresentedSerial != a.PrevSerial {
		return applied{}, fmt.Errorf("agent %q: %w", c.ID, ErrAgentSVIDMismatch)
	}
	a.PrevSerial, a.Serial, a.SVIDExpiresAt, a.RenewedAt = a.Serial, c.Serial, c.SVIDExpiresAt, c.Now
	mustPut(agents, []byte(a.ID), mustJSON(&a))
	if _, err := applyLedgerAppend(tx, index, c.Ledger, signed); err != nil {
		return applied{}, err
	}
	return applied{resp: a, publish: func(r *registry) { r.agentPut(&a, 0) }}, nil
}

func applyAgentEvict(tx *bolt.Tx, c agentEvictCmd) (applied, error) {
	agents := tx.Bucket(bucketAgents)
	v := agents.Get([]byte(c.ID))
	if v == nil {
		return applied{}, fmt.Errorf("agent %q: %w", c.ID, ErrAgentNotFound)
	}
	var a Agent
	if err := decodeStored("agent", c.ID, v, &a); err != nil {
		return applied{}, err
	}
	mustDelete(agents, []byte(c.ID))
	rev := nextRevision(tx)
	appendAudit(tx, c.Meta.record("agent.evict", a.ID), &a, nil)
	return applied{resp: a, publish: func(r *registry) { r.agentDelete(c.ID, rev) }}, nil
}

func applyAgentBan(tx *bolt.Tx, c agentBanCmd) (applied, error) {
	agents := tx.Bucket(bucketAgents)
	v := agents.Get([]byte(c.ID))
	if v == nil {
		return applied{}, fmt.Errorf("agent %q: %w", c.ID, ErrAgentNotFound)
	}
	var a Agent
	if err := decodeStored("agent", c.ID, v, &a); err != nil {
		return applied{}, err
	}
	before := a
	a.Banned, a.BannedAt, a.BannedBy = true, c.Now, c.By
	a.Serial, a.PrevSerial = "", ""
	mustPut(agents, []byte(a.ID), mustJSON(&a))
	rev := nextRevision(tx)
	appendAudit(tx, AuditRecord{Time: c.Now, Actor: c.By, Action: "agent.ban", Object: a.ID}, &before, &a)
	return applied{resp: a, publish: func(r *registry) { r.agentPut(&a, rev) }}, nil
}

// CreateJoinToken stores a join token (its secret hashed by the caller).
func (s *Store) CreateJoinToken(ctx context.Context, t JoinToken) (JoinToken, error) {
	resp, err := s.propose(ctx, cmdTokenCreate, tokenCreateCmd{Token: t, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return JoinToken{}, fmt.Errorf("storage: create join token: %w", err)
	}
	return resp.(JoinToken), nil
}

// AttestAgent consumes a join token and registers (or re-registers) the agent, committing the agent
// SVID's issuance record in the same Raft command. now decides token expiry, identically on every node.
func (s *Store) AttestAgent(ctx context.Context, tokenID string, a Agent, now time.Time, rec Issuance) (Agent, error) {
	resp, err := s.proposeWithLedger(ctx, cmdAgentAttest, []Issuance{rec}, func(ledger []byte) proto.Message {
		return agentAttestCmd{TokenID: tokenID, Now: now, Agent: a, Ledger: ledger}.wire()
	})
	if err != nil {
		return Agent{}, fmt.Errorf("storage: attest agent %q: %w", a.ID, err)
	}
	return resp.(Agent), nil
}

// AttestAgentNode registers (or re-registers) an agent attested by a node attestor that consumes
// nothing, committing the agent SVID's issuance record in the same Raft command; a banned agent is
// refused. reason says what attested the node, for the audit log.
func (s *Store) AttestAgentNode(ctx context.Context, a Agent, now time.Time, reason string, rec Issuance) (Agent, error) {
	resp, err := s.proposeWithLedger(ctx, cmdAgentAttestNode, []Issuance{rec}, func(ledger []byte) proto.Message {
		return agentAttestNodeCmd{Now: now, Agent: a, Ledger: ledger, Reason: reason}.wire()
	})
	if err != nil {
		return Agent{}, fmt.Errorf("storage: attest agent %q: %w", a.ID, err)
	}
	return resp.(Agent), nil
}

// RenewAgent records an agent's new SVID; presented is the serial of the SVID it authenticated with.
func (s *Store) RenewAgent(ctx context.Context, id, presented, serial string, expires, now time.Time, rec Issuance) (Agent, error) {
	resp, err := s.proposeWithLedger(ctx, cmdAgentRenew, []Issuance{rec}, func(ledger []byte) proto.Message {
		return agentRenewCmd{ID: id, PresentedSerial: presented, Serial: serial, SVIDExpiresAt: expires, Now: now, Ledger: ledger}.wire()
	})
	if err != nil {
		return Agent{}, fmt.Errorf("storage: renew agent %q: %w", id, err)
	}
	return resp.(Agent), nil
}

// EvictAgent deletes an agent: its SVID stops being accepted at once and it must attest again.
func (s *Store) EvictAgent(ctx context.Context, id string) (Agent, error) {
	resp, err := s.propose(ctx, cmdAgentEvict, agentEvictCmd{ID: id, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return Agent{}, fmt.Errorf("storage: evict agent: %w", err)
	}
	return resp.(Agent), nil
}

// BanAgent marks an agent banned: its SVID stops being accepted and it can never attest again.
func (s *Store) BanAgent(ctx context.Context, id, by string, now time.Time) (Agent, error) {
	resp, err := s.propose(ctx, cmdAgentBan, agentBanCmd{ID: id, By: by, Now: now}.wire())
	if err != nil {
		return Agent{}, fmt.Errorf("storage: ban agent: %w", err)
	}
	return resp.(Agent), nil
}

// JoinToken returns the token with the given ID.
func (s *Store) JoinToken(id string) (JoinToken, error) {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	t, ok := s.reg.tokens[id]
	if !ok {
		return JoinToken{}, fmt.Errorf("storage: join token %q: %w", id, ErrTokenNotFound)
	}
	return *t, nil
}

// JoinTokens returns every join token, newest first.
func (s *Store) JoinTokens() []JoinToken {
	s.reg.mu.RLock()
	out := make([]JoinToken, 0, len(s.reg.tokens))
	for _, t := range s.reg.tokens {
		out = append(out, *t)
	}
	s.reg.mu.RUnlock()
	slices.SortFunc(out, func(a, b JoinToken) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out
}

// Agent returns the agent with the given SPIFFE ID.
func (s *Store) Agent(id string) (Agent, error) {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	a, ok := s.reg.agents[id]
	if !ok {
		return Agent{}, fmt.Errorf("storage: agent %q: %w", id, ErrAgentNotFound)
	}
	return *a, nil
}

// Agents returns every agent, sorted by ID.
func (s *Store) Agents() []Agent {
	s.reg.mu.RLock()
	out := make([]Agent, 0, len(s.reg.agents))
	for _, a := range s.reg.agents {
		out = append(out, *a)
	}
	s.reg.mu.RUnlock()
	slices.SortFunc(out, func(a, b Agent) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
