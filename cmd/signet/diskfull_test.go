package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testfs"
)

// TestDiskFullAndRestart runs a server whose data dir is on a small tmpfs and fills it: writes and
// healthcheck say the disk is full (not "not the leader"); after kill -9, and after a simulated reboot
// (the state file must be rebuilt), a start on the still-full disk exits 1 saying so, without a panic;
// once space is freed the server starts, has kept everything, and removes the untrusted state copy.
// Mounting needs root: the tests run as root here and on CI.
func TestDiskFullAndRestart(t *testing.T) {
	mnt := testfs.Mount(t, "48m")
	s := newTestServer(t)
	dataDir := filepath.Join(mnt, "data")
	cfg := strings.Replace(string(mustRead(t, s.config)), "data_dir: "+filepath.Join(s.dir, "data"), "data_dir: "+dataDir, 1)
	// This test is about the disk really filling up, below min_free_disk's default of 512 MiB (whose
	// refusals TestHealthReportsDiskNearlyFull and the issuer's tests cover).
	writeFile(t, s.config, cfg+"min_free_disk: 1MiB\n")
	s.start(t)
	s.mustCLI("owner", "add", "alice")

	filler := filepath.Join(mnt, "filler")
	testfs.Fill(t, filler)
	// A large write does not fit in the Raft log: Raft fails it and steps down.
	var imp strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&imp, "- spiffe_id: spiffe://example.org/bulk/%d\n  selectors: [unix:uid:%d]\n  owner: alice\n  purpose: %s\n  parent_id: spiffe://example.org/signet/agent/x\n", i, i, strings.Repeat("p", 200))
	}
	bulk := filepath.Join(t.TempDir(), "bulk.yaml")
	writeFile(t, bulk, imp.String())
	_, stderr, code := s.cli("entry", "import", bulk)
	if code != exitFailure || !strings.Contains(stderr, "disk full") || !strings.Contains(stderr, dataDir) {
		t.Fatalf("a large write on a full disk: exit %d, %s", code, stderr)
	}
	// Small writes may still fit in pages the databases freed earlier; keep writing until one fails.
	for i := 0; ; i++ {
		if _, stderr, code = s.cli("owner", "add", fmt.Sprintf("o%d", i)); code != 0 {
			break
		}
		if i == 2000 {
			t.Fatal("2000 writes succeeded on a full disk")
		}
	}
	for i := 0; i < 3; i++ {
		if !strings.Contains(stderr, "disk full") || !strings.Contains(stderr, dataDir) || strings.Contains(stderr, "leader") {
			t.Fatalf("write %d on a full disk: %s", i, stderr)
		}
		_, stderr, _ = s.cli("owner", "add", fmt.Sprintf("late%d", i))
	}
	if _, stderr, code := runCLI(t, nil, "healthcheck", "--admin-socket", s.adminSocket); code != exitFailure || !strings.Contains(stderr, "disk full") {
		t.Fatalf("healthcheck on a full disk: exit %d, %s", code, stderr)
	}
	s.kill9()

	serverDir := filepath.Join(dataDir, "server")
	startFull := func(what string) {
		t.Helper()
		p := startProc(t, "server", "server", "--config", s.config)
		if code := p.waitExit(60 * time.Second); code != exitFailure || !strings.Contains(p.stderr.String(), "disk full") ||
			strings.Contains(p.stderr.String(), "panic") {
			t.Fatalf("start %s on a full disk: exit %d\nstderr:\n%s", what, code, p.stderr.String())
		}
	}
	startFull("after kill -9")
	// A reboot while the state file was open: it must be rebuilt, and the disk is still full.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(serverDir, "state.db.guard"), `{"boot_id":"a-boot-before","clean":false}`)
	testfs.Fill(t, filler)
	startFull("after a reboot")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	s.mustCLI("owner", "add", "bob")
	owners := decodeJSON[[]ownerView](t, s.mustCLI("owner", "list", "-o", "json"))
	if !slices.ContainsFunc(owners, func(o ownerView) bool { return o.Name == "alice" }) ||
		!slices.ContainsFunc(owners, func(o ownerView) bool { return o.Name == "bob" }) {
		t.Fatalf("owners after the restart: %+v", owners)
	}
	eventually(t, 30*time.Second, "the untrusted state copy to be removed", func() bool {
		_, err := os.Stat(filepath.Join(serverDir, "state.db.untrusted"))
		return errors.Is(err, os.ErrNotExist)
	})
	if _, stderr, code := runCLI(t, nil, "healthcheck", "--admin-socket", s.adminSocket); code != 0 {
		t.Fatalf("healthcheck after freeing space: exit %d, %s", code, stderr)
	}
}
