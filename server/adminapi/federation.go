package adminapi

import (
	"context"
	"fmt"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FederationRefresher fetches a federated trust domain's bundle now (federation.Poller).
type FederationRefresher interface {
	Refresh(ctx context.Context, td string) (storage.Federation, bool, error)
}

// CreateFederation adds a relationship with another trust domain (audited federation.create). The
// endpoint is checked (https URL, profile, an endpoint SPIFFE ID in that trust domain for https_spiffe,
// not this trust domain), and so is the initial bundle, required for https_spiffe.
func (s *AdminService) CreateFederation(ctx context.Context, req *adminv1.CreateFederationRequest) (*adminv1.Federation, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	f, err := s.federationFromRequest(req)
	if err != nil {
		return nil, toStatus(err)
	}
	stored, err := s.cfg.Store.CreateFederation(storage.WithActor(ctx, admin), f, req.Reason)
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("federation relationship created", "admin", admin, "trust_domain", f.TrustDomain, "endpoint", f.BundleEndpointURL, "profile", f.Profile)
	return federationToAdmin(stored), nil
}

func (s *AdminService) federationFromRequest(req *adminv1.CreateFederationRequest) (storage.Federation, error) {
	td, err := spiffeid.TrustDomainFromString(req.TrustDomain)
	if err != nil {
		return storage.Federation{}, fmt.Errorf("trust domain %q: %w: %v (--trust-domain)", req.TrustDomain, ErrInvalidArgument, err)
	}
	r := federation.Remote{TrustDomain: td, URL: req.BundleEndpointUrl, Profile: req.Profile}
	if req.EndpointSpiffeId != "" {
		if r.EndpointID, err = spiffeid.FromString(req.EndpointSpiffeId); err != nil {
			return storage.Federation{}, fmt.Errorf("endpoint SPIFFE ID %q: %w: %v (--endpoint-spiffe-id)", req.EndpointSpiffeId, ErrInvalidArgument, err)
		}
	}
	if err := r.Check(s.cfg.TrustDomain); err != nil {
		return storage.Federation{}, fmt.Errorf("federation with %q: %w: %v", req.TrustDomain, ErrInvalidArgument, err)
	}
	switch {
	case len(req.Bundle) > 0:
		if _, err := federation.ParseBundle(td, req.Bundle); err != nil {
			return storage.Federation{}, fmt.Errorf("federation with %q: initial bundle: %w: %v (--bundle-file: the trust domain's SPIFFE bundle document)", req.TrustDomain, ErrInvalidArgument, err)
		}
	case r.Profile == federation.ProfileHTTPSSPIFFE:
		return storage.Federation{}, fmt.Errorf("federation with %q: %w: profile https_spiffe needs the trust domain's bundle to authenticate its endpoint's first fetch (--bundle-file)", req.TrustDomain, ErrInvalidArgument)
	}
	return storage.Federation{TrustDomain: td.Name(), BundleEndpointURL: r.URL, Profile: r.Profile, EndpointSPIFFEID: req.EndpointSpiffeId, Bundle: req.Bundle}, nil
}

// ListFederations lists every relationship, by trust domain.
func (s *AdminService) ListFederations(ctx context.Context, req *adminv1.ListFederationsRequest) (*adminv1.ListFederationsResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	fs, err := s.cfg.Store.Federations()
	if err != nil {
		return nil, toStatus(err)
	}
	out := &adminv1.ListFederationsResponse{}
	for _, f := range fs {
		out.Federations = append(out.Federations, federationToAdmin(f))
	}
	return out, nil
}

// GetFederation returns one relationship.
func (s *AdminService) GetFederation(ctx context.Context, req *adminv1.GetFederationRequest) (*adminv1.Federation, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	f, err := s.cfg.Store.Federation(req.TrustDomain)
	if err != nil {
		return nil, toStatus(err)
	}
	return federationToAdmin(f), nil
}

// DeleteFederation removes a relationship and its bundle (audited federation.delete): agents stop
// delivering it to workloads.
func (s *AdminService) DeleteFederation(ctx context.Context, req *adminv1.DeleteFederationRequest) (*adminv1.Federation, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	f, err := s.cfg.Store.DeleteFederation(storage.WithActor(ctx, admin), req.TrustDomain, req.Reason)
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("federation relationship deleted", "admin", admin, "trust_domain", f.TrustDomain)
	return federationToAdmin(f), nil
}

// RefreshFederation fetches the trust domain's bundle now, from this server, and stores it if it changed.
func (s *AdminService) RefreshFederation(ctx context.Context, req *adminv1.RefreshFederationRequest) (*adminv1.RefreshFederationResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, toStatus(err)
	}
	admin, err := s.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if s.cfg.Federation == nil {
		return nil, toStatus(fmt.Errorf("federation refresh %s: %w", req.TrustDomain, ErrFederationOff))
	}
	f, changed, err := s.cfg.Federation.Refresh(storage.WithActor(ctx, admin), req.TrustDomain)
	if err != nil {
		return nil, toStatus(fmt.Errorf("federation refresh %s: %w", req.TrustDomain, err))
	}
	return &adminv1.RefreshFederationResponse{Federation: federationToAdmin(f), Changed: changed}, nil
}

func federationToAdmin(f storage.Federation) *adminv1.Federation {
	out := &adminv1.Federation{TrustDomain: f.TrustDomain, BundleEndpointUrl: f.BundleEndpointURL, Profile: f.Profile,
		EndpointSpiffeId: f.EndpointSPIFFEID, CreatedBy: f.CreatedBy, CreatedAt: f.CreatedAt.Unix(), Bundle: f.Bundle, BundleRevision: f.BundleRevision}
	if !f.BundleUpdatedAt.IsZero() {
		out.BundleUpdatedAt = f.BundleUpdatedAt.Unix()
	}
	return out
}
