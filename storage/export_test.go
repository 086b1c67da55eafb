package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

// TestExport: an export describes its body (applied index, schema version, size, digest), stays one
// consistent read while writes go on, and is refused once the store is closed.
func TestExport(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	exp, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	// A write after the export began is not in it.
	if _, err := s.CreateOwner(ctx, Owner{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	if _, err := exp.WriteTo(&body); err != nil {
		t.Fatal(err)
	}
	if err := exp.Close(); err != nil {
		t.Fatal(err)
	}
	info := exp.Info
	if info.Size != int64(body.Len()) || info.SHA256 != sha256.Sum256(body.Bytes()) || info.AppliedIndex == 0 || info.SchemaVersion != uint64(CommandVersion) {
		t.Fatalf("export info %+v does not describe its %d-byte body", info, body.Len())
	}
	if info.AppliedIndex >= s.appliedIdx.Load() {
		t.Fatalf("export at index %d, but the write after it is at %d: not one consistent read", info.AppliedIndex, s.appliedIdx.Load())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Export(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Export after Close: %v, want ErrClosed", err)
	}
}
