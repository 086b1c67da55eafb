package server

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func newAdminService(tb testing.TB, e *env, auth adminapi.AdminAuthenticator, defaultParent string) *adminapi.AdminService {
	tb.Helper()
	svc, err := adminapi.NewAdminService(adminapi.AdminServiceConfig{Store: e.st, CA: e.ca, TrustDomain: testTD, Selectors: testSelectors(), Authenticate: auth,
		DefaultParentID: defaultParent, Logger: testLogger(tb)})
	if err != nil {
		tb.Fatalf("NewAdminService: %v", err)
	}
	return svc
}

// adminClient serves svc on a real Unix socket with peer credentials, as the server does, and dials it.
func adminClient(tb testing.TB, svc *adminapi.AdminService) adminv1.AdminClient {
	tb.Helper()
	dir := tb.TempDir()
	if len(dir) > 90 { // sun_path is 108 bytes
		var err error
		if dir, err = os.MkdirTemp("", "sgn"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := filepath.Join(dir, "admin.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatalf("listen on %s: %v", path, err)
	}
	gs := grpc.NewServer(grpc.Creds(peercred.Credentials()))
	adminv1.RegisterAdminServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return adminv1.NewAdminClient(conn)
}

// unixAdmin returns an admin client on a Unix socket that authorizes this process's uid.
func unixAdmin(tb testing.TB, e *env, defaultParent string) adminv1.AdminClient {
	tb.Helper()
	return adminClient(tb, newAdminService(tb, e, adminapi.UnixAdminAuth(uint32(os.Getuid())), defaultParent))
}

func keyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func myUID() string { return fmt.Sprintf("uid:%d", os.Getuid()) }

// listAll returns every entry ListEntries streams for req and the number of messages it took.
func listAll(tb testing.TB, c adminv1.AdminClient, req *adminv1.ListEntriesRequest) ([]*adminv1.Entry, int) {
	tb.Helper()
	stream, err := c.ListEntries(testCtx(tb), req)
	if err != nil {
		tb.Fatalf("ListEntries: %v", err)
	}
	var out []*adminv1.Entry
	msgs := 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, msgs
		}
		if err != nil {
			tb.Fatalf("ListEntries Recv: %v", err)
		}
		if len(m.Entries) == 0 || len(m.Entries) > adminapi.ListPageSize {
			tb.Fatalf("ListEntries message with %d entries", len(m.Entries))
		}
		msgs++
		out = append(out, m.Entries...)
	}
}

func adminEntry(spiffeID, parent, owner string) *adminv1.Entry {
	return &adminv1.Entry{SpiffeId: spiffeID, ParentId: parent, Owner: owner, Purpose: "test workload",
		Selectors: []*adminv1.Selector{{Type: "unix", Value: "uid:1000"}}}
}

func TestAdminOwnersAndEntries(t *testing.T) {
	e := newEnv(t)
	c := unixAdmin(t, e, "")
	ctx := testCtx(t)

	o, err := c.CreateOwner(ctx, &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: "alice", Kind: "person", DisplayName: "Alice"}})
	if err != nil {
		t.Fatalf("CreateOwner: %v", err)
	}
	if o.Name != "alice" || !strings.HasPrefix(o.CreatedBy, myUID()) || o.CreatedAt == 0 {
		t.Fatalf("owner = %v; want created by %s", o, myUID())
	}
	ownerErrs := []struct {
		name string
		req  *adminv1.CreateOwnerRequest
		want codes.Code
	}{
		{"duplicate", &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: "alice"}}, codes.AlreadyExists},
		{"invalid name", &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: "a b"}}, codes.InvalidArgument},
		{"invalid kind", &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: "bot", Kind: "robot"}}, codes.InvalidArgument},
		{"missing", &adminv1.CreateOwnerRequest{}, codes.InvalidArgument},
	}
	for _, tc := range ownerErrs {
		t.Run("owner "+tc.name, func(t *testing.T) {
			if _, err := c.CreateOwner(testCtx(t), tc.req); status.Code(err) != tc.want {
				t.Fatalf("CreateOwner: %v, want %s", err, tc.want)
			}
		})
	}
	owners, err := c.ListOwners(ctx, &adminv1.ListOwnersRequest{})
	if err != nil || len(owners.Owners) != 1 || owners.Owners[0].Name != "alice" || owners.Owners[0].DisplayName != "Alice" {
		t.Fatalf("ListOwners = %v, %v", owners, err)
	}

	in := adminEntry("spiffe://example.org/ns/prod/web", agentA.String(), "alice")
	in.Selectors = []*adminv1.Selector{{Type: "unix", Value: "user:www"}, {Type: "unix", Value: "gid:33"}}
	in.DnsNames = []string{"web.example.org"}
	before := time.Now().Unix()
	created, err := c.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: in})
	if err != nil {
		t.Fatalf("CreateEntry: %v", err)
	}
	if len(created.Id) != 32 || created.Revision == 0 || created.CreatedAt < before || created.CreatedAt > time.Now().Unix() {
		t.Fatalf("created entry = %v", created)
	}
	if !strings.HasPrefix(created.CreatedBy, myUID()) {
		t.Fatalf("created_by = %q, want the calling uid %s", created.CreatedBy, myUID())
	}
	if created.X509TtlSeconds != 3600 || created.JwtTtlSeconds != 3600 {
		t.Fatalf("TTLs = %d/%d, want defaults of 3600", created.X509TtlSeconds, created.JwtTtlSeconds)
	}
	if got := created.Selectors; len(got) != 2 || got[0].Value != "gid:33" || got[1].Value != "user:www" {
		t.Fatalf("selectors = %v, want normalized order", got)
	}
	stored, err := e.st.Entry(created.Id)
	if err != nil || stored.CreatedBy != created.CreatedBy || stored.Owner != "alice" || stored.ParentID != agentA.String() {
		t.Fatalf("stored entry = %+v, %v", stored, err)
	}
	got, err := c.GetEntry(ctx, &adminv1.GetEntryRequest{Id: created.Id})
	if err != nil || got.SpiffeId != in.SpiffeId || got.Revision != created.Revision || !slices.Equal(got.DnsNames, in.DnsNames) {
		t.Fatalf("GetEntry = %v, %v", got, err)
	}

	count := func() int { n, _ := listAll(t, c, &adminv1.ListEntriesRequest{}); return len(n) }
	entryErrs := []struct {
		name  string
		entry *adminv1.Entry
		mod   func(*adminv1.Entry)
		want  codes.Code
	}{
		{"duplicate", in, nil, codes.AlreadyExists},
		{"unknown owner", adminEntry("spiffe://example.org/x", agentA.String(), "nobody"), nil, codes.FailedPrecondition},
		{"missing entry", nil, nil, codes.InvalidArgument},
		{"id set", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.Id = "0123" }, codes.InvalidArgument},
		{"created_by set", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.CreatedBy = "mallory" }, codes.InvalidArgument},
		{"created_at set", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.CreatedAt = 1 }, codes.InvalidArgument},
		{"revision set", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.Revision = 7 }, codes.InvalidArgument},
		{"bad spiffe id", adminEntry("spiffe://other.org/x", agentA.String(), "alice"), nil, codes.InvalidArgument},
		{"reserved path", adminEntry("spiffe://example.org/signet/agent/z", agentA.String(), "alice"), nil, codes.InvalidArgument},
		{"no parent and no default", adminEntry("spiffe://example.org/x", "", "alice"), nil, codes.InvalidArgument},
		{"no selectors", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.Selectors = nil }, codes.InvalidArgument},
		{"unknown selector", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) {
			e.Selectors = []*adminv1.Selector{{Type: "docker", Value: "label:x"}}
		}, codes.InvalidArgument},
		{"too many selectors", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) {
			for i := range maxSelectors(t) + 1 {
				e.Selectors = append(e.Selectors, &adminv1.Selector{Type: "unix", Value: fmt.Sprintf("gid:%d", i)})
			}
		}, codes.InvalidArgument},
		{"negative ttl", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.JwtTtlSeconds = -1 }, codes.InvalidArgument},
		{"ttl above 30 days", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.X509TtlSeconds = 31 * 86400 }, codes.InvalidArgument},
		{"expired", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.ExpiresAt = time.Now().Add(-time.Hour).Unix() }, codes.InvalidArgument},
		{"no purpose", adminEntry("spiffe://example.org/x", agentA.String(), "alice"), func(e *adminv1.Entry) { e.Purpose = "" }, codes.InvalidArgument},
	}
	for _, tc := range entryErrs {
		t.Run("entry "+tc.name, func(t *testing.T) {
			n := count()
			req := &adminv1.CreateEntryRequest{Entry: tc.entry}
			if tc.mod != nil {
				req.Entry = proto.Clone(tc.entry).(*adminv1.Entry)
				tc.mod(req.Entry)
			}
			_, err := c.CreateEntry(testCtx(t), req)
			if status.Code(err) != tc.want {
				t.Fatalf("CreateEntry: %v, want %s", err, tc.want)
			}
			if after := count(); after != n {
				t.Fatalf("entries went from %d to %d after a refused create", n, after)
			}
		})
	}

	t.Run("get unknown", func(t *testing.T) {
		if _, err := c.GetEntry(testCtx(t), &adminv1.GetEntryRequest{Id: "0123456789abcdef0123456789abcdef"}); status.Code(err) != codes.NotFound {
			t.Fatalf("GetEntry unknown: %v, want NotFound", err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		del, err := c.DeleteEntry(testCtx(t), &adminv1.DeleteEntryRequest{Id: created.Id})
		if err != nil || del.Id != created.Id || del.SpiffeId != in.SpiffeId {
			t.Fatalf("DeleteEntry = %v, %v", del, err)
		}
		if _, err := c.GetEntry(testCtx(t), &adminv1.GetEntryRequest{Id: created.Id}); status.Code(err) != codes.NotFound {
			t.Fatalf("GetEntry after delete: %v, want NotFound", err)
		}
		if _, err := c.DeleteEntry(testCtx(t), &adminv1.DeleteEntryRequest{Id: created.Id}); status.Code(err) != codes.NotFound {
			t.Fatalf("second DeleteEntry: %v, want NotFound", err)
		}
		if _, err := c.DeleteEntry(testCtx(t), &adminv1.DeleteEntryRequest{}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("DeleteEntry without id: %v, want InvalidArgument", err)
		}
		// The identity is free again.
		if _, err := c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: in}); err != nil {
			t.Fatalf("re-create after delete: %v", err)
		}
	})
}

func TestAdminDefaultParent(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	c := unixAdmin(t, e, agentA.String())
	in := adminEntry("spiffe://example.org/dev/me", "", "alice")
	in.ExpiresAt = time.Now().Add(24 * time.Hour).Unix()
	got, err := c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: in})
	if err != nil {
		t.Fatalf("CreateEntry: %v", err)
	}
	if got.ParentId != agentA.String() {
		t.Fatalf("parent = %q, want the default %s", got.ParentId, agentA)
	}
	if got.ExpiresAt != in.ExpiresAt {
		t.Fatalf("expires_at = %d, want %d", got.ExpiresAt, in.ExpiresAt)
	}
	got, err = c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: adminEntry("spiffe://example.org/dev/me", agentB.String(), "alice")})
	if err != nil || got.ParentId != agentB.String() {
		t.Fatalf("explicit parent: %v, %v", got, err)
	}
}

func TestAdminListEntries(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	e.owner(t, "bob")
	c := unixAdmin(t, e, "")
	a1 := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	a2 := e.entry(t, "spiffe://example.org/db", agentA, "alice", nil)
	a3 := e.entry(t, "spiffe://example.org/web", agentB, "alice", nil)
	b1 := e.entry(t, "spiffe://example.org/cache", agentA, "bob", nil)

	tests := []struct {
		name string
		req  *adminv1.ListEntriesRequest
		want []storage.Entry
	}{
		{"all", &adminv1.ListEntriesRequest{}, []storage.Entry{a1, a2, a3, b1}},
		{"owner", &adminv1.ListEntriesRequest{Owner: "alice"}, []storage.Entry{a1, a2, a3}},
		{"spiffe_id", &adminv1.ListEntriesRequest{SpiffeId: "spiffe://example.org/web"}, []storage.Entry{a1, a3}},
		{"parent_id", &adminv1.ListEntriesRequest{ParentId: agentB.String()}, []storage.Entry{a3}},
		{"owner and parent", &adminv1.ListEntriesRequest{Owner: "bob", ParentId: agentA.String()}, []storage.Entry{b1}},
		{"spiffe_id and parent", &adminv1.ListEntriesRequest{SpiffeId: "spiffe://example.org/web", ParentId: agentA.String()}, []storage.Entry{a1}},
		{"no match", &adminv1.ListEntriesRequest{Owner: "bob", ParentId: agentB.String()}, nil},
		{"unknown parent", &adminv1.ListEntriesRequest{ParentId: "spiffe://example.org/signet/agent/zz"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := listAll(t, c, tc.req)
			var ids []string
			for _, en := range got {
				ids = append(ids, en.Id)
			}
			slices.Sort(ids)
			if want := sortedIDs(tc.want...); !slices.Equal(ids, want) {
				t.Fatalf("listed %v, want %v", ids, want)
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		const n = 2500
		want := e.entries(t, n, "page", agentB, "bob", nil)
		got, msgs := listAll(t, c, &adminv1.ListEntriesRequest{Owner: "bob"})
		if msgs != 3 {
			t.Fatalf("%d entries came in %d messages, want 3 of at most %d", len(got), msgs, adminapi.ListPageSize)
		}
		seen := map[string]bool{}
		for _, en := range got {
			if seen[en.Id] {
				t.Fatalf("entry %s listed twice", en.Id)
			}
			seen[en.Id] = true
		}
		delete(seen, b1.ID)
		if len(seen) != n || len(got) != n+1 {
			t.Fatalf("listed %d entries, want %d", len(got), n+1)
		}
		for id := range want {
			if !seen[id] {
				t.Fatalf("entry %s missing from the listing", id)
			}
		}
	})
}

func TestAdminGetBundle(t *testing.T) {
	e := newEnv(t)
	c := unixAdmin(t, e, "")
	b, err := c.GetBundle(testCtx(t), &adminv1.GetBundleRequest{})
	if err != nil {
		t.Fatalf("GetBundle: %v", err)
	}
	if b.TrustDomain != "example.org" || b.Sequence != e.st.Bundle().Sequence || len(b.X509Authorities) != 1 || len(b.JwtAuthorities) != 1 {
		t.Fatalf("bundle = td %q seq %d, %d X.509, %d JWT", b.TrustDomain, b.Sequence, len(b.X509Authorities), len(b.JwtAuthorities))
	}
	root, err := x509.ParseCertificate(b.X509Authorities[0])
	if err != nil || !root.Equal(e.ca.X509Authority()) {
		t.Fatalf("X.509 authority is not the CA root: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(b.JwtAuthorities[0].PublicKey)
	if err != nil || b.JwtAuthorities[0].KeyId != e.ca.JWTKeyID() || !keyEqual(e.ca.JWTPublicKey(), pub) {
		t.Fatalf("JWT authority %s: %v", b.JwtAuthorities[0].KeyId, err)
	}

	doc, err := spiffebundle.Parse(testTD, b.SpiffeBundle)
	if err != nil {
		t.Fatalf("SPIFFE bundle document does not parse: %v\n%s", err, b.SpiffeBundle)
	}
	if roots := doc.X509Authorities(); len(roots) != 1 || !roots[0].Equal(e.ca.X509Authority()) {
		t.Fatalf("SPIFFE bundle X.509 authorities = %d", len(roots))
	}
	if k, ok := doc.FindJWTAuthority(e.ca.JWTKeyID()); !ok || !keyEqual(e.ca.JWTPublicKey(), k) {
		t.Fatalf("SPIFFE bundle lacks JWT key %s", e.ca.JWTKeyID())
	}
	if seq, ok := doc.SequenceNumber(); !ok || seq != b.Sequence {
		t.Fatalf("SPIFFE bundle sequence %d (%v), want %d", seq, ok, b.Sequence)
	}

	// Publishing the same authorities again changes nothing.
	if err := e.srv.PublishAuthorities(testCtx(t)); err != nil {
		t.Fatalf("PublishAuthorities again: %v", err)
	}
	again, err := c.GetBundle(testCtx(t), &adminv1.GetBundleRequest{})
	if err != nil || again.Sequence != b.Sequence || len(again.X509Authorities) != 1 || len(again.JwtAuthorities) != 1 {
		t.Fatalf("bundle after re-publishing: %v, %v", again, err)
	}
}

func TestNewServerRequiresStoreAndCA(t *testing.T) {
	st := openStore(t)
	authority := newCA(t)
	for name, cfg := range map[string]Config{
		"no store": {CA: authority, TrustDomain: testTD},
		"no CA":    {Store: st, TrustDomain: testTD},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New with %s succeeded", name)
		}
	}
	// The services' own requirements surface through New.
	if _, err := New(Config{Store: st, CA: authority, TrustDomain: testTD}); err == nil || !strings.Contains(err.Error(), "Authenticate") {
		t.Errorf("New without authenticators: %v, want an error naming Authenticate", err)
	}
}

func TestAdminQueryLedger(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	e.owner(t, "bob")
	ea := e.entry(t, "spiffe://example.org/alice/web", agentA, "alice", nil)
	eb := e.entry(t, "spiffe://example.org/bob/web", agentA, "bob", nil)
	caller := agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}
	issue := func(entryID string, n int) {
		reqs := make([]issuer.X509Request, n)
		for i := range reqs {
			reqs[i] = issuer.X509Request{EntryID: entryID, CSR: csrFor(t, newP256(t), nil)}
		}
		res, err := e.srv.Issuer.SignX509SVIDs(testCtx(t), caller, reqs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	issue(ea.ID, 5)
	issue(eb.ID, 3)
	jwt, err := e.srv.Issuer.SignJWTSVID(testCtx(t), caller, ea.ID, []string{"db"})
	if err != nil {
		t.Fatal(err)
	}
	c := unixAdmin(t, e, "")

	tests := []struct {
		name  string
		req   *adminv1.QueryLedgerRequest
		count int
		check func(*adminv1.Issuance) bool
	}{
		{"all", &adminv1.QueryLedgerRequest{}, 9, nil},
		{"owner", &adminv1.QueryLedgerRequest{Owner: "alice"}, 6, func(r *adminv1.Issuance) bool { return r.Owner == "alice" }},
		{"entry", &adminv1.QueryLedgerRequest{EntryId: eb.ID}, 3, func(r *adminv1.Issuance) bool { return r.EntryId == eb.ID && r.Kind == "x509-svid" }},
		{"spiffe_id", &adminv1.QueryLedgerRequest{SpiffeId: ea.SPIFFEID}, 6, func(r *adminv1.Issuance) bool { return r.SpiffeId == ea.SPIFFEID }},
		{"agent", &adminv1.QueryLedgerRequest{Agent: agentA.String()}, 9, func(r *adminv1.Issuance) bool {
			return r.Agent == agentA.String() && r.NodeAttestation == "test" && r.Node == e.st.NodeID()
		}},
		{"other agent", &adminv1.QueryLedgerRequest{Agent: agentB.String()}, 0, nil},
		{"limit", &adminv1.QueryLedgerRequest{Owner: "bob", Limit: 2}, 2, nil},
		{"since the future", &adminv1.QueryLedgerRequest{Since: time.Now().Add(time.Hour).UnixNano()}, 0, nil},
		{"until the past", &adminv1.QueryLedgerRequest{Until: time.Now().Add(-time.Hour).UnixNano()}, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.QueryLedger(testCtx(t), tc.req)
			if err != nil {
				t.Fatalf("QueryLedger: %v", err)
			}
			if len(resp.Issuances) != tc.count {
				t.Fatalf("%d records, want %d", len(resp.Issuances), tc.count)
			}
			for _, r := range resp.Issuances {
				if tc.check != nil && !tc.check(r) {
					t.Fatalf("record does not match the filter: %v", r)
				}
			}
		})
	}

	t.Run("jwt record", func(t *testing.T) {
		resp, err := c.QueryLedger(testCtx(t), &adminv1.QueryLedgerRequest{EntryId: ea.ID})
		if err != nil {
			t.Fatalf("QueryLedger: %v", err)
		}
		i := slices.IndexFunc(resp.Issuances, func(r *adminv1.Issuance) bool { return r.Id == jwt.ID })
		if i < 0 {
			t.Fatalf("JWT-SVID %s not in the ledger", jwt.ID)
		}
		r := resp.Issuances[i]
		if r.Kind != "jwt-svid" || !slices.Equal(r.Audience, []string{"db"}) || r.ExpiresAt != jwt.ExpiresAt.UnixNano() || r.PublicKeySha256 != "" {
			t.Fatalf("JWT-SVID record = %v", r)
		}
		page, err := c.QueryLedger(testCtx(t), &adminv1.QueryLedgerRequest{EntryId: ea.ID, Limit: 1})
		if err != nil || len(page.Issuances) != 1 || page.NextCursor == "" {
			t.Fatalf("a page of 1 out of 6 records: %v, %v; want a cursor", page, err)
		}
	})
	t.Run("cursor paging", func(t *testing.T) {
		seen := map[string]bool{}
		req := &adminv1.QueryLedgerRequest{Owner: "alice", Limit: 4}
		var last int64
		for pages := 1; ; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			resp, err := c.QueryLedger(testCtx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Issuances {
				if seen[r.Id] || r.Owner != "alice" {
					t.Fatalf("record %v repeated or of another owner", r)
				}
				if last != 0 && r.IssuedAt > last {
					t.Fatal("records are not newest first")
				}
				seen[r.Id], last = true, r.IssuedAt
			}
			if resp.NextCursor == "" {
				if pages != 2 {
					t.Fatalf("6 records at 4 a page took %d pages", pages)
				}
				break
			}
			req.Cursor = resp.NextCursor
		}
		if len(seen) != 6 {
			t.Fatalf("paged through %d records, want 6", len(seen))
		}
	})
	for _, tc := range []struct {
		name string
		req  *adminv1.QueryLedgerRequest
	}{
		{"bad cursor", &adminv1.QueryLedgerRequest{Cursor: "not-a-cursor"}},
		{"negative limit", &adminv1.QueryLedgerRequest{Limit: -1}},
		{"limit too large", &adminv1.QueryLedgerRequest{Limit: storage.MaxLedgerLimit + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.QueryLedger(testCtx(t), tc.req); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("QueryLedger: %v, want InvalidArgument", err)
			}
		})
	}
}

func TestAdminAuthRefusesOtherUIDs(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	existing := e.entry(t, "spiffe://example.org/web", agentA, "alice", nil)
	uid := uint32(os.Getuid())
	c := adminClient(t, newAdminService(t, e, adminapi.UnixAdminAuth(uid+1, uid+2), ""))
	ctx := testCtx(t)
	calls := map[string]func() error{
		"CreateOwner": func() error {
			_, err := c.CreateOwner(ctx, &adminv1.CreateOwnerRequest{Owner: &adminv1.Owner{Name: "mallory"}})
			return err
		},
		"CreateEntry": func() error {
			_, err := c.CreateEntry(ctx, &adminv1.CreateEntryRequest{Entry: adminEntry("spiffe://example.org/evil", agentA.String(), "alice")})
			return err
		},
		"GetEntry":    func() error { _, err := c.GetEntry(ctx, &adminv1.GetEntryRequest{Id: existing.ID}); return err },
		"DeleteEntry": func() error { _, err := c.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: existing.ID}); return err },
		"ListOwners":  func() error { _, err := c.ListOwners(ctx, &adminv1.ListOwnersRequest{}); return err },
		"GetBundle":   func() error { _, err := c.GetBundle(ctx, &adminv1.GetBundleRequest{}); return err },
		"QueryLedger": func() error { _, err := c.QueryLedger(ctx, &adminv1.QueryLedgerRequest{}); return err },
		"ListEntries": func() error {
			s, err := c.ListEntries(ctx, &adminv1.ListEntriesRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("%s by uid %d: %v, want PermissionDenied", name, uid, err)
			}
			if !strings.Contains(status.Convert(err).Message(), fmt.Sprintf("uid %d", uid)) {
				t.Fatalf("message %q does not name the refused uid", status.Convert(err).Message())
			}
		})
	}
	if _, err := e.st.Entry(existing.ID); err != nil {
		t.Fatalf("entry gone after a refused delete: %v", err)
	}
	if _, err := e.st.Owner("mallory"); !errors.Is(err, storage.ErrOwnerNotFound) {
		t.Fatalf("refused owner was stored: %v", err)
	}
	if n := len(e.st.Entries()); n != 1 {
		t.Fatalf("%d entries after a refused create", n)
	}

	t.Run("no peer credentials", func(t *testing.T) {
		// Without the peer-credential transport (here: in-memory gRPC) the uid is unknown.
		svc := newAdminService(t, e, adminapi.UnixAdminAuth(uid), "")
		conn := serveBufconn(t, func(g *grpc.Server) { adminv1.RegisterAdminServer(g, svc) })
		_, err := adminv1.NewAdminClient(conn).ListOwners(testCtx(t), &adminv1.ListOwnersRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("ListOwners without peer credentials: %v, want Unauthenticated", err)
		}
	})
}

func TestEnsureEntryIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	svc := newAdminService(t, e, func(context.Context) (string, error) { return "dev", nil }, agentA.String())
	ctx := testCtx(t)
	want := storage.Entry{SPIFFEID: "spiffe://example.org/dev/alice", Owner: "alice", Purpose: "dev user",
		Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:1000"}}}

	first, created, err := svc.EnsureEntry(ctx, want, "uid:1000(alice)")
	if err != nil || !created {
		t.Fatalf("first EnsureEntry: created=%v, %v", created, err)
	}
	if first.ID == "" || first.ParentID != agentA.String() || first.CreatedBy != "uid:1000(alice)" || first.X509TTL != adminapi.DefaultSVIDTTL {
		t.Fatalf("first EnsureEntry stored %+v", first)
	}
	again := want
	again.Selectors = slices.Clone(want.Selectors)
	slices.Reverse(again.Selectors) // the same set in another order
	second, created, err := svc.EnsureEntry(ctx, again, "someone-else")
	if err != nil || created {
		t.Fatalf("second EnsureEntry: created=%v, %v; want the existing entry", created, err)
	}
	if second.ID != first.ID || second.CreatedBy != first.CreatedBy {
		t.Fatalf("second EnsureEntry returned %+v, want %+v", second, first)
	}
	if n := len(e.st.EntriesByParent(agentA.String())); n != 1 {
		t.Fatalf("%d entries after two EnsureEntry calls, want 1", n)
	}

	other := want
	other.Selectors = []selector.Selector{{Type: "unix", Value: "uid:1001"}}
	if _, created, err := svc.EnsureEntry(ctx, other, "dev"); err != nil || !created {
		t.Fatalf("EnsureEntry with other selectors: created=%v, %v", created, err)
	}
	bad := want
	bad.Purpose = ""
	if _, created, err := svc.EnsureEntry(ctx, bad, "dev"); !errors.Is(err, apierr.ErrInvalidArgument) || created {
		t.Fatalf("EnsureEntry without purpose: created=%v, %v; want ErrInvalidArgument", created, err)
	}
	noOwner := want
	noOwner.Owner, noOwner.SPIFFEID = "ghost", "spiffe://example.org/dev/ghost"
	if _, _, err := svc.EnsureEntry(ctx, noOwner, "dev"); !errors.Is(err, storage.ErrOwnerNotFound) {
		t.Fatalf("EnsureEntry for an unknown owner: %v, want ErrOwnerNotFound", err)
	}
}

func TestNewAdminServiceRequiresConfig(t *testing.T) {
	e := newEnv(t)
	auth := func(context.Context) (string, error) { return "x", nil }
	full := adminapi.AdminServiceConfig{Store: e.st, CA: e.ca, TrustDomain: testTD, Selectors: testSelectors(), Authenticate: auth}
	tests := []struct {
		name  string
		mod   func(*adminapi.AdminServiceConfig)
		field string
	}{
		{"no store", func(c *adminapi.AdminServiceConfig) { c.Store = nil }, "Store"},
		{"no CA", func(c *adminapi.AdminServiceConfig) { c.CA = nil }, "CA"},
		{"no authenticator", func(c *adminapi.AdminServiceConfig) { c.Authenticate = nil }, "Authenticate"},
		{"no trust domain", func(c *adminapi.AdminServiceConfig) { c.TrustDomain = spiffeid.TrustDomain{} }, "TrustDomain"},
		{"no selector registry", func(c *adminapi.AdminServiceConfig) { c.Selectors = nil }, "Selectors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := full
			tc.mod(&cfg)
			if _, err := adminapi.NewAdminService(cfg); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("NewAdminService: %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// TestAdminCreateEntryHugeTTLRefused: TTL seconds that would overflow a Duration are refused, not
// wrapped into a small or default TTL.
func TestAdminCreateEntryHugeTTLRefused(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	c := unixAdmin(t, e, "")
	for _, secs := range []int64{1<<55 + 3600, 1 << 55, 1<<62 + 1} {
		in := adminEntry(fmt.Sprintf("spiffe://example.org/ttl/%d", secs), agentA.String(), "alice")
		in.X509TtlSeconds = secs
		got, err := c.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: in})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("x509_ttl_seconds %d: got %v, %v; want InvalidArgument (more than 30 days)", secs, got, err)
		}
	}
}

// maxSelectors is the admin API's bound on the selectors of an entry.
func maxSelectors(tb testing.TB) int {
	n, _, ok := adminapi.RequestBound("signet.admin.v1.Entry.selectors")
	if !ok {
		tb.Fatal("the admin API has no bound on selectors")
	}
	return n
}
