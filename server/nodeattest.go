package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// AttestationJoinToken names the join-token node attestation in agent records and the ledger.
const AttestationJoinToken = "join_token"

// DefaultAgentSVIDTTL is the lifetime of agent SVIDs; agents renew them at half life.
const DefaultAgentSVIDTTL = time.Hour

// Join token limits.
const (
	maxJoinTokenTTL = 30 * 24 * time.Hour
	maxJoinTokenLen = 256
)

var tokenIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// newJoinToken returns a token ID, the secret to hand to the agent (ID.SECRET) and the secret's hash.
func newJoinToken() (id, token string, hash []byte, err error) {
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

// parseJoinToken splits ID.SECRET. The secret itself never appears in errors.
func parseJoinToken(token string) (id, secret string, err error) {
	if len(token) > maxJoinTokenLen {
		return "", "", fmt.Errorf("join token: %w: malformed (longer than %d bytes)", ErrInvalidArgument, maxJoinTokenLen)
	}
	id, secret, ok := strings.Cut(strings.TrimSpace(token), ".")
	if !ok || !tokenIDRE.MatchString(id) || secret == "" {
		return "", "", fmt.Errorf("join token: %w: malformed (want ID.SECRET exactly as printed by 'signet token create')", ErrInvalidArgument)
	}
	return id, secret, nil
}

// checkJoinToken finds the token, compares the secret in constant time and refuses a used, expired or
// revoked token. Wrong secrets and unknown IDs get the same answer. A token this server does not know
// is looked up again after a read barrier: it may have been created through another server a moment
// ago and not be applied here yet.
func (s *AgentService) checkJoinToken(ctx context.Context, id, secret string, now time.Time) (storage.JoinToken, error) {
	t, err := s.cfg.Store.JoinToken(id)
	if errors.Is(err, storage.ErrTokenNotFound) && s.cfg.Store.ReadBarrier(ctx) == nil {
		t, err = s.cfg.Store.JoinToken(id)
	}
	sum := sha256.Sum256([]byte(secret))
	if err != nil || subtle.ConstantTimeCompare(sum[:], t.SecretHash) != 1 {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: unknown token (create one with 'signet token create')", id, ErrPermissionDenied)
	}
	if !t.UsedAt.IsZero() {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: already used by %s at %s; tokens are single use", id, ErrPermissionDenied, t.UsedBy, t.UsedAt.Format(time.RFC3339))
	}
	if !now.Before(t.ExpiresAt) {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: expired at %s", id, ErrPermissionDenied, t.ExpiresAt.Format(time.RFC3339))
	}
	// The store refuses these too (applyAgentAttest), but only after an agent SVID was signed: refuse
	// first. storage.JoinToken has no validity method to share yet, so the checks are repeated here.
	if t.Revoked {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: revoked (its owner %s was offboarded)", id, ErrPermissionDenied, t.Owner)
	}
	return t, nil
}

// malformedLogEvery is how often a malformed join token may be logged: anyone can send one.
const malformedLogEvery = 10 * time.Second

// AttestAgent attests a node with a join token and issues its first agent SVID. The token is consumed
// and the agent registered in the same Raft write that records the SVID in the ledger.
func (s *AgentService) AttestAgent(ctx context.Context, req *agentv1.AttestAgentRequest) (*agentv1.AttestAgentResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	now := s.cfg.Clock()
	id, secret, err := parseJoinToken(req.GetJoinToken())
	if err != nil {
		// No credential is needed to send garbage: log it (rate-limited), never write it to the
		// replicated audit log.
		s.malformed.Warn(s.log, now, "agent attestation refused: malformed join token", "error", err)
		return nil, toStatus(err)
	}
	tok, err := s.checkJoinToken(ctx, id, secret, now)
	if err != nil {
		s.refusals.Warn(s.log, now, "agent attestation refused", "error", err)
		s.audit.denied(ctx, "unattested node", "agent.attest", id, err)
		return nil, toStatus(err)
	}
	agentID := AgentIDForToken(s.cfg.TrustDomain, tok.ID)
	if tok.SPIFFEID != "" {
		if agentID, err = spiffeid.FromString(tok.SPIFFEID); err != nil {
			return nil, toStatus(fmt.Errorf("join token %s: stored SPIFFE ID: %w", tok.ID, err))
		}
	}
	if a, err := s.cfg.Store.Agent(agentID.String()); err == nil && a.Banned {
		return nil, toStatus(fmt.Errorf("agent %s: %w: banned by %s at %s", agentID, ErrPermissionDenied, a.BannedBy, a.BannedAt.Format(time.RFC3339)))
	}
	// The bundle is converted before anything is signed or the token consumed: a failure leaves the
	// token usable.
	bundle, err := bundleToAgent(s.cfg.TrustDomain, s.cfg.Store.Bundle())
	if err != nil {
		return nil, toStatus(err)
	}
	sels := []selector.Selector{ // JoinTokenSelectorType declares them
		{Type: AttestationJoinToken, Value: "id:" + tok.ID},
		{Type: AttestationJoinToken, Value: "owner:" + tok.Owner},
	}
	// A new agent waits for disk space like any issuance. Renewals do not (see RenewAgent).
	if err := s.cfg.Issuer.disk.check(); err != nil {
		return nil, toStatus(fmt.Errorf("agent %s: %w", agentID, err))
	}
	cert, rec, err := s.signAgentSVID(agentID, req.GetCsr(), tok.Owner, sels)
	if err != nil {
		return nil, toStatus(err)
	}
	agent := storage.Agent{ID: agentID.String(), AttestationType: AttestationJoinToken, Selectors: selector.Normalize(sels),
		Owner: tok.Owner, TokenID: tok.ID, Serial: rec.ID, SVIDExpiresAt: cert.NotAfter, AttestedAt: now.UTC()}
	if _, err := s.cfg.Store.AttestAgent(ctx, tok.ID, agent, now.UTC(), rec); err != nil {
		s.refusals.Warn(s.log, now, "agent attestation refused", "agent", agentID, "error", err)
		s.audit.denied(ctx, "unattested node", "agent.attest", agentID.String(), err)
		return nil, toStatus(err)
	}
	s.log.Info("agent attested", "agent", agentID, "token", tok.ID, "owner", tok.Owner)
	return &agentv1.AttestAgentResponse{SpiffeId: agentID.String(), SvidChain: [][]byte{cert.Raw}, Bundle: bundle}, nil
}

// RenewAgent issues a new SVID to an authenticated agent. min_free_disk does not apply: an agent
// refused renewal until its SVID expired would need a new join token, so a soft limit would become
// manual work on every node; a renewal is one small record per agent per half life, and a disk really
// full still fails its record.
func (s *AgentService) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	caller, err := s.cfg.Authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	presented, err := peerSVID(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	// Whatever authenticated the call: an expired SVID never renews itself.
	if err := checkSVIDTime(caller.AgentID, presented, s.cfg.Clock()); err != nil {
		return nil, toStatus(fmt.Errorf("renewal refused: %w", err))
	}
	a, err := s.cfg.Store.Agent(caller.AgentID.String())
	if err != nil {
		return nil, toStatus(fmt.Errorf("agent %s: %w: not registered", caller.AgentID, ErrPermissionDenied))
	}
	cert, rec, err := s.signAgentSVID(caller.AgentID, req.GetCsr(), a.Owner, a.Selectors)
	if err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.cfg.Store.RenewAgent(ctx, a.ID, presented.SerialNumber.Text(16), rec.ID, cert.NotAfter, s.cfg.Clock().UTC(), rec); err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.RenewAgentResponse{SvidChain: [][]byte{cert.Raw}}, nil
}

// signAgentSVID signs an agent SVID for the CSR's key and builds its ledger record.
func (s *AgentService) signAgentSVID(id spiffeid.ID, csrDER []byte, owner string, sels []selector.Selector) (*x509.Certificate, storage.Issuance, error) {
	csr, err := parseCSR(csrDER, id.String())
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("agent %s: %w", id, err)
	}
	ttl := min(s.cfg.AgentSVIDTTL, s.cfg.Issuer.cfg.CA.RemainingLife()-time.Minute)
	cert, err := s.cfg.Issuer.cfg.CA.SignX509SVID(ca.X509SVIDParams{SPIFFEID: id, PublicKey: csr.PublicKey, TTL: ttl})
	if err != nil {
		return nil, storage.Issuance{}, fmt.Errorf("agent %s: %w", id, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	rec := storage.Issuance{ID: cert.SerialNumber.Text(16), Kind: storage.KindX509SVID, SPIFFEID: id.String(),
		Owner: owner, Selectors: selector.Strings(sels), PublicKeySHA256: hex.EncodeToString(sum[:]),
		ExpiresAt: cert.NotAfter.UTC(), Node: s.cfg.Issuer.cfg.NodeID, Agent: id.String(), NodeAttestation: AttestationJoinToken}
	return cert, rec, nil
}

// validateTokenRequest checks an admin's join token request and returns its TTL.
func validateTokenRequest(td spiffeid.TrustDomain, owner string, ttlSeconds int64, spiffeID string) (time.Duration, error) {
	if err := validateOwnerName("owner", owner); err != nil {
		return 0, fmt.Errorf("join token: %w (every node is vouched for by an owner: --owner NAME)", err)
	}
	if ttlSeconds <= 0 {
		return 0, fmt.Errorf("join token: ttl_seconds %d: %w: must be positive", ttlSeconds, ErrInvalidArgument)
	}
	if ttlSeconds > int64(maxJoinTokenTTL/time.Second) {
		return 0, fmt.Errorf("join token: ttl_seconds %d: %w: at most %s", ttlSeconds, ErrInvalidArgument, maxJoinTokenTTL)
	}
	if spiffeID != "" {
		id, err := spiffeid.FromString(spiffeID)
		if err != nil || id.TrustDomain() != td || id.Path() == "" {
			return 0, fmt.Errorf("join token: spiffe_id %q: %w: want a SPIFFE ID with a path in trust domain %q", spiffeID, ErrInvalidArgument, td.Name())
		}
		// An agent ID outside the agent path would let the node hold a workload's, or a server's, identity.
		if !strings.HasPrefix(id.Path(), agentPathPrefix) {
			return 0, fmt.Errorf("join token: spiffe_id %q: %w: agent IDs are under %s (e.g. spiffe://%s%sweb-1)",
				spiffeID, ErrInvalidArgument, agentPathPrefix, td.Name(), agentPathPrefix)
		}
	}
	return time.Duration(ttlSeconds) * time.Second, nil
}

var errNoClientCert = errors.New("no client certificate")

// JoinTokenSelectorType declares the node selectors of agents attested with a join token
// (join_token:id:<token ID>, join_token:owner:<owner>), for the server's selector.Registry.
func JoinTokenSelectorType() selector.Type {
	return selector.Type{Name: AttestationJoinToken, Kind: selector.Node, Keys: map[string]selector.ValueCheck{
		"owner": selector.NameValue,
		"id":    selector.TokenIDValue,
	}}
}
