package rotation_test

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// schedule: keys live 10m, SVIDs at most 1m, successors prepared 2m before they activate at half life.
var schedule = rotation.Schedule{TTL: 10 * time.Minute, MaxSVIDTTL: time.Minute, PrepareBefore: 2 * time.Minute}

func open(t *testing.T, dir string, clock *testkit.ManualClock) *rotation.Manager {
	t.Helper()
	m, err := rotation.Open(rotation.Config{Dir: dir, Schedule: schedule, New: rotation.DiskFactory(td, schedule.TTL, clock.Now),
		Clock: clock.Now, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func states(m *rotation.Manager) string {
	var b []string
	for _, s := range m.Slots() {
		b = append(b, s.ID+":"+string(s.State))
	}
	return strings.Join(b, " ")
}

func always(rotation.Slot) bool { return true }

func advance(t *testing.T, m *rotation.Manager, published func(rotation.Slot) bool) bool {
	t.Helper()
	changed, err := m.Advance(published)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

// TestLifecycle walks two rotations with an injected clock: prepared at half life minus PrepareBefore,
// active at half life, old until NotAfter, then pruned with its key files deleted; signing uses the
// active slot throughout and every SVID's root is a live slot.
func TestLifecycle(t *testing.T) {
	clock := testkit.NewManualClock()
	dir := t.TempDir()
	m := open(t, dir, clock)
	if got := states(m); got != "1:active" {
		t.Fatalf("first start: %s, want 1:active", got)
	}
	first := m.Slots()[0]
	if advance(t, m, always) {
		t.Fatal("Advance at start changed something")
	}
	// Half life (5m) minus PrepareBefore (2m): the successor is prepared.
	if next := m.NextEvent(); !next.Equal(first.CreatedAt.Add(3 * time.Minute)) {
		t.Fatalf("NextEvent %s, want %s", next, first.CreatedAt.Add(3*time.Minute))
	}
	clock.Advance(3*time.Minute - time.Second)
	if advance(t, m, always) {
		t.Fatal("prepared a successor before half life minus PrepareBefore")
	}
	clock.Advance(time.Second)
	if !advance(t, m, always) || states(m) != "1:active 2:prepared" {
		t.Fatalf("at half life minus PrepareBefore: %s", states(m))
	}
	if m.Active() != first.CA {
		t.Fatal("a prepared slot signs")
	}
	second := m.Slots()[1]
	if !second.ActivateAt.Equal(first.CreatedAt.Add(5 * time.Minute)) {
		t.Fatalf("successor activates at %s, want half life %s", second.ActivateAt, first.CreatedAt.Add(5*time.Minute))
	}
	// At half life it is not activated until it is published.
	clock.Advance(2 * time.Minute)
	if advance(t, m, func(rotation.Slot) bool { return false }) {
		t.Fatal("activated a slot not yet in the bundle")
	}
	if !advance(t, m, always) || states(m) != "1:old 2:active" {
		t.Fatalf("at half life: %s", states(m))
	}
	if m.Active() != second.CA {
		t.Fatal("the new active slot does not sign")
	}
	// The old key can sign nothing past its NotAfter, so nothing it signed outlives its pruning.
	if rem := first.CA.RemainingLife(); rem < schedule.MaxSVIDTTL {
		t.Fatalf("old key's remaining life %s is below the longest SVID TTL", rem)
	}
	// The second rotation (at the second key's half life), then the first key's pruning at its NotAfter.
	clock.Advance(3 * time.Minute)
	advance(t, m, always)
	if states(m) != "1:old 2:active 3:prepared" {
		t.Fatalf("second preparation: %s", states(m))
	}
	clock.Advance(2 * time.Minute)
	advance(t, m, always)
	if states(m) != "1:pruned 2:old 3:active" {
		t.Fatalf("second activation and first pruning: %s", states(m))
	}
	if _, err := os.Stat(filepath.Join(dir, "slot-1")); !os.IsNotExist(err) {
		t.Fatalf("pruned slot's key files remain: %v", err)
	}
	for _, name := range []string{"slot-2", "slot-3", "slots.json"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o700)
		if !fi.IsDir() {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %o, want %o", name, fi.Mode().Perm(), want)
		}
	}

	// A restart loads the same slots and signs with the same key.
	active := m.Active().X509Authority().Raw
	m2 := open(t, dir, clock)
	if states(m2) != states(m) || string(m2.Active().X509Authority().Raw) != string(active) {
		t.Fatalf("after restart: %s (active changed: %v), want %s", states(m2), string(m2.Active().X509Authority().Raw) != string(active), states(m))
	}
	// An SVID the active slot signs chains to it.
	svid, err := m2.Active().SignX509SVID(ca.X509SVIDParams{SPIFFEID: spiffeid.RequireFromPath(td, "/w"), PublicKey: testkit.P256(t).Public(), TTL: schedule.MaxSVIDTTL})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(m2.Active().X509Authority())
	if _, err := svid.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: clock.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestRotateEarly: Rotate prepares a successor at once, and activates it once published.
func TestRotateEarly(t *testing.T) {
	clock := testkit.NewManualClock()
	dir := t.TempDir()
	m := open(t, dir, clock)
	if s, err := m.Rotate(always); err != nil || s != nil {
		t.Fatalf("first Rotate: %v, %v; want a preparation only", s, err)
	}
	if states(m) != "1:active 2:prepared" {
		t.Fatalf("after first Rotate: %s", states(m))
	}
	if s, err := m.Rotate(func(rotation.Slot) bool { return false }); err != nil || s != nil {
		t.Fatalf("Rotate of an unpublished slot: %v, %v; want nothing", s, err)
	}
	s, err := m.Rotate(always)
	if err != nil || s == nil || s.ID != "2" {
		t.Fatalf("second Rotate: %v, %v; want slot 2 activated", s, err)
	}
	if states(m) != "1:old 2:active" {
		t.Fatalf("after second Rotate: %s", states(m))
	}
	// The rotation request handled is kept across a restart.
	if err := m.SetHandledRequest(5); err != nil {
		t.Fatal(err)
	}
	if got := open(t, dir, clock).HandledRequest(); got != 5 {
		t.Fatalf("handled request after a restart: %d, want 5", got)
	}
}

// TestLateStart: a node down past its successor's preparation prepares it at once and still keeps it in
// the bundle PrepareBefore before activating it.
func TestLateStart(t *testing.T) {
	clock := testkit.NewManualClock()
	dir := t.TempDir()
	open(t, dir, clock)
	clock.Advance(4 * time.Minute)
	m := open(t, dir, clock)
	advance(t, m, always)
	s := m.Slots()[1]
	if want := clock.Now().UTC().Truncate(time.Second).Add(schedule.PrepareBefore); !s.ActivateAt.Equal(want) {
		t.Fatalf("late successor activates at %s, want %s", s.ActivateAt, want)
	}
}

// TestPrunedBounded: the metadata keeps at most MaxPrunedKept pruned slots however many rotations pass.
func TestPrunedBounded(t *testing.T) {
	clock := testkit.NewManualClock()
	m := open(t, t.TempDir(), clock)
	for range 12 * rotation.MaxPrunedKept {
		clock.Advance(time.Minute)
		advance(t, m, always)
	}
	pruned := 0
	for _, s := range m.Slots() {
		if s.State == rotation.Pruned {
			pruned++
		}
	}
	if pruned != rotation.MaxPrunedKept {
		t.Fatalf("%d pruned slots kept (%s), want %d", pruned, states(m), rotation.MaxPrunedKept)
	}
}

func TestScheduleValidate(t *testing.T) {
	for _, tc := range []struct {
		s    rotation.Schedule
		want string
	}{
		{rotation.Schedule{TTL: time.Hour, MaxSVIDTTL: 10 * time.Minute, PrepareBefore: 5 * time.Minute}, "ca.rotation.prepare_before: 5m0s is shorter than the longest SVID TTL 10m0s"},
		{rotation.Schedule{TTL: time.Hour, MaxSVIDTTL: 10 * time.Minute, PrepareBefore: 30 * time.Minute}, "ca.rotation.prepare_before: 30m0s must be shorter than half of ca.ttl"},
		{rotation.Schedule{TTL: time.Minute}, "ca.ttl: 1m0s: at least 2m0s"},
	} {
		err := tc.s.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
	def := rotation.Schedule{}.WithDefaults()
	if err := def.Validate(); err != nil || def.MaxSVIDTTL != rotation.DefaultMaxSVIDTTL || def.PrepareBefore != def.MaxSVIDTTL {
		t.Fatalf("defaults %+v: %v", def, err)
	}
	if err := (rotation.Schedule{TTL: time.Hour}).WithDefaults().Validate(); err != nil {
		t.Fatalf("ca.ttl 1h with defaults: %v", err)
	}
}

// TestOpenRefusesBadMetadata: a damaged slots.json is an error naming the file, and nothing is changed.
func TestOpenRefusesBadMetadata(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{`{"version":1,"next_id":1,"slots":[{"id":"1","state":"weird"}]}`, `state "weird"`},
		{`{"version":2}`, "version 2"},
		{`{"version":1,"next_id":1,"slots":[{"id":"1","state":"pruned"},{"id":"1","state":"pruned"}]}`, `id "1"`},
		{`{"version":1,"next_id":1,"slots":[{"id":"1","state":"old","x509_id":"ab","jwt_key_id":"k","not_after":"2099-01-01T00:00:00Z"}]}`, "no active slot"},
		{`{"version":1,"next_id":1,"slots":[{"id":"1","state":"active","x509_id":"ab","jwt_key_id":"k","not_after":"2099-01-01T00:00:00Z"}]}`, "its key directory"},
		{`{"version":1,"next_id":1,"slots":[{"id":"1","state":"active","x509_id":"ab","jwt_key_id":"k"}]}`, "not_after"},
	} {
		testkit.WriteFileMode(t, dir, "slots.json", tc.content, 0o600)
		_, err := rotation.Open(rotation.Config{Dir: dir, Schedule: schedule, New: rotation.DiskFactory(td, schedule.TTL, nil)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "slots.json") {
			t.Errorf("%s: %v, want %q naming slots.json", tc.content, err, tc.want)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "slots.json")); string(b) != tc.content {
			t.Errorf("%s: the file was changed", tc.content)
		}
	}
}

// TestAdoptExistingKeys: a node that kept its key in the CA directory before keys rotated keeps signing
// with it: the files move into the first slot, which is active, and its schedule runs from the key's
// creation.
func TestAdoptExistingKeys(t *testing.T) {
	clock := testkit.NewManualClock()
	dir := t.TempDir()
	x, _, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: dir, TrustDomain: td, TTL: schedule.TTL, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Minute) // past its successor's preparation
	files := []string{ca.X509KeyFile, ca.JWTKeyFile, ca.X509CertFile, ca.JWTKeyIDFile}
	m, err := rotation.Open(rotation.Config{Dir: dir, Schedule: schedule, New: rotation.DiskFactory(td, schedule.TTL, clock.Now),
		AdoptFiles: files, Clock: clock.Now, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if states(m) != "1:active" || !m.Active().X509Authority().Equal(x.Certificate) {
		t.Fatalf("after adoption: %s, same root: %v", states(m), m.Active().X509Authority().Equal(x.Certificate))
	}
	for _, name := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s is still in the CA directory: %v", name, err)
		}
	}
	advance(t, m, always)
	if states(m) != "1:active 2:prepared" {
		t.Fatalf("the adopted key's successor is not prepared by its own schedule: %s", states(m))
	}
}

// TestRestartAfterTheActiveKeyExpired: a node down past its active key's expiry starts anyway: the
// expired key is pruned, and its prepared successor (already in the bundle) or, without one, a new key
// signs at once.
func TestRestartAfterTheActiveKeyExpired(t *testing.T) {
	t.Run("with a prepared successor", func(t *testing.T) {
		clock := testkit.NewManualClock()
		dir := t.TempDir()
		m := open(t, dir, clock)
		clock.Advance(3 * time.Minute)
		advance(t, m, always)          // slot 2 prepared, until 13m
		clock.Advance(8 * time.Minute) // 11m: slot 1 expired at 10m
		m = open(t, dir, clock)
		if states(m) != "1:pruned 2:active" || m.Active().RemainingLife() <= 0 {
			t.Fatalf("after the restart: %s", states(m))
		}
	})
	t.Run("without one", func(t *testing.T) {
		clock := testkit.NewManualClock()
		dir := t.TempDir()
		open(t, dir, clock)
		clock.Advance(11 * time.Minute)
		m := open(t, dir, clock)
		if states(m) != "1:pruned 2:active" || m.Active().RemainingLife() < schedule.TTL-time.Minute {
			t.Fatalf("after the restart: %s", states(m))
		}
		if _, err := os.Stat(filepath.Join(dir, "slot-1")); !os.IsNotExist(err) {
			t.Fatalf("the expired key's files remain: %v", err)
		}
	})
}

// TestRevoke: revoking the active key activates a new slot at once (no prepare period), prunes the
// revoked slot with its key files and marks it revoked, kept across a restart; the key is found by its
// X.509 ID, its root's SKI or its kid; a prepared key is revoked without touching the active one; an
// unknown or already revoked key is ErrUnknownKey.
func TestRevoke(t *testing.T) {
	clock := testkit.NewManualClock()
	dir := t.TempDir()
	m := open(t, dir, clock)
	first := m.Slots()[0]
	if _, _, err := m.Revoke("nosuchkey"); !errors.Is(err, rotation.ErrUnknownKey) {
		t.Fatalf("revoking an unknown key: %v", err)
	}
	act, rev, err := m.Revoke(first.CA.X509KeyID()) // the SKI, as the ledger and bundle show --format keys print it
	if err != nil || act == nil || rev.ID != first.ID || !rev.Revoked || rev.State != rotation.Pruned {
		t.Fatalf("revoke the active key: activated %+v, revoked %+v, %v", act, rev, err)
	}
	if states(m) != "1:pruned 2:active" || m.Active() != act.CA || !act.ActivateAt.Equal(clock.Now().UTC().Truncate(time.Second)) {
		t.Fatalf("after revoking the active key: %s", states(m))
	}
	if _, err := os.Stat(filepath.Join(dir, "slot-1")); !os.IsNotExist(err) {
		t.Fatalf("the revoked slot's key files: %v, want removed", err)
	}
	if _, _, err := m.Revoke(first.JWTKeyID); !errors.Is(err, rotation.ErrUnknownKey) {
		t.Fatalf("revoking the revoked slot's other key: %v", err)
	}
	// A prepared successor revoked: the active key stays.
	clock.Advance(3 * time.Minute)
	advance(t, m, always)
	prepared := m.Slots()[2]
	if prepared.State != rotation.Prepared {
		t.Fatalf("slots %s: want a prepared successor", states(m))
	}
	if act, rev, err := m.Revoke(prepared.JWTKeyID); err != nil || act != nil || rev.ID != prepared.ID {
		t.Fatalf("revoke the prepared key: %+v, %+v, %v", act, rev, err)
	}
	m2 := open(t, dir, clock)
	if got := states(m2); got != "1:pruned 2:active 3:pruned" || !m2.Slots()[0].Revoked || !m2.Slots()[2].Revoked || m2.Slots()[1].Revoked {
		t.Fatalf("after a restart: %s, %+v", got, m2.Slots())
	}
}

// Active never waits for a rotation in progress: while a successor's key is being made (in an HSM that
// takes milliseconds, and the manager's lock is held), the active key still signs.
func TestActiveDuringPreparation(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	disk := rotation.DiskFactory(td, schedule.TTL, nil)
	var block atomic.Bool
	m, err := rotation.Open(rotation.Config{Dir: t.TempDir(), Schedule: schedule, Logger: testkit.Logger(t),
		New: func(slot, dir string) (*ca.CA, error) {
			if block.Load() {
				close(entered)
				<-release
			}
			return disk(slot, dir)
		}})
	if err != nil {
		t.Fatal(err)
	}
	first := m.Active()
	block.Store(true)
	rotated := make(chan error, 1)
	go func() { _, err := m.Rotate(always); rotated <- err }()
	defer func() {
		close(release)
		if err := <-rotated; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-entered:
	case <-time.After(testkit.Deadline):
		t.Fatal("Rotate did not make a successor")
	}
	got := make(chan *ca.CA, 1)
	go func() { got <- m.Active() }()
	select {
	case c := <-got:
		if c != first {
			t.Fatal("Active changed while the successor was only being made")
		}
	case <-time.After(testkit.Deadline):
		t.Fatal("Active waited for the successor's key to be made")
	}
}
