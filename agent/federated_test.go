package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

var otherTD = spiffeid.RequireTrustDomainFromString("other.org")

// otherBundle is a bundle document of a new CA of td, and that CA's root.
func otherBundle(t *testing.T, td spiffeid.TrustDomain) ([]byte, *x509.Certificate) {
	t.Helper()
	c := testkit.NewCA(t, td, 0)
	b := storage.Bundle{X509Authorities: []*x509.Certificate{c.X509Authority()},
		JWTAuthorities: map[string]crypto.PublicKey{c.JWTKeyID(): c.JWTPublicKey()}, Sequence: 1}
	doc, err := federation.BundleOf(td, b, time.Minute).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc, c.X509Authority()
}

// The agent hands a caller the federated bundles its entries name, and only those; a changed bundle
// wakes the caller's streams and replaces the one served; a deleted relationship takes it away.
func TestFederatedBundles(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	ctx := testCtx(t, testDeadline)
	doc, root := otherBundle(t, otherTD)
	thirdDoc, _ := otherBundle(t, spiffeid.RequireTrustDomainFromString("third.org"))
	for td, d := range map[string][]byte{"other.org": doc, "third.org": thirdDoc} {
		if _, err := e.st.CreateFederation(ctx, storage.Federation{TrustDomain: td, BundleEndpointURL: "https://" + td + "/", Profile: "https_web", Bundle: d}, ""); err != nil {
			t.Fatal(err)
		}
	}
	fed := entrySpec{spiffeID: "spiffe://example.org/web"}.admin(t)
	fed.FederatesWith = []string{"other.org", "unknown.org"}
	if _, err := e.srv.Admin.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: fed}); err != nil {
		t.Fatal(err)
	}
	e.entry(t, entrySpec{spiffeID: "spiffe://example.org/plain", selectors: []string{"unix:uid:2000"}})

	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	ids := waitIdentities(t, a, uid1000(t), testDeadline, "other.org's bundle", func(ids workloadapi.Identities) bool { return len(ids.Federated) > 0 })
	if len(ids.Federated) != 1 || ids.Federated[0].TrustDomain != otherTD || !bytes.Equal(ids.Federated[0].X509Bundle, root.Raw) ||
		ids.Federated[0].JWTAuthorities == nil || len(ids.Federated[0].JWTAuthorities.JWTAuthorities()) != 1 || len(ids.Federated[0].JWTBundle) == 0 {
		t.Fatalf("federated bundles: %+v; want other.org's only (third.org is not named, unknown.org has no relationship)", ids.Federated)
	}
	if plain, _ := a.Bundles(sels(t, "unix:uid:2000")); !plain.Entitled || len(plain.Federated) != 0 {
		t.Fatalf("a caller whose entry federates with nothing: %+v", plain.Federated)
	}

	// A changed bundle is pushed.
	_, changed := a.Bundles(uid1000(t))
	newDoc, newRoot := otherBundle(t, otherTD)
	if _, err := e.st.SetFederatedBundle(ctx, "other.org", newDoc); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(testDeadline):
		t.Fatal("a changed federated bundle did not wake the caller's streams")
	}
	waitIdentities(t, a, uid1000(t), testDeadline, "the new bundle", func(ids workloadapi.Identities) bool {
		return len(ids.Federated) == 1 && bytes.Equal(ids.Federated[0].X509Bundle, newRoot.Raw) && ids.BundleSequence != 0
	})
	if _, err := e.st.DeleteFederation(ctx, "other.org", ""); err != nil {
		t.Fatal(err)
	}
	waitIdentities(t, a, uid1000(t), testDeadline, "the bundle gone", func(ids workloadapi.Identities) bool { return len(ids.Federated) == 0 })
}

// breakableClient is the real agent API client whose entry sync stream the test can cut, and whose
// reconnection it can hold back.
type breakableClient struct {
	agentv1.AgentClient
	mu     sync.Mutex
	cancel context.CancelFunc
	gate   chan struct{} // while not nil, a new stream waits for it to close
	opened atomic.Int64
	// held counts the new streams that reached the gate: the agent has seen the previous one end.
	held atomic.Int64
}

func (c *breakableClient) SyncEntries(ctx context.Context, req *agentv1.SyncEntriesRequest, opts ...grpc.CallOption) (agentv1.Agent_SyncEntriesClient, error) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		c.held.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	c.opened.Add(1)
	return c.AgentClient.SyncEntries(ctx, req, opts...)
}

// cut ends the current stream; reconnections wait until the returned function is called.
func (c *breakableClient) cut() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	cancel := c.cancel
	c.mu.Unlock()
	cancel()
	return func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	}
}

// A disconnected agent keeps serving the federated bundles it holds; a relationship deleted meanwhile is
// dropped when it reconnects: the first round of a stream names every trust domain federated with.
func TestFederatedBundleDeletedWhileDisconnected(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	ctx := testCtx(t, testDeadline)
	doc, _ := otherBundle(t, otherTD)
	if _, err := e.st.CreateFederation(ctx, storage.Federation{TrustDomain: "other.org", BundleEndpointURL: "https://other.org/", Profile: "https_web", Bundle: doc}, ""); err != nil {
		t.Fatal(err)
	}
	fed := entrySpec{spiffeID: "spiffe://example.org/web"}.admin(t)
	fed.FederatesWith = []string{"other.org"}
	if _, err := e.srv.Admin.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: fed}); err != nil {
		t.Fatal(err)
	}
	client := &breakableClient{AgentClient: e.client()}
	a, _ := startAgent(t, client, nil)
	waitIdentities(t, a, uid1000(t), testDeadline, "other.org's bundle", func(ids workloadapi.Identities) bool { return len(ids.Federated) == 1 })

	release := client.cut()
	// Once the agent is trying to reconnect, nothing more can arrive on the stream that was cut.
	waitCount(t, &client.held, 1, testDeadline, "the agent to notice the cut")
	if _, err := e.st.DeleteFederation(ctx, "other.org", ""); err != nil {
		t.Fatal(err)
	}
	// Cut off from its server, the agent keeps serving the bundle it holds (cross-domain mTLS goes on
	// through an outage) until a new stream says otherwise.
	if ids, _ := a.Bundles(uid1000(t)); len(ids.Federated) != 1 || ids.Federated[0].TrustDomain != otherTD {
		t.Fatalf("federated bundles while disconnected: %+v; want other.org's, as before the cut", ids.Federated)
	}
	opened := client.opened.Load()
	release()
	waitIdentities(t, a, uid1000(t), testDeadline, "the deleted relationship's bundle dropped after the reconnect", func(ids workloadapi.Identities) bool {
		return len(ids.Federated) == 0
	})
	if client.opened.Load() <= opened {
		t.Fatal("the bundle was dropped without a new stream")
	}
}
