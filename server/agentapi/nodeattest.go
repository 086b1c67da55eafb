package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/bundlewire"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// AttestationJoinToken names the join-token node attestation in agent records and the ledger.
const AttestationJoinToken = jointoken.Type

// DefaultAgentSVIDTTL is the lifetime of agent SVIDs; agents renew them at half life.
const DefaultAgentSVIDTTL = time.Hour

// MinAgentSVIDTTL is the minimum of the server configuration's agent_svid_ttl (cmd/signet enforces it);
// the library itself accepts down to minAgentSVIDTTL, the shortest life that leaves an agent renewing
// at half life time for a round trip and a retry, so that tests can watch agent SVIDs renew and expire.
const (
	MinAgentSVIDTTL = time.Minute
	minAgentSVIDTTL = 10 * time.Second
)

// NodeAttestor is a server-side node attestor: it attests a node from the payload of its type
// (AttestAgentRequest.attestation_payload) and says which agent the node is. It consumes nothing
// itself: a join token it names is consumed by the agent API in the Raft command registering the agent.
// Errors wrap nodeattest.ErrMalformed, ErrRefused or ErrUnavailable.
type NodeAttestor interface {
	Type() string
	Attest(ctx context.Context, payload []byte, now time.Time) (nodeattest.Attestation, error)
}

// malformedLogEvery is how often a malformed attestation may be logged: anyone can send one.
const malformedLogEvery = 10 * time.Second

// attestor returns the node attestor a request names: attestation_type with its payload, or (the form
// of agents before node attestors) a join token alone.
func (s *AgentService) attestor(req *agentv1.AttestAgentRequest) (NodeAttestor, []byte, error) {
	typ, payload := req.GetAttestationType(), req.GetAttestationPayload()
	switch {
	case typ == "" && len(payload) == 0:
		typ, payload = jointoken.Type, []byte(req.GetJoinToken())
	case req.GetJoinToken() != "":
		return nil, nil, fmt.Errorf("join_token: %w: set either join_token or attestation_type and attestation_payload, not both", apierr.ErrInvalidArgument)
	case typ == "":
		return nil, nil, fmt.Errorf("attestation_type: %w: required with attestation_payload", apierr.ErrInvalidArgument)
	}
	a, ok := s.attestors[typ]
	if !ok {
		return nil, nil, fmt.Errorf("attestation_type %q: %w: this server has no such node attestor (it has: %s)", typ, apierr.ErrInvalidArgument, s.attestorTypes())
	}
	return a, payload, nil
}

func (s *AgentService) attestorTypes() string {
	names := make([]string, 0, len(s.attestors))
	for _, a := range s.cfg.NodeAttestors {
		names = append(names, a.Type())
	}
	return strings.Join(names, ", ")
}

// AttestAgent attests a node with the node attestor the request names and issues its first agent SVID.
// The agent is registered in the same Raft write that records the SVID in the ledger (and, for a join
// token, consumes the token): a refused or failed attestation changes nothing.
func (s *AgentService) AttestAgent(ctx context.Context, req *agentv1.AttestAgentRequest) (*agentv1.AttestAgentResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, apierr.ToStatus(err)
	}
	now := s.cfg.Clock()
	na, payload, err := s.attestor(req)
	if err != nil {
		s.malformed.Warn(s.log, now, "agent attestation refused", "error", err)
		return nil, apierr.ToStatus(err)
	}
	att, err := na.Attest(ctx, payload, now)
	switch {
	case errors.Is(err, nodeattest.ErrMalformed):
		// No credential is needed to send garbage: log it (rate-limited), never write it to the
		// replicated audit log.
		s.malformed.Warn(s.log, now, "agent attestation refused: malformed "+na.Type(), "error", err)
		return nil, apierr.ToStatus(err)
	case errors.Is(err, nodeattest.ErrRefused):
		s.refusals.Warn(s.log, now, "agent attestation refused", "type", na.Type(), "error", err)
		s.audit.Denied(ctx, "unattested node", "agent.attest", att.Subject, err)
		return nil, apierr.ToStatus(err)
	case err != nil:
		s.refusals.Warn(s.log, now, "agent attestation failed", "type", na.Type(), "error", err)
		return nil, apierr.ToStatus(err)
	}
	if err := s.checkAttestation(na.Type(), att); err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("%s attestor: %w", na.Type(), err))
	}
	agentID := att.AgentID
	if a, err := s.cfg.Store.Agent(agentID.String()); err == nil && (a.Banned || att.FirstUseOnly) {
		err := fmt.Errorf("agent %s: %w: banned by %s at %s", agentID, apierr.ErrPermissionDenied, a.BannedBy, a.BannedAt.Format(time.RFC3339))
		if !a.Banned {
			// Checked again by the store, in the command that registers the agent: this only spares a
			// signature and a ledger record.
			err = fmt.Errorf("agent %s: %w at %s (%s attests a node once): evict the agent to let the node attest again", agentID,
				storage.ErrAgentAttested, a.AttestedAt.UTC().Format(time.RFC3339), na.Type())
		}
		s.refusals.Warn(s.log, now, "agent attestation refused", "agent", agentID, "error", err)
		s.audit.Denied(ctx, "unattested node", "agent.attest", agentID.String(), err)
		return nil, apierr.ToStatus(err)
	}
	// The bundle is converted before anything is signed or a token consumed: a failure leaves the
	// token usable.
	bundle, err := bundlewire.ToAgent(s.cfg.TrustDomain, s.cfg.Store.Bundle())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	// A new agent waits for disk space like any issuance. Renewals do not (see RenewAgent).
	if err := s.cfg.Issuer.CheckDisk(); err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("agent %s: %w", agentID, err))
	}
	sels := selector.Normalize(att.Selectors)
	chain, rec, err := s.signAgentSVID(agentID, req.GetCsr(), att.Owner, sels, na.Type())
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	agent := storage.Agent{ID: agentID.String(), AttestationType: na.Type(), Selectors: sels,
		Owner: att.Owner, TokenID: att.ConsumeJoinToken, Serial: rec.ID, SVIDExpiresAt: chain[0].NotAfter, AttestedAt: now.UTC()}
	switch {
	case att.ConsumeJoinToken != "":
		_, err = s.cfg.Store.AttestAgent(ctx, att.ConsumeJoinToken, agent, now.UTC(), rec)
	case att.FirstUseOnly:
		_, err = s.cfg.Store.AttestAgentNodeFirstUse(ctx, agent, now.UTC(), att.Reason, rec)
	default:
		_, err = s.cfg.Store.AttestAgentNode(ctx, agent, now.UTC(), att.Reason, rec)
	}
	if err != nil {
		s.refusals.Warn(s.log, now, "agent attestation refused", "agent", agentID, "error", err)
		s.audit.Denied(ctx, "unattested node", "agent.attest", agentID.String(), err)
		return nil, apierr.ToStatus(err)
	}
	s.log.Info("agent attested", "agent", agentID, "type", na.Type(), "subject", att.Subject, "owner", att.Owner)
	return &agentv1.AttestAgentResponse{SpiffeId: agentID.String(), SvidChain: chainDER(chain), Bundle: bundle,
		Reattestable: att.Reattestable}, nil
}

// checkAttestation refuses what no attestor may conclude: an agent ID outside this trust domain's
// agent path, no owner, or selectors of another type than the attestor's (a node attestor speaks only
// for its own selector type, so one attestor can never grant another's node aliases).
func (s *AgentService) checkAttestation(typ string, att nodeattest.Attestation) error {
	if att.AgentID.TrustDomain() != s.cfg.TrustDomain || !strings.HasPrefix(att.AgentID.Path(), issuer.AgentPathPrefix) {
		return fmt.Errorf("agent ID %q: not under spiffe://%s%s", att.AgentID, s.cfg.TrustDomain, issuer.AgentPathPrefix)
	}
	if att.Owner == "" {
		return errors.New("no owner for the agent SVID")
	}
	for _, sel := range att.Selectors {
		if sel.Type != typ {
			return fmt.Errorf("selector %q: not of the attestor's type %q", sel, typ)
		}
	}
	return nil
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
	chain, rec, err := s.signAgentSVID(caller.AgentID, req.GetCsr(), a.Owner, a.Selectors, a.AttestationType)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	if _, err := s.cfg.Store.RenewAgent(ctx, a.ID, presented.SerialNumber.Text(16), rec.ID, chain[0].NotAfter, s.cfg.Clock().UTC(), rec); err != nil {
		return nil, apierr.ToStatus(err)
	}
	return &agentv1.RenewAgentResponse{SvidChain: chainDER(chain)}, nil
}

// chainDER is chain's certificates in DER, leaf first, as the agent API sends them.
func chainDER(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

// signAgentSVID has the issuer sign an agent SVID for the CSR's key and build its ledger record.
func (s *AgentService) signAgentSVID(id spiffeid.ID, csrDER []byte, owner string, sels []selector.Selector, attestation string) ([]*x509.Certificate, storage.Issuance, error) {
	return s.cfg.Issuer.SignAgentSVID(issuer.AgentSVIDRequest{ID: id, CSR: csrDER, TTL: s.cfg.AgentSVIDTTL, Owner: owner,
		Selectors: sels, Attestation: attestation})
}

var errNoClientCert = errors.New("no client certificate")
