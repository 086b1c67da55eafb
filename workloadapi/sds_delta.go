package workloadapi

import (
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// delta is the incremental protocol of DeltaSecrets: the client subscribes to and unsubscribes from
// names; a response carries only the secrets that changed since the client last had them (each with
// its own version) and the names of those that no longer exist.
type delta struct {
	*sdsSub
	stream secretv3.SecretDiscoveryService_DeltaSecretsServer
	// known is the version of each secret the client holds, by name (at most MaxSDSResourceNames).
	known map[string]string
	// version is the system_version_info of the last response.
	version string
}

// DeltaSecrets serves one Envoy SDS stream in the incremental (delta) xDS protocol (Envoy's
// api_type: DELTA_GRPC): like StreamSecrets, but the first request may list the versions the client
// already holds (initial_resource_versions: those are not sent again unless they changed), later
// ones subscribe to or unsubscribe from names, and each response holds only what changed, with the
// names of subscribed secrets that are gone (removed_resources). ACK, NACK and stale nonces as in
// StreamSecrets; a request without a nonce only changes the subscription.
func (s *SDS) DeltaSecrets(stream secretv3.SecretDiscoveryService_DeltaSecretsServer) error {
	sub, err := s.newSub(stream.Context())
	if err != nil {
		return err
	}
	return serveSDS(sub, stream.Recv, &delta{sdsSub: sub, stream: stream, known: map[string]string{}})
}

func (d *delta) onRequest(req *discoveryv3.DeltaDiscoveryRequest) error {
	add, err := parseSDSRequest(req.GetTypeUrl(), "resource_names_subscribe", req.GetResourceNamesSubscribe())
	if err != nil {
		return err
	}
	drop, err := parseSDSRequest("", "resource_names_unsubscribe", req.GetResourceNamesUnsubscribe())
	if err != nil {
		return err
	}
	if n := len(req.GetInitialResourceVersions()); n > MaxSDSResourceNames {
		return status.Errorf(codes.InvalidArgument, "initial_resource_versions: %d names, at most %d allowed", n, MaxSDSResourceNames)
	}
	if req.GetResponseNonce() != "" && d.stale(req.GetResponseNonce()) {
		return nil
	}
	first := !d.subscribed
	d.setNode(req.GetNode())
	if first {
		for name, v := range req.GetInitialResourceVersions() {
			if len(name) > MaxSDSResourceNameLen || len(v) > MaxSDSResourceNameLen {
				return status.Errorf(codes.InvalidArgument, "initial_resource_versions: a name or version of more than %d bytes", MaxSDSResourceNameLen)
			}
			d.known[name] = v
		}
	}
	if e := req.GetErrorDetail(); e != nil && d.sent > 0 {
		d.nack(e, d.version, "")
	}

	// The first request without names subscribes to everything (the legacy wildcard); "*" does at any
	// time, and unsubscribing from "*" ends it.
	names := sdsNames{wildcard: d.names.wildcard || (first && len(req.GetResourceNamesSubscribe()) == 0) || hasWildcard(req.GetResourceNamesSubscribe())}
	if hasWildcard(req.GetResourceNamesUnsubscribe()) {
		names.wildcard = false
	}
	set := map[string]bool{}
	for _, n := range d.names.names {
		set[n] = true
	}
	for _, n := range add.names {
		set[n] = true
	}
	for _, n := range drop.names {
		delete(set, n)
		delete(d.known, n) // the client forgets it: not reported removed
	}
	if len(set) > MaxSDSResourceNames {
		return status.Errorf(codes.InvalidArgument, "resource_names_subscribe: %d names subscribed in all, at most %d allowed", len(set), MaxSDSResourceNames)
	}
	names.names = slices.Sorted(maps.Keys(set))
	d.subscribe(names)
	return nil
}

func hasWildcard(names []string) bool { return slices.Contains(names, "*") }

func (d *delta) push(ids Identities, attest func() error) error {
	secrets := selectSecrets(d.s.cfg, d.names, ids)
	versions := make(map[string]string, len(secrets))
	var changed []sdsSecret
	for _, sec := range secrets {
		v := secretsVersion([]sdsSecret{sec}, ids.BundleSequence, d.form)
		versions[sec.name] = v
		if d.known[sec.name] != v {
			changed = append(changed, sec)
		}
	}
	var removed []string
	for name := range d.known {
		if _, ok := versions[name]; !ok {
			removed = append(removed, name)
		}
	}
	d.dirty = false // in delta a subscription change needs no answer of its own
	if len(changed) == 0 && len(removed) == 0 {
		return nil
	}
	slices.Sort(removed)
	if err := attest(); err != nil {
		return err
	}
	encoded, err := encodeSecrets(changed, d.form)
	if err != nil {
		return err
	}
	resources := make([]*discoveryv3.Resource, len(changed))
	for i, sec := range changed {
		resources[i] = &discoveryv3.Resource{Name: sec.name, Version: versions[sec.name], Resource: encoded[i]}
	}
	version := secretsVersion(secrets, ids.BundleSequence, d.form)
	d.sent++
	if err := d.stream.Send(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: secretTypeURL, SystemVersionInfo: version,
		Resources: resources, RemovedResources: removed, Nonce: d.nonce()}); err != nil {
		return err
	}
	d.s.delivered(d.caller, changed)
	d.known, d.version = versions, version
	return nil
}
