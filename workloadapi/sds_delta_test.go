package workloadapi_test

import (
	"context"
	"slices"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// deltaSecrets decodes a delta response's resources by name, with their versions.
func deltaSecrets(t *testing.T, resp *discoveryv3.DeltaDiscoveryResponse) (map[string]*tlsv3.Secret, map[string]string) {
	t.Helper()
	if resp.TypeUrl != secretType || resp.Nonce == "" || resp.SystemVersionInfo == "" {
		t.Fatalf("delta response: type %q, nonce %q, system version %q", resp.TypeUrl, resp.Nonce, resp.SystemVersionInfo)
	}
	secrets, versions := map[string]*tlsv3.Secret{}, map[string]string{}
	for _, r := range resp.Resources {
		var s tlsv3.Secret
		if err := r.Resource.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		if s.Name != r.Name || r.Version == "" {
			t.Fatalf("delta resource %q: secret %q, version %q", r.Name, s.Name, r.Version)
		}
		secrets[r.Name], versions[r.Name] = &s, r.Version
	}
	return secrets, versions
}

func deltaRecv(t *testing.T, d secretv3.SecretDiscoveryService_DeltaSecretsClient, what string) *discoveryv3.DeltaDiscoveryResponse {
	t.Helper()
	resp, err := d.Recv()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return resp
}

func deltaSend(t *testing.T, d secretv3.SecretDiscoveryService_DeltaSecretsClient, req *discoveryv3.DeltaDiscoveryRequest) {
	t.Helper()
	req.TypeUrl = secretType
	if err := d.Send(req); err != nil {
		t.Fatal(err)
	}
}

// TestSDSDelta drives DeltaSecrets as Envoy's delta SDS client does: a subscription answered with
// each secret and its version; a rotation sends only the secret that changed; a subscription change
// sends only what was added; a NACK is not answered and the next change still pushed; a secret
// that is gone is sent as removed; a new stream listing the versions it holds is sent only the others.
func TestSDSDelta(t *testing.T) {
	_, c, env := serveSDS(t, 2, serveOpts{})
	ctx := sdsCtx(t)
	const id0, id1 = "spiffe://example.org/workload/0", "spiffe://example.org/workload/1" // default is id0: the first by SPIFFE ID

	d, err := c.DeltaSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deltaSend(t, d, &discoveryv3.DeltaDiscoveryRequest{Node: envoyNode(t, 30, nil), ResourceNamesSubscribe: []string{"default", "ROOTCA", id1}})
	first := deltaRecv(t, d, "first response")
	got, versions := deltaSecrets(t, first)
	if n := secretNames(got); !slices.Equal(n, []string{"ROOTCA", "default", id1}) {
		t.Fatalf("first response: %v", n)
	}
	leaf := checkTLSCertificate(t, got["default"], id0)
	spiffeValidator(t, got["ROOTCA"])
	deltaSend(t, d, &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: first.Nonce})

	// A rotation of the default SVID: only default is sent, at a new version.
	rotate(t, env, entryOf(t, env, id0))
	second := deltaRecv(t, d, "after rotation")
	got, v2 := deltaSecrets(t, second)
	if n := secretNames(got); !slices.Equal(n, []string{"default"}) || len(second.RemovedResources) != 0 {
		t.Fatalf("after rotating the default SVID: sent %v, removed %v; want default alone", n, second.RemovedResources)
	}
	if checkTLSCertificate(t, got["default"], id0).SerialNumber.Cmp(leaf.SerialNumber) == 0 || v2["default"] == versions["default"] {
		t.Fatal("after rotation: the same SVID or version")
	}

	// Unsubscribe from ROOTCA, subscribe to the trust domain by ID: only the new name is sent.
	deltaSend(t, d, &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: second.Nonce, ResourceNamesUnsubscribe: []string{"ROOTCA"}, ResourceNamesSubscribe: []string{"spiffe://example.org"}})
	third := deltaRecv(t, d, "after changing the subscription")
	if got, _ = deltaSecrets(t, third); !slices.Equal(secretNames(got), []string{"spiffe://example.org"}) || len(third.RemovedResources) != 0 {
		t.Fatalf("after changing the subscription: sent %v, removed %v", secretNames(got), third.RemovedResources)
	}

	// NACK: nothing is resent; the next change is.
	deltaSend(t, d, &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: third.Nonce, ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "rejected"}})
	rotate(t, env, entryOf(t, env, id0))
	fourth := deltaRecv(t, d, "after a NACK and a rotation")
	if got, _ = deltaSecrets(t, fourth); !slices.Equal(secretNames(got), []string{"default"}) {
		t.Fatalf("after a NACK and a rotation: sent %v, want default", secretNames(got))
	}
	deltaSend(t, d, &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: fourth.Nonce})

	// id1's entry deleted: removed, nothing else sent.
	if _, err := env.Store.DeleteEntry(context.Background(), entryOf(t, env, id1)); err != nil {
		t.Fatal(err)
	}
	fifth := deltaRecv(t, d, "after deleting an entry")
	if got, _ = deltaSecrets(t, fifth); len(got) != 0 || !slices.Equal(fifth.RemovedResources, []string{id1}) {
		t.Fatalf("after deleting %s's entry: sent %v, removed %v; want it removed alone", id1, secretNames(got), fifth.RemovedResources)
	}

	// A new stream holding the current default: sent only ROOTCA.
	_, now := deltaSecrets(t, fourth)
	d2, err := c.DeltaSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deltaSend(t, d2, &discoveryv3.DeltaDiscoveryRequest{Node: envoyNode(t, 30, nil), ResourceNamesSubscribe: []string{"default", "ROOTCA"},
		InitialResourceVersions: map[string]string{"default": now["default"]}})
	if got, _ = deltaSecrets(t, deltaRecv(t, d2, "a new stream")); !slices.Equal(secretNames(got), []string{"ROOTCA"}) {
		t.Fatalf("a new stream holding the current default: sent %v, want ROOTCA alone", secretNames(got))
	}
}
