package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// otherUID is the caller the fixture's "other-uid" entry is for.
const otherUID = "spiffe://example.org/other-uid"

func (f *jwtFixture) request(t *testing.T, uid uint32, aud, spiffeID string) ([]workloadapi.JWTSVID, error) {
	t.Helper()
	return f.a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{
		UID: uid, Selectors: sels(t, fmt.Sprintf("unix:uid:%d", uid)), Audience: []string{aud}, SPIFFEID: spiffeID})
}

// TestJWTMintRateLimit: each JWT-SVID minted for a caller uid takes a token from that uid's bucket.
// Past the burst the agent refuses to mint (ErrRateLimited, no server call) while still serving what
// it has cached, and other uids are served; the bucket refills with time.
func TestJWTMintRateLimit(t *testing.T) {
	t.Parallel()
	logger, limitLogs := newLogCounter(t, "mint limit")
	f := newJWTFixtureWith(t, func(c *agent.Config) { c.JWTMintRate, c.JWTMintBurst, c.Logger = 0.01, 3, logger })
	for i := range 3 {
		if _, err := f.request(t, 1000, fmt.Sprintf("aud-%d", i), cachedJWT); err != nil {
			t.Fatalf("mint %d within the burst: %v", i, err)
		}
	}
	calls := f.jwtCalls.Load()
	res, err := f.request(t, 1000, "aud-3", cachedJWT)
	if !errors.Is(err, workloadapi.ErrRateLimited) || len(res) != 0 {
		t.Fatalf("mint past the burst: %d JWT-SVIDs, %v; want none and ErrRateLimited", len(res), err)
	}
	if !strings.Contains(err.Error(), "uid 1000") || !strings.Contains(err.Error(), "burst 3") {
		t.Fatalf("error %q does not name the caller and the limit", err)
	}
	if n := f.jwtCalls.Load(); n != calls {
		t.Fatalf("%d signing calls for a refused mint", n-calls)
	}
	// A cached token costs nothing; without a spiffe_id the cached identity is served and the one that
	// needs minting is left out.
	if res, err := f.request(t, 1000, "aud-0", cachedJWT); err != nil || len(res) != 1 {
		t.Fatalf("cached token past the limit: %d, %v", len(res), err)
	}
	res, err = f.request(t, 1000, "aud-0", "")
	if !errors.Is(err, workloadapi.ErrRateLimited) || len(res) != 1 || res[0].SPIFFEID != cachedJWT {
		t.Fatalf("cached and unique identities past the limit: %v, %v; want the cached one and ErrRateLimited", res, err)
	}
	// Another uid has its own bucket.
	if res, err := f.request(t, 2000, "aud-x", otherUID); err != nil || len(res) != 1 {
		t.Fatalf("another uid: %d, %v", len(res), err)
	}
	// Refusals are logged once until the caller gets a mint again, not once per call.
	if n := limitLogs.count(); n != 1 || !strings.Contains(limitLogs.lastLine(), "uid=1000") {
		t.Fatalf("%d log lines about the limit (last %q), want 1 naming uid 1000", n, limitLogs.lastLine())
	}
	// 100 s at 0.01 per second gives one token back.
	f.clock.set(100 * time.Second)
	if _, err := f.request(t, 1000, "aud-4", cachedJWT); err != nil {
		t.Fatalf("after the bucket refilled: %v", err)
	}
	if _, err := f.request(t, 1000, "aud-5", cachedJWT); !errors.Is(err, workloadapi.ErrRateLimited) {
		t.Fatalf("second mint after one token came back: %v, want ErrRateLimited", err)
	}
	if n := limitLogs.count(); n != 2 {
		t.Fatalf("%d log lines about the limit after a new episode, want 2", n)
	}
}

// TestJWTCacheEvictsLeastRecentlyUsed: a full JWT cache evicts the least recently used token, so one
// workload cycling through audiences evicts its own old tokens, not the token another workload keeps
// using.
func TestJWTCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	const size = 8
	f := newJWTFixtureWith(t, func(c *agent.Config) { c.JWTCacheSize = size })
	mustToken := func(uid uint32, aud, id string) string {
		t.Helper()
		res, err := f.request(t, uid, aud, id)
		if err != nil || len(res) != 1 {
			t.Fatalf("uid %d, audience %s: %d JWT-SVIDs, %v", uid, aud, len(res), err)
		}
		return res[0].Token
	}
	victim := mustToken(2000, "billing", otherUID)
	for i := range size - 1 { // the cache is now full
		mustToken(1000, fmt.Sprintf("flood-%d", i), cachedJWT)
	}
	if got := mustToken(2000, "billing", otherUID); got != victim {
		t.Fatal("the other workload's token was not served from the full cache")
	}
	for i := size - 1; i < 2*size-2; i++ { // evicts every flood token above, and only those
		mustToken(1000, fmt.Sprintf("flood-%d", i), cachedJWT)
	}
	calls := f.jwtCalls.Load()
	if got := mustToken(2000, "billing", otherUID); got != victim || f.jwtCalls.Load() != calls {
		t.Fatal("the flood evicted the other workload's recently used token")
	}
	mustToken(1000, "flood-0", cachedJWT)
	if f.jwtCalls.Load() != calls+1 {
		t.Fatal("the flood's oldest token was not the one evicted")
	}
}

// TestJWTServerUnreachable: with the server down, a JWT fetch still returns every identity the cache
// can serve, with an error for the ones that need the server; it fails only when none can be served.
func TestJWTServerUnreachable(t *testing.T) {
	t.Parallel()
	f := newJWTFixture(t)
	cached := f.fetch(t, []string{"aud"}, cachedJWT)[0].Marshal()
	f.e.stopServing()

	res, err := f.request(t, 1000, "aud", "")
	if err == nil || !strings.Contains(err.Error(), uniqueJWT) {
		t.Fatalf("server down, unique identity needs it: error %v, want one naming %s", err, uniqueJWT)
	}
	if len(res) != 1 || res[0].SPIFFEID != cachedJWT || res[0].Token != cached {
		t.Fatalf("server down: %v, want only the cached token for %s", res, cachedJWT)
	}
	if res, err := f.request(t, 1000, "aud", cachedJWT); err != nil || len(res) != 1 || res[0].Token != cached {
		t.Fatalf("server down, cached identity asked for by name: %v, %v; want the cached token", res, err)
	}
	if res, err := f.request(t, 1000, "new-aud", cachedJWT); err == nil || len(res) != 0 {
		t.Fatalf("server down, nothing cached: %v, %v; want no token and an error", res, err)
	}
}

func TestNewValidatesJWTLimits(t *testing.T) {
	e := newBufconnEnv(t)
	for _, tc := range []struct {
		name string
		mod  func(*agent.Config)
		want string
	}{
		{"negative rate", func(c *agent.Config) { c.JWTMintRate = -1 }, "JWTMintRate"},
		{"negative burst", func(c *agent.Config) { c.JWTMintBurst = -1 }, "JWTMintBurst"},
		{"negative cache size", func(c *agent.Config) { c.JWTCacheSize = -1 }, "JWTCacheSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := agent.Config{Client: e.client(), TrustDomain: testTD}
			tc.mod(&cfg)
			if _, err := agent.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// TestServerRefusalHoldsOffTheEntry: when the server refuses a JWT-SVID for a limit of its own
// (ResourceExhausted: here its real per-entry bucket of one, emptied by a first JWT-SVID), the agent
// passes the refusal on as ResourceExhausted, does not ask the server for that entry again until the
// hold-off has passed, and logs the episode once.
func TestServerRefusalHoldsOffTheEntry(t *testing.T) {
	t.Parallel()
	e := newBufconnEnvWith(t, func(c *server.Config) {
		c.IssuanceLimits = issuer.IssuanceLimits{EntryRate: 0.001, EntryBurst: 1}
	})
	var calls atomic.Int64
	e.setHook(func(_ context.Context, method string) error {
		if method == methodJWT {
			calls.Add(1)
		}
		return nil
	})
	e.entry(t, entrySpec{spiffeID: cachedJWT, jwtTTL: 10 * time.Minute})
	clock := &offsetClock{}
	logger, holdLogs := newLogCounter(t, "not asking again")
	a, _ := startAgent(t, e.client(), func(c *agent.Config) { clock.config()(c); c.Logger = logger })
	waitReady(t, a)
	fetch := func(aud string) error {
		t.Helper()
		_, err := a.FetchJWTSVIDs(testCtx(t, testDeadline), workloadapi.JWTRequest{UID: 1000, Selectors: uid1000(t), Audience: []string{aud}})
		return err
	}
	if err := fetch("first"); err != nil {
		t.Fatalf("the entry's first JWT-SVID takes the server's one token: %v", err)
	}
	calls.Store(0)
	if err := fetch("a"); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "entry_rate") {
		t.Fatalf("the server's bucket is empty: %v, want ResourceExhausted naming its limit", err)
	}
	for i := range 20 {
		if err := fetch(fmt.Sprintf("b-%d", i)); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "entry_rate") {
			t.Fatalf("during the hold-off: %v, want ResourceExhausted with the server's reason", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d signing calls for 21 fetches of a refused entry, want 1", n)
	}
	if n := holdLogs.count(); n != 1 {
		t.Fatalf("%d log lines for one refusal episode, want 1", n)
	}
	clock.set(6 * time.Second) // past the hold-off (5 s)
	if err := fetch("c"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("after the hold-off: %v, want the server asked (and refusing) again", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d signing calls after the hold-off, want 2", n)
	}
}
