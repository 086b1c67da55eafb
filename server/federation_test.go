package server

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var otherTD = spiffeid.RequireTrustDomainFromString("other.org")

// otherDomain is a server node of other.org serving its bundle endpoint (https_spiffe) on a real port;
// it returns the node, the endpoint's URL and its endpoint SPIFFE ID.
func otherDomain(t *testing.T) (*env, string, string) {
	t.Helper()
	e := newEnvConfig(t, func(c *Config) { c.TrustDomain, c.CA = otherTD, testkit.NewCA(t, otherTD, 0) }, nil)
	ep, err := federation.NewEndpoint(federation.EndpointConfig{TrustDomain: otherTD, Bundles: e.st, ServerCert: e.srv.Issuer, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, func(ctx context.Context) { _ = ep.Serve(ctx, lis) })
	return e, "https://" + lis.Addr().String() + "/", spiffeid.RequireFromSegments(otherTD, "signet", "server", e.st.NodeID()).String()
}

func bundleDoc(t *testing.T, td spiffeid.TrustDomain, e *env) []byte {
	t.Helper()
	b := federation.BundleOf(td, e.st.Bundle(), 0)
	b.ClearRefreshHint()
	doc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Federation through the admin API: requests are validated (each refusal names the field), a
// relationship is stored and its bundle fetched by the leader's poller from the other trust domain's
// https_spiffe endpoint, refresh fetches now, an endpoint presenting another SPIFFE ID is refused with
// nothing stored, and list, show and delete work.
func TestFederationAdmin(t *testing.T) {
	e := newEnv(t)
	other, url, endpointID := otherDomain(t)
	otherDoc := bundleDoc(t, otherTD, other)
	ownDocAsOther := bundleDoc(t, otherTD, e) // our own roots claimed as other.org's: another trust domain's
	ctx := testCtx(t)
	good := func() *adminv1.CreateFederationRequest {
		return &adminv1.CreateFederationRequest{TrustDomain: "other.org", BundleEndpointUrl: url, Profile: "https_spiffe",
			EndpointSpiffeId: endpointID, Bundle: otherDoc}
	}
	for name, tc := range map[string]struct {
		mod  func(*adminv1.CreateFederationRequest)
		want string
	}{
		"own trust domain":          {func(r *adminv1.CreateFederationRequest) { r.TrustDomain = "example.org" }, "own trust domain"},
		"bad trust domain":          {func(r *adminv1.CreateFederationRequest) { r.TrustDomain = "Other Org" }, "--trust-domain"},
		"http URL":                  {func(r *adminv1.CreateFederationRequest) { r.BundleEndpointUrl = "http://other.org/" }, "--bundle-endpoint"},
		"unknown profile":           {func(r *adminv1.CreateFederationRequest) { r.Profile = "https" }, "--profile"},
		"no endpoint ID":            {func(r *adminv1.CreateFederationRequest) { r.EndpointSpiffeId = "" }, "--endpoint-spiffe-id"},
		"endpoint ID elsewhere":     {func(r *adminv1.CreateFederationRequest) { r.EndpointSpiffeId = "spiffe://example.org/x" }, "not in trust domain"},
		"endpoint ID for https_web": {func(r *adminv1.CreateFederationRequest) { r.Profile = "https_web" }, "only for profile https_spiffe"},
		"no initial bundle":         {func(r *adminv1.CreateFederationRequest) { r.Bundle = nil }, "--bundle-file"},
		"bundle of another domain":  {func(r *adminv1.CreateFederationRequest) { r.Bundle = ownDocAsOther }, "another trust domain"},
		"bundle not a bundle":       {func(r *adminv1.CreateFederationRequest) { r.Bundle = []byte("pem?") }, "--bundle-file"},
	} {
		req := good()
		tc.mod(req)
		if _, err := e.srv.Admin.CreateFederation(ctx, req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", name, err, tc.want)
		}
	}
	if fs, _ := e.st.Federations(); len(fs) != 0 {
		t.Fatalf("refused requests stored %d relationships", len(fs))
	}

	// A relationship whose endpoint presents another SPIFFE ID: nothing is fetched or stored.
	wrong := good()
	wrong.EndpointSpiffeId = "spiffe://other.org/signet/server/impostor"
	if _, err := e.srv.Admin.CreateFederation(ctx, wrong); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Admin.RefreshFederation(ctx, &adminv1.RefreshFederationRequest{TrustDomain: "other.org"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("refresh from an endpoint with the wrong SPIFFE ID: %v, want Unavailable", err)
	}
	if f, err := e.srv.Admin.GetFederation(ctx, &adminv1.GetFederationRequest{TrustDomain: "other.org"}); err != nil || f.BundleRevision != 1 {
		t.Fatalf("after the refused fetch: %+v, %v; want the initial bundle only (revision 1)", f, err)
	}
	if _, err := e.srv.Admin.DeleteFederation(ctx, &adminv1.DeleteFederationRequest{TrustDomain: "other.org", Reason: "wrong ID"}); err != nil {
		t.Fatal(err)
	}

	// The right one: the leader's poller fetches the bundle (it differs from the initial one: it has a
	// refresh hint) and stores it.
	created, err := e.srv.Admin.CreateFederation(ctx, good())
	if err != nil || created.CreatedBy != "test-admin" || created.BundleRevision != 1 {
		t.Fatalf("create: %+v, %v", created, err)
	}
	waitfor.Condition(t, 30*time.Second, "the poller storing the fetched bundle", func() bool {
		f, err := e.st.Federation("other.org")
		return err == nil && f.BundleRevision == 2
	})
	f, err := e.srv.Admin.GetFederation(ctx, &adminv1.GetFederationRequest{TrustDomain: "other.org"})
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := federation.ParseBundle(otherTD, f.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if hint, _ := fetched.RefreshHint(); hint != federation.DefaultRefreshHint || !fetched.X509Authorities()[0].Equal(other.st.Bundle().X509Authorities[0]) {
		t.Fatalf("stored bundle: refresh hint %s, roots %d; want the other domain's", hint, len(fetched.X509Authorities()))
	}
	resp, err := e.srv.Admin.RefreshFederation(ctx, &adminv1.RefreshFederationRequest{TrustDomain: "other.org"})
	if err != nil || resp.Changed || resp.Federation.BundleRevision != 2 {
		t.Fatalf("refresh of an unchanged bundle: %+v, %v; want no change", resp, err)
	}
	if _, err := e.srv.Admin.CreateFederation(ctx, good()); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}
	list, err := e.srv.Admin.ListFederations(ctx, &adminv1.ListFederationsRequest{})
	if err != nil || len(list.Federations) != 1 || list.Federations[0].EndpointSpiffeId != endpointID {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if _, err := e.srv.Admin.DeleteFederation(ctx, &adminv1.DeleteFederationRequest{TrustDomain: "other.org"}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error {
			_, err := e.srv.Admin.GetFederation(ctx, &adminv1.GetFederationRequest{TrustDomain: "other.org"})
			return err
		}(),
		func() error {
			_, err := e.srv.Admin.RefreshFederation(ctx, &adminv1.RefreshFederationRequest{TrustDomain: "other.org"})
			return err
		}(),
	} {
		if status.Code(err) != codes.NotFound {
			t.Errorf("after delete: %v, want NotFound", err)
		}
	}
}

// An entry's federates_with is validated (trust domain names, not this one, no duplicates, bounded),
// stored sorted, and changed by an update naming it.
func TestEntryFederatesWithAdmin(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	admin, ctx := e.srv.Admin, testCtx(t)
	for name, tc := range map[string]struct {
		fw   []string
		want string
	}{
		"own trust domain": {[]string{"example.org"}, "this trust domain"},
		"not a name":       {[]string{"spiffe://other.org"}, "not a trust domain name"},
		"twice":            {[]string{"other.org", "other.org"}, "named twice"},
		"too many":         {make([]string, adminapi.MaxFederatesWith+1), "at most"},
	} {
		in := adminEntry("spiffe://example.org/fed", agentA.String(), "alice")
		in.FederatesWith = tc.fw
		if _, err := admin.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: in}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", name, err, tc.want)
		}
	}
	in := adminEntry("spiffe://example.org/fed", agentA.String(), "alice")
	in.FederatesWith = []string{"partner.com", "other.org"}
	created, err := admin.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: in})
	if err != nil || strings.Join(created.FederatesWith, ",") != "other.org,partner.com" {
		t.Fatalf("create: %v, %v; want [other.org partner.com]", created.GetFederatesWith(), err)
	}
	updated, err := admin.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Entry: &adminv1.Entry{Id: created.Id, Revision: created.Revision},
		UpdateMask: []string{"federates_with"}, Reason: "no more federation"})
	if err != nil || len(updated.FederatesWith) != 0 {
		t.Fatalf("update clearing federates_with: %v, %v", updated.GetFederatesWith(), err)
	}
}

// An agent's sync stream carries the bundles of the trust domains its entries federate with, and only
// those: a bundle no entry names is not sent, and one no longer named is taken back.
func TestSyncSendsNamedFederatedBundles(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	ctx := testCtx(t)
	for _, td := range []string{"other.org", "third.org"} {
		doc := bundleDoc(t, spiffeid.RequireTrustDomainFromString(td), newEnvConfig(t, func(c *Config) {
			c.TrustDomain, c.CA = spiffeid.RequireTrustDomainFromString(td), testkit.NewCA(t, spiffeid.RequireTrustDomainFromString(td), 0)
		}, nil))
		if _, err := e.st.CreateFederation(ctx, storage.Federation{TrustDomain: td, BundleEndpointURL: "https://" + td + "/", Profile: "https_web", Bundle: doc}, ""); err != nil {
			t.Fatal(err)
		}
	}
	fed := e.entry(t, "spiffe://example.org/a/fed", agentA, "alice", func(en *storage.Entry) { en.FederatesWith = []string{"other.org"} })
	stream := syncStream(t, agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA})), 0)
	first := recvUpdate(t, stream)
	if last := first[len(first)-1]; !last.FederatedAllSet || !slices.Equal(last.FederatedAll, []string{"other.org"}) {
		t.Fatalf("first update's trust domains: %v (set %v), want [other.org]", last.FederatedAll, last.FederatedAllSet)
	}
	m := recvUpdate(t, stream)
	if len(m) != 1 || len(m[0].FederatedBundles) != 1 || m[0].FederatedBundles[0].TrustDomain != "other.org" || len(m[0].FederatedBundles[0].SpiffeBundle) == 0 {
		t.Fatalf("federated bundles sent: %v; want other.org's only", m)
	}
	fed.FederatesWith = nil
	if _, err := e.st.UpdateEntry(ctx, fed, fed.Revision, "stop"); err != nil {
		t.Fatal(err)
	}
	for {
		m = recvUpdate(t, stream)
		if len(m[0].FederatedRemoved) > 0 {
			break
		}
		if len(m[0].FederatedBundles) > 0 {
			t.Fatalf("bundles sent after the entry stopped federating: %v", m)
		}
	}
	if !slices.Equal(m[0].FederatedRemoved, []string{"other.org"}) {
		t.Fatalf("removed: %v, want [other.org]", m[0].FederatedRemoved)
	}
}
