package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/storage"
	bolt "go.etcd.io/bbolt"
)

// TestAuditCheckpointCatchesRehashedChain: a record is removed from state.db and every later record
// re-hashed, as an attacker with write access to the data dir would. audit verify fails against the
// server's automatic checkpoint; once that file is removed too, plain audit verify passes (the limitation
// a kept checkpoint exists for), but verify against a signed checkpoint taken before fails, naming the
// checkpointed record; an altered checkpoint file is refused.
func TestAuditCheckpointCatchesRehashedChain(t *testing.T) {
	s := newTestServer(t).start(t)
	for _, o := range []string{"alice", "bob", "carol"} {
		s.mustCLI("owner", "add", o)
	}
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	if out := s.mustCLI("audit", "checkpoint", "--out", file); !strings.Contains(out, "Checkpoint of audit record") {
		t.Fatalf("audit checkpoint: %s", out)
	}
	var cf struct {
		Statement struct {
			Seq      uint64 `json:"seq"`
			HeadHash string `json:"head_hash"`
			Node     string `json:"node"`
		} `json:"statement"`
	}
	if err := json.Unmarshal([]byte(string(mustRead(t, file))), &cf); err != nil || cf.Statement.Seq == 0 || len(cf.Statement.HeadHash) != 64 || cf.Statement.Node == "" {
		t.Fatalf("checkpoint file: %+v %v", cf, err)
	}
	if out := s.mustCLI("audit", "verify", "--checkpoint", file, "--bundle", s.bundlePath); !strings.Contains(out, "matches") {
		t.Fatalf("audit verify --checkpoint on the intact chain: %s", out)
	}
	if out := s.mustCLI("audit", "verify"); !strings.Contains(out, "automatic checkpoint of record "+strconv.FormatUint(cf.Statement.Seq, 10)) {
		t.Fatalf("audit verify on the intact chain (the checkpoint just taken is the automatic one): %s", out)
	}
	s.mustCLI("owner", "add", "dave") // written after the checkpoint
	s.stop()

	bob := removeAuditRecord(t, filepath.Join(s.dir, "data", "server", "state.db"), "bob")
	if bob > cf.Statement.Seq {
		t.Fatalf("removed record %d, after the checkpoint's %d", bob, cf.Statement.Seq)
	}
	s.start(t)
	// The server's automatic checkpoint, renewed when it stopped, catches the rewrite.
	auto := filepath.Join(s.dir, "data", "server", "audit-checkpoint.json")
	if _, stderr, code := s.cli("audit", "verify"); code != exitFailure || !strings.Contains(stderr, "re-hashed") || !strings.Contains(stderr, auto) {
		t.Fatalf("audit verify against the automatic checkpoint: exit %d, %s", code, stderr)
	}
	if _, stderr, code := s.cli("audit", "checkpoint"); code != exitFailure || !strings.Contains(stderr, "refusing to sign") {
		t.Fatalf("audit checkpoint of a chain that lost the automatic checkpoint's record: exit %d, %s", code, stderr)
	}
	// Whoever can write the data dir can remove that file too: then only a kept checkpoint tells.
	if err := os.Remove(auto); err != nil {
		t.Fatal(err)
	}
	if out := s.mustCLI("audit", "verify"); !strings.Contains(out, "intact") || !strings.Contains(out, "use --checkpoint") {
		t.Fatalf("plain audit verify of the re-hashed chain: %s", out)
	}
	for _, args := range [][]string{{"--checkpoint", file}, {"--checkpoint", file, "--bundle", s.bundlePath}} {
		_, stderr, code := s.cli(append([]string{"audit", "verify"}, args...)...)
		want := "broken at record " + strconv.FormatUint(cf.Statement.Seq, 10) + ":"
		if code != exitFailure || !strings.Contains(stderr, want) || !strings.Contains(stderr, "re-hashed") {
			t.Fatalf("audit verify %v after removing record %d: exit %d, want %q in %s", args, bob, code, want, stderr)
		}
	}

	// A checkpoint whose statement was edited no longer verifies.
	forged := filepath.Join(t.TempDir(), "forged.json")
	writeFile(t, forged, strings.Replace(string(mustRead(t, file)), `"seq": `+strconv.FormatUint(cf.Statement.Seq, 10), `"seq": `+strconv.FormatUint(cf.Statement.Seq-1, 10), 1))
	if _, stderr, code := s.cli("audit", "verify", "--checkpoint", forged); code != exitFailure || !strings.Contains(stderr, "bad audit checkpoint") {
		t.Fatalf("audit verify with an edited checkpoint: exit %d, %s", code, stderr)
	}
	if _, stderr, code := s.cli("audit", "verify", "--bundle", s.bundlePath); code != exitUsage || !strings.Contains(stderr, "--checkpoint") {
		t.Fatalf("audit verify --bundle alone: exit %d, %s", code, stderr)
	}
}

// removeAuditRecord deletes the audit record of object from the state file at path, renumbers and
// re-hashes every later record and moves the chain head, so that every link holds. It returns the
// removed record's number.
func removeAuditRecord(t *testing.T, path, object string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var removed uint64
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		var recs []storage.AuditRecord
		if err := b.ForEach(func(_, v []byte) error {
			var r storage.AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Object == object && removed == 0 {
				removed = r.Seq
				return nil
			}
			recs = append(recs, r)
			return nil
		}); err != nil {
			return err
		}
		if err := b.Delete(binary.BigEndian.AppendUint64(nil, uint64(len(recs)+1))); err != nil {
			return err
		}
		prev := ""
		for i := range recs {
			r := &recs[i]
			r.Seq, r.PrevHash, r.Hash = uint64(i+1), prev, ""
			content, _ := json.Marshal(r)
			sum := sha256.Sum256(content)
			r.Hash = hex.EncodeToString(sum[:])
			prev = r.Hash
			v, _ := json.Marshal(r)
			if err := b.Put(binary.BigEndian.AppendUint64(nil, r.Seq), v); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Put([]byte("audit_seq"), binary.BigEndian.AppendUint64(nil, uint64(len(recs)))); err != nil {
			return err
		}
		return meta.Put([]byte("audit_head"), []byte(prev))
	})
	if err != nil || removed == 0 {
		t.Fatalf("remove the audit record of %s: removed %d, %v", object, removed, err)
	}
	return removed
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
