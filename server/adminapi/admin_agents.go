package adminapi

import (
	"context"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxBatchEntries bounds one BatchCreateEntries call.
const MaxBatchEntries = 10000

// BatchCreateEntries validates every entry and stores the valid ones in one Raft write.
func (s *AdminService) BatchCreateEntries(ctx context.Context, req *adminv1.BatchCreateEntriesRequest) (*adminv1.BatchCreateEntriesResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if ctx, err = s.withPolicy(storage.WithActor(ctx, admin)); err != nil {
		return nil, toStatus(err)
	}
	if n := len(req.GetEntries()); n == 0 || n > MaxBatchEntries {
		return nil, status.Errorf(codes.InvalidArgument, "entries: %d given, want 1 to %d", n, MaxBatchEntries)
	}
	resp := &adminv1.BatchCreateEntriesResponse{Results: make([]*adminv1.BatchCreateEntriesResult, len(req.Entries))}
	rules := s.rulesFor(ctx)
	now := s.cfg.Clock().UTC().Truncate(time.Second)
	var valid []storage.Entry
	var at []int
	for i, in := range req.Entries {
		resp.Results[i] = &adminv1.BatchCreateEntriesResult{}
		e, err := s.prepareEntry(ctx, in, rules, admin, now)
		if err != nil {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = int32(codeOf(err)), err.Error()
			continue
		}
		valid = append(valid, e)
		at = append(at, i)
	}
	if len(valid) > 0 {
		results, err := s.cfg.Store.CreateEntries(ctx, valid)
		if err != nil {
			return nil, toStatus(err)
		}
		for j, r := range results {
			out := resp.Results[at[j]]
			if r.Err != nil {
				out.ErrorCode, out.ErrorMessage = int32(codeOf(r.Err)), r.Err.Error()
				continue
			}
			out.Entry = entryToAdmin(&r.Entry)
		}
	}
	s.log.Info("entries created in batch", "requested", len(req.Entries), "valid", len(valid), "by", admin)
	return resp, nil
}

// prepareEntry turns an admin request into a validated entry with server-assigned fields.
func (s *AdminService) prepareEntry(ctx context.Context, in *adminv1.Entry, rules entryRules, admin string, now time.Time) (storage.Entry, error) {
	if in == nil {
		return storage.Entry{}, status.Error(codes.InvalidArgument, "entry is required")
	}
	if in.Id != "" || in.CreatedAt != 0 || in.CreatedBy != "" || in.Revision != 0 {
		return storage.Entry{}, status.Error(codes.InvalidArgument, "entry: id, created_at, created_by and revision are set by the server; leave them empty")
	}
	e, err := entryFromAdmin(in)
	if err != nil {
		return storage.Entry{}, err
	}
	if e.ParentID == "" {
		e.ParentID = s.cfg.DefaultParentID
	}
	if e.ExpiresAt.IsZero() && !e.NeverExpires {
		e.ExpiresAt = now.Add(s.entryTTL(ctx))
	}
	if err := rules.validateEntry(&e); err != nil {
		return storage.Entry{}, err
	}
	if err := s.checkPolicy(ctx, &e, admin, "create"); err != nil {
		return storage.Entry{}, err
	}
	if e.ID, err = NewEntryID(); err != nil {
		return storage.Entry{}, err
	}
	e.CreatedAt, e.CreatedBy = now, admin
	return e, nil
}

// CreateJoinToken creates a single-use join token bound to an owner. The secret is returned once and
// only its hash is stored.
func (s *AdminService) CreateJoinToken(ctx context.Context, req *adminv1.CreateJoinTokenRequest) (*adminv1.CreateJoinTokenResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	ttl, err := validateTokenRequest(s.cfg.TrustDomain, req.GetOwner(), req.GetTtlSeconds(), req.GetSpiffeId())
	if err != nil {
		return nil, toStatus(err)
	}
	id, secret, hash, err := NewJoinToken()
	if err != nil {
		return nil, toStatus(err)
	}
	now := s.cfg.Clock().UTC()
	t, err := s.cfg.Store.CreateJoinToken(ctx, storage.JoinToken{ID: id, SecretHash: hash, Owner: req.GetOwner(),
		SPIFFEID: req.GetSpiffeId(), ExpiresAt: now.Add(ttl), CreatedAt: now, CreatedBy: admin})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("join token created", "token", id, "owner", t.Owner, "expires_at", t.ExpiresAt, "by", admin)
	return &adminv1.CreateJoinTokenResponse{Token: tokenToAdmin(&t), Secret: secret}, nil
}

// ListJoinTokens lists tokens (never their secrets).
func (s *AdminService) ListJoinTokens(ctx context.Context, _ *adminv1.ListJoinTokensRequest) (*adminv1.ListJoinTokensResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	resp := &adminv1.ListJoinTokensResponse{}
	for _, t := range s.cfg.Store.JoinTokens() {
		resp.Tokens = append(resp.Tokens, tokenToAdmin(&t))
	}
	return resp, nil
}

// ListAgents lists attested agents.
func (s *AdminService) ListAgents(ctx context.Context, _ *adminv1.ListAgentsRequest) (*adminv1.ListAgentsResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	resp := &adminv1.ListAgentsResponse{}
	for _, a := range s.cfg.Store.Agents() {
		resp.Agents = append(resp.Agents, agentToAdmin(&a))
	}
	return resp, nil
}

// GetAgent returns one agent.
func (s *AdminService) GetAgent(ctx context.Context, req *adminv1.GetAgentRequest) (*adminv1.AgentInfo, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	a, err := s.cfg.Store.Agent(req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return agentToAdmin(&a), nil
}

// EvictAgent deletes an agent: it must attest again.
func (s *AdminService) EvictAgent(ctx context.Context, req *adminv1.EvictAgentRequest) (*adminv1.AgentInfo, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	a, err := s.cfg.Store.EvictAgent(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("agent evicted", "agent", a.ID, "by", admin)
	return agentToAdmin(&a), nil
}

// BanAgent bans an agent: it can never attest again under its ID.
func (s *AdminService) BanAgent(ctx context.Context, req *adminv1.BanAgentRequest) (*adminv1.AgentInfo, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	a, err := s.cfg.Store.BanAgent(ctx, req.GetId(), admin, s.cfg.Clock().UTC())
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("agent banned", "agent", a.ID, "by", admin)
	return agentToAdmin(&a), nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func tokenToAdmin(t *storage.JoinToken) *adminv1.JoinToken {
	return &adminv1.JoinToken{Id: t.ID, Owner: t.Owner, SpiffeId: t.SPIFFEID, ExpiresAt: t.ExpiresAt.Unix(),
		CreatedAt: t.CreatedAt.Unix(), CreatedBy: t.CreatedBy, UsedAt: unixOrZero(t.UsedAt), UsedBy: t.UsedBy}
}

func agentToAdmin(a *storage.Agent) *adminv1.AgentInfo {
	out := &adminv1.AgentInfo{Id: a.ID, AttestationType: a.AttestationType, Owner: a.Owner, TokenId: a.TokenID,
		Serial: a.Serial, SvidExpiresAt: unixOrZero(a.SVIDExpiresAt), AttestedAt: unixOrZero(a.AttestedAt),
		RenewedAt: unixOrZero(a.RenewedAt), Banned: a.Banned, BannedAt: unixOrZero(a.BannedAt), BannedBy: a.BannedBy}
	for _, s := range a.Selectors {
		out.Selectors = append(out.Selectors, &adminv1.Selector{Type: s.Type, Value: s.Value})
	}
	return out
}
