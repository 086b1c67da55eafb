package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

var exampleTD = spiffeid.RequireTrustDomainFromString("example.org")

type caStatusView struct {
	Node string      `json:"node"`
	Keys []caKeyView `json:"keys"`
}

func rootID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// rotationWatch is a workload in the test process (another process than the servers and agents): a
// go-spiffe X509Source, and JWT-SVIDs fetched and validated with go-spiffe, checked round after round.
type rotationWatch struct {
	src       *workloadapi.X509Source
	c         *workloadapi.Client
	heldX509  []*x509svid.SVID
	heldJWT   []heldJWT
	firstSeen map[string]time.Time // root ID -> when the workload's bundle first held it
	signers   map[string]bool
	firstKey  string
}

type heldJWT struct {
	token string
	exp   time.Time
}

func newRotationWatch(t *testing.T, ctx context.Context, socket string) *rotationWatch {
	t.Helper()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+socket)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return &rotationWatch{src: src, c: newClient(t, ctx, socket), firstSeen: map[string]time.Time{}, signers: map[string]bool{}}
}

// check is one round: the current X.509-SVID verifies against the workload's bundle, and so does every
// earlier one still valid for a second more (a peer holding it is never refused, and nothing needs
// re-minting because a key was pruned); the workload knew the current SVID's key before it met an SVID
// of it (the first key excepted); a JWT-SVID is fetched, and it and every earlier one still valid
// validate against the workload's JWT bundle. Any refusal or failed verification is an error.
func (w *rotationWatch) check(ctx context.Context) error {
	now := time.Now()
	b, err := w.src.GetX509BundleForTrustDomain(exampleTD)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	for _, root := range b.X509Authorities() {
		if id := rootID(root); w.firstSeen[id].IsZero() {
			w.firstSeen[id] = now
		}
	}
	svid, err := w.src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("X509Source: %w", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, w.src); err != nil {
		return fmt.Errorf("the current X.509-SVID does not verify against the workload's bundle: %w", err)
	}
	for _, root := range b.X509Authorities() {
		if string(root.SubjectKeyId) != string(svid.Certificates[0].AuthorityKeyId) {
			continue
		}
		id := rootID(root)
		if w.firstKey == "" {
			w.firstKey = id
		}
		if !w.signers[id] && id != w.firstKey && !w.firstSeen[id].Before(now) {
			return fmt.Errorf("the workload met an SVID of key %s in the same update that brought the key", id[:16])
		}
		w.signers[id] = true
	}
	if n := len(w.heldX509); n == 0 || w.heldX509[n-1].Certificates[0].SerialNumber.Cmp(svid.Certificates[0].SerialNumber) != 0 {
		w.heldX509 = append(w.heldX509, svid)
	}
	kept := w.heldX509[:0]
	for _, s := range w.heldX509 {
		if time.Until(s.Certificates[0].NotAfter) < time.Second {
			continue
		}
		if _, _, err := x509svid.Verify(s.Certificates, w.src); err != nil {
			return fmt.Errorf("an X.509-SVID valid until %s no longer verifies against the workload's bundle: %w", s.Certificates[0].NotAfter, err)
		}
		kept = append(kept, s)
	}
	w.heldX509 = kept

	tok, err := w.c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"})
	if err != nil {
		return fmt.Errorf("FetchJWTSVID refused: %w", err)
	}
	w.heldJWT = append(w.heldJWT, heldJWT{tok.Marshal(), tok.Expiry})
	jb, err := w.c.FetchJWTBundles(ctx)
	if err != nil {
		return fmt.Errorf("FetchJWTBundles: %w", err)
	}
	keptJWT := w.heldJWT[:0]
	for _, h := range w.heldJWT {
		if time.Until(h.exp) < 2*time.Second {
			continue
		}
		if _, err := jwtsvid.ParseAndValidate(h.token, jb, []string{"db"}); err != nil {
			return fmt.Errorf("a JWT-SVID valid until %s does not validate against the workload's JWT bundle: %w", h.exp, err)
		}
		keptJWT = append(keptJWT, h)
	}
	w.heldJWT = keptJWT
	return nil
}

// gone reports whether the key (root x509ID, JWT key kid) is in none of the workload's bundles.
func (w *rotationWatch) gone(ctx context.Context, x509ID, kid string) (bool, error) {
	b, err := w.src.GetX509BundleForTrustDomain(exampleTD)
	if err != nil {
		return false, err
	}
	jb, err := w.c.FetchJWTBundles(ctx)
	if err != nil {
		return false, err
	}
	jwtKeys, err := jb.GetJWTBundleForTrustDomain(exampleTD)
	if err != nil {
		return false, err
	}
	_, jwtThere := jwtKeys.FindJWTAuthority(kid)
	return !jwtThere && !slices.ContainsFunc(b.X509Authorities(), func(c *x509.Certificate) bool { return rootID(c) == x509ID }), nil
}

// untilPruned runs a round of check every half second, calling round(i, &pruned) after the i-th, until
// the workload has met SVIDs of three keys (two rotations) and the pruned key, once round has found it, is
// in none of its bundles; it returns that key. A refusal, a failed verification or ctx's end fails t
// (with the server's stderr).
func (w *rotationWatch) untilPruned(t *testing.T, ctx context.Context, stderr fmt.Stringer, round func(i int, pruned *caKeyView)) caKeyView {
	t.Helper()
	tick := time.NewTicker(500 * time.Millisecond) // the pace of the workload's checks
	defer tick.Stop()
	var pruned caKeyView
	for i := 0; ; i++ {
		if err := w.check(ctx); err != nil {
			t.Fatal(err)
		}
		round(i, &pruned)
		if pruned.X509ID != "" && len(w.signers) >= 3 {
			if gone, err := w.gone(ctx, pruned.X509ID, pruned.JWTKeyID); err != nil {
				t.Fatal(err)
			} else if gone {
				return pruned
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no pruning seen in the workload's bundles after two rotations within 4m (%d keys signed, pruned %q)\nstderr:\n%s",
				len(w.signers), pruned.X509ID, stderr)
		}
	}
}

// prunedKey returns the first pruned key in 'ca status' output, if any.
func prunedKey(st caStatusView) (caKeyView, bool) {
	for _, k := range st.Keys {
		if k.State == "pruned" {
			return k, true
		}
	}
	return caKeyView{}, false
}

// TestRotationEndToEnd runs the real binary with keys of two minutes (rotations at 1m and 1m45s, the first
// key pruned at 2m, SVIDs of 15s) while this process holds a go-spiffe X509Source and fetches and
// validates JWT-SVIDs throughout (rotationWatch.check, every half second): no refusal, no failed
// verification, and the pruned key leaves every bundle the workload gets.
func TestRotationEndToEnd(t *testing.T) {
	t.Parallel() // waits on the keys' wall-clock schedule: overlap it with the rest of the suite
	d := startDev(t, newDevDirs(t), "--ca-ttl", "2m")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w := newRotationWatch(t, ctx, d.socket)
	pruned := w.untilPruned(t, ctx, d.stderr, func(i int, pruned *caKeyView) {
		if pruned.X509ID == "" && i%10 == 0 {
			*pruned, _ = prunedKey(decodeJSON[caStatusView](t, d.mustCLI("ca", "status", "-o", "json")))
		}
	})
	if recs := d.mustCLI("audit", "list", "--action", "bundle.remove-x509", "-o", "json"); !strings.Contains(recs, pruned.X509ID) {
		t.Fatalf("the pruning is not in the audit log: %s", recs)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir, "ca", "slot-"+pruned.Slot)); !os.IsNotExist(err) {
		t.Fatalf("the pruned key's files remain: %v", err)
	}
}

// TestRotationThroughAClusterWithRollingRestart: three servers whose keys live three minutes (each node
// rotates on its own), an agent that knows them all, and the workload of rotationWatch checking every
// half second while each server in turn is stopped and started again, one is rotated early with
// 'signet ca rotate' and another from the first's admin socket with 'ca rotate --node': no refusal, no
// failed verification, until every node has pruned a key and the workload's bundles no longer hold any
// of them.
func TestRotationThroughAClusterWithRollingRestart(t *testing.T) {
	t.Parallel() // waits on the keys' wall-clock schedule: overlap it with the rest of the suite
	c := newTestCluster(t, 3)
	for _, s := range c.servers {
		cfg, err := os.ReadFile(s.config)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, s.config, string(cfg)+"ca:\n  ttl: 3m\n  rotation:\n    max_svid_ttl: 20s\n")
	}
	c.startAll()
	s0 := c.servers[0]
	s0.mustCLI("owner", "add", "alice")
	a := s0.newAgent(t, "")
	var addrs []string
	for _, s := range c.servers {
		addrs = append(addrs, s.address)
	}
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, a.config, strings.Replace(string(cfg), "server_address: "+s0.address, "server_addresses: ["+strings.Join(addrs, ", ")+"]", 1))
	a.start(t, s0.token("alice"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})
	s0.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice",
		"--purpose", "web", "--parent-id", a.id, "--x509-ttl", "20s", "--jwt-ttl", "20s")
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	w := newRotationWatch(t, ctx, a.socket)
	var (
		mu       sync.Mutex
		failure  error
		rounds   int
		stopped  = make(chan struct{})
		finished = make(chan struct{})
	)
	go func() { // the workload checks throughout, restarts included
		defer close(finished)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			err := w.check(ctx)
			mu.Lock()
			rounds++
			if err != nil && failure == nil {
				failure = err
			}
			mu.Unlock()
			select {
			case <-tick.C:
			case <-stopped:
				return
			}
		}
	}()
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return failure
	}
	for i, s := range c.servers { // rolling restart
		s.stop()
		s.start(t)
		c.leaderIndex(0, 1, 2)
		if err := failed(); err != nil {
			t.Fatalf("after restarting server %d: %v", i, err)
		}
	}
	s0.mustCLI("ca", "rotate", "--reason", "drill")
	// Another server, asked through Raft from server 0's admin socket, rotates on its own.
	node1 := c.nodeID(1)
	if out := s0.mustCLI("ca", "rotate", "--node", node1, "--reason", "remote drill"); !strings.Contains(out, "asked node "+node1+" to rotate its CA keys (request 1)") {
		t.Fatalf("ca rotate --node: %s", out)
	}
	eventually(t, 30*time.Second, "server 1 to rotate on the request", func() bool {
		out, _, code := s0.cli("audit", "list", "--action", "ca.rotate", "--object", node1, "-o", "json")
		return code == 0 && strings.Contains(out, "request 1 by") && strings.Contains(out, "remote drill")
	})
	if _, stderr, code := s0.cli("ca", "rotate", "--node", "node-nobody"); code == 0 || !strings.Contains(stderr, `node "node-nobody" is not a server of this cluster`) {
		t.Fatalf("ca rotate --node of an unknown node: exit %d, %s", code, stderr)
	}
	pruned := map[int]caKeyView{}
	var asked time.Time
	eventually(t, 5*time.Minute, "every node to prune a key that then leaves the workload's bundles", func() bool {
		if failed() != nil {
			return true
		}
		if time.Since(asked) < 2*time.Second { // each look runs the CLI three times: not every poll
			return false
		}
		asked = time.Now()
		for i, s := range c.servers {
			if _, ok := pruned[i]; !ok {
				if k, ok := prunedKey(decodeJSON[caStatusView](t, s.mustCLI("ca", "status", "-o", "json"))); ok {
					pruned[i] = k
				}
			}
		}
		if len(pruned) < 3 {
			return false
		}
		for _, k := range pruned {
			if gone, err := w.gone(ctx, k.X509ID, k.JWTKeyID); err != nil || !gone {
				return false
			}
		}
		return true
	})
	close(stopped)
	<-finished
	if err := failed(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if rounds < 100 || len(w.signers) < 2 {
		t.Fatalf("%d rounds of checks, %d keys signed the workload's SVIDs; want a few hundred rounds across rotations", rounds, len(w.signers))
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
