package workloadapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// A caller whose entry federates with other.org gets other.org's bundle from every RPC: FetchX509SVID's
// federated_bundles (pushed on the open stream when the entry starts federating), FetchX509Bundles,
// FetchJWTBundles, and ValidateJWTSVID accepts a JWT-SVID other.org signed.
func TestFederatedBundlesOnTheWire(t *testing.T) {
	addr, env := serveAgent(t, 1)
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 60*time.Second)
	defer cancel()
	other := spiffeid.RequireTrustDomainFromString("other.org")
	otherCA := testkit.NewCA(t, other, 0)
	doc, err := federation.BundleOf(other, storage.Bundle{X509Authorities: []*x509.Certificate{otherCA.X509Authority()},
		JWTAuthorities: map[string]crypto.PublicKey{otherCA.JWTKeyID(): otherCA.JWTPublicKey()}, Sequence: 1}, time.Minute).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.CreateFederation(ctx, storage.Federation{TrustDomain: "other.org", BundleEndpointURL: "https://other.org/", Profile: "https_web", Bundle: doc}, ""); err != nil {
		t.Fatal(err)
	}
	tok, err := otherCA.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: spiffeid.RequireFromPath(other, "/peer"), Audience: []string{"me"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	stream, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || len(first.FederatedBundles) != 0 {
		t.Fatalf("before the entry federates: %v federated bundles, %v", len(first.GetFederatedBundles()), err)
	}
	if _, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "me", Svid: tok.Token}); err == nil {
		t.Fatal("validated an other.org JWT-SVID before federating")
	}
	e := env.Store.Entries()[0]
	e.FederatesWith = []string{"other.org"}
	if _, err := env.Store.UpdateEntry(ctx, e, e.Revision, "federate"); err != nil {
		t.Fatal(err)
	}
	var got *workload.X509SVIDResponse
	for got == nil || len(got.FederatedBundles) == 0 {
		if got, err = stream.Recv(); err != nil {
			t.Fatalf("after the entry federates: %v", err)
		}
	}
	if !bytes.Equal(got.FederatedBundles["spiffe://other.org"], otherCA.X509Authority().Raw) {
		t.Fatalf("federated_bundles: %v; want other.org's root", keys(got.FederatedBundles))
	}
	xb, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := xb.Recv(); err != nil || len(r.Bundles) != 2 || len(r.Bundles["spiffe://other.org"]) == 0 {
		t.Fatalf("FetchX509Bundles: %v, %v; want example.org's and other.org's", keys(r.GetBundles()), err)
	}
	jb, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := jb.Recv(); err != nil || len(r.Bundles) != 2 || !bytes.Contains(r.Bundles["spiffe://other.org"], []byte(otherCA.JWTKeyID())) {
		t.Fatalf("FetchJWTBundles: %v, %v; want example.org's and other.org's", keys(r.GetBundles()), err)
	}
	v, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "me", Svid: tok.Token})
	if err != nil || v.SpiffeId != "spiffe://other.org/peer" {
		t.Fatalf("ValidateJWTSVID of an other.org token: %v, %v", v, err)
	}
}
