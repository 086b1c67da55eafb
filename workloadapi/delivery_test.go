package workloadapi_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	spiffeclient "github.com/spiffe/go-spiffe/v2/workloadapi"
)

// waitDeliveries polls the store until the credential id has a delivery with count want, and returns
// it.
func waitDeliveries(t *testing.T, st *storage.Store, id string, want uint64) storage.Delivery {
	t.Helper()
	var got storage.Delivery
	waitfor.Condition(t, 30*time.Second, fmt.Sprintf("one caller with %d deliveries of %s", want, id), func() bool {
		ds, err := st.Deliveries(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].Count == want {
			got = ds[0]
			return true
		}
		return false
	})
	return got
}

// TestDeliveriesNameTheCaller: every X.509-SVID and JWT-SVID handed to a workload through the Workload
// API, cached ones included, reaches the server as a delivery naming the attested caller.
func TestDeliveriesNameTheCaller(t *testing.T) {
	addr, env := serveAgentWith(t, 1, serveOpts{agent: func(c *agent.Config) { c.DeliveryReportInterval = 20 * time.Millisecond }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := spiffeclient.FetchX509SVID(ctx, spiffeclient.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	serial := svid.Certificates[0].SerialNumber.Text(16)
	d := waitDeliveries(t, env.Store, serial, 1)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if c := d.Caller; c.UID != uint32(os.Getuid()) || c.GID != uint32(os.Getgid()) || c.PID != int32(os.Getpid()) || c.StartTime == 0 || c.Path != exe {
		t.Fatalf("delivery names caller %+v; want uid %d, gid %d, pid %d, a start time, path %s", c, os.Getuid(), os.Getgid(), os.Getpid(), exe)
	}
	if d.Agent != agentID || d.FirstAt.IsZero() || d.LastAt.Before(d.FirstAt) {
		t.Fatalf("delivery %+v: want agent %s and first <= last", d, agentID)
	}
	// A second fetch of the same SVID counts: the same record, the same caller, count 2.
	if _, err := spiffeclient.FetchX509SVID(ctx, spiffeclient.WithAddr(addr)); err != nil {
		t.Fatal(err)
	}
	waitDeliveries(t, env.Store, serial, 2)

	// JWT-SVIDs: the second fetch is served from the agent's cache and counts too.
	var jti string
	for range 2 {
		tok, err := spiffeclient.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}, spiffeclient.WithAddr(addr))
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := tok.Claims["jti"].(string); jti != "" && id != jti {
			t.Fatalf("second JWT fetch got jti %s, first %s: want the cached token", id, jti)
		} else {
			jti = id
		}
	}
	waitDeliveries(t, env.Store, jti, 2)
}

// ledgerRecords counts the ledger records of the test entries (agentID's SPIFFE IDs under /workload).
func ledgerRecords(t *testing.T, st *storage.Store) int {
	t.Helper()
	page, err := st.QueryLedger(storage.LedgerQuery{Agent: agentID})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Issuances)
}

// TestBundleStreamsDoNotMint: a workload that only reads bundles (a TLS client that verifies peers, say)
// is answered as soon as it is entitled, without the agent minting an SVID for it; its first
// FetchX509SVID then mints one.
func TestBundleStreamsDoNotMint(t *testing.T) {
	addr, env := serveAgent(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := spiffeclient.FetchX509Bundles(ctx, spiffeclient.WithAddr(addr)); err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}
	if _, err := spiffeclient.FetchJWTBundles(ctx, spiffeclient.WithAddr(addr)); err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	if n := ledgerRecords(t, env.Store); n != 0 {
		t.Fatalf("reading bundles minted %d SVIDs, want none", n)
	}
	if _, err := spiffeclient.FetchX509SVID(ctx, spiffeclient.WithAddr(addr)); err != nil {
		t.Fatal(err)
	}
	if n := ledgerRecords(t, env.Store); n != 1 {
		t.Fatalf("the first FetchX509SVID left %d ledger records, want 1", n)
	}
}
