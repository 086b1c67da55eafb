package main

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestDevShortCAStartsAndIssues runs the real binary with `--ca-ttl 1h`, which could not start before
// SVIDs were capped and keys rotated: it starts, issues X.509- and JWT-SVIDs that never outlive their
// key, and they verify with go-spiffe.
func TestDevShortCAStartsAndIssues(t *testing.T) {
	d := startDev(t, newDevDirs(t), "--ca-ttl", "1h")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wantID, _ := devIdentity(t)
	c := newClient(t, ctx, d.socket)

	x509ctx, svid := fetchOneSVID(t, ctx, c, wantID)
	gotID, chains, err := x509svid.Verify(svid.Certificates, x509ctx.Bundles)
	if err != nil || gotID.String() != wantID {
		t.Fatalf("x509svid.Verify = %v, %v; want %s", gotID, err, wantID)
	}
	root := chains[0][len(chains[0])-1]
	// Keys rotate at half life and SVIDs are at most ca.ttl/8 (7m30s here), so an SVID never outlives
	// the key that signed it.
	if leaf := svid.Certificates[0]; leaf.NotAfter.After(root.NotAfter) {
		t.Fatalf("SVID NotAfter %s, after the CA's %s", leaf.NotAfter, root.NotAfter)
	}

	jwt, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"})
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if !jwt.Expiry.After(time.Now()) || jwt.Expiry.After(root.NotAfter) {
		t.Fatalf("JWT-SVID expires %s, want in the future and not after the CA's %s", jwt.Expiry, root.NotAfter)
	}
	if _, err := c.ValidateJWTSVID(ctx, jwt.Marshal(), "a"); err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
}
