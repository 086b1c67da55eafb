package server

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/storage"
)

// TestSignCheckpoint: an empty log is not checkpointed; a checkpoint verifies against its signer's root
// for its trust domain only, and is refused when altered or oversized.
func TestSignCheckpoint(t *testing.T) {
	st, authority, other := openStore(t), newCA(t), newCA(t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if _, err := SignCheckpoint(st, authority, now); !errors.Is(err, storage.ErrAuditEmpty) {
		t.Fatalf("checkpoint of an empty log: %v", err)
	}
	if _, err := st.CreateOwner(storage.WithActor(testCtx(t), "test"), storage.Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	f, err := SignCheckpoint(st, authority, now)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.MarshalIndent(f, "", "  ")
	roots := []*x509.Certificate{other.X509Authority(), authority.X509Authority()}
	cp, root, err := ParseCheckpoint(data, roots, "example.org")
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
		{"too large", make([]byte, MaxCheckpointFileSize+1), roots, "example.org", "more than"},
	} {
		if _, _, err := ParseCheckpoint(tc.data, tc.roots, tc.td); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
