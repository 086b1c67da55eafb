package agent_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const methodJWT = "/signet.agent.v1.Agent/SignJWTSVID"

// jwtFixture is an agent with a cached-JWT entry and a unique-JWT entry for uid 1000, counting the
// server's JWT signing calls.
type jwtFixture struct {
	e        *env
	a        *agent.Agent
	clock    *offsetClock
	jwtCalls atomic.Int64
	cachedID string // entry ID of spiffe://example.org/cached
}

const (
	cachedJWT = "spiffe://example.org/cached"
	uniqueJWT = "spiffe://example.org/unique"
)

func newJWTFixture(t *testing.T) *jwtFixture { return newJWTFixtureWith(t, nil) }

// newJWTFixtureWith is newJWTFixture with mod applied to the agent's config.
func newJWTFixtureWith(t *testing.T, mod func(*agent.Config)) *jwtFixture {
	t.Helper()
	f := &jwtFixture{e: newBufconnEnv(t), clock: &offsetClock{}}
	f.e.setHook(func(_ context.Context, method string) error {
		if method == methodJWT {
			f.jwtCalls.Add(1)
		}
		return nil
	})
	f.cachedID = f.e.entry(t, entrySpec{spiffeID: cachedJWT, jwtTTL: 10 * time.Minute})
	// Straight into the store: the admin API drops jwt_unique (see TestJWTUniqueThroughAdminAPI).
	f.e.storeEntry(t, entrySpec{spiffeID: uniqueJWT, jwtTTL: 10 * time.Minute, jwtUnique: true})
	f.e.entry(t, entrySpec{spiffeID: "spiffe://example.org/other-uid", selectors: []string{"unix:uid:2000"}})
	f.a, _ = startAgent(t, f.e.client(), func(c *agent.Config) {
		f.clock.config()(c)
		if mod != nil {
			mod(c)
		}
	})
	waitReady(t, f.a)
	return f
}

// fetch fetches JWT-SVIDs for uid 1000 and validates each against the JWT authorities the agent
// serves, for every audience asked for.
func (f *jwtFixture) fetch(t *testing.T, audience []string, spiffeID string) []*jwtsvid.SVID {
	t.Helper()
	got, err := f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), Audience: audience, SPIFFEID: spiffeID})
	if err != nil {
		t.Fatalf("FetchJWTSVIDs(%v, %q): %v", audience, spiffeID, err)
	}
	ids, _ := f.a.Bundles(uid1000(t))
	bundle := ids.JWTAuthorities
	if bundle == nil {
		t.Fatal("the agent serves no JWT bundle")
	}
	out := make([]*jwtsvid.SVID, 0, len(got))
	for _, j := range got {
		svid, err := jwtsvid.ParseAndValidate(j.Token, bundle, audience)
		if err != nil {
			t.Fatalf("JWT-SVID for %s does not validate against the served bundle: %v", j.SPIFFEID, err)
		}
		if svid.ID.String() != j.SPIFFEID {
			t.Fatalf("JWT-SVID subject %s, labelled %s", svid.ID, j.SPIFFEID)
		}
		if !sameSet(svid.Audience, audience) {
			t.Fatalf("JWT-SVID audience %v, asked for %v", svid.Audience, audience)
		}
		out = append(out, svid)
	}
	return out
}

func jti(t *testing.T, s *jwtsvid.SVID) string {
	t.Helper()
	v, ok := s.Claims["jti"].(string)
	if !ok || v == "" {
		t.Fatalf("JWT-SVID for %s has no jti claim: %v", s.ID, s.Claims)
	}
	return v
}

func TestFetchJWTSVIDs(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)

	t.Run("cached per audience", func(t *testing.T) {
		first := f.fetch(t, []string{"aud-a"}, cachedJWT)
		if len(first) != 1 || first[0].ID.String() != cachedJWT {
			t.Fatalf("got %d JWT-SVIDs, want one for %s", len(first), cachedJWT)
		}
		if ttl := time.Until(first[0].Expiry); ttl > 10*time.Minute || ttl < 9*time.Minute {
			t.Fatalf("JWT-SVID expires in %s, want the entry's 10m", ttl)
		}
		calls := f.jwtCalls.Load()
		again := f.fetch(t, []string{"aud-a"}, cachedJWT)
		if again[0].Marshal() != first[0].Marshal() {
			t.Fatal("second fetch for the same audience returned a new token")
		}
		// The same audience set in another order, or with duplicates, is the same cache key.
		first2 := f.fetch(t, []string{"aud-b", "aud-a"}, cachedJWT)
		if first2[0].Marshal() == first[0].Marshal() {
			t.Fatal("audience {aud-a, aud-b} got the token for {aud-a}")
		}
		for _, aud := range [][]string{{"aud-a", "aud-b"}, {"aud-b", "aud-a", "aud-b"}} {
			if got := f.fetch(t, aud, cachedJWT); got[0].Marshal() != first2[0].Marshal() {
				t.Fatalf("audience %v did not reuse the token for the same set", aud)
			}
		}
		other := f.fetch(t, []string{"aud-c"}, cachedJWT)
		if other[0].Marshal() == first[0].Marshal() || jti(t, other[0]) == jti(t, first[0]) {
			t.Fatal("a different audience got the same token")
		}
		// Server calls: one for {aud-a,aud-b}, one for {aud-c}; the repeats came from the cache.
		if got := f.jwtCalls.Load() - calls; got != 2 {
			t.Fatalf("%d JWT signing calls for 2 new audience sets", got)
		}
	})

	t.Run("unique jti", func(t *testing.T) {
		seen := map[string]bool{}
		calls := f.jwtCalls.Load()
		for range 3 {
			got := f.fetch(t, []string{"aud-a"}, uniqueJWT)
			if len(got) != 1 || got[0].ID.String() != uniqueJWT {
				t.Fatalf("got %d JWT-SVIDs, want one for %s", len(got), uniqueJWT)
			}
			id := jti(t, got[0])
			if seen[id] {
				t.Fatalf("jti %s returned twice for a jwt_unique entry", id)
			}
			seen[id] = true
		}
		if got := f.jwtCalls.Load() - calls; got != 3 {
			t.Fatalf("%d JWT signing calls for 3 fetches of a jwt_unique entry", got)
		}
	})

	t.Run("spiffe ID filter", func(t *testing.T) {
		all := f.fetch(t, []string{"aud-f"}, "")
		var got []string
		for _, s := range all {
			got = append(got, s.ID.String())
		}
		if want := []string{cachedJWT, uniqueJWT}; !slices.Equal(got, want) {
			t.Fatalf("unfiltered: %v, want %v", got, want)
		}
		for _, tc := range []struct {
			filter string
			want   []string
		}{
			{cachedJWT, []string{cachedJWT}},
			{uniqueJWT, []string{uniqueJWT}},
			{"spiffe://example.org/other-uid", nil}, // exists, but not this caller's
			{"spiffe://example.org/nope", nil},
		} {
			res, err := f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"aud-f"}, SPIFFEID: tc.filter})
			if err != nil {
				t.Fatalf("filter %s: %v", tc.filter, err)
			}
			var ids []string
			for _, j := range res {
				ids = append(ids, j.SPIFFEID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Fatalf("filter %s: %v, want %v", tc.filter, ids, tc.want)
			}
		}
	})

	t.Run("no entries", func(t *testing.T) {
		for _, caller := range [][]selector.Selector{nil, sels(t, "unix:uid:9"), sels(t, "unix:gid:1000")} {
			res, err := f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: caller, Audience: []string{"aud"}})
			if err != nil || len(res) != 0 {
				t.Fatalf("caller %v: %d JWT-SVIDs, %v; want none and no error", caller, len(res), err)
			}
		}
	})

	t.Run("invalid audience", func(t *testing.T) {
		_, err := f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), SPIFFEID: cachedJWT})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("no audience: %v, want InvalidArgument from the server", err)
		}
	})
}

// TestJWTCacheHalfLife checks that a cached JWT-SVID is reused until half its life, then replaced.
func TestJWTCacheHalfLife(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	first := f.fetch(t, []string{"aud"}, cachedJWT)[0]
	issued := first.Expiry.Add(-10 * time.Minute)
	halfLife := issued.Add(5 * time.Minute)

	f.clock.set(time.Until(halfLife) - 5*time.Second)
	if got := f.fetch(t, []string{"aud"}, cachedJWT)[0]; got.Marshal() != first.Marshal() {
		t.Fatal("token replaced before half its life")
	}
	f.clock.set(time.Until(halfLife))
	second, err := f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"aud"}, SPIFFEID: cachedJWT})
	if err != nil || len(second) != 1 {
		t.Fatalf("FetchJWTSVIDs at half life: %d, %v", len(second), err)
	}
	if second[0].Token == first.Marshal() {
		t.Fatal("token still served from the cache at half its life")
	}
}

// TestJWTDeletedEntry checks that a deleted entry's cached token is no longer served.
func TestJWTDeletedEntry(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	if got := f.fetch(t, []string{"aud"}, cachedJWT); len(got) != 1 {
		t.Fatalf("%d JWT-SVIDs before delete", len(got))
	}
	// Fetch its X.509-SVID too, to see it go.
	waitIdentities(t, f.a, uid1000(t), testDeadline, "the entry's X.509-SVID", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, cachedJWT)
		return ok
	})
	f.e.deleteEntry(t, f.cachedID)
	waitIdentities(t, f.a, uid1000(t), testDeadline, "the entry to be deleted", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, cachedJWT)
		return !ok
	})
	res, err := f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"aud"}, SPIFFEID: cachedJWT})
	if err != nil || len(res) != 0 {
		t.Fatalf("after delete: %d JWT-SVIDs, %v; want none", len(res), err)
	}
}

// TestJWTUpdatedEntry: a token cached for an entry is not served once the entry has changed (here its
// SPIFFE ID); the next fetch mints one for the entry as it is now.
func TestJWTUpdatedEntry(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	before := f.fetch(t, []string{"aud"}, cachedJWT)[0]
	calls := f.jwtCalls.Load()

	const renamed = "spiffe://example.org/renamed"
	if _, err := f.e.srv.Admin.UpdateEntry(testCtx(t, testDeadline), &adminv1.UpdateEntryRequest{
		Entry: &adminv1.Entry{Id: f.cachedID, SpiffeId: renamed}, UpdateMask: []string{"spiffe_id"}, Reason: "rename"}); err != nil {
		t.Fatalf("UpdateEntry: %v", err)
	}
	waitIdentities(t, f.a, uid1000(t), testDeadline, "the renamed entry", func(ids workloadapi.Identities) bool {
		_, ok := findSVID(ids, renamed)
		return ok
	})
	after := f.fetch(t, []string{"aud"}, renamed)
	if len(after) != 1 || after[0].ID.String() != renamed || after[0].Marshal() == before.Marshal() {
		t.Fatalf("after the rename: %d tokens, first for %v; want a new token for %s", len(after), after[0].ID, renamed)
	}
	if n := f.jwtCalls.Load(); n != calls+1 {
		t.Fatalf("%d signing calls after the rename, want 1", n-calls)
	}
}

// TestJWTUniqueThroughAdminAPI checks that jwt_unique set through the admin API reaches the agent.
func TestJWTUniqueThroughAdminAPI(t *testing.T) {
	t.Parallel()
	e := newBufconnEnv(t)
	e.entry(t, entrySpec{spiffeID: uniqueJWT, jwtUnique: true})
	a, _ := startAgent(t, e.client(), nil)
	waitReady(t, a)
	seen := map[string]bool{}
	for range 2 {
		res, err := a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{Selectors: uid1000(t), Audience: []string{"aud"}})
		if err != nil || len(res) != 1 {
			t.Fatalf("FetchJWTSVIDs: %d, %v", len(res), err)
		}
		if seen[res[0].Token] {
			t.Fatal("the same token twice for an entry created with jwt_unique through the admin API")
		}
		seen[res[0].Token] = true
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
