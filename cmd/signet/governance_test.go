package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOffboardWhileWatching: the dev user is offboarded with --disable while a go-spiffe watcher holds
// its SVID; the dry run changes nothing; the real run lists what stays valid and the watcher sees the SVID
// disappear.
func TestOffboardWhileWatching(t *testing.T) {
	d := startDev(t, newDevDirs(t))
	_, owner := devIdentity(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newClient(t, ctx, d.socket)
	w := &recordingWatcher{updates: make(chan *workloadapi.X509Context, 10), errs: make(chan error, 10)}
	go c.WatchX509Context(ctx, w)
	var serial string
	select {
	case u := <-w.updates:
		serial = u.SVIDs[0].Certificates[0].SerialNumber.Text(16)
	case <-ctx.Done():
		t.Fatal("no first watch update")
	}

	type plan struct {
		DryRun     bool           `json:"dry_run"`
		Owner      ownerView      `json:"owner"`
		Entries    []entryView    `json:"entries"`
		StillValid []issuanceView `json:"still_valid"`
	}
	p := decodeJSON[plan](t, d.mustCLI("owner", "offboard", owner, "--disable", "--dry-run", "-o", "json"))
	if !p.DryRun || len(p.Entries) != 1 || !p.Entries[0].Disabled || !slices.ContainsFunc(p.StillValid, func(r issuanceView) bool { return r.ID == serial }) {
		t.Fatalf("dry run: %+v", p)
	}
	// The report shows the entries' issuance statistics, as entry list does.
	if e := p.Entries[0]; e.IssuedCount == 0 || e.LastIssuedAt == "never" {
		t.Fatalf("offboarding report without issuance statistics: %+v", e)
	}
	if e := decodeJSON[[]entryView](t, d.mustCLI("entry", "list", "-o", "json")); e[0].Disabled {
		t.Fatal("the dry run disabled the entry")
	}
	out := d.mustCLI("owner", "offboard", owner, "--disable", "--reason", "left the company")
	if !strings.Contains(out, "1 entries and 0 unused join tokens disabled") || !strings.Contains(out, serial) {
		t.Fatalf("offboard output:\n%s", out)
	}
	select {
	case err := <-w.errs:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("watch error after offboarding: %v", err)
		}
	case u := <-w.updates:
		t.Fatalf("watch update with %d SVIDs after offboarding", len(u.SVIDs))
	case <-ctx.Done():
		t.Fatal("the watcher never saw the SVID disappear")
	}
	o := decodeJSON[[]ownerView](t, d.mustCLI("owner", "list", "-o", "json"))
	if !o[0].Offboarded {
		t.Fatalf("owner after offboarding: %+v", o)
	}
	if _, stderr, code := d.cli("entry", "create", "--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--owner", owner, "--purpose", "p"); code == 0 || !strings.Contains(stderr, "offboarded") {
		t.Fatalf("entry for an offboarded owner: exit %d %s", code, stderr)
	}
}

// TestLedgerLookup: a fetched X.509-SVID (PEM) and JWT-SVID (signature stripped) are identified; a
// certificate from another CA is unknown, with the reason.
func TestLedgerLookup(t *testing.T) {
	d := startDev(t, newDevDirs(t))
	wantID, owner := devIdentity(t)
	dir := t.TempDir()
	d.mustCLI("svid", "fetch", "--write", dir)
	type lookup struct {
		Known     bool           `json:"known"`
		Reason    string         `json:"reason"`
		ValidNow  bool           `json:"valid_now"`
		Issuance  *issuanceView  `json:"issuance"`
		Entry     *entryView     `json:"entry"`
		Owner     *ownerView     `json:"owner"`
		OtherLive []issuanceView `json:"other_live"`
	}
	l := decodeJSON[lookup](t, d.mustCLI("ledger", "lookup", filepath.Join(dir, "svid.0.pem"), "-o", "json"))
	if !l.Known || !l.ValidNow || l.Issuance.SPIFFEID != wantID || l.Owner.Name != owner || l.Entry.Purpose != "dev mode" ||
		l.Issuance.Agent != "spiffe://example.org/signet/agent/dev" || len(l.Issuance.Selectors) == 0 {
		t.Fatalf("lookup of the PEM: %+v", l)
	}
	table := d.mustCLI("ledger", "lookup", filepath.Join(dir, "svid.0.pem"))
	for _, want := range []string{"Valid now:", "yes", "Owner:", owner, "Purpose:", "dev mode", "Selectors:"} {
		if !strings.Contains(table, want) {
			t.Fatalf("lookup table lacks %q:\n%s", want, table)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jwt, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "billing"}, workloadapi.WithAddr("unix://"+d.socket))
	if err != nil {
		t.Fatal(err)
	}
	token := jwt.Marshal()
	stripped := token[:strings.LastIndex(token, ".")+1]
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, "Authorization: Bearer "+stripped+"\n")
	l = decodeJSON[lookup](t, d.mustCLI("ledger", "lookup", file, "-o", "json"))
	if !l.Known || l.Issuance.Kind != "jwt-svid" || !slices.Equal(l.Issuance.Audience, []string{"billing"}) ||
		!slices.ContainsFunc(l.OtherLive, func(r issuanceView) bool { return r.Kind == "x509-svid" }) {
		t.Fatalf("lookup of the stripped JWT: %+v", l)
	}

	// ledger query --serial finds the credential whichever way a tool prints its serial.
	serial, jti := l.OtherLive[slices.IndexFunc(l.OtherLive, func(r issuanceView) bool { return r.Kind == "x509-svid" })].ID, l.Issuance.ID
	padded := strings.ToUpper(strings.Repeat("0", len(serial)%2) + serial)
	var pairs []string
	for i := 0; i < len(padded); i += 2 {
		pairs = append(pairs, padded[i:i+2])
	}
	openssl := "00:" + strings.Join(pairs, ":") // openssl x509 -text: colons, upper case, a leading 00 byte
	for _, tc := range []struct{ name, serial, want string }{
		{"as stored", serial, serial},
		{"upper case", strings.ToUpper(serial), serial},
		{"openssl -text", openssl, serial},
		{"openssl -serial", "serial=00" + strings.ToUpper(serial), serial},
		{"JWT ID", strings.ToUpper(jti), jti},
	} {
		recs := decodeJSON[[]issuanceView](t, d.mustCLI("ledger", "query", "--serial", tc.serial, "-o", "json"))
		if len(recs) != 1 || recs[0].ID != tc.want {
			t.Errorf("ledger query --serial %s (%s): %+v, want the record %s", tc.serial, tc.name, recs, tc.want)
		}
	}
	for _, bad := range []string{"xyz", "", "12:3g"} {
		if _, stderr, code := d.cli("ledger", "query", "--serial", bad); code != exitUsage || !strings.Contains(stderr, "--serial") || !strings.Contains(stderr, "hexadecimal") {
			t.Errorf("ledger query --serial %q: exit %d, %s", bad, code, stderr)
		}
	}

	// The trust domain's own root: a CA certificate of this trust domain, not a forgery.
	root := filepath.Join(t.TempDir(), "bundle.pem")
	writeFile(t, root, d.mustCLI("bundle", "show"))
	type caLookup struct {
		Known     bool   `json:"known"`
		Authority bool   `json:"authority"`
		Reason    string `json:"reason"`
		ValidNow  bool   `json:"valid_now"`
	}
	out, stderr, code := d.cli("ledger", "lookup", root, "-o", "json")
	if ca := decodeJSON[caLookup](t, out); code != 0 || !ca.Authority || ca.Known || !ca.ValidNow || !strings.Contains(ca.Reason, "CA certificate of trust domain example.org") ||
		strings.Contains(ca.Reason, "forged") {
		t.Fatalf("lookup of the trust domain's root: exit %d %+v %s", code, ca, stderr)
	}
	if table := d.mustCLI("ledger", "lookup", root); !strings.Contains(table, "a CA certificate of this trust domain") {
		t.Fatalf("lookup table of the root:\n%s", table)
	}

	// A certificate Signet never issued.
	foreign := filepath.Join(t.TempDir(), "foreign.pem")
	writeFile(t, foreign, string(foreignCert(t)))
	out, stderr, code = d.cli("ledger", "lookup", foreign, "-o", "json")
	l = decodeJSON[lookup](t, out)
	if code != exitFailure || l.Known || !strings.Contains(l.Reason, "other issuer") || !strings.Contains(stderr, "unknown credential") {
		t.Fatalf("lookup of a foreign certificate: exit %d %+v %s", code, l, stderr)
	}
}

// foreignCert returns a PEM certificate for a SPIFFE ID of example.org, signed by some other CA.
func foreignCert(t *testing.T) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://example.org/dev/impostor")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(424242), Subject: pkix.Name{CommonName: "elsewhere"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestPolicyAndApproval: a server with a creation policy refuses an entry naming the rule, makes a prod
// entry pending until a different admin approves it, and refuses approval by the same admin.
func TestPolicyAndApproval(t *testing.T) {
	s := newTestServer(t)
	s.appendConfig(t, `policy:
  rules:
    - name: max-ttl
      description: no X.509-SVID lives longer than a day
      deny_unless: 'entry.x509_ttl <= duration("24h")'
    - name: team-path
      deny_unless: 'owner.team == "" || entry.path.startsWith("/team/" + owner.team + "/")'
    - name: prod-two-person
      approval_when: 'entry.path.startsWith("/prod/")'
`)
	s.start(t)
	s.mustCLI("owner", "add", "alice")
	s.mustCLI("owner", "add", "bob", "--team", "payments")
	agent := "spiffe://example.org/signet/agent/x"
	create := func(id, owner string, extra ...string) (string, string, int) {
		return s.cli(append([]string{"entry", "create", "--spiffe-id", id, "--selector", myUID, "--owner", owner,
			"--purpose", "p", "--parent-id", agent}, extra...)...)
	}
	if _, stderr, code := create("spiffe://example.org/web", "alice", "--x509-ttl", "48h"); code == 0 ||
		!strings.Contains(stderr, `policy rule "max-ttl"`) || !strings.Contains(stderr, "no X.509-SVID lives longer than a day") {
		t.Fatalf("TTL above the policy: exit %d, %s", code, stderr)
	}
	if _, stderr, code := create("spiffe://example.org/web", "bob"); code == 0 || !strings.Contains(stderr, `policy rule "team-path"`) {
		t.Fatalf("path outside the team: exit %d, %s", code, stderr)
	}
	if _, _, code := create("spiffe://example.org/team/payments/web", "bob"); code != 0 {
		t.Fatal("a compliant entry was refused")
	}
	out, _, code := create("spiffe://example.org/prod/db", "alice", "-o", "json")
	pending := decodeJSON[entryView](t, out)
	if code != 0 || !pending.Pending || pending.State != "pending" || !slices.Equal(pending.PendingRules, []string{"prod-two-person"}) {
		t.Fatalf("prod entry: exit %d %+v", code, pending)
	}
	if got := decodeJSON[[]entryView](t, s.mustCLI("entry", "list", "--pending", "-o", "json")); len(got) != 1 || got[0].ID != pending.ID {
		t.Fatalf("entry list --pending: %+v", got)
	}
	// The same admin (this uid) may not approve its own request.
	if _, stderr, code := s.cli("entry", "approve", pending.ID); code == 0 || !strings.Contains(stderr, "another admin must approve it") {
		t.Fatalf("self-approval: exit %d, %s", code, stderr)
	}
	// Both refusals and the self-approval are in the audit log (refusals are recorded in the background:
	// a refusal never waits for the audit log).
	type auditView struct {
		Action  string `json:"action"`
		Outcome string `json:"outcome"`
		Reason  string `json:"reason"`
	}
	var denied []auditView
	n := 0
	eventually(t, 15*time.Second, "the 3 refusals in the audit log", func() bool {
		denied = decodeJSON[[]auditView](t, s.mustCLI("audit", "list", "--limit", "1000", "-o", "json"))
		n = 0
		for _, r := range denied {
			if r.Outcome == "denied" && (strings.Contains(r.Reason, "max-ttl") || strings.Contains(r.Reason, "team-path") || r.Action == "entry.approve") {
				n++
			}
		}
		return n >= 3
	})
	if n != 3 {
		t.Fatalf("audit log has %d refusals, want 3: %+v", n, denied)
	}
}

// TestReviewOnSeededRegistry: review flags what a reviewer must see, in table, JSON and CSV; review sign
// disables what it decides to.
func TestReviewOnSeededRegistry(t *testing.T) {
	s := newTestServer(t).start(t)
	for _, o := range []string{"alice", "carol", "payments"} {
		s.mustCLI("owner", "add", o)
	}
	agent := "spiffe://example.org/signet/agent/x"
	create := func(id, owner string, extra ...string) string {
		out := s.mustCLI(append([]string{"entry", "create", "--spiffe-id", id, "--selector", myUID, "--owner", owner,
			"--purpose", "p", "--parent-id", agent, "-o", "json"}, extra...)...)
		return decodeJSON[entryView](t, out).ID
	}
	idle := create("spiffe://example.org/idle", "alice")
	soon := create("spiffe://example.org/soon", "alice", "--expires-in", "48h")
	soonDays := create("spiffe://example.org/soon-days", "alice", "--expires-in", "2d")
	forever := create("spiffe://example.org/forever", "alice", "--never-expires")
	adminID := create("spiffe://example.org/ops/admin/cli", "alice")
	gone := create("spiffe://example.org/gone", "carol")
	s.mustCLI("owner", "offboard", "carol", "--reassign-to", "payments")
	s.mustCLI("token", "create", "--owner", "alice")
	var items []reviewView
	find := func(id string) []string {
		for _, it := range items {
			if it.ID == id {
				return it.Findings
			}
		}
		return nil
	}
	// Wait until the entries are older than --stale 1s: until the last one created is reported "never
	// used". Creation times are whole seconds, so the first one may be stale a second before the last.
	neverUsed := func(id string) bool {
		return slices.ContainsFunc(find(id), func(f string) bool { return strings.Contains(f, "never used") })
	}
	eventually(t, 20*time.Second, "the entries reported stale", func() bool {
		items = decodeJSON[[]reviewView](t, s.mustCLI("review", "--stale", "1s", "-o", "json"))
		return neverUsed(idle) && neverUsed(gone)
	})
	for _, tc := range []struct{ id, want string }{
		{idle, "never used"},
		{soon, "expires within 14 days"},
		{soonDays, "expires within 14 days"},
		{forever, "never expires"},
		{adminID, "admin identity"},
	} {
		if f := find(tc.id); !slices.ContainsFunc(f, func(s string) bool { return strings.Contains(s, tc.want) }) {
			t.Errorf("entry %s findings %q lack %q", tc.id, f, tc.want)
		}
	}
	if f := find(gone); len(f) == 0 {
		t.Errorf("entry reassigned from an offboarded owner has no findings")
	}
	if !slices.ContainsFunc(items, func(it reviewView) bool { return it.Kind == "token" && strings.Contains(it.Findings[0], "never used") }) {
		t.Errorf("unused join token not flagged: %+v", items)
	}
	// Days are accepted where durations are counted in days: --stale 30d is --stale 720h.
	if days, hours := s.mustCLI("review", "--stale", "30d", "-o", "json"), s.mustCLI("review", "--stale", "720h", "-o", "json"); days != hours {
		t.Errorf("review --stale 30d differs from --stale 720h:\n%s\n%s", days, hours)
	}
	if _, stderr, code := s.cli("review", "--stale", "30x"); code != exitUsage || !strings.Contains(stderr, `"--stale"`) || !strings.Contains(stderr, "30d") {
		t.Errorf("review --stale 30x: exit %d, %s", code, stderr)
	}
	if csv := s.mustCLI("review", "--stale", "1s", "-o", "csv"); !strings.HasPrefix(csv, "kind,id,spiffe_id,owner,findings\n") || !strings.Contains(csv, idle) {
		t.Errorf("csv review:\n%s", csv)
	}
	out := s.mustCLI("review", "sign", "--reviewer", "bob", "--entries", idle, "--decision", "disable", "--note", "unused")
	if !strings.Contains(out, "1 entries disabled") {
		t.Fatalf("review sign: %s", out)
	}
	var e entryView
	json.Unmarshal([]byte(s.mustCLI("entry", "show", idle, "-o", "json")), &e)
	if !e.Disabled || !strings.Contains(e.DisabledReason, "access review") || !strings.Contains(e.DisabledReason, "bob") {
		t.Fatalf("entry after review: %+v", e)
	}
}

// TestAuditVerifyDetectsTampering: the audit log verifies; after a stored record is edited on disk,
// audit verify fails naming the record.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	id := decodeJSON[entryView](t, s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID,
		"--owner", "alice", "--purpose", "web", "--parent-id", "spiffe://example.org/signet/agent/x", "-o", "json")).ID
	s.mustCLI("entry", "disable", id, "--reason", "incident 7")
	recs := decodeJSON[[]struct {
		Seq    uint64 `json:"seq"`
		Action string `json:"action"`
		Object string `json:"object"`
		Reason string `json:"reason"`
	}](t, s.mustCLI("audit", "list", "--object", id, "-o", "json"))
	if len(recs) != 2 || recs[0].Action != "entry.create" || recs[1].Action != "entry.disable" || recs[1].Reason != "incident 7" {
		t.Fatalf("audit records of the entry: %+v", recs)
	}
	if out := s.mustCLI("audit", "verify"); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %s", out)
	}
	s.stop()
	db, err := bolt.Open(filepath.Join(s.dir, "data", "server", "state.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k := binary.BigEndian.AppendUint64(nil, recs[1].Seq)
		var r map[string]any
		if err := json.Unmarshal(b.Get(k), &r); err != nil {
			return err
		}
		r["reason"] = "nothing to see here"
		v, _ := json.Marshal(r)
		return b.Put(k, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s.start(t)
	_, stderr, code := s.cli("audit", "verify")
	if code != exitFailure || !strings.Contains(stderr, "broken at record") || !strings.Contains(stderr, "altered") {
		t.Fatalf("audit verify after tampering: exit %d, %s", code, stderr)
	}
	// A broken chain is not signed: a checkpoint would vouch for the tampering.
	if _, stderr, code := s.cli("audit", "checkpoint"); code != exitFailure || !strings.Contains(stderr, "refusing to sign") {
		t.Fatalf("audit checkpoint of a broken chain: exit %d, %s", code, stderr)
	}
}

// TestOffboardReassignChecksPolicy: reassigning an owner's entries is checked against the entry policy
// as the new owner's: the dry run lists the violations, the real run is refused (and audited) naming the
// entry and the rule, and succeeds once no entry breaks a rule.
func TestOffboardReassignChecksPolicy(t *testing.T) {
	s := newTestServer(t)
	s.appendConfig(t, `policy:
  rules:
    - name: team-path
      description: the path must begin with /team/<owner's team>/
      deny_unless: 'owner.team == "" || entry.path.startsWith("/team/" + owner.team + "/")'
`)
	s.start(t)
	s.mustCLI("owner", "add", "alice")
	s.mustCLI("owner", "add", "payments", "--team", "payments")
	create := func(id string) string {
		return decodeJSON[entryView](t, s.mustCLI("entry", "create", "--spiffe-id", id, "--selector", myUID, "--owner", "alice",
			"--purpose", "p", "--parent-id", "spiffe://example.org/signet/agent/x", "-o", "json")).ID
	}
	web := create("spiffe://example.org/web")
	create("spiffe://example.org/team/payments/api")

	type plan struct {
		DryRun     bool            `json:"dry_run"`
		Entries    []entryView     `json:"entries"`
		Violations []violationView `json:"violations"`
	}
	p := decodeJSON[plan](t, s.mustCLI("owner", "offboard", "alice", "--reassign-to", "payments", "--dry-run", "-o", "json"))
	if !p.DryRun || len(p.Entries) != 2 || len(p.Violations) != 1 || p.Violations[0].EntryID != web || p.Violations[0].Rule != "team-path" {
		t.Fatalf("dry run: %+v", p)
	}
	if out := s.mustCLI("owner", "offboard", "alice", "--reassign-to", "payments", "--dry-run"); !strings.Contains(out, "Entry policy violations") || !strings.Contains(out, web) {
		t.Fatalf("dry run table:\n%s", out)
	}
	_, stderr, code := s.cli("owner", "offboard", "alice", "--reassign-to", "payments", "--reason", "left")
	if code != exitFailure || !strings.Contains(stderr, web) || !strings.Contains(stderr, `policy rule "team-path"`) || !strings.Contains(stderr, "--disable") {
		t.Fatalf("offboarding that breaks the policy: exit %d, %s", code, stderr)
	}
	if o := decodeJSON[[]ownerView](t, s.mustCLI("owner", "list", "-o", "json")); o[0].Name != "alice" || o[0].Offboarded {
		t.Fatalf("the refused offboarding changed the owner: %+v", o)
	}
	// Refusals reach the audit log through the denial log, in the background: wait for it.
	type auditRow struct {
		Outcome string `json:"outcome"`
	}
	var denied []auditRow
	eventually(t, 20*time.Second, "the refused offboarding in the audit log", func() bool {
		denied = decodeJSON[[]auditRow](t, s.mustCLI("audit", "list", "--action", "owner.offboard", "-o", "json"))
		return len(denied) > 0
	})
	if len(denied) != 1 || denied[0].Outcome != "denied" {
		t.Fatalf("audit of the refusal: %+v", denied)
	}

	s.mustCLI("entry", "delete", web)
	out := s.mustCLI("owner", "offboard", "alice", "--reassign-to", "payments", "--reason", "left")
	if !strings.Contains(out, "1 entries and 0 unused join tokens reassigned to payments") {
		t.Fatalf("compliant offboarding: %s", out)
	}
}
