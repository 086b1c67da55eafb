package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSignCheckpoint: an empty log is not checkpointed; a checkpoint verifies against its signer's root
// for its trust domain only, and is refused when altered or oversized.
func TestSignCheckpoint(t *testing.T) {
	st, authority, other := openStore(t), newCA(t), newCA(t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if _, err := adminapi.SignCheckpoint(st, authority, now, nil); !errors.Is(err, storage.ErrAuditEmpty) {
		t.Fatalf("checkpoint of an empty log: %v", err)
	}
	if _, err := st.CreateOwner(storage.WithActor(testCtx(t), "test"), storage.Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	f, err := adminapi.SignCheckpoint(st, authority, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.MarshalIndent(f, "", "  ")
	roots := []*x509.Certificate{other.X509Authority(), authority.X509Authority()}
	cp, root, err := adminapi.ParseCheckpoint(data, roots, "example.org")
	head, _ := st.AuditHead()
	if err != nil || root != authority.X509Authority() || cp.Seq != head.Seq || cp.HeadHash != head.Hash || cp.Node != st.NodeID() || !cp.Time.Equal(now) {
		t.Fatalf("parse: %+v root %v, %v (head %+v)", cp, root, err, head)
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		roots []*x509.Certificate
		td    string
		want  string
	}{
		{"another trust domain", data, roots, "other.org", `for trust domain "example.org"`},
		{"a root not in the bundle", data, roots[:1], "example.org", "signature does not verify"},
		{"an altered statement", []byte(strings.Replace(string(data), `"seq": 1`, `"seq": 2`, 1)), roots, "example.org", "signature does not verify"},
		{"not a checkpoint", []byte("hello"), roots, "example.org", "not a checkpoint file"},
		{"too large", make([]byte, adminapi.MaxCheckpointFileSize+1), roots, "example.org", "more than"},
	} {
		if _, _, err := adminapi.ParseCheckpoint(tc.data, tc.roots, tc.td); !errors.Is(err, adminapi.ErrBadCheckpoint) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestAutomaticCheckpoint: a running server keeps a signed checkpoint of the audit head in its file,
// renewed as the log grows; VerifyAudit checks the chain against it by default; a chain that no longer
// holds a checkpoint is never signed (a rewrite cannot be laundered into a new checkpoint), and a file
// that does not verify is reported, not replaced.
func TestAutomaticCheckpoint(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit-checkpoint.json")
	st, authority := openStore(t), newCA(t)
	srv, err := New(Config{Store: st, CA: authority, TrustDomain: testTD, Selectors: testSelectors(), AgentAuth: fixedAgent(agentapi.Caller{AgentID: agentA}),
		AdminAuth: func(context.Context) (string, error) { return "test-admin", nil }, Logger: testLogger(t),
		AuditCheckpointFile: file, AuditCheckpointEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, srv.Run)
	ctx := testCtx(t)
	if err := srv.PublishAuthorities(ctx); err != nil {
		t.Fatal(err)
	}
	stored := func() adminapi.AuditCheckpoint {
		cp, err := srv.Admin.StoredCheckpoint()
		if err != nil || cp == nil {
			return adminapi.AuditCheckpoint{}
		}
		return *cp
	}
	waitHead := func(what string) storage.AuditAnchor {
		t.Helper()
		head, _ := st.AuditHead()
		waitfor.Condition(t, testDeadline, what+": the automatic checkpoint at the audit head", func() bool {
			cp := stored()
			return cp.Seq == head.Seq && cp.HeadHash == head.Hash
		})
		return head
	}
	waitHead("after start")
	if _, err := st.CreateOwner(storage.WithActor(ctx, "test"), storage.Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	head := waitHead("after a write")
	v, err := srv.Admin.VerifyAudit(ctx, &adminv1.VerifyAuditRequest{})
	if err != nil || v.BrokenAt != 0 || v.CheckpointSeq != head.Seq || v.CheckpointFile != file {
		t.Fatalf("verify against the automatic checkpoint: %+v %v", v, err)
	}
	stop()

	// A checkpoint the chain does not hold (as after a rewrite) is never extended.
	forged := &adminapi.AuditCheckpoint{Seq: head.Seq, HeadHash: strings.Repeat("0", 64)}
	if _, err := adminapi.SignCheckpoint(st, authority, time.Now(), forged); !errors.Is(err, storage.ErrAuditBroken) || !strings.Contains(err.Error(), "refusing to sign") {
		t.Fatalf("sign a chain that does not hold the previous checkpoint: %v", err)
	}
	// A file that does not verify is reported, and left alone.
	bad := []byte(strings.Replace(string(mustReadFile(t, file)), `"seq": `, `"seq": 1`, 1))
	if err := os.WriteFile(file, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin.VerifyAudit(ctx, &adminv1.VerifyAuditRequest{}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "remove the file") {
		t.Fatalf("verify with an automatic checkpoint that does not verify: %v", err)
	}
	srv.Admin.RenewCheckpoint()
	if got := mustReadFile(t, file); string(got) != string(bad) {
		t.Fatal("an automatic checkpoint that does not verify was replaced")
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
