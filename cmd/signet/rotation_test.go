package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

var devTD = spiffeid.RequireTrustDomainFromString("example.org")

type caStatusView struct {
	Node string      `json:"node"`
	Keys []caKeyView `json:"keys"`
}

func rootID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// TestRotationEndToEnd runs the real binary with keys of two minutes (rotations at 1m and 1m45s, the first
// key pruned at 2m, SVIDs of 15s) while this process — another than the server — holds a go-spiffe
// X509Source and fetches and validates JWT-SVIDs throughout. Every SVID verifies against the bundle the
// workload holds at the time, every earlier SVID that is still valid too, no fetch is refused, the
// workload always knew a key before it met an SVID that key signed, and the pruned key leaves every
// bundle the workload gets.
func TestRotationEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about two and a half minutes")
	}
	d := startDev(t, newDevDirs(t), "--ca-ttl", "2m")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+d.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	c := newClient(t, ctx, d.socket)

	type heldJWT struct {
		token string
		exp   time.Time
	}
	var heldX509 []*x509svid.SVID
	var heldJWTs []heldJWT
	firstSeen := map[string]time.Time{} // root ID -> when the workload's bundle first held it
	signers := map[string]bool{}
	var firstKey string
	pruned, prunedJWT := "", ""
	tick := time.NewTicker(500 * time.Millisecond) // the pace of the workload's checks
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		now := time.Now()
		b, err := src.GetX509BundleForTrustDomain(devTD)
		if err != nil {
			t.Fatalf("bundle: %v", err)
		}
		for _, root := range b.X509Authorities() {
			if id := rootID(root); firstSeen[id].IsZero() {
				firstSeen[id] = now
			}
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			t.Fatalf("X509Source: %v", err)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, src); err != nil {
			t.Fatalf("the current X.509-SVID does not verify against the workload's bundle: %v", err)
		}
		for _, root := range b.X509Authorities() {
			if string(root.SubjectKeyId) != string(svid.Certificates[0].AuthorityKeyId) {
				continue
			}
			id := rootID(root)
			if firstKey == "" {
				firstKey = id
			}
			if !signers[id] && id != firstKey && !firstSeen[id].Before(now) {
				t.Fatalf("the workload met an SVID of key %s in the same update that brought the key", id[:16])
			}
			signers[id] = true
		}
		if len(heldX509) == 0 || heldX509[len(heldX509)-1].Certificates[0].SerialNumber.Cmp(svid.Certificates[0].SerialNumber) != 0 {
			heldX509 = append(heldX509, svid)
		}
		// Every SVID received before that is still valid for a second more verifies against today's bundle:
		// a peer holding it is never refused, and nothing needs re-minting because a key was pruned.
		kept := heldX509[:0]
		for _, s := range heldX509 {
			if time.Until(s.Certificates[0].NotAfter) < time.Second {
				continue
			}
			if _, _, err := x509svid.Verify(s.Certificates, src); err != nil {
				t.Fatalf("an X.509-SVID valid until %s no longer verifies against the workload's bundle: %v", s.Certificates[0].NotAfter, err)
			}
			kept = append(kept, s)
		}
		heldX509 = kept

		tok, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
		if err != nil {
			t.Fatalf("FetchJWTSVID refused: %v", err)
		}
		heldJWTs = append(heldJWTs, heldJWT{tok.Marshal(), tok.Expiry})
		jb, err := c.FetchJWTBundles(ctx)
		if err != nil {
			t.Fatalf("FetchJWTBundles: %v", err)
		}
		keptJWT := heldJWTs[:0]
		for _, h := range heldJWTs {
			if time.Until(h.exp) < 2*time.Second {
				continue
			}
			if _, err := jwtsvid.ParseAndValidate(h.token, jb, []string{"db"}); err != nil {
				t.Fatalf("a JWT-SVID valid until %s does not validate against the workload's JWT bundle: %v", h.exp, err)
			}
			keptJWT = append(keptJWT, h)
		}
		heldJWTs = keptJWT

		if i%10 == 0 {
			st := decodeJSON[caStatusView](t, d.mustCLI("ca", "status", "-o", "json"))
			for _, k := range st.Keys {
				if k.State == "pruned" && pruned == "" {
					pruned, prunedJWT = k.X509ID, k.JWTKeyID
					t.Logf("key %s pruned; %d keys have signed", k.Slot, len(signers))
				}
			}
		}
		if pruned != "" {
			jwtKeys, err := jb.GetJWTBundleForTrustDomain(devTD)
			if err != nil {
				t.Fatal(err)
			}
			x509Bundle, err := src.GetX509BundleForTrustDomain(devTD)
			if err != nil {
				t.Fatal(err)
			}
			stillThere := slices.ContainsFunc(x509Bundle.X509Authorities(), func(c *x509.Certificate) bool { return rootID(c) == pruned })
			_, jwtStillThere := jwtKeys.FindJWTAuthority(prunedJWT)
			if !stillThere && !jwtStillThere && len(signers) >= 3 {
				break
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("no pruning seen in the workload's bundle after two rotations within 4m (signers %d, pruned %q)\nstderr:\n%s", len(signers), pruned, d.stderr.String())
	}
	recs := d.mustCLI("audit", "list", "--action", "bundle.remove-x509", "-o", "json")
	if !strings.Contains(recs, pruned) {
		t.Fatalf("the pruning is not in the audit log: %s", recs)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, "ca", "slot-1")); !os.IsNotExist(err) {
		t.Fatalf("the pruned key's files remain: %v", err)
	}
}

// TestServerRefusesPrepareBeforeShorterThanSVIDs: a successor in the bundle for less than the longest SVID
// TTL is refused at start, naming the key and the fix, before anything is created.
func TestServerRefusesPrepareBeforeShorterThanSVIDs(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "server.yaml")
	writeFile(t, cfg, "trust_domain: example.org\ndata_dir: "+data+"\nadmin_socket: "+filepath.Join(dir, "admin.sock")+
		"\nbind_address: 127.0.0.1:0\nca:\n  ttl: 1h\n  rotation:\n    max_svid_ttl: 5m\n    prepare_before: 1m\n")
	_, stderr, code := runCLI(t, nil, "server", "--config", cfg)
	if code == 0 || !strings.Contains(stderr, "ca.rotation.prepare_before: 1m0s is shorter than the longest SVID TTL 5m0s (ca.rotation.max_svid_ttl)") ||
		!strings.Contains(stderr, "raise ca.rotation.prepare_before or lower ca.rotation.max_svid_ttl") {
		t.Fatalf("server with prepare_before below max_svid_ttl: exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("the refused server created its data dir: %v", err)
	}
}
