package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	bolt "go.etcd.io/bbolt"
)

// TestSnapshotSave, with a real server and agent: after owners, entries and an issuance, 'snapshot
// save' writes a 0600 file whose header names the trust domain and the applied index and whose digest
// matches the body; the body is the state database holding the owner, the entry, the ledger and the
// audit chain; the save is audited. A file that cannot be written is refused and leaves nothing behind.
func TestSnapshotSave(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	const web = "spiffe://example.org/web"
	s.mustCLI("entry", "create", "--spiffe-id", web, "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+a.socket)); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if recs := s.ledgerRecords(t, web); len(recs) == 0 {
		t.Fatal("no ledger record of the issuance")
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "state.snap")
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
	h, err := server.ReadSnapshotFileHeader(r)
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
