package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/adminapi"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	bolt "go.etcd.io/bbolt"
)

// TestSnapshotSave, with a real server and agent: after owners, entries and an issuance, 'snapshot
// save' writes a 0600 file whose header names the trust domain and the applied index and whose digest
// matches the body; the body is the state database holding the owner, the entry, the ledger and the
// audit chain; the save is audited. A file that cannot be written is refused and leaves nothing behind.
func TestSnapshotSave(t *testing.T) { savedSnapshot(t) }

// savedSnapshot runs TestSnapshotSave's server and checks, and returns the snapshot file and the
// certificate file of an SVID issued before it was taken.
func savedSnapshot(t *testing.T) (file, certFile string) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	const web = "spiffe://example.org/web"
	s.mustCLI("entry", "create", "--spiffe-id", web, "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, web) // the agent has the entry once its sync stream delivered it
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+a.socket))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if recs := s.ledgerRecords(t, web); len(recs) == 0 {
		t.Fatal("no ledger record of the issuance")
	}
	certs, _, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(t.TempDir(), "svid.pem")
	writeFile(t, certFile, string(certs))
	dir := t.TempDir()
	file = filepath.Join(dir, "state.snap")
	out := s.mustCLI("snapshot", "save", file)
	if !strings.Contains(out, "Snapshot of example.org") || !strings.Contains(out, "written to "+file) {
		t.Fatalf("snapshot save said %q", out)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file mode %v, want 0600", fi.Mode().Perm())
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	h, err := adminapi.ReadSnapshotFileHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if h.TrustDomain != "example.org" || h.AppliedIndex == 0 || h.SchemaVersion == 0 || h.Node == "" || h.Time.IsZero() ||
		h.Size != uint64(len(body)) || h.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("header %+v does not describe the %d-byte body (sha256 %x)", h, len(body), sum)
	}

	// The body is the state: owner, entry, ledger, audit chain and CA metadata are in it.
	statePath := filepath.Join(dir, "state.db")
	if err := os.WriteFile(statePath, body, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(statePath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("the snapshot body is not a state database: %v", err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("owners")).Get([]byte("alice")) == nil {
			t.Error("owner alice is not in the snapshot")
		}
		found := false
		_ = tx.Bucket([]byte("entries")).ForEach(func(_, v []byte) error {
			found = found || bytes.Contains(v, []byte(web))
			return nil
		})
		if !found {
			t.Errorf("entry %s is not in the snapshot", web)
		}
		for _, b := range []string{"ledger_batches", "audit", "authorities"} {
			if k, _ := tx.Bucket([]byte(b)).Cursor().First(); k == nil {
				t.Errorf("bucket %s is empty in the snapshot", b)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	audited := s.mustCLI("audit", "list", "--action", "snapshot.save")
	if !strings.Contains(audited, "snapshot.save") || !strings.Contains(audited, h.Node) {
		t.Fatalf("the save is not audited:\n%s", audited)
	}

	// A file in a directory that does not exist: refused, naming it.
	missing := filepath.Join(dir, "nope", "state.snap")
	_, errOut, code := s.cli("snapshot", "save", missing)
	if code == 0 || !strings.Contains(errOut, filepath.Join(dir, "nope")) {
		t.Fatalf("save into a missing directory: exit %d, stderr %q", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("the refused save left files behind: %v", entries)
	}
	return file, certFile
}

// TestSnapshotRestore, with real servers: a snapshot restored into a fresh server of the same trust
// domain brings its owners, entries, ledger (a lookup of an SVID issued before the save finds it) and
// an audit chain that verifies, with the restore audited; a snapshot with one byte flipped is refused
// naming the digest mismatch, and one restored into a server of another trust domain is refused;
// neither changes anything.
func TestSnapshotRestore(t *testing.T) {
	file, certFile := savedSnapshot(t)
	const web = "spiffe://example.org/web"

	// Another trust domain: refused, nothing changed.
	other := newTestServer(t)
	other.writeConfig(t, "other.org", fmt.Sprintf("  bind_address: 127.0.0.1:%d\n", freePort(t)))
	other.start(t)
	_, errOut, code := other.cli("snapshot", "restore", file)
	if code == 0 || !strings.Contains(errOut, `trust domain "example.org", this cluster's is "other.org"`) || !strings.Contains(errOut, "nothing changed") {
		t.Fatalf("restore into another trust domain: exit %d, stderr %q", code, errOut)
	}
	if out := other.mustCLI("owner", "list"); strings.Contains(out, "alice") {
		t.Fatalf("the refused restore changed the owners:\n%s", out)
	}

	// One byte of the body flipped: refused, naming the digest mismatch.
	fresh := newTestServer(t).start(t)
	data := mustRead(t, file)
	data[len(data)-100] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.snap")
	writeFile(t, bad, string(data))
	_, errOut, code = fresh.cli("snapshot", "restore", bad)
	if code == 0 || !strings.Contains(errOut, "digest mismatch") || !strings.Contains(errOut, "nothing changed") {
		t.Fatalf("restore of a damaged file: exit %d, stderr %q", code, errOut)
	}
	if out := fresh.mustCLI("entry", "list"); strings.Contains(out, web) {
		t.Fatalf("the refused restore changed the entries:\n%s", out)
	}

	// The good file, into the fresh server.
	out := fresh.mustCLI("snapshot", "restore", file)
	if !strings.Contains(out, "Restored the snapshot of example.org") {
		t.Fatalf("snapshot restore said %q", out)
	}
	if out := fresh.mustCLI("owner", "list"); !strings.Contains(out, "alice") {
		t.Fatalf("owner alice is not restored:\n%s", out)
	}
	if out := fresh.mustCLI("entry", "list"); !strings.Contains(out, web) {
		t.Fatalf("entry %s is not restored:\n%s", web, out)
	}
	if got, _ := fresh.lookup(t, certFile); !got.Known {
		t.Fatalf("ledger lookup of an SVID issued before the save: %+v", got)
	}
	if out := fresh.mustCLI("audit", "list", "--action", "snapshot.restore"); !strings.Contains(out, "snapshot.restore") {
		t.Fatalf("the restore is not audited:\n%s", out)
	}
	if out, errOut, code := fresh.cli("audit", "verify"); code != 0 {
		t.Fatalf("audit verify after the restore: exit %d\n%s\n%s", code, out, errOut)
	}
	// The restored server keeps working, and keeps the restored state across a restart.
	fresh.mustCLI("owner", "add", "bob")
	fresh.stop()
	fresh.start(t)
	if out := fresh.mustCLI("owner", "list"); !strings.Contains(out, "bob") || !strings.Contains(out, "alice") {
		t.Fatalf("owners after a write on the restored state and a restart:\n%s", out)
	}
	if out := fresh.mustCLI("entry", "list"); !strings.Contains(out, web) {
		t.Fatalf("entry %s is gone after a restart:\n%s", web, out)
	}
	if out, errOut, code := fresh.cli("audit", "verify"); code != 0 {
		t.Fatalf("audit verify after a restart: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestSnapshotRestoreCluster: in a fresh three-server cluster, a restore through a follower's admin
// socket is streamed to the leader, which checks it: a damaged file is refused naming the digest
// mismatch and changes nothing; the good one reaches every server: each lists the restored owner and
// entry, finds the SVID in its ledger, and verifies the audit chain (its automatic checkpoint starts
// over).
func TestSnapshotRestoreCluster(t *testing.T) {
	file, certFile := savedSnapshot(t)
	const web = "spiffe://example.org/web"
	c := newTestCluster(t, 3)
	c.startAll()
	leader := c.leaderIndex(0, 1, 2)
	follower := (leader + 1) % 3
	for _, s := range c.servers { // each server's automatic checkpoint now holds its own chain
		s.mustCLI("audit", "checkpoint", "--out", filepath.Join(t.TempDir(), "cp.json"))
	}
	data := mustRead(t, file)
	data[len(data)-100] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.snap")
	writeFile(t, bad, string(data))
	_, errOut, code := c.servers[follower].cli("snapshot", "restore", bad)
	if code == 0 || !strings.Contains(errOut, "digest mismatch") || !strings.Contains(errOut, "nothing changed") {
		t.Fatalf("restore of a damaged file through a follower: exit %d, stderr %q", code, errOut)
	}
	if out := c.servers[leader].mustCLI("entry", "list"); strings.Contains(out, web) {
		t.Fatalf("the refused restore changed the leader's entries:\n%s", out)
	}
	out := c.servers[follower].mustCLI("snapshot", "restore", file)
	if !strings.Contains(out, "Restored the snapshot of example.org") {
		t.Fatalf("snapshot restore through a follower said %q", out)
	}
	// The follower the restore went through has installed it when the command returns.
	if out := c.servers[follower].mustCLI("entry", "list"); !strings.Contains(out, web) {
		t.Fatalf("the follower the restore went through lacks entry %s:\n%s", web, out)
	}
	for i, s := range c.servers {
		eventually(t, 30*time.Second, fmt.Sprintf("server %d lists the restored owner", i), func() bool { return hasOwner(s, "alice") })
		if out := s.mustCLI("entry", "list"); !strings.Contains(out, web) {
			t.Fatalf("server %d: entry %s is not restored:\n%s", i, web, out)
		}
		if got, _ := s.lookup(t, certFile); !got.Known {
			t.Fatalf("server %d: ledger lookup of an SVID issued before the save: %+v", i, got)
		}
		if out, errOut, code := s.cli("audit", "verify"); code != 0 {
			t.Fatalf("server %d: audit verify after the restore: exit %d\n%s\n%s", i, code, out, errOut)
		}
	}
	// A write after the restore reaches every server.
	c.servers[follower].mustCLI("owner", "add", "carol")
	for i, s := range c.servers {
		eventually(t, 30*time.Second, fmt.Sprintf("server %d lists carol", i), func() bool { return hasOwner(s, "carol") })
	}
}

// TestSnapshotHelp: the command group documents save and what a snapshot holds.
func TestSnapshotHelp(t *testing.T) {
	out, _, code := runCLI(t, nil, "snapshot", "save", "--help")
	if code != 0 || !strings.Contains(out, "signet snapshot save FILE") || !strings.Contains(out, "never in a snapshot") {
		t.Fatalf("snapshot save --help: exit %d\n%s", code, out)
	}
	_, errOut, code := runCLI(t, nil, "snapshot", "save")
	if code == 0 || !strings.Contains(errOut, "the file to write") {
		t.Fatalf("snapshot save without FILE: exit %d, stderr %q", code, errOut)
	}
}
