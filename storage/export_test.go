package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
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
	if _, err := s.SetPolicy(ctx, nil, PolicyLimits{}, 0, "a command of version 3"); err != nil {
		t.Fatal(err)
	}
	// A command of the newest version: a ledger record carrying its signer.
	if err := s.AppendLedger(ctx, []Issuance{{ID: "01", Kind: KindX509SVID, ExpiresAt: t2, SignedBy: "aa01"}}); err != nil {
		t.Fatal(err)
	}
	writeNewestCommand(t, s, "alice")
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

// TestImport: an export imported into another store replaces its state, keeping that store's recorded
// command versions (so it can still propose) and marking the restore; a body whose digest or size does
// not match its header, or a header of a newer schema, is refused with nothing changed.
func TestImport(t *testing.T) {
	src := openTestStore(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := src.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	exp, err := src.Export()
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	if _, err := exp.WriteTo(&body); err != nil {
		t.Fatal(err)
	}
	exp.Close()
	info := exp.Info

	dst := openTestStore(t, t.TempDir())
	hasAlice := func() bool { _, err := dst.Owner("alice"); return err == nil }
	damaged := bytes.Clone(body.Bytes())
	damaged[len(damaged)/2] ^= 1
	tooNew := info
	tooNew.SchemaVersion = uint64(CommandVersion) + 1
	for name, c := range map[string]struct {
		body []byte
		info ExportInfo
		want error
		msg  string
	}{
		"digest": {damaged, info, ErrInvalid, "digest mismatch"},
		"size":   {body.Bytes()[:body.Len()-1], info, ErrInvalid, "the header says"},
		"schema": {body.Bytes(), tooNew, ErrStateTooNew, "newer signet"},
	} {
		_, err := dst.Import(ctx, bytes.NewReader(c.body), c.info)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "nothing changed") {
			t.Fatalf("%s: Import: %v, want %v naming %q", name, err, c.want, c.msg)
		}
		if hasAlice() {
			t.Fatalf("%s: the refused import changed the state", name)
		}
	}

	if _, err := dst.Import(ctx, bytes.NewReader(body.Bytes()), info); err != nil {
		t.Fatal(err)
	}
	if !hasAlice() {
		t.Fatal("the imported owner is missing")
	}
	if rid, err := dst.RestoreID(); err != nil || rid != fmt.Sprintf("%x", info.SHA256) {
		t.Fatalf("RestoreID %q, %v: want the body's digest", rid, err)
	}
	if _, err := dst.CreateOwner(ctx, Owner{Name: "bob"}); err != nil {
		t.Fatalf("a write after the import: %v", err)
	}
}
