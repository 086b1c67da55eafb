package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
)

// Federation relationships (docs/federation.md): other trust domains this cluster federates with, where
// their bundle endpoints are, and their bundles as last stored. The storage package checks bounds only;
// the server validates names, URLs and bundle documents before proposing.

// Federation is one federation relationship and its bundle.
type Federation struct {
	TrustDomain       string    `json:"trust_domain"`
	BundleEndpointURL string    `json:"bundle_endpoint_url"`
	Profile           string    `json:"profile"`
	EndpointSPIFFEID  string    `json:"endpoint_spiffe_id,omitempty"`
	CreatedBy         string    `json:"created_by"`
	CreatedAt         time.Time `json:"created_at"`
	// Bundle is the trust domain's SPIFFE bundle document as last stored (the initial one or the latest
	// fetched); empty until one is.
	Bundle []byte `json:"bundle,omitempty"`
	// BundleRevision counts the stored bundle's changes (0: none yet); BundleUpdatedAt is the last one's time.
	BundleRevision  uint64    `json:"bundle_revision,omitempty"`
	BundleUpdatedAt time.Time `json:"bundle_updated_at,omitzero"`
}

// Bounds of federation state.
const (
	// MaxFederations bounds the relationships of a cluster.
	MaxFederations = 64
	// MaxFederatedBundleBytes bounds a stored bundle document.
	MaxFederatedBundleBytes = 256 << 10
	// maxFederationField bounds the trust domain, URL and endpoint SPIFFE ID.
	maxFederationField = 2048
)

var bucketFederations = []byte("federations") // trust domain name -> JSON of Federation

// federationCreateCmd is a new relationship: what the admin gave (the rest is stamped by the FSM).
type federationCreateCmd struct {
	TrustDomain, BundleEndpointURL, Profile, EndpointSPIFFEID string
	Bundle                                                    []byte
	Meta                                                      auditMeta
}

func (c federationCreateCmd) wire() *raftv1.FederationCreate {
	return &raftv1.FederationCreate{TrustDomain: c.TrustDomain, BundleEndpointUrl: c.BundleEndpointURL, Profile: c.Profile,
		EndpointSpiffeId: c.EndpointSPIFFEID, Bundle: c.Bundle, Meta: metaToWire(c.Meta)}
}

func federationCreateFromWire(m *raftv1.FederationCreate) federationCreateCmd {
	return federationCreateCmd{TrustDomain: m.GetTrustDomain(), BundleEndpointURL: m.GetBundleEndpointUrl(),
		Profile: m.GetProfile(), EndpointSPIFFEID: m.GetEndpointSpiffeId(), Bundle: m.GetBundle(), Meta: metaFromWire(m.GetMeta())}
}

type federationDeleteCmd struct {
	TrustDomain string
	Meta        auditMeta
}

func (c federationDeleteCmd) wire() *raftv1.FederationDelete {
	return &raftv1.FederationDelete{TrustDomain: c.TrustDomain, Meta: metaToWire(c.Meta)}
}

func federationDeleteFromWire(m *raftv1.FederationDelete) federationDeleteCmd {
	return federationDeleteCmd{TrustDomain: m.GetTrustDomain(), Meta: metaFromWire(m.GetMeta())}
}

type federatedBundleSetCmd struct {
	TrustDomain string
	Bundle      []byte
	Meta        auditMeta
}

func (c federatedBundleSetCmd) wire() *raftv1.FederatedBundleSet {
	return &raftv1.FederatedBundleSet{TrustDomain: c.TrustDomain, Bundle: c.Bundle, Meta: metaToWire(c.Meta)}
}

func federatedBundleSetFromWire(m *raftv1.FederatedBundleSet) federatedBundleSetCmd {
	return federatedBundleSetCmd{TrustDomain: m.GetTrustDomain(), Bundle: m.GetBundle(), Meta: metaFromWire(m.GetMeta())}
}

// wakeRegistry is the publish step of a federation change: every sync stream and watcher looks again.
func wakeRegistry(reg *registry) { reg.mu.Lock(); reg.wakeLocked(); reg.mu.Unlock() }

func applyFederationCreate(tx *bolt.Tx, c federationCreateCmd) (applied, error) {
	f := Federation{TrustDomain: c.TrustDomain, BundleEndpointURL: c.BundleEndpointURL, Profile: c.Profile, EndpointSPIFFEID: c.EndpointSPIFFEID, Bundle: c.Bundle}
	switch {
	case f.TrustDomain == "" || len(f.TrustDomain) > maxFederationField || len(f.BundleEndpointURL) > maxFederationField || len(f.EndpointSPIFFEID) > maxFederationField:
		return applied{}, fmt.Errorf("federation %q: %w: trust domain required; trust domain, URL and endpoint SPIFFE ID at most %d bytes each", f.TrustDomain, ErrInvalid, maxFederationField)
	case len(f.Bundle) > MaxFederatedBundleBytes:
		return applied{}, fmt.Errorf("federation %q: %w: bundle of %d bytes, at most %d", f.TrustDomain, ErrInvalid, len(f.Bundle), MaxFederatedBundleBytes)
	}
	b := tx.Bucket(bucketFederations)
	if b.Get([]byte(f.TrustDomain)) != nil {
		return applied{}, fmt.Errorf("federation %q: %w", f.TrustDomain, ErrFederationExists)
	}
	if n := countKeys(b); n >= MaxFederations {
		return applied{}, fmt.Errorf("federation %q: %w: the cluster has %d federation relationships, at most %d: delete one first", f.TrustDomain, ErrInvalid, n, MaxFederations)
	}
	f.CreatedBy, f.CreatedAt = c.Meta.Actor, c.Meta.Time
	if len(f.Bundle) > 0 {
		f.BundleRevision, f.BundleUpdatedAt = 1, c.Meta.Time
	}
	mustPut(b, []byte(f.TrustDomain), mustJSON(&f))
	appendAudit(tx, c.Meta.record("federation.create", f.TrustDomain), nil, f.audited())
	return applied{resp: f, publish: wakeRegistry}, nil
}

func applyFederationDelete(tx *bolt.Tx, c federationDeleteCmd) (applied, error) {
	b := tx.Bucket(bucketFederations)
	prev, err := getFederation(tx, c.TrustDomain)
	if err != nil {
		return applied{}, err
	}
	if err := b.Delete([]byte(c.TrustDomain)); err != nil {
		panic(fmt.Sprintf("storage: delete federation %q: %v", c.TrustDomain, err))
	}
	appendAudit(tx, c.Meta.record("federation.delete", c.TrustDomain), prev.audited(), nil)
	return applied{resp: prev, publish: wakeRegistry}, nil
}

func applyFederatedBundleSet(tx *bolt.Tx, c federatedBundleSetCmd) (applied, error) {
	if len(c.Bundle) == 0 || len(c.Bundle) > MaxFederatedBundleBytes {
		return applied{}, fmt.Errorf("federation %q: %w: bundle of %d bytes, want 1 to %d", c.TrustDomain, ErrInvalid, len(c.Bundle), MaxFederatedBundleBytes)
	}
	f, err := getFederation(tx, c.TrustDomain)
	if err != nil {
		return applied{}, err
	}
	if bytes.Equal(f.Bundle, c.Bundle) {
		return applied{resp: f}, nil
	}
	prev := f
	f.Bundle, f.BundleRevision, f.BundleUpdatedAt = c.Bundle, f.BundleRevision+1, c.Meta.Time
	mustPut(tx.Bucket(bucketFederations), []byte(f.TrustDomain), mustJSON(&f))
	appendAudit(tx, c.Meta.record("federation.bundle-update", f.TrustDomain), prev.audited(), f.audited())
	return applied{resp: f, publish: wakeRegistry}, nil
}

// federationAudit is a relationship as the audit log records it: the bundle by its SHA-256 and size, so
// a remote that changes its bundle often cannot grow the audit log by its documents.
type federationAudit struct {
	TrustDomain       string `json:"trust_domain"`
	BundleEndpointURL string `json:"bundle_endpoint_url"`
	Profile           string `json:"profile"`
	EndpointSPIFFEID  string `json:"endpoint_spiffe_id,omitempty"`
	BundleRevision    uint64 `json:"bundle_revision,omitempty"`
	BundleSHA256      string `json:"bundle_sha256,omitempty"`
	BundleBytes       int    `json:"bundle_bytes,omitempty"`
}

func (f Federation) audited() *federationAudit {
	a := &federationAudit{TrustDomain: f.TrustDomain, BundleEndpointURL: f.BundleEndpointURL, Profile: f.Profile,
		EndpointSPIFFEID: f.EndpointSPIFFEID, BundleRevision: f.BundleRevision, BundleBytes: len(f.Bundle)}
	if len(f.Bundle) > 0 {
		sum := sha256.Sum256(f.Bundle)
		a.BundleSHA256 = hex.EncodeToString(sum[:])
	}
	return a
}

func getFederation(tx *bolt.Tx, td string) (Federation, error) {
	var f Federation
	v := tx.Bucket(bucketFederations).Get([]byte(td))
	if v == nil {
		return f, fmt.Errorf("federation %q: %w", td, ErrFederationNotFound)
	}
	return f, decodeStored("federation", td, v, &f)
}

// CreateFederation adds a federation relationship (audited federation.create), with its initial bundle
// if f.Bundle is set. ErrFederationExists if there is one for the trust domain.
func (s *Store) CreateFederation(ctx context.Context, f Federation, reason string) (Federation, error) {
	resp, err := s.propose(ctx, cmdFederationCreate, federationCreateCmd{TrustDomain: f.TrustDomain, BundleEndpointURL: f.BundleEndpointURL, Profile: f.Profile,
		EndpointSPIFFEID: f.EndpointSPIFFEID, Bundle: f.Bundle, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return Federation{}, fmt.Errorf("storage: create federation with %q: %w", f.TrustDomain, err)
	}
	return resp.(Federation), nil
}

// DeleteFederation removes the relationship with td and its bundle (audited federation.delete).
func (s *Store) DeleteFederation(ctx context.Context, td, reason string) (Federation, error) {
	resp, err := s.propose(ctx, cmdFederationDelete, federationDeleteCmd{TrustDomain: td, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return Federation{}, fmt.Errorf("storage: delete federation with %q: %w", td, err)
	}
	return resp.(Federation), nil
}

// SetFederatedBundle stores td's bundle document (audited federation.bundle-update) unless it equals
// the stored one; callers should compare first (Federation) to write nothing in that case.
func (s *Store) SetFederatedBundle(ctx context.Context, td string, bundle []byte) (Federation, error) {
	resp, err := s.propose(ctx, cmdFederatedBundleSet, federatedBundleSetCmd{TrustDomain: td, Bundle: bundle, Meta: s.newMeta(ctx, "")}.wire())
	if err != nil {
		return Federation{}, fmt.Errorf("storage: store the bundle of %q: %w", td, err)
	}
	return resp.(Federation), nil
}

// Federation returns the relationship with td as this server has applied it.
func (s *Store) Federation(td string) (Federation, error) {
	var f Federation
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		f, err = getFederation(tx, td)
		return err
	})
	return f, err
}

// Federations returns every relationship, by trust domain name. Changed wakes when one changes.
func (s *Store) Federations() ([]Federation, error) {
	var out []Federation
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFederations).ForEach(func(k, v []byte) error {
			var f Federation
			if err := decodeStored("federation", string(k), v, &f); err != nil {
				return err
			}
			out = append(out, f)
			return nil
		})
	})
	return out, err
}

// countKeys counts a bucket's keys (a small bucket: Stats does not see this transaction's writes).
func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
