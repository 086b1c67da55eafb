package agent

import (
	"crypto"
	"fmt"
	"slices"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// federatedState is the bundles of the trust domains this one federates with, as the server sent them
// (docs/federation.md), each in the form workloads receive it. gen increases with every change.
type federatedState struct {
	bundles   map[string]workloadapi.FederatedBundle
	revisions map[string]uint64 // the servers' bundle revision of each
	gen       uint64
}

// applyFederated installs the federated bundles, removals and (on a stream's first round) the set of
// trust domains federated with that a sync message carries. Workloads' streams are woken.
func (a *Agent) applyFederated(m *agentv1.SyncEntriesResponse) error {
	if len(m.FederatedBundles) == 0 && len(m.FederatedRemoved) == 0 && !m.FederatedAllSet {
		return nil
	}
	parsed := make(map[string]workloadapi.FederatedBundle, len(m.FederatedBundles))
	revs := make(map[string]uint64, len(m.FederatedBundles))
	for _, fb := range m.FederatedBundles {
		b, err := parseFederated(a.cfg.TrustDomain, fb)
		if err != nil {
			// The server checked it before storing it: a bug, not a reason to stop syncing.
			a.log.Error("ignoring a federated bundle the agent cannot use", "trust_domain", fb.TrustDomain, "error", err)
			continue
		}
		parsed[fb.TrustDomain], revs[fb.TrustDomain] = b, fb.Revision
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.federated.bundles == nil {
		a.federated.bundles, a.federated.revisions = map[string]workloadapi.FederatedBundle{}, map[string]uint64{}
	}
	changed := false
	for td, b := range parsed {
		if have, ok := a.federated.revisions[td]; ok && have == revs[td] {
			continue // a new stream sends every bundle again
		}
		a.federated.bundles[td], a.federated.revisions[td] = b, revs[td]
		changed = true
	}
	for _, td := range m.FederatedRemoved {
		if _, ok := a.federated.bundles[td]; ok {
			delete(a.federated.bundles, td)
			delete(a.federated.revisions, td)
			changed = true
		}
	}
	if m.FederatedAllSet {
		for td := range a.federated.bundles {
			if !slices.Contains(m.FederatedAll, td) {
				delete(a.federated.bundles, td)
				delete(a.federated.revisions, td)
				changed = true
			}
		}
	}
	if !changed {
		return nil // a new stream's first round, with nothing new
	}
	a.federated.gen++
	a.notifyLocked()
	return nil
}

func parseFederated(own spiffeid.TrustDomain, fb *agentv1.FederatedBundle) (workloadapi.FederatedBundle, error) {
	td, err := spiffeid.TrustDomainFromString(fb.TrustDomain)
	if err != nil {
		return workloadapi.FederatedBundle{}, fmt.Errorf("trust domain: %w", err)
	}
	if td == own {
		return workloadapi.FederatedBundle{}, fmt.Errorf("a federated bundle of this agent's own trust domain %q", own.Name())
	}
	b, err := spiffebundle.Parse(td, fb.SpiffeBundle)
	if err != nil {
		return workloadapi.FederatedBundle{}, err
	}
	out := workloadapi.FederatedBundle{TrustDomain: td}
	for _, c := range b.X509Authorities() {
		out.X509Bundle = append(out.X509Bundle, c.Raw...)
	}
	keys := b.JWTAuthorities()
	jwks, err := ca.MarshalJWTBundle(keys)
	if err != nil {
		return workloadapi.FederatedBundle{}, err
	}
	out.JWTBundle = jwks
	out.JWTAuthorities = jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey(keys))
	return out, nil
}

// federatedLocked returns the bundles the given entries federate with that the agent holds, in trust
// domain order.
func (a *Agent) federatedLocked(entries []*entryState) []workloadapi.FederatedBundle {
	var tds []string
	for _, e := range entries {
		tds = append(tds, e.entry.FederatesWith...)
	}
	slices.Sort(tds)
	var out []workloadapi.FederatedBundle
	for _, td := range slices.Compact(tds) {
		if b, ok := a.federated.bundles[td]; ok {
			out = append(out, b)
		}
	}
	return out
}
