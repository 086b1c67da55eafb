package agentapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/bundlewire"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// AttestationJoinToken names the join-token node attestation in agent records and the ledger.
const AttestationJoinToken = "join_token"

// DefaultAgentSVIDTTL is the lifetime of agent SVIDs; agents renew them at half life.
const DefaultAgentSVIDTTL = time.Hour

// MinAgentSVIDTTL is the minimum of the server configuration's agent_svid_ttl (cmd/signet enforces it);
// the library itself accepts down to minAgentSVIDTTL, the shortest life that leaves an agent renewing
// at half life time for a round trip and a retry, so that tests can watch agent SVIDs renew and expire.
const (
	MinAgentSVIDTTL = time.Minute
	minAgentSVIDTTL = 10 * time.Second
)

// maxJoinTokenLen bounds a join token (ID.SECRET) in a request.
const maxJoinTokenLen = 256

var tokenIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// parseJoinToken splits ID.SECRET. The secret itself never appears in errors.
func parseJoinToken(token string) (id, secret string, err error) {
	if len(token) > maxJoinTokenLen {
		return "", "", fmt.Errorf("join token: %w: malformed (longer than %d bytes)", apierr.ErrInvalidArgument, maxJoinTokenLen)
	}
	id, secret, ok := strings.Cut(strings.TrimSpace(token), ".")
	if !ok || !tokenIDRE.MatchString(id) || secret == "" {
		return "", "", fmt.Errorf("join token: %w: malformed (want ID.SECRET exactly as printed by 'signet token create')", apierr.ErrInvalidArgument)
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
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: unknown token (create one with 'signet token create')", id, apierr.ErrPermissionDenied)
	}
	if !t.UsedAt.IsZero() {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: already used by %s at %s; tokens are single use", id, apierr.ErrPermissionDenied, t.UsedBy, t.UsedAt.Format(time.RFC3339))
	}
	if !now.Before(t.ExpiresAt) {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: expired at %s", id, apierr.ErrPermissionDenied, t.ExpiresAt.Format(time.RFC3339))
	}
	// The store refuses these too (applyAgentAttest), but only after an agent SVID was signed: refuse
	// first. storage.JoinToken has no validity method to share yet, so the checks are repeated here.
	if t.Revoked {
		return storage.JoinToken{}, fmt.Errorf("join token %s: %w: revoked (its owner %s was offboarded)", id, apierr.ErrPermissionDenied, t.Owner)
	}
	return t, nil
}

// malformedLogEvery is how often a malformed join token may be logged: anyone can send one.
const malformedLogEvery = 10 * time.Second

// AttestAgent attests a node with a join token and issues its first agent SVID. The token is consumed
// and the agent registered in the same Raft write that records the SVID in the ledger.
func (s *AgentService) AttestAgent(ctx context.Context, req *agentv1.AttestAgentRequest) (*agentv1.AttestAgentResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, apierr.ToStatus(err)
	}
	now := s.cfg.Clock()
	id, secret, err := parseJoinToken(req.GetJoinToken())
	if err != nil {
		// No credential is needed to send garbage: log it (rate-limited), never write it to the
		// replicated audit log.
		s.malformed.Warn(s.log, now, "agent attestation refused: malformed join token", "error", err)
		return nil, apierr.ToStatus(err)
	}
	tok, err := s.checkJoinToken(ctx, id, secret, now)
	if err != nil {
		s.refusals.Warn(s.log, now, "agent attestation refused", "error", err)
		s.audit.Denied(ctx, "unattested node", "agent.attest", id, err)
		return nil, apierr.ToStatus(err)
	}
	agentID := issuer.AgentIDForToken(s.cfg.TrustDomain, tok.ID)
	if tok.SPIFFEID != "" {
		if agentID, err = spiffeid.FromString(tok.SPIFFEID); err != nil {
			return nil, apierr.ToStatus(fmt.Errorf("join token %s: stored SPIFFE ID: %w", tok.ID, err))
		}
	}
	if a, err := s.cfg.Store.Agent(agentID.String()); err == nil && a.Banned {
		return nil, apierr.ToStatus(fmt.Errorf("agent %s: %w: banned by %s at %s", agentID, apierr.ErrPermissionDenied, a.BannedBy, a.BannedAt.Format(time.RFC3339)))
	}
	// The bundle is converted before anything is signed or the token consumed: a failure leaves the
	// token usable.
	bundle, err := bundlewire.ToAgent(s.cfg.TrustDomain, s.cfg.Store.Bundle())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	sels := []selector.Selector{ // JoinTokenSelectorType declares them
		{Type: AttestationJoinToken, Value: "id:" + tok.ID},
		{Type: AttestationJoinToken, Value: "owner:" + tok.Owner},
	}
	// A new agent waits for disk space like any issuance. Renewals do not (see RenewAgent).
	if err := s.cfg.Issuer.CheckDisk(); err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("agent %s: %w", agentID, err))
	}
	cert, rec, err := s.signAgentSVID(agentID, req.GetCsr(), tok.Owner, sels)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	agent := storage.Agent{ID: agentID.String(), AttestationType: AttestationJoinToken, Selectors: selector.Normalize(sels),
		Owner: tok.Owner, TokenID: tok.ID, Serial: rec.ID, SVIDExpiresAt: cert.NotAfter, AttestedAt: now.UTC()}
	if _, err := s.cfg.Store.AttestAgent(ctx, tok.ID, agent, now.UTC(), rec); err != nil {
		s.refusals.Warn(s.log, now, "agent attestation refused", "agent", agentID, "error", err)
		s.audit.Denied(ctx, "unattested node", "agent.attest", agentID.String(), err)
		return nil, apierr.ToStatus(err)
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
		return nil, apierr.ToStatus(err)
	}
	caller, err := s.cfg.Authenticate(ctx)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	presented, err := peerSVID(ctx)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	// Whatever authenticated the call: an expired SVID never renews itself.
	if err := checkSVIDTime(caller.AgentID, presented, s.cfg.Clock()); err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("renewal refused: %w", err))
	}
	a, err := s.cfg.Store.Agent(caller.AgentID.String())
	if err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("agent %s: %w: not registered", caller.AgentID, apierr.ErrPermissionDenied))
	}
	cert, rec, err := s.signAgentSVID(caller.AgentID, req.GetCsr(), a.Owner, a.Selectors)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	if _, err := s.cfg.Store.RenewAgent(ctx, a.ID, presented.SerialNumber.Text(16), rec.ID, cert.NotAfter, s.cfg.Clock().UTC(), rec); err != nil {
		return nil, apierr.ToStatus(err)
	}
	return &agentv1.RenewAgentResponse{SvidChain: [][]byte{cert.Raw}}, nil
}

// signAgentSVID has the issuer sign an agent SVID for the CSR's key and build its ledger record.
func (s *AgentService) signAgentSVID(id spiffeid.ID, csrDER []byte, owner string, sels []selector.Selector) (*x509.Certificate, storage.Issuance, error) {
	return s.cfg.Issuer.SignAgentSVID(issuer.AgentSVIDRequest{ID: id, CSR: csrDER, TTL: s.cfg.AgentSVIDTTL, Owner: owner,
		Selectors: sels, Attestation: AttestationJoinToken})
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
