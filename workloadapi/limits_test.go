package workloadapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestJWTAudienceFloodLimited replays the review's abuse: one uid with one ordinary entry asks for
// JWT-SVIDs with 16 fresh audiences at a time, from 4 concurrent loops. Past its burst every mint is
// refused with ResourceExhausted naming the limit and its configuration keys, while a caller with
// another uid (a child process that dropped root) is still served.
func TestJWTAudienceFloodLimited(t *testing.T) {
	const burst = 5
	addr, env := serveAgentWith(t, 1, serveOpts{open: true, agent: func(c *agent.Config) {
		c.JWTMintRate, c.JWTMintBurst = 0.001, burst
	}})
	env.Entries(t, agentID, "bench", "spiffe://example.org/nobody", 1, fmt.Sprintf("unix:uid:%d", nobody))
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 60*time.Second)
	defer cancel()

	codesSeen, limitMsg := floodJWT(ctx, c, 10)
	if codesSeen[codes.OK] != burst || codesSeen[codes.ResourceExhausted] != 40-burst {
		t.Fatalf("40 fetches with fresh audiences: %v, want %d OK and the rest ResourceExhausted", codesSeen, burst)
	}
	// What reached the ledger: the JWT-SVIDs of the burst (no X.509-SVID: none was asked for, and the
	// agent mints on demand).
	if n := ledgerRecordsOf(t, env, "spiffe://example.org/workload/0"); n != burst {
		t.Fatalf("the ledger holds %d records of the flooded entry, want %d", n, burst)
	}
	for _, want := range []string{"burst 5", "jwt_mint_rate", "jwt_mint_burst"} {
		if !strings.Contains(limitMsg, want) {
			t.Fatalf("ResourceExhausted message %q does not name %q", limitMsg, want)
		}
	}

	other := startChild(t, addr)
	if got := other.do(t, fmt.Sprintf("setuid %d", nobody)); got != "ok" {
		t.Fatalf("child setuid: %s", got)
	}
	if got := other.do(t, "jwt fresh-audience"); got != "OK 1" {
		t.Fatalf("another uid during the flood: %s, want OK 1", got)
	}
}

// TestJWTServesWhatItCan: when some of a caller's identities cannot be minted (here its limit allows
// one mint; the same holds with the server unreachable), FetchJWTSVID answers with those the agent can
// serve, and fails only when it can serve none.
func TestJWTServesWhatItCan(t *testing.T) {
	addr, _ := serveAgentWith(t, 2, serveOpts{agent: func(c *agent.Config) { c.JWTMintRate, c.JWTMintBurst = 0.001, 1 }})
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 60*time.Second)
	defer cancel()
	for range 2 { // minted, then from the cache
		resp, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
		if err != nil || len(resp.Svids) != 1 || resp.Svids[0].SpiffeId != "spiffe://example.org/workload/0" {
			t.Fatalf("two identities, one mint allowed: %v, %v; want workload/0 only", resp, err)
		}
	}
	if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"b"}}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("nothing cached, no mint allowed: %v, want ResourceExhausted", err)
	}
}

// TestStreamEndsWhenSelectorsChange: a process that opened a FetchX509SVID stream as root and then
// dropped to another uid is attested again before the next push; its selectors differ from those at
// open, so instead of the update the stream ends with Unavailable, and the process reconnects as what
// it is now.
func TestStreamEndsWhenSelectorsChange(t *testing.T) {
	addr, env := serveAgentWith(t, 1, serveOpts{open: true})
	p := startChild(t, addr)
	if got := p.do(t, "stream"); got != "OK 1" {
		t.Fatalf("stream opened as root: %s, want OK 1", got)
	}
	if got := p.do(t, fmt.Sprintf("setuid %d", nobody)); got != "ok" {
		t.Fatalf("child setuid: %s", got)
	}
	// A change to what root's callers see wakes the stream with something to push.
	env.Entries(t, agentID, "bench", "spiffe://example.org/added", 1, fmt.Sprintf("unix:uid:%d", os.Getuid()))
	if got := p.do(t, "next"); got != "Unavailable 0" {
		t.Fatalf("next response after the caller changed uid: %s, want the stream ended with Unavailable", got)
	}
	if got := p.do(t, "stream"); got != "PermissionDenied 0" {
		t.Fatalf("new stream as uid %d (no entry): %s, want PermissionDenied", nobody, got)
	}
}

// TestSDSStreamEndsWhenSelectorsChange: as TestStreamEndsWhenSelectorsChange, for an SDS stream: the
// caller is attested again before a push, and a process that dropped to another uid since it opened
// the stream gets Unavailable instead of the push.
func TestSDSStreamEndsWhenSelectorsChange(t *testing.T) {
	addr, env := serveAgentWith(t, 1, serveOpts{open: true})
	p := startChild(t, addr)
	if got := p.do(t, "sds default"); got != "OK 1" {
		t.Fatalf("SDS stream opened as root: %s, want OK 1", got)
	}
	if got := p.do(t, fmt.Sprintf("setuid %d", nobody)); got != "ok" {
		t.Fatalf("child setuid: %s", got)
	}
	// A rotation of root's default SVID wakes the stream with something to push.
	rotate(t, env, entryOf(t, env, "spiffe://example.org/workload/0"))
	if got := p.do(t, "sdsnext"); got != "Unavailable 0" {
		t.Fatalf("next response after the caller changed uid: %s, want the stream ended with Unavailable", got)
	}
	if got := p.do(t, "sds default"); got != "PermissionDenied 0" {
		t.Fatalf("new SDS stream as uid %d (no entry): %s, want PermissionDenied", nobody, got)
	}
}

// TestJWTFloodAgainstServerLimits replays the review's abuse against the server's limits: the agent
// lets the flood through (its own per-uid limit is generous here), the server's per-entry bucket
// refuses it. The ledger gains no more records than the bucket allows; the workload is told
// ResourceExhausted (back off), not Unavailable (retry at once), with the server's limit named; the
// agent stops asking the server for the refused entry for a while and logs a bounded number of lines;
// and a workload of another uid is still served.
func TestJWTFloodAgainstServerLimits(t *testing.T) {
	const entryBurst = 4
	var logs testkit.SyncBuffer
	addr, env := serveAgentWith(t, 1, serveOpts{open: true,
		logger: slog.New(slog.NewTextHandler(&logs, nil)),
		server: func(c *server.Config) {
			c.IssuanceLimits = issuer.IssuanceLimits{EntryRate: 0.001, EntryBurst: entryBurst}
		},
		agent: func(c *agent.Config) { c.JWTMintRate, c.JWTMintBurst = 1000, 1000 }})
	env.Entries(t, agentID, "bench", "spiffe://example.org/nobody", 1, fmt.Sprintf("unix:uid:%d", nobody))
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 60*time.Second)
	defer cancel()

	codesSeen, limitMsg := floodJWT(ctx, c, 25)
	if codesSeen[codes.OK]+codesSeen[codes.ResourceExhausted] != 100 || codesSeen[codes.OK] > entryBurst {
		t.Fatalf("100 fetches with fresh audiences: %v; want at most %d OK (the entry's bucket) and the rest ResourceExhausted",
			codesSeen, entryBurst)
	}
	if !strings.Contains(limitMsg, "issuance_limits.entry_rate") {
		t.Fatalf("ResourceExhausted message %q does not name the server's limit", limitMsg)
	}
	if n := ledgerRecordsOf(t, env, "spiffe://example.org/workload/0"); n > entryBurst {
		t.Fatalf("the ledger holds %d records of the flooded entry, more than its bucket of %d", n, entryBurst)
	}
	if n := strings.Count(logs.String(), "\n"); n > 10 {
		t.Fatalf("the flood logged %d lines on the agent, want a handful:\n%s", n, logs.String())
	}

	other := startChild(t, addr)
	if got := other.do(t, fmt.Sprintf("setuid %d", nobody)); got != "ok" {
		t.Fatalf("child setuid: %s", got)
	}
	if got := other.do(t, "jwt fresh-audience"); got != "OK 1" {
		t.Fatalf("another uid during the flood: %s, want OK 1", got)
	}
}

// floodJWT is the review's abuse: 4 concurrent loops of calls FetchJWTSVID calls, each with
// MaxAudiences fresh audiences. It returns how many calls ended with each code, and the message of a
// ResourceExhausted one.
func floodJWT(ctx context.Context, c workload.SpiffeWorkloadAPIClient, calls int) (map[codes.Code]int, string) {
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	var limitMsg string
	var wg sync.WaitGroup
	for loop := range 4 {
		wg.Go(func() {
			for call := range calls {
				aud := make([]string, workloadapi.MaxAudiences)
				for i := range aud {
					aud[i] = fmt.Sprintf("%d-%d-%d-%s", loop, call, i, strings.Repeat("x", 50))
				}
				_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: aud})
				mu.Lock()
				codesSeen[status.Code(err)]++
				if status.Code(err) == codes.ResourceExhausted {
					limitMsg = status.Convert(err).Message()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return codesSeen, limitMsg
}

// ledgerRecordsOf is how many issuance records the server's ledger holds for spiffeID.
func ledgerRecordsOf(t *testing.T, env *testenv.Env, spiffeID string) int {
	t.Helper()
	page, err := env.Store.QueryLedger(storage.LedgerQuery{SPIFFEID: spiffeID, Limit: storage.MaxLedgerLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Issuances)
}

// TestAttestationFailuresLogBounded: a caller whose attestation fails on every call (here: its pid is
// not in the attestor's proc root, as a process that exited) is refused each time, and the agent logs a
// bounded number of lines about it, not one per call.
func TestAttestationFailuresLogBounded(t *testing.T) {
	var logs testkit.SyncBuffer
	empty := t.TempDir()
	addr, _ := serveAgentWith(t, 1, serveOpts{logger: slog.New(slog.NewTextHandler(&logs, nil)),
		attestor: func(c *unix.Config) { c.ProcRoot = empty }})
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 60*time.Second)
	defer cancel()
	const calls = 200
	for range calls {
		_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "could not attest the calling process") {
			t.Fatalf("FetchJWTSVID: %v, want PermissionDenied (could not attest)", err)
		}
	}
	// 5 lines per 10 s; the calls take a few seconds at most, so one or two windows.
	if n := strings.Count(logs.String(), "workload attestation failed"); n < 1 || n > 10 {
		t.Fatalf("%d refused calls logged %d lines, want 1 to 10:\n%s", calls, n, logs.String())
	}
}
