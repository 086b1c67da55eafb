package adminapi

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Review thresholds.
const (
	defaultStale   = 30 * 24 * time.Hour
	expiringWithin = 14 * 24 * time.Hour

	rateJumpFactor     = 3
	rateJumpMinimum    = 20 // issuances in a day below which a jump is noise
	sharedNodesAbove   = 10
	maxReviewStaleDays = 3650
)

// reviewEntries lists what a reviewer must look at, entry by entry, and unused join tokens.
func (s *AdminService) reviewItems(now time.Time, stale time.Duration) ([]*adminv1.ReviewItem, error) {
	activity, err := s.cfg.Store.Activity(now)
	if err != nil {
		return nil, err
	}
	owners := map[string]storage.Owner{}
	for _, o := range s.cfg.Store.Owners() {
		owners[o.Name] = o
	}
	agentOwner := map[string]string{}
	for _, a := range s.cfg.Store.Agents() {
		agentOwner[a.ID] = a.Owner
	}
	entries := s.cfg.Store.Entries()
	// Who received each SPIFFE ID (over all its entries): a shared identity is one issued to agents of
	// different owners or to many nodes.
	type reach struct{ agents, owners map[string]bool }
	bySPIFFE := map[string]*reach{}
	for _, e := range entries {
		a := activity[e.ID]
		if a == nil {
			continue
		}
		r := bySPIFFE[e.SPIFFEID]
		if r == nil {
			r = &reach{agents: map[string]bool{}, owners: map[string]bool{}}
			bySPIFFE[e.SPIFFEID] = r
		}
		for _, ag := range a.Stats.Agents {
			r.agents[ag] = true
			if o := agentOwner[ag]; o != "" {
				r.owners[o] = true
			}
		}
	}
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02") }
	var items []*adminv1.ReviewItem
	for _, e := range entries {
		if e.Disabled {
			continue
		}
		var f []string
		a := activity[e.ID]
		// Use is what workloads received (agents' delivery reports), not what was minted: a prefetch
		// entry is minted whether or not anything uses it.
		switch {
		case a == nil || a.Deliveries.Count == 0:
			if now.Sub(e.CreatedAt) >= stale {
				minted := "never issued"
				if a != nil && a.Stats.Count > 0 {
					minted = fmt.Sprintf("minted %d times, never delivered", a.Stats.Count)
				}
				f = append(f, fmt.Sprintf("never used: no SVID delivered to a workload since it was created on %s (%s)", day(e.CreatedAt), minted))
			}
		case now.Sub(a.Deliveries.LastDeliveredAt) >= stale:
			f = append(f, fmt.Sprintf("not used since %s (%d days): no SVID delivered to a workload since", day(a.Deliveries.LastDeliveredAt),
				int(now.Sub(a.Deliveries.LastDeliveredAt).Hours()/24)))
		}
		switch {
		case e.Expired(now):
			f = append(f, "expired on "+day(e.ExpiresAt))
		case !e.ExpiresAt.IsZero() && e.ExpiresAt.Sub(now) <= expiringWithin:
			f = append(f, "expires within 14 days, on "+day(e.ExpiresAt))
		case e.NeverExpires || e.ExpiresAt.IsZero():
			f = append(f, "never expires")
		}
		if o, ok := owners[e.Owner]; !ok {
			f = append(f, "owner "+e.Owner+" does not exist")
		} else if o.Offboarded {
			f = append(f, "owner "+e.Owner+" was offboarded on "+day(o.OffboardedAt))
		}
		if isAdminEntry(e.SPIFFEID) {
			f = append(f, "admin identity (its SPIFFE ID has an admin path segment)")
		}
		if e.Pending {
			f = append(f, "waiting for approval ("+strings.Join(e.PendingRules, ", ")+")")
		}
		if r := bySPIFFE[e.SPIFFEID]; r != nil {
			if len(r.owners) > 1 {
				f = append(f, fmt.Sprintf("shared identity: issued to agents of %d different owners (%s)", len(r.owners), strings.Join(sortedKeys(r.owners), ", ")))
			} else if len(r.agents) > sharedNodesAbove {
				f = append(f, fmt.Sprintf("shared identity: issued to %d different nodes", len(r.agents)))
			}
		}
		if a != nil {
			today := a.Daily[len(a.Daily)-1]
			var prior uint64
			for _, c := range a.Daily[:len(a.Daily)-1] {
				prior += c
			}
			avg := float64(prior) / float64(len(a.Daily)-1)
			if today >= rateJumpMinimum && float64(today) > rateJumpFactor*max(avg, 1) {
				f = append(f, fmt.Sprintf("issuance rate jumped: %d today against %.1f a day over the previous 14 days", today, avg))
			}
		}
		if len(f) > 0 {
			items = append(items, &adminv1.ReviewItem{Kind: "entry", Id: e.ID, SpiffeId: e.SPIFFEID, Owner: e.Owner, Findings: f})
		}
	}
	for _, t := range s.cfg.Store.JoinTokens() {
		if !t.UsedAt.IsZero() || t.Revoked {
			continue
		}
		finding := "join token never used; expires " + t.ExpiresAt.UTC().Format(time.RFC3339)
		if !now.Before(t.ExpiresAt) {
			finding = "join token expired unused on " + day(t.ExpiresAt)
		}
		items = append(items, &adminv1.ReviewItem{Kind: "token", Id: t.ID, SpiffeId: t.SPIFFEID, Owner: t.Owner, Findings: []string{finding}})
	}
	slices.SortStableFunc(items, func(a, b *adminv1.ReviewItem) int {
		return cmp.Or(cmp.Compare(a.Owner, b.Owner), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.SpiffeId, b.SpiffeId), cmp.Compare(a.Id, b.Id))
	})
	return items, nil
}

func isAdminEntry(id string) bool {
	sid, err := spiffeid.FromString(id)
	if err != nil {
		return false
	}
	return slices.Contains(strings.Split(sid.Path(), "/"), "admin")
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Review lists what a reviewer must look at.
func (s *AdminService) Review(ctx context.Context, req *adminv1.ReviewRequest) (*adminv1.ReviewResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	stale := defaultStale
	if sec := req.GetStaleSeconds(); sec != 0 {
		if sec < 0 || sec > maxReviewStaleDays*24*3600 {
			return nil, status.Errorf(codes.InvalidArgument, "stale_seconds %d: want 1 to %d", sec, maxReviewStaleDays*24*3600)
		}
		stale = time.Duration(sec) * time.Second
	}
	now := s.cfg.Clock()
	items, err := s.reviewItems(now, stale)
	if err != nil {
		return nil, toStatus(err)
	}
	return &adminv1.ReviewResponse{Items: items, GeneratedAt: now.Unix()}, nil
}

// SignReview records a reviewer's decision (keep or disable) on entries, in one Raft write.
func (s *AdminService) SignReview(ctx context.Context, req *adminv1.SignReviewRequest) (*adminv1.SignReviewResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	ctx = storage.WithActor(ctx, admin)
	if err := validateOwnerName("reviewer", req.GetReviewer()); err != nil {
		return nil, toStatus(err)
	}
	if d := req.GetDecision(); d != storage.ReviewKeep && d != storage.ReviewDisable {
		return nil, status.Errorf(codes.InvalidArgument, "decision %q: want keep or disable", d)
	}
	if err := validateText("note", req.GetNote(), maxReasonLen); err != nil {
		return nil, toStatus(err)
	}
	ids := req.GetEntryIds()
	switch {
	case req.GetAll() && len(ids) > 0:
		return nil, status.Error(codes.InvalidArgument, "give entry IDs or all, not both")
	case req.GetAll():
		items, err := s.reviewItems(s.cfg.Clock(), defaultStale)
		if err != nil {
			return nil, toStatus(err)
		}
		for _, it := range items {
			if it.Kind == "entry" {
				ids = append(ids, it.Id)
			}
		}
	case len(ids) == 0:
		return nil, status.Error(codes.InvalidArgument, "entry IDs (or all) are required")
	}
	var rid [8]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return nil, toStatus(err)
	}
	r := storage.Review{ID: hex.EncodeToString(rid[:]), Reviewer: req.GetReviewer(), SignedBy: admin, SignedAt: s.cfg.Clock().UTC()}
	for _, id := range ids {
		r.Decisions = append(r.Decisions, storage.ReviewDecision{EntryID: id, Decision: req.GetDecision(), Note: req.GetNote()})
	}
	if len(r.Decisions) == 0 {
		return &adminv1.SignReviewResponse{}, nil
	}
	if _, err := s.cfg.Store.SignReview(ctx, r); err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.SignReviewResponse{ReviewId: r.ID, Decisions: int32(len(r.Decisions))}
	if req.GetDecision() == storage.ReviewDisable {
		for _, id := range ids {
			if e, err := s.cfg.Store.Entry(id); err == nil && e.Disabled {
				out.Disabled = append(out.Disabled, entryToAdmin(&e))
			}
		}
	}
	s.log.Info("access review signed", "review", r.ID, "reviewer", r.Reviewer, "decision", req.GetDecision(), "entries", len(ids), "by", admin)
	return out, nil
}
