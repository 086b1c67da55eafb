package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// agentClient serves an agentapi.AgentService on e's components, authenticating every call with auth, over a
// real (in-memory) gRPC connection.
func agentClient(tb testing.TB, e *env, auth agentapi.Authenticator, opts ...grpc.DialOption) agentv1.AgentClient {
	tb.Helper()
	svc, err := agentapi.NewAgentService(agentapi.AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD, Authenticate: auth, Logger: testLogger(tb)})
	if err != nil {
		tb.Fatalf("NewAgentService: %v", err)
	}
	conn := serveBufconn(tb, func(g *grpc.Server) { agentv1.RegisterAgentServer(g, svc) }, opts...)
	return agentv1.NewAgentClient(conn)
}

func syncStream(tb testing.TB, c agentv1.AgentClient, known uint64) agentv1.Agent_SyncEntriesClient {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	tb.Cleanup(cancel)
	stream, err := c.SyncEntries(ctx, &agentv1.SyncEntriesRequest{KnownRevision: known})
	if err != nil {
		tb.Fatalf("SyncEntries: %v", err)
	}
	return stream
}

// recvUpdate reads the messages of one update (until more = false); the stream's context bounds the wait.
func recvUpdate(tb testing.TB, stream agentv1.Agent_SyncEntriesClient) []*agentv1.SyncEntriesResponse {
	tb.Helper()
	var msgs []*agentv1.SyncEntriesResponse
	for {
		m, err := stream.Recv()
		if err != nil {
			tb.Fatalf("Recv after %d messages: %v", len(msgs), err)
		}
		msgs = append(msgs, m)
		if !m.More {
			return msgs
		}
	}
}

// nextUpdate returns the next update on stream that is not a repeat of prev. SyncEntries may legitimately
// send a change twice when it commits while the previous update is being built (see its comment), so a
// repeat of the same entries and deletions without a bundle is skipped.
func nextUpdate(tb testing.TB, stream agentv1.Agent_SyncEntriesClient, prev []*agentv1.SyncEntriesResponse) []*agentv1.SyncEntriesResponse {
	tb.Helper()
	for {
		msgs := recvUpdate(tb, stream)
		repeat := len(msgs) == 1 && msgs[0].Bundle == nil && !msgs[0].Full && len(prev) == 1 &&
			slices.Equal(entryIDs(msgs...), entryIDs(prev...)) && slices.Equal(msgs[0].Deleted, prev[0].Deleted) &&
			(len(msgs[0].Entries) > 0 || len(msgs[0].Deleted) > 0)
		if !repeat {
			return msgs
		}
		tb.Logf("skipping a repeated update at revision %d", msgs[0].Revision)
	}
}

func entryIDs(msgs ...*agentv1.SyncEntriesResponse) []string {
	var ids []string
	for _, m := range msgs {
		for _, e := range m.Entries {
			ids = append(ids, e.Id)
		}
	}
	slices.Sort(ids)
	return ids
}

func sortedIDs(es ...storage.Entry) []string {
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

// checkBundle asserts that b carries the trust domain and e's CA root and JWT key.
func checkBundle(tb testing.TB, e *env, b *agentv1.Bundle) {
	tb.Helper()
	if b == nil {
		tb.Fatal("no bundle")
	}
	if b.TrustDomain != "example.org" || b.Sequence == 0 {
		tb.Fatalf("bundle trust domain %q sequence %d", b.TrustDomain, b.Sequence)
	}
	root := e.ca.X509Authority().Raw
	if !slices.ContainsFunc(b.X509Authorities, func(der []byte) bool { return string(der) == string(root) }) {
		tb.Fatalf("bundle's %d X.509 authorities do not include the CA root", len(b.X509Authorities))
	}
	want, err := x509.MarshalPKIXPublicKey(e.ca.JWTPublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	if !slices.ContainsFunc(b.JwtAuthorities, func(k *agentv1.JWTKey) bool {
		return k.KeyId == e.ca.JWTKeyID() && string(k.PublicKey) == string(want)
	}) {
		tb.Fatalf("bundle JWT keys %v do not include kid %s with the CA's key", b.JwtAuthorities, e.ca.JWTKeyID())
	}
}

func TestSyncEntriesFullListingIsPerAgent(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	a1 := e.entry(t, "spiffe://example.org/a/one", agentA, "alice", func(en *storage.Entry) {
		en.Selectors = []selector.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:10"}}
		en.X509TTL, en.JWTTTL, en.DNSNames = 20*time.Minute, 5*time.Minute, []string{"one.example.org"}
		en.ExpiresAt = time.Now().Add(48 * time.Hour).Truncate(time.Second)
	})
	a2 := e.entry(t, "spiffe://example.org/a/two", agentA, "alice", nil)
	b1 := e.entry(t, "spiffe://example.org/b/one", agentB, "alice", nil)

	msgs := recvUpdate(t, syncStream(t, agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA})), 0))
	if len(msgs) != 1 || !msgs[0].Full || msgs[0].More {
		t.Fatalf("first update: %d messages, full=%v more=%v; want one full message", len(msgs), msgs[0].Full, msgs[0].More)
	}
	if got, want := entryIDs(msgs...), sortedIDs(a1, a2); !slices.Equal(got, want) {
		t.Fatalf("agent A sees %v, want only its own %v", got, want)
	}
	if msgs[0].Revision != e.st.Revision() {
		t.Fatalf("update revision %d, store at %d", msgs[0].Revision, e.st.Revision())
	}
	checkBundle(t, e, msgs[0].Bundle)

	var got *agentv1.Entry
	for _, en := range msgs[0].Entries {
		if en.Id == a1.ID {
			got = en
		}
	}
	if got.SpiffeId != a1.SPIFFEID || !slices.Equal(got.Selectors, []string{"unix:gid:10", "unix:uid:1000"}) ||
		got.X509TtlSeconds != 1200 || got.JwtTtlSeconds != 300 || !slices.Equal(got.DnsNames, a1.DNSNames) ||
		got.ExpiresAt != a1.ExpiresAt.Unix() || got.Revision != a1.Revision {
		t.Fatalf("entry on the wire = %v, stored %+v", got, a1)
	}

	msgsB := recvUpdate(t, syncStream(t, agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentB})), 0))
	if got, want := entryIDs(msgsB...), sortedIDs(b1); !slices.Equal(got, want) || !msgsB[0].Full {
		t.Fatalf("agent B sees %v (full=%v), want only %v", got, msgsB[0].Full, want)
	}
}

func TestSyncEntriesPushesDeltas(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	stream := syncStream(t, agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA})), 0)
	first := recvUpdate(t, stream)
	if len(first) != 1 || !first[0].Full || len(first[0].Entries) != 0 {
		t.Fatalf("first update for an agent without entries: %v", first)
	}

	// Another agent's entry, then one of ours: the next message carries only ours, as a delta.
	e.entry(t, "spiffe://example.org/b/x", agentB, "alice", nil)
	mine := e.entry(t, "spiffe://example.org/a/x", agentA, "alice", nil)
	msgs := nextUpdate(t, stream, first)
	if len(msgs) != 1 || msgs[0].Full || !slices.Equal(entryIDs(msgs...), []string{mine.ID}) || len(msgs[0].Deleted) != 0 {
		t.Fatalf("after creating an entry: %v; want a delta with only %s", msgs, mine.ID)
	}
	if msgs[0].Revision < mine.Revision || msgs[0].Bundle != nil {
		t.Fatalf("delta revision %d (entry at %d), bundle %v", msgs[0].Revision, mine.Revision, msgs[0].Bundle)
	}

	if _, err := e.st.DeleteEntry(testCtx(t), mine.ID); err != nil {
		t.Fatal(err)
	}
	msgs = nextUpdate(t, stream, msgs)
	if len(msgs) != 1 || msgs[0].Full || len(msgs[0].Entries) != 0 || !slices.Equal(msgs[0].Deleted, []string{mine.ID}) {
		t.Fatalf("after deleting %s: %v; want a delta deleting it", mine.ID, msgs)
	}

	// A new authority in the bundle is pushed without any entry change.
	publishOtherRoot(t, e)
	msgs = nextUpdate(t, stream, msgs)
	if len(msgs) != 1 || msgs[0].Full || len(msgs[0].Entries) != 0 || msgs[0].Bundle == nil || len(msgs[0].Bundle.X509Authorities) != 2 {
		t.Fatalf("after adding an authority: %v; want a bundle with 2 X.509 authorities", msgs)
	}
	checkBundle(t, e, msgs[0].Bundle)
}

// publishOtherRoot adds a second node's X.509 root to the bundle.
func publishOtherRoot(tb testing.TB, e *env) {
	tb.Helper()
	other := newCA(tb)
	sum := sha256.Sum256(other.X509Authority().Raw)
	if err := e.st.PutAuthority(testCtx(tb), storage.Authority{Kind: storage.AuthorityX509, ID: hex.EncodeToString(sum[:]),
		DER: other.X509Authority().Raw, NotAfter: other.NotAfter(), Node: "node-2", AddedAt: time.Now().UTC()}); err != nil {
		tb.Fatalf("PutAuthority: %v", err)
	}
}

// TestSyncEntriesBundleChangeDuringListing: a bundle change that lands while the stream is busy sending
// a long listing is still pushed (no lost wake-up).
func TestSyncEntriesBundleChangeDuringListing(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	// Pages of ~300 KB, far beyond a 64 KB flow-control window: the server blocks in Send until we read.
	long := func(c string) string { return strings.Repeat(c, 60) + ".example.org" }
	e.entries(t, 2500, "a", agentA, "alice", func(en *storage.Entry) { en.DNSNames = []string{long("a"), long("b"), long("c")} })
	client := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA}),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)) // fixed windows, no BDP growth
	stream := syncStream(t, client, 0)
	m, err := stream.Recv()
	if err != nil || m.Bundle == nil || !m.More {
		t.Fatalf("first page: %v, %v", m, err)
	}
	// The server has read the bundle and is blocked sending the rest of the listing.
	publishOtherRoot(t, e)
	for m.More {
		if m, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan *agentv1.SyncEntriesResponse, 1)
	go func() {
		if m, err := stream.Recv(); err == nil {
			got <- m
		}
	}()
	select {
	case m := <-got:
		if len(m.GetBundle().GetX509Authorities()) != 2 {
			t.Fatalf("next message %v does not carry the new bundle", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("bundle sequence %d was never pushed to the agent", e.st.Bundle().Sequence)
	}
}

func TestSyncEntriesPagesLargeListings(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	const n = 2500
	want := e.entries(t, n, "a", agentA, "alice", nil)
	e.entries(t, 10, "b", agentB, "alice", nil)

	msgs := recvUpdate(t, syncStream(t, agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA})), 0))
	if len(msgs) != 3 {
		t.Fatalf("%d entries came in %d messages, want 3 pages of at most %d", n, len(msgs), agentapi.SyncPageSize)
	}
	for i, wantMore := range []bool{true, true, false} {
		m := msgs[i]
		if m.More != wantMore || !m.Full || len(m.Entries) > agentapi.SyncPageSize || m.Revision != msgs[0].Revision {
			t.Fatalf("page %d: more=%v full=%v entries=%d revision=%d", i, m.More, m.Full, len(m.Entries), m.Revision)
		}
		if (m.Bundle != nil) != (i == 0) {
			t.Fatalf("page %d: bundle present = %v; want it on the first page only", i, m.Bundle != nil)
		}
	}
	got := map[string]bool{}
	for _, id := range entryIDs(msgs...) {
		if got[id] {
			t.Fatalf("entry %s listed twice", id)
		}
		got[id] = true
	}
	if !maps.Equal(got, want) {
		t.Fatalf("listing has %d distinct entries, want the agent's %d", len(got), len(want))
	}
}

func TestSyncEntriesResume(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	a1 := e.entry(t, "spiffe://example.org/a/one", agentA, "alice", nil)
	client := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA}))
	first := recvUpdate(t, syncStream(t, client, 0))
	rev := first[0].Revision

	t.Run("up to date", func(t *testing.T) {
		msgs := recvUpdate(t, syncStream(t, client, rev))
		if len(msgs) != 1 || msgs[0].Full || len(msgs[0].Entries) != 0 || len(msgs[0].Deleted) != 0 || msgs[0].Revision != rev {
			t.Fatalf("resume at the current revision: %v; want one empty delta at %d", msgs, rev)
		}
		checkBundle(t, e, msgs[0].Bundle) // the first message of every call carries the bundle
	})

	a2 := e.entry(t, "spiffe://example.org/a/two", agentA, "alice", nil)
	if _, err := e.st.DeleteEntry(testCtx(t), a1.ID); err != nil {
		t.Fatal(err)
	}
	t.Run("behind", func(t *testing.T) {
		msgs := recvUpdate(t, syncStream(t, client, rev))
		if len(msgs) != 1 || msgs[0].Full || !slices.Equal(entryIDs(msgs...), []string{a2.ID}) || !slices.Equal(msgs[0].Deleted, []string{a1.ID}) {
			t.Fatalf("resume behind: %v; want a delta adding %s and deleting %s", msgs, a2.ID, a1.ID)
		}
	})
	t.Run("large delta", func(t *testing.T) {
		from := e.st.Revision()
		added := e.entries(t, agentapi.SyncPageSize+500, "delta", agentA, "alice", nil)
		if _, err := e.st.DeleteEntry(testCtx(t), a2.ID); err != nil {
			t.Fatal(err)
		}
		msgs := recvUpdate(t, syncStream(t, client, from))
		if len(msgs) != 2 || !msgs[0].More || msgs[1].More || msgs[0].Full || msgs[1].Full {
			t.Fatalf("a delta of %d entries came as %d messages; want 2 delta pages", len(added), len(msgs))
		}
		if len(msgs[0].Deleted) != 0 || !slices.Equal(msgs[1].Deleted, []string{a2.ID}) || msgs[0].Revision != msgs[1].Revision {
			t.Fatalf("deleted %v / %v, revisions %d / %d; want the deletion on the last page", msgs[0].Deleted, msgs[1].Deleted, msgs[0].Revision, msgs[1].Revision)
		}
		got := map[string]bool{}
		for _, id := range entryIDs(msgs...) {
			got[id] = true
		}
		if !maps.Equal(got, added) {
			t.Fatalf("delta carries %d distinct entries, want the %d added", len(got), len(added))
		}
	})
	t.Run("ahead of the server", func(t *testing.T) {
		// An agent claiming a revision the server has not reached cannot be given a delta.
		msgs := recvUpdate(t, syncStream(t, client, e.st.Revision()+1000))
		if !msgs[0].Full || len(entryIDs(msgs...)) != len(e.st.EntriesByParent(agentA.String())) {
			t.Fatalf("resume ahead: %d messages, full=%v; want a full listing", len(msgs), msgs[0].Full)
		}
	})
}

func TestAgentSignX509SVIDsOverGRPC(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	mine := e.entry(t, "spiffe://example.org/a/web", agentA, "alice", nil)
	theirs := e.entry(t, "spiffe://example.org/b/web", agentB, "alice", nil)
	client := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}))

	key := newP256(t)
	resp, err := client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{
		{EntryId: mine.ID, Csr: csrFor(t, key, nil)},
		{EntryId: theirs.ID, Csr: csrFor(t, newP256(t), nil)},
		{EntryId: mine.ID, Csr: []byte{0x30, 0x00}},
		{EntryId: mine.ID, Csr: csrFor(t, newP256(t), nil)},
	}})
	if err != nil {
		t.Fatalf("SignX509SVIDs: %v", err)
	}
	if len(resp.Results) != 4 {
		t.Fatalf("%d results for 4 requests", len(resp.Results))
	}
	for i, want := range []codes.Code{codes.OK, codes.PermissionDenied, codes.InvalidArgument, codes.OK} {
		r := resp.Results[i]
		if codes.Code(r.ErrorCode) != want {
			t.Fatalf("result %d: code %s (%q), want %s", i, codes.Code(r.ErrorCode), r.ErrorMessage, want)
		}
		if want != codes.OK {
			if r.ErrorMessage == "" || len(r.CertChain) != 0 {
				t.Fatalf("result %d: message %q, %d certificates", i, r.ErrorMessage, len(r.CertChain))
			}
			continue
		}
		if len(r.CertChain) != 1 || r.ErrorMessage != "" || r.EntryId != mine.ID {
			t.Fatalf("result %d: %v", i, r)
		}
		cert, err := x509.ParseCertificate(r.CertChain[0])
		if err != nil {
			t.Fatal(err)
		}
		if cert.URIs[0].String() != mine.SPIFFEID {
			t.Fatalf("result %d is for %v", i, cert.URIs)
		}
		if i == 0 && !key.PublicKey.Equal(cert.PublicKey) {
			t.Fatal("result 0 does not certify the CSR's key")
		}
		if _, err := e.st.LookupIssuance(cert.SerialNumber.Text(16)); err != nil {
			t.Fatalf("result %d returned without a ledger record: %v", i, err)
		}
	}
	if !strings.Contains(resp.Results[2].ErrorMessage, "csr") {
		t.Fatalf("bad-CSR message %q does not name the csr", resp.Results[2].ErrorMessage)
	}

	_, err = client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: make([]*agentv1.X509SVIDRequest, issuer.MaxCSRBatch+1)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("oversized batch: %v, want InvalidArgument", err)
	}
}

func TestAgentSignJWTSVIDOverGRPC(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	mine := e.entry(t, "spiffe://example.org/a/web", agentA, "alice", nil)
	theirs := e.entry(t, "spiffe://example.org/b/web", agentB, "alice", nil)
	client := agentClient(t, e, fixedAgent(agentapi.Caller{AgentID: agentA}))

	resp, err := client.SignJWTSVID(testCtx(t), &agentv1.SignJWTSVIDRequest{EntryId: mine.ID, Audience: []string{"db"}})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	rec, err := e.st.LookupIssuance(resp.Id)
	if err != nil || rec.Kind != storage.KindJWTSVID || rec.EntryID != mine.ID {
		t.Fatalf("ledger record for %s: %+v, %v", resp.Id, rec, err)
	}
	if resp.Token == "" || resp.ExpiresAt-resp.IssuedAt != int64(adminapi.DefaultSVIDTTL/time.Second) {
		t.Fatalf("response %v", resp)
	}

	tests := []struct {
		name string
		req  *agentv1.SignJWTSVIDRequest
		want codes.Code
	}{
		{"another agent's entry", &agentv1.SignJWTSVIDRequest{EntryId: theirs.ID, Audience: []string{"db"}}, codes.PermissionDenied},
		{"unknown entry", &agentv1.SignJWTSVIDRequest{EntryId: "nope", Audience: []string{"db"}}, codes.PermissionDenied},
		{"no audience", &agentv1.SignJWTSVIDRequest{EntryId: mine.ID}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := client.SignJWTSVID(testCtx(t), tc.req); status.Code(err) != tc.want {
				t.Fatalf("SignJWTSVID: %v, want %s", err, tc.want)
			}
		})
	}
}

func TestAgentAPIUnauthenticated(t *testing.T) {
	e := newEnv(t)
	e.owner(t, "alice")
	mine := e.entry(t, "spiffe://example.org/a/web", agentA, "alice", nil)
	var calls atomic.Int32
	client := agentClient(t, e, func(context.Context) (agentapi.Caller, error) {
		calls.Add(1)
		return agentapi.Caller{}, fmt.Errorf("no client certificate: %w", apierr.ErrUnauthenticated)
	})
	ledgerBefore := ledgerCount(t, e.st, storage.LedgerQuery{})

	t.Run("SyncEntries", func(t *testing.T) {
		_, err := syncStream(t, client, 0).Recv()
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Recv: %v, want Unauthenticated", err)
		}
	})
	t.Run("SignX509SVIDs", func(t *testing.T) {
		resp, err := client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{
			{EntryId: mine.ID, Csr: csrFor(t, newP256(t), nil)}}})
		if status.Code(err) != codes.Unauthenticated || resp != nil {
			t.Fatalf("SignX509SVIDs: %v, %v; want Unauthenticated", resp, err)
		}
	})
	t.Run("SignJWTSVID", func(t *testing.T) {
		resp, err := client.SignJWTSVID(testCtx(t), &agentv1.SignJWTSVIDRequest{EntryId: mine.ID, Audience: []string{"db"}})
		if status.Code(err) != codes.Unauthenticated || resp != nil {
			t.Fatalf("SignJWTSVID: %v, %v; want Unauthenticated", resp, err)
		}
	})
	if n := calls.Load(); n != 3 {
		t.Fatalf("authenticator called %d times, want once per RPC", n)
	}
	if n := ledgerCount(t, e.st, storage.LedgerQuery{}); n != ledgerBefore {
		t.Fatal("an unauthenticated call reached the ledger")
	}
}

func TestNewAgentServiceRequiresConfig(t *testing.T) {
	e := newEnv(t)
	full := agentapi.AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD, Authenticate: fixedAgent(agentapi.Caller{AgentID: agentA})}
	tests := []struct {
		name  string
		mod   func(*agentapi.AgentServiceConfig)
		field string
	}{
		{"no store", func(c *agentapi.AgentServiceConfig) { c.Store = nil }, "Store"},
		{"no issuer", func(c *agentapi.AgentServiceConfig) { c.Issuer = nil }, "Issuer"},
		{"no authenticator", func(c *agentapi.AgentServiceConfig) { c.Authenticate = nil }, "Authenticate"},
		{"no trust domain", func(c *agentapi.AgentServiceConfig) { c.TrustDomain = spiffeid.TrustDomain{} }, "TrustDomain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := full
			tc.mod(&cfg)
			if _, err := agentapi.NewAgentService(cfg); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("NewAgentService: %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
