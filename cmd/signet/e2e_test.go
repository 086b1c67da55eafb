package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fetchOneSVID fetches the X.509 context and checks it holds exactly one SVID, for wantID.
func fetchOneSVID(t testing.TB, ctx context.Context, c *workloadapi.Client, wantID string) (*workloadapi.X509Context, *x509svid.SVID) {
	t.Helper()
	x509ctx, err := c.FetchX509Context(ctx)
	if err != nil {
		t.Fatalf("FetchX509Context: %v", err)
	}
	if len(x509ctx.SVIDs) != 1 {
		t.Fatalf("got %d SVIDs, want 1", len(x509ctx.SVIDs))
	}
	if id := x509ctx.SVIDs[0].ID.String(); id != wantID {
		t.Fatalf("SVID ID = %s, want %s", id, wantID)
	}
	return x509ctx, x509ctx.SVIDs[0]
}

func newClient(t testing.TB, ctx context.Context, socket string) *workloadapi.Client {
	t.Helper()
	c, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDevEndToEnd is the foundation's acceptance test: the real binary in dev mode, the real go-spiffe
// client, and the ledger recording both issuances against the owner and entry.
func TestDevEndToEnd(t *testing.T) {
	d := startDev(t, newDevDirs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wantID, owner := devIdentity(t)
	c := newClient(t, ctx, d.socket)

	// X.509-SVID: right ID, one hour, verifies against the bundle.
	x509ctx, svid := fetchOneSVID(t, ctx, c, wantID)
	leaf := svid.Certificates[0]
	if life := leaf.NotAfter.Sub(leaf.NotBefore) - ca.Backdate; life != time.Hour {
		t.Fatalf("SVID lifetime = %s, want 1h (NotBefore is backdated by %s)", life, ca.Backdate)
	}
	if until := time.Until(leaf.NotAfter); until < 55*time.Minute || until > time.Hour {
		t.Fatalf("SVID expires in %s, want about 1h", until)
	}
	gotID, _, err := x509svid.Verify(svid.Certificates, x509ctx.Bundles)
	if err != nil || gotID.String() != wantID {
		t.Fatalf("x509svid.Verify = %v, %v", gotID, err)
	}
	x509Bundles, err := c.FetchX509Bundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org")); err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}

	// JWT-SVID for audience "a": validates through the Workload API and through go-spiffe locally.
	jwt, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"})
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if jwt.ID.String() != wantID {
		t.Fatalf("JWT-SVID subject = %s, want %s", jwt.ID, wantID)
	}
	if _, err := c.ValidateJWTSVID(ctx, jwt.Marshal(), "a"); err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if _, err := c.ValidateJWTSVID(ctx, jwt.Marshal(), "b"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ValidateJWTSVID with the wrong audience: %v, want InvalidArgument", err)
	}
	jwtBundles, err := c.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwtsvid.ParseAndValidate(jwt.Marshal(), jwtBundles, []string{"a"})
	if err != nil || parsed.ID.String() != wantID {
		t.Fatalf("jwtsvid.ParseAndValidate = %v, %v", parsed, err)
	}

	// The ledger lists both issuances with owner and entry.
	entries := decodeJSON[[]entryView](t, d.mustCLI("entry", "list", "-o", "json"))
	if len(entries) != 1 || entries[0].SPIFFEID != wantID || entries[0].Owner != owner || entries[0].Purpose != "dev mode" {
		t.Fatalf("entries = %+v", entries)
	}
	recs := decodeJSON[[]issuanceView](t, d.mustCLI("ledger", "query", "--owner", owner, "--since", "10m", "-o", "json"))
	if inDays := decodeJSON[[]issuanceView](t, d.mustCLI("ledger", "query", "--owner", owner, "--since", "1d", "-o", "json")); len(inDays) != len(recs) {
		t.Fatalf("ledger query --since 1d found %d records, --since 10m %d", len(inDays), len(recs))
	}
	var gotX509, gotJWT bool
	for _, r := range recs {
		if r.Owner != owner || r.EntryID != entries[0].ID || r.SPIFFEID != wantID {
			t.Fatalf("ledger record %+v does not name owner %s and entry %s", r, owner, entries[0].ID)
		}
		switch {
		case r.Kind == "x509-svid" && r.ID == leaf.SerialNumber.Text(16):
			gotX509 = r.PublicKeySHA256 != "" && slices.Contains(r.Selectors, "unix:uid:"+strconv.Itoa(os.Getuid()))
		case r.Kind == "jwt-svid" && slices.Equal(r.Audience, []string{"a"}):
			gotJWT = true
		}
	}
	if !gotX509 || !gotJWT {
		t.Fatalf("ledger lacks the X.509 (%v) or JWT (%v) issuance: %+v", gotX509, gotJWT, recs)
	}
}

// TestWorkloadAPIRequiresSecurityHeader checks the Workload Endpoint rule: no header, InvalidArgument.
func TestWorkloadAPIRequiresSecurityHeader(t *testing.T) {
	d := startDev(t, newDevDirs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wl := workload.NewSpiffeWorkloadAPIClient(conn)

	stream, err := wl.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FetchX509SVID without header: %v, want InvalidArgument", err)
	}
	if _, err := wl.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FetchJWTSVID without header: %v, want InvalidArgument", err)
	}
	// With the header the same calls work; a JWT request without audience is InvalidArgument.
	hctx := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err = wl.FetchX509SVID(hctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || len(resp.Svids) != 1 || len(resp.Svids[0].X509SvidKey) == 0 || len(resp.Svids[0].Bundle) == 0 {
		t.Fatalf("FetchX509SVID with header: %v, %v", resp, err)
	}
	if _, err := wl.FetchJWTSVID(hctx, &workload.JWTSVIDRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FetchJWTSVID without audience: %v, want InvalidArgument", err)
	}
	// The optional WIT-SVID profile is not offered: Unimplemented, as the spec requires.
	wit, err := wl.FetchWITSVID(hctx, &workload.WITSVIDRequest{})
	if err == nil {
		_, err = wit.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("FetchWITSVID: %v, want Unimplemented", err)
	}
}

// TestNoEntryIsPermissionDenied deletes the caller's only entry while a go-spiffe watcher is connected:
// the watcher sees PermissionDenied, and so does every fetch afterwards.
func TestNoEntryIsPermissionDenied(t *testing.T) {
	d := startDev(t, newDevDirs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newClient(t, ctx, d.socket)

	w := &recordingWatcher{updates: make(chan *workloadapi.X509Context, 10), errs: make(chan error, 10)}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go c.WatchX509Context(watchCtx, w)
	select {
	case u := <-w.updates:
		if len(u.SVIDs) != 1 {
			t.Fatalf("first watch update has %d SVIDs", len(u.SVIDs))
		}
	case err := <-w.errs:
		t.Fatalf("watch: %v", err)
	case <-ctx.Done():
		t.Fatal("no first watch update")
	}

	entries := decodeJSON[[]entryView](t, d.mustCLI("entry", "list", "-o", "json"))
	d.mustCLI("entry", "delete", entries[0].ID)
	select {
	case err := <-w.errs:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("watch error after delete: %v, want PermissionDenied", err)
		}
	case u := <-w.updates:
		t.Fatalf("watch got an update with %d SVIDs after the entry was deleted", len(u.SVIDs))
	case <-ctx.Done():
		t.Fatal("watcher never saw the SVID disappear")
	}
	if _, err := c.FetchX509SVID(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("FetchX509SVID without entry: %v, want PermissionDenied", err)
	}
	if _, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("FetchJWTSVID without entry: %v, want PermissionDenied", err)
	}
	if _, err := c.FetchX509Bundles(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("FetchX509Bundles without entry: %v, want PermissionDenied", err)
	}
}

type recordingWatcher struct {
	updates chan *workloadapi.X509Context
	errs    chan error
}

func (w *recordingWatcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.updates <- c }
func (w *recordingWatcher) OnX509ContextWatchError(err error) {
	if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
		select {
		case w.errs <- err:
		default:
		}
	}
}

// TestKill9AndRestartKeepsEverything kills dev mode with SIGKILL and starts it on the same data dir:
// owners, entries, the CA (same bundle) and the ledger are all still there.
func TestKill9AndRestartKeepsEverything(t *testing.T) {
	dirs := newDevDirs(t)
	d := startDev(t, dirs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	d.mustCLI("owner", "add", "bob", "--name", "Bob", "--kind", "person")
	d.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/billing", "--selector", "unix:uid:4242",
		"--owner", "bob", "--purpose", "billing batch job", "--x509-ttl", "30m")
	c := newClient(t, ctx, d.socket)
	before, err := c.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serial := before.SVIDs[0].Certificates[0].SerialNumber.Text(16)
	entriesBefore := d.mustCLI("entry", "list", "-o", "json")
	ownersBefore := d.mustCLI("owner", "list", "-o", "json")
	bundleBefore := d.mustCLI("bundle", "show", "--format", "pem")
	c.Close()

	d.kill9()
	d2 := startDev(t, dirs)
	// Usage counts come from the ledger and legitimately grow (the restarted agent mints again).
	stable := func(js string) string {
		es := decodeJSON[[]entryView](t, js)
		for i := range es {
			es[i].IssuedCount, es[i].LastIssuedAt = 0, ""
		}
		b, _ := json.Marshal(es)
		return string(b)
	}
	if got := d2.mustCLI("entry", "list", "-o", "json"); stable(got) != stable(entriesBefore) {
		t.Fatalf("entries changed across kill -9:\nbefore %s\nafter  %s", entriesBefore, got)
	}
	if got := d2.mustCLI("owner", "list", "-o", "json"); got != ownersBefore {
		t.Fatalf("owners changed across kill -9:\nbefore %s\nafter  %s", ownersBefore, got)
	}
	if got := d2.mustCLI("bundle", "show", "--format", "pem"); got != bundleBefore {
		t.Fatal("the CA changed across kill -9")
	}
	recs := decodeJSON[[]issuanceView](t, d2.mustCLI("ledger", "query", "-o", "json"))
	if !slices.ContainsFunc(recs, func(r issuanceView) bool { return r.ID == serial }) {
		t.Fatalf("issuance %s lost across kill -9: %+v", serial, recs)
	}
	// And it still issues, under the same trust.
	c2 := newClient(t, ctx, d2.socket)
	after, err := c2.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(after.SVIDs[0].Certificates, before.Bundles); err != nil {
		t.Fatalf("SVID after restart does not verify against the bundle before it: %v", err)
	}
}

// TestEntryCreateBadInput: each bad request fails with a message naming the field, a non-zero exit,
// and nothing stored.
func TestEntryCreateBadInput(t *testing.T) {
	d := startDev(t, newDevDirs(t), "--ca-ttl", "2h")
	_, owner := devIdentity(t)
	d.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/dup", "--selector", "unix:uid:7", "--owner", owner, "--purpose", "p")
	base := []string{"entry", "create"}
	good := map[string]string{"--spiffe-id": "spiffe://example.org/new", "--selector": "unix:uid:8", "--owner": owner, "--purpose": "p"}
	args := func(override map[string]string, drop ...string) []string {
		out := slices.Clone(base)
		for _, k := range []string{"--spiffe-id", "--selector", "--owner", "--purpose"} {
			v := good[k]
			if o, ok := override[k]; ok {
				v = o
			}
			if !slices.Contains(drop, k) {
				out = append(out, k, v)
			}
		}
		for k, v := range override {
			if _, known := good[k]; !known {
				out = append(out, k, v)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"no owner", args(nil, "--owner"), exitUsage, "--owner is required"},
		{"no purpose", args(nil, "--purpose"), exitUsage, "--purpose is required"},
		{"malformed SPIFFE ID", args(map[string]string{"--spiffe-id": "spiffe://example.org/a b"}), exitUsage, "--spiffe-id"},
		{"SPIFFE ID outside the trust domain", args(map[string]string{"--spiffe-id": "spiffe://evil.org/x"}), exitFailure, "not in trust domain"},
		// The CLI checks only a selector's syntax and passes types it does not know to the server, which
		// knows the attestors it is built with.
		{"unknown selector type", args(map[string]string{"--selector": "docker:label:x"}), exitFailure,
			`selector "docker:label:x": invalid selector: unknown type "docker": no attestor of this server produces it (known: join_token, k8s, k8s_psat, unix)`},
		{"unknown selector key", args(map[string]string{"--selector": "unix:pid:1"}), exitFailure, `unknown key "pid" for type "unix"`},
		{"malformed selector", args(map[string]string{"--selector": "Docker label"}), exitUsage, `--selector: selector "Docker label": invalid selector: want type:key:value`},
		{"selector without a value", args(map[string]string{"--selector": "docker:label"}), exitUsage, `want docker:key:value`},
		{"zero TTL", args(map[string]string{"--x509-ttl": "0s"}), exitUsage, "--x509-ttl 0s: must be positive"},
		{"negative JWT TTL", args(map[string]string{"--jwt-ttl": "-1h"}), exitUsage, "--jwt-ttl -1h0m0s: must be positive"},
		{"TTL above 30 days", args(map[string]string{"--x509-ttl": "721h"}), exitFailure, "invalid argument: at most 720h0m0s"},
		{"duplicate entry", args(map[string]string{"--spiffe-id": "spiffe://example.org/dup", "--selector": "unix:uid:7"}), exitFailure, "identical entry already exists"},
		{"owner that does not exist", args(map[string]string{"--owner": "nobody-here"}), exitFailure, `owner "nobody-here": owner not found`},
		{"reserved path", args(map[string]string{"--spiffe-id": "spiffe://example.org/signet/agent/x"}), exitFailure, "reserved"},
		{"two expiries", append(args(nil), "--never-expires", "--expires-in", "1h"), exitUsage,
			"--expires-in and --never-expires cannot be given together: give at most one of --expires-at, --expires-in and --never-expires"},
		{"empty owner", args(map[string]string{"--owner": " "}), exitUsage, "--owner must not be empty"},
		{"TTL not whole seconds", args(map[string]string{"--jwt-ttl": "1500ms"}), exitUsage, "--jwt-ttl 1.5s: must be whole seconds"},
		{"X.509 TTL below the minimum", args(map[string]string{"--x509-ttl": "1s"}), exitFailure, "x509_ttl 1s: invalid argument: at least 1m0s (min_x509_svid_ttl, the cluster's policy limit if it sets one, else the server's"},
		{"JWT TTL below the minimum", args(map[string]string{"--jwt-ttl": "29s"}), exitFailure, "jwt_ttl 29s: invalid argument: at least 30s (min_jwt_svid_ttl, the cluster's policy limit if it sets one, else the server's"},
		{"expires-in zero", args(map[string]string{"--expires-in": "0"}), exitUsage, "--expires-in 0: must be positive"},
	}
	before := d.mustCLI("entry", "list", "-o", "json")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := d.cli(tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr: %s)", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr, tc.wantMsg) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantMsg)
			}
		})
	}
	// entry update checks the flags it is given as entry create does.
	id := decodeJSON[[]entryView](t, before)[0].ID
	updates := []struct {
		name    string
		args    []string
		wantMsg string
	}{
		{"two expiries", []string{"--never-expires", "--expires-in", "1h"}, "--expires-in and --never-expires cannot be given together"},
		{"three expiries", []string{"--never-expires", "--expires-in", "1d", "--expires-at", "2030-01-01T00:00:00Z"},
			"--expires-at and --expires-in and --never-expires cannot be given together"},
		{"zero TTL", []string{"--x509-ttl", "0s"}, "--x509-ttl 0s: must be positive"},
		{"malformed selector", []string{"--selector", "UNIX:uid:1"}, `--selector: selector "UNIX:uid:1": invalid selector: type "UNIX" is not a selector type`},
		{"malformed SPIFFE ID", []string{"--spiffe-id", "spiffe://example.org/a b"}, "--spiffe-id"},
		{"empty purpose", []string{"--purpose", ""}, "--purpose must not be empty"},
		{"bad expires-at", []string{"--expires-at", "tomorrow"}, `--expires-at "tomorrow": not an RFC 3339 time`},
	}
	for _, tc := range updates {
		t.Run("update/"+tc.name, func(t *testing.T) {
			_, stderr, code := d.cli(append([]string{"entry", "update", id, "--reason", "r"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.wantMsg) {
				t.Errorf("exit %d (want %d), stderr %q does not contain %q", code, exitUsage, stderr, tc.wantMsg)
			}
		})
	}
	// The server decides which selector types exist.
	if _, stderr, code := d.cli("entry", "update", id, "--reason", "r", "--selector", "docker:label:x"); code != exitFailure ||
		!strings.Contains(stderr, `unknown type "docker": no attestor of this server produces it`) {
		t.Errorf("update with an unknown selector type: exit %d, stderr %q", code, stderr)
	}
	// The server checks lifetimes against its own minimums (min_x509_svid_ttl), which the client does
	// not know: a refusal of the server, exit 1.
	if _, stderr, code := d.cli("entry", "update", id, "--reason", "r", "--x509-ttl", "30s"); code != exitFailure ||
		!strings.Contains(stderr, "x509_ttl 30s: invalid argument: at least 1m0s (min_x509_svid_ttl, the cluster's policy limit if it sets one, else the server's") {
		t.Errorf("update below the minimum: exit %d, stderr %q", code, stderr)
	}
	if after := d.mustCLI("entry", "list", "-o", "json"); after != before {
		t.Fatalf("a refused request changed the registry:\nbefore %s\nafter  %s", before, after)
	}
	// --never-expires=false with an expiry is no conflict.
	d.mustCLI("entry", "update", id, "--reason", "r", "--never-expires")
	d.mustCLI("entry", "update", id, "--reason", "r", "--never-expires=false", "--expires-in", "30d")
	if after := decodeJSON[entryView](t, d.mustCLI("entry", "show", id, "-o", "json")); after.NeverExpires || after.ExpiresAt == "never" {
		t.Fatalf("entry after --never-expires=false --expires-in 30d: %+v", after)
	}
}

// TestEntryHelp: create marks its required flags and shows the TTL defaults; update, which changes only
// the flags given, does neither.
func TestEntryHelp(t *testing.T) {
	t.Parallel()
	create, _, code := runCLI(t, nil, "entry", "create", "--help")
	if code != 0 || strings.Count(create, "(required)") != 4 || !strings.Contains(create, "lifetime of X.509-SVIDs (at least min_x509_svid_ttl: the cluster's policy limit, else the server's, 1m by default; at most 720h; an SVID never outlives the CA: it is capped at the CA's expiry) (default 1h0m0s)") {
		t.Errorf("entry create --help (exit %d):\n%s", code, create)
	}
	update, _, code := runCLI(t, nil, "entry", "update", "--help")
	if code != 0 || strings.Count(update, "(required") != 1 || !strings.Contains(update, "--reason string") || strings.Contains(update, "(default 1h") {
		t.Errorf("entry update --help (exit %d): only --reason is required and no TTL default is shown:\n%s", code, update)
	}
}

// TestDevRefusesBadStartup: a data dir that cannot be written, and sockets held by a live server.
func TestDevRefusesBadStartup(t *testing.T) {
	t.Run("data dir not writable", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "not-a-dir")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		d := newDevDirs(t)
		d.dataDir = filepath.Join(file, "data")
		_, err := tryStartDev(t, d)
		if err == nil || !strings.Contains(err.Error(), "data dir") {
			t.Fatalf("dev on an unwritable data dir: %v", err)
		}
	})
	t.Run("socket in use by a live server", func(t *testing.T) {
		first := newDevDirs(t)
		startDev(t, first)
		second := newDevDirs(t)
		second.socket = first.socket
		_, err := tryStartDev(t, second)
		if err == nil || !strings.Contains(err.Error(), "in use by a running server") {
			t.Fatalf("second dev on a live socket: %v", err)
		}
	})
	t.Run("data dir in use", func(t *testing.T) {
		first := newDevDirs(t)
		startDev(t, first)
		second := newDevDirs(t)
		second.dataDir = first.dataDir
		_, err := tryStartDev(t, second)
		if err == nil || !strings.Contains(err.Error(), "another signet process is using this data dir") {
			t.Fatalf("second dev on a live data dir: %v", err)
		}
	})
}

// TestWorkloadCLI covers 'signet svid fetch --write' and 'signet jwt fetch'.
func TestWorkloadCLI(t *testing.T) {
	d := startDev(t, newDevDirs(t), "--trust-domain", "spiffe://example.org") // the URI form is the name
	wantID, _ := devIdentity(t)
	dir := filepath.Join(t.TempDir(), "svids")
	out := d.mustCLI("svid", "fetch", "--write", dir)
	if !strings.Contains(out, wantID) || !strings.Contains(out, "SERIAL") {
		t.Fatalf("svid fetch output: %s", out)
	}
	for name, mode := range map[string]os.FileMode{"svid.0.pem": 0o644, "svid.0.key": 0o600, "bundle.0.pem": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Fatalf("%s has mode %o, want %o", name, fi.Mode().Perm(), mode)
		}
	}
	svid, err := x509svid.Load(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil || svid.ID.String() != wantID {
		t.Fatalf("written SVID: %v, %v", svid, err)
	}
	type jwtOut struct {
		SPIFFEID string   `json:"spiffe_id"`
		Audience []string `json:"audience"`
		Token    string   `json:"token"`
	}
	jwts := decodeJSON[[]jwtOut](t, d.mustCLI("jwt", "fetch", "--audience", "billing", "-o", "json"))
	if len(jwts) != 1 || jwts[0].SPIFFEID != wantID || !slices.Equal(jwts[0].Audience, []string{"billing"}) || strings.Count(jwts[0].Token, ".") != 2 {
		t.Fatalf("jwt fetch: %+v", jwts)
	}
	if _, stderr, code := d.cli("jwt", "fetch"); code != exitUsage || !strings.Contains(stderr, "--audience is required") {
		t.Fatalf("jwt fetch without audience: exit %d, %s", code, stderr)
	}
}

// TestEntryImport: many entries in one call; each item succeeds or fails on its own.
func TestEntryImport(t *testing.T) {
	d := startDev(t, newDevDirs(t))
	_, owner := devIdentity(t)
	file := filepath.Join(t.TempDir(), "entries.yaml")
	writeFile(t, file, `- spiffe_id: spiffe://example.org/batch/a
  selectors: [unix:uid:7001]
  owner: `+owner+`
  purpose: batch a
  x509_ttl: 30m
- spiffe_id: spiffe://example.org/batch/b
  selectors: [unix:uid:7002, unix:gid:7002]
  owner: nobody-here
  purpose: batch b
- spiffe_id: spiffe://example.org/batch/c
  selectors: [unix:uid:7003]
  owner: `+owner+`
  purpose: batch c
  jwt_unique: true
`)
	out, stderr, code := d.cli("entry", "import", file)
	if code != exitFailure || !strings.Contains(out, "Created 2 of 3") || !strings.Contains(stderr, "entry 2 (spiffe://example.org/batch/b)") || !strings.Contains(stderr, "owner not found") {
		t.Fatalf("import: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	entries := decodeJSON[[]entryView](t, d.mustCLI("entry", "list", "-o", "json"))
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.SPIFFEID)
		if e.SPIFFEID == "spiffe://example.org/batch/a" && e.X509TTL != "30m0s" {
			t.Fatalf("imported TTL: %+v", e)
		}
	}
	if !slices.Contains(ids, "spiffe://example.org/batch/a") || !slices.Contains(ids, "spiffe://example.org/batch/c") || slices.Contains(ids, "spiffe://example.org/batch/b") {
		t.Fatalf("entries after import: %v", ids)
	}
	writeFile(t, file, "- spiffe_id: spiffe://example.org/x\n  selector: [unix:uid:1]\n")
	if _, stderr, code := d.cli("entry", "import", file); code != exitUsage || !strings.Contains(stderr, `entries.yaml:2: unknown key "[1].selector"`) {
		t.Fatalf("import with an unknown key: exit %d, %s", code, stderr)
	}

	// Every key of entry create is accepted, and checked as entry create checks it.
	writeFile(t, file, `- spiffe_id: spiffe://example.org/batch/forever
  selectors: [unix:uid:7101]
  owner: `+owner+`
  purpose: batch forever
  never_expires: true
  ticket: CHG-1
  prefetch: true
- spiffe_id: spiffe://example.org/batch/ninety
  selectors: [unix:uid:7102]
  owner: `+owner+`
  purpose: batch ninety
  expires_in: 90d
  dns_names: [ninety.example.org]
`)
	created := decodeJSON[[]entryView](t, d.mustCLI("entry", "import", file, "-o", "json"))
	if len(created) != 2 || !created[0].NeverExpires || created[0].Ticket != "CHG-1" || created[0].ExpiresAt != "never" || !created[0].Prefetch || created[1].Prefetch {
		t.Fatalf("imported never_expires/ticket/prefetch: %+v", created)
	}
	if out := d.mustCLI("entry", "show", created[0].ID); !strings.Contains(out, "ahead of requests (prefetch)") {
		t.Fatalf("entry show of a prefetch entry does not say it is minted ahead:\n%s", out)
	}
	if exp, err := time.Parse(time.RFC3339, created[1].ExpiresAt); err != nil || time.Until(exp) < 89*24*time.Hour || time.Until(exp) > 90*24*time.Hour {
		t.Fatalf("imported expires_in 90d: expires at %q (%v)", created[1].ExpiresAt, err)
	}
	for _, tc := range []struct{ name, item, want string }{
		{"two expiries", "  never_expires: true\n  expires_in: 1h\n", "item 1: expires_in and never_expires cannot be given together: give at most one of expires_at, expires_in and never_expires"},
		{"negative expires_in", "  expires_in: -1d\n", "item 1: expires_in -1d: must be positive"},
		{"expires_in not a duration", "  expires_in: soon\n", `entries.yaml:6: key "[1].expires_in": ` + "`soon`" + ` is not a duration such as 90m, 24h or 30d`},
		{"TTL not whole seconds", "  x509_ttl: 1500ms\n", "item 1: x509_ttl 1.5s: must be whole seconds"},
		{"missing owner", "", "item 1: owner is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := "  owner: " + owner + "\n"
			if tc.name == "missing owner" {
				o = ""
			}
			writeFile(t, file, "- spiffe_id: spiffe://example.org/batch/bad\n  selectors: [unix:uid:7103]\n  purpose: p\n"+o+"  ticket: t\n"+tc.item)
			if _, stderr, code := d.cli("entry", "import", file); code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q does not contain %q", code, exitUsage, stderr, tc.want)
			}
		})
	}
}

// TestCLIErrorsWithoutServer: typos and missing sockets give a clear message and the right exit code.
func TestCLIErrorsWithoutServer(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.sock")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown subcommand", []string{"entry", "lis"}, exitUsage, `unknown command "lis" for "signet entry"`},
		{"unknown top-level command", []string{"entri"}, exitUsage, `unknown command "entri"`},
		{"unknown flag", []string{"entry", "list", "--ownr", "x"}, exitUsage, "unknown flag: --ownr"},
		{"unknown subcommand of a runnable group", []string{"agent", "lst"}, exitUsage, `unknown command "lst" for "signet agent"`},
		{"unknown subcommand of review", []string{"review", "sgin"}, exitUsage, `unknown command "sgin" for "signet review"`},
		{"unknown help topic", []string{"help", "foo"}, exitUsage, `unknown help topic "foo"`},
		{"unknown nested help topic", []string{"help", "entry", "lis"}, exitUsage, `unknown help topic "entry lis"`},
		{"unknown completion shell", []string{"completion", "bogus"}, exitUsage, `unknown command "bogus" for "signet completion"`},
		{"help topic", []string{"help", "entry"}, exitOK, ""},
		{"bad output format", []string{"owner", "list", "-o", "yaml", "--admin-socket", missing}, exitUsage, `--output "yaml": want table or json`},
		{"admin socket missing", []string{"entry", "list", "--admin-socket", missing}, exitFailure, "no admin socket at " + missing + " (file does not exist): is 'signet dev' or 'signet server' running?"},
		{"workload socket missing", []string{"svid", "fetch", "--socket", missing}, exitFailure, "no Workload API socket at " + missing},
		{"config missing", []string{"server", "--config", missing + ".yaml"}, exitFailure, "no such file or directory"},
		{"config flag missing", []string{"agent"}, exitUsage, "--config is required"},
		{"trust domain with a path", []string{"dev", "--data-dir", filepath.Join(filepath.Dir(missing), "data"), "--trust-domain", "spiffe://example.org/x"},
			exitUsage, `--trust-domain "spiffe://example.org/x": want the trust domain name alone, e.g. "example.org"`},
		{"agent config without a port", []string{"agent", "--config", "testdata/config/agent-server-address-no-port.yaml"},
			exitFailure, `server_address: "127.0.0.1": missing port (want host:port)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q does not contain %q", code, tc.code, stderr, tc.want)
			}
		})
	}
}
