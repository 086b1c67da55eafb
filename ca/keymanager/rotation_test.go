package keymanager_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/internal/p11list"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// rotSchedule: keys live 10m, SVIDs at most 1m, successors prepared 2m before they activate at half life.
var rotSchedule = rotation.Schedule{TTL: 10 * time.Minute, MaxSVIDTTL: time.Minute, PrepareBefore: 2 * time.Minute}

// adoptFiles are the files of a key store from before keys rotated, as cmd/signet adopts them.
var adoptFiles = []string{ca.X509KeyFile, ca.JWTKeyFile, ca.X509CertFile, ca.JWTKeyIDFile}

// openRotation opens the rotating keys of node in dir, kept by m, on clock.
func openRotation(t *testing.T, dir string, m *keymanager.Manager, node string, clock *testkit.ManualClock) *rotation.Manager {
	t.Helper()
	r, err := rotation.Open(rotation.Config{Dir: dir, Schedule: rotSchedule, Clock: clock.Now, Logger: testkit.Logger(t),
		New: rotation.KeyManagerFactory(td, rotSchedule.TTL, clock.Now, m.SlotKeys(node)), Destroy: m.DestroySlot, AdoptFiles: adoptFiles})
	if err != nil {
		t.Fatalf("rotation.Open: %v", err)
	}
	return r
}

func slotStates(r *rotation.Manager) string {
	var b []string
	for _, s := range r.Slots() {
		b = append(b, s.ID+":"+string(s.State))
	}
	return strings.Join(b, " ")
}

// step advances clock by d and applies the schedule (every slot counts as published); it fails unless the
// slots are then in states want.
func step(t *testing.T, r *rotation.Manager, clock *testkit.ManualClock, d time.Duration, want string) {
	t.Helper()
	clock.Advance(d)
	if _, err := r.Advance(func(rotation.Slot) bool { return true }); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	if got := slotStates(r); got != want {
		t.Fatalf("after %s: slots %s, want %s", d, got, want)
	}
}

// tokenKeys lists the labels of the private keys in SoftHSM2 token label, through the module.
func tokenKeys(t *testing.T, label string) []string {
	t.Helper()
	objs, err := p11list.Objects(softHSMModule, label, testPIN)
	if err != nil {
		t.Fatal(err)
	}
	return p11list.Labels(objs)
}

// slotLabels are the labels of the derived pkcs11 keys of node's slots, sorted as the token lists them.
func slotLabels(node string, slots ...string) []string {
	var out []string
	for _, s := range slots {
		out = append(out, "signet-"+node+"-jwt-"+s, "signet-"+node+"-x509-"+s)
	}
	slices.Sort(out)
	return out
}

// checkSignsAt signs an X.509-SVID and a JWT-SVID with c at now and verifies both: go-spiffe at now
// against the root, go-jose against the JWT key.
func checkSignsAt(t *testing.T, c *ca.CA, now time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: key.Public(), TTL: time.Minute})
	if err != nil {
		t.Fatalf("SignX509SVID: %v", err)
	}
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{c.X509Authority()})
	if id, _, err := x509svid.Verify([]*x509.Certificate{cert}, bundle, x509svid.WithTime(now)); err != nil || id != webID {
		t.Fatalf("x509svid.Verify = %s, %v; want %s", id, err, webID)
	}
	svid, err := c.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: webID, Audience: []string{"reports"}, TTL: time.Minute})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	tok, err := jwt.ParseSigned(svid.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	if err := tok.Claims(c.JWTPublicKey(), &claims); err != nil || claims.Subject != webID.String() {
		t.Fatalf("JWT-SVID: claims %+v, %v", claims, err)
	}
}

// TestPKCS11Rotation walks two rotations and a pruning with an injected clock on a real SoftHSM2 token:
// every slot's keys are generated in the token under names of their own, the active slot signs SVIDs
// that verify, no key file is ever on disk, the pruned slot's keys are destroyed in the token, and a
// restart finds the live slots' keys again.
func TestPKCS11Rotation(t *testing.T) {
	newToken(t, "signet-rot")
	m := openPKCS11(t, "signet-rot")
	clock := testkit.NewManualClock()
	dir := filepath.Join(t.TempDir(), "ca")
	r := openRotation(t, dir, m, "node-a", clock)
	if got := slotStates(r); got != "1:active" {
		t.Fatalf("first start: %s", got)
	}
	if got := tokenKeys(t, "signet-rot"); !slices.Equal(got, slotLabels("node-a", "1")) {
		t.Fatalf("token keys at start: %q", got)
	}
	checkSignsAt(t, r.Active(), clock.Now())

	step(t, r, clock, 3*time.Minute, "1:active 2:prepared")
	if got := tokenKeys(t, "signet-rot"); !slices.Equal(got, slotLabels("node-a", "1", "2")) {
		t.Fatalf("token keys with a successor prepared: %q", got)
	}
	step(t, r, clock, 2*time.Minute, "1:old 2:active")
	checkSignsAt(t, r.Active(), clock.Now())
	step(t, r, clock, 3*time.Minute, "1:old 2:active 3:prepared")
	step(t, r, clock, 2*time.Minute, "1:pruned 2:old 3:active")
	checkSignsAt(t, r.Active(), clock.Now())
	if got := tokenKeys(t, "signet-rot"); !slices.Equal(got, slotLabels("node-a", "2", "3")) {
		t.Fatalf("token keys after slot 1 was pruned: %q, want slot 1's destroyed", got)
	}
	testkit.NoPrivateKeyFiles(t, dir)
	for _, s := range []string{"2", "3"} {
		names := testkit.DirNames(t, filepath.Join(dir, "slot-"+s))
		if !slices.Equal(names, []string{ca.JWTKeyIDFile, keymanager.SlotKeysFile, ca.X509CertFile}) {
			t.Fatalf("slot %s's directory holds %q", s, names)
		}
	}
	active := r.Active()

	// A restart: a new session on the token loads the live slots' keys (rotation.Open checks they are
	// the keys slots.json records).
	m.Close()
	r2 := openRotation(t, dir, openPKCS11(t, "signet-rot"), "node-a", clock)
	if got := slotStates(r2); got != "1:pruned 2:old 3:active" {
		t.Fatalf("after a restart: %s", got)
	}
	if !r2.Active().X509Authority().Equal(active.X509Authority()) || r2.Active().JWTKeyID() != active.JWTKeyID() {
		t.Fatal("after a restart another key is active")
	}
	checkSignsAt(t, r2.Active(), clock.Now())
}

// Two nodes sharing one token name their slots' keys apart: each rotates and prunes only its own.
func TestPKCS11RotationNodesShareAToken(t *testing.T) {
	newToken(t, "signet-shared")
	m := openPKCS11(t, "signet-shared")
	clock := testkit.NewManualClock()
	a := openRotation(t, filepath.Join(t.TempDir(), "a"), m, "node-a", clock)
	b := openRotation(t, filepath.Join(t.TempDir(), "b"), m, "node/b", clock) // '/' is no label character
	if a.Active().X509Authority().PublicKey.(*ecdsa.PublicKey).Equal(b.Active().X509Authority().PublicKey) {
		t.Fatal("two nodes share a key")
	}
	step(t, a, clock, 5*time.Minute, "1:active 2:prepared")
	want := append(slotLabels("node-a", "1", "2"), slotLabels("node_b", "1")...)
	slices.Sort(want)
	if got := tokenKeys(t, "signet-shared"); !slices.Equal(got, want) {
		t.Fatalf("token keys: %q, want %q", got, want)
	}
}

// A node whose keys lived in the token before keys rotated (one pair under the configured names, the
// certificate and kid directly in the CA directory) keeps them: they become slot 1, unrenamed, and its
// successor gets keys of its own.
func TestPKCS11RotationAdoptsTheSingleKeyPair(t *testing.T) {
	newToken(t, "signet-adopt")
	m := openPKCS11(t, "signet-adopt")
	dir := filepath.Join(t.TempDir(), "ca")
	before := newCA(t, dir, m)
	legacy := []string{"signet-jwt", "signet-x509-ca"} // DefaultPKCS11JWTKey, DefaultPKCS11X509Key
	if got := tokenKeys(t, "signet-adopt"); !slices.Equal(got, legacy) {
		t.Fatalf("token keys before: %q", got)
	}

	clock := testkit.NewManualClock()
	r := openRotation(t, dir, m, "node-a", clock)
	if got := slotStates(r); got != "1:active" {
		t.Fatalf("after the upgrade: %s", got)
	}
	if !r.Active().X509Authority().Equal(before.X509Authority()) || r.Active().JWTKeyID() != before.JWTKeyID() {
		t.Fatal("the adopted slot is not the node's key pair")
	}
	if got := tokenKeys(t, "signet-adopt"); !slices.Equal(got, legacy) {
		t.Fatalf("token keys after the upgrade: %q, want the same two", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "slot-1", keymanager.SlotKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	var names map[string]string
	if err := json.Unmarshal(b, &names); err != nil || names["x509_key"] != keymanager.DefaultPKCS11X509Key || names["jwt_key"] != keymanager.DefaultPKCS11JWTKey {
		t.Fatalf("slot 1 records %s (%v), want the default key names", b, err)
	}

	for range 2 { // prepare, then activate (published)
		if _, err := r.Rotate(func(rotation.Slot) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	if got := slotStates(r); got != "1:old 2:active" {
		t.Fatalf("after a rotation: %s", got)
	}
	checkSignsAt(t, r.Active(), clock.Now())
	want := append(slices.Clone(legacy), slotLabels("node-a", "2")...)
	slices.Sort(want)
	if got := tokenKeys(t, "signet-adopt"); !slices.Equal(got, want) {
		t.Fatalf("token keys after a rotation: %q, want %q", got, want)
	}
}

// softkms: a key store from before keys rotated is adopted (its key files move into slot 1), every later
// slot's key files are in its own directory (0600), and pruning deletes them.
func TestSoftKMSRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := keymanager.Open(t.Context(), keymanager.Config{Kind: keymanager.SoftKMS, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	before := testkit.NewCAIn(t, dir, td, rotSchedule.TTL, m)

	clock := testkit.NewManualClock()
	r := openRotation(t, dir, m, "node-a", clock)
	if !r.Active().X509Authority().Equal(before.X509Authority()) || r.Active().JWTKeyID() != before.JWTKeyID() {
		t.Fatal("the adopted slot is not the node's key pair")
	}
	slot1 := filepath.Join(dir, "slot-1")
	want := []string{ca.JWTKeyFile, ca.JWTKeyIDFile, keymanager.SlotKeysFile, ca.X509CertFile, ca.X509KeyFile}
	if names := testkit.DirNames(t, slot1); !slices.Equal(names, want) {
		t.Fatalf("slot 1 holds %q, want %q", names, want)
	}
	// The adopted key's schedule runs from its root's creation.
	step(t, r, clock, 3*time.Minute, "1:active 2:prepared")
	step(t, r, clock, 2*time.Minute, "1:old 2:active")
	if names := testkit.DirNames(t, filepath.Join(dir, "slot-2")); !slices.Equal(names, want) {
		t.Fatalf("slot 2 holds %q, want %q", names, want)
	}
	for _, f := range []string{ca.X509KeyFile, ca.JWTKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, "slot-2", f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("slot 2's %s: %v %v, want mode 0600", f, err, fi)
		}
	}
	checkSignsAt(t, r.Active(), clock.Now())
	step(t, r, clock, 3*time.Minute, "1:old 2:active 3:prepared")
	step(t, r, clock, 2*time.Minute, "1:pruned 2:old 3:active")
	if _, err := os.Stat(slot1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pruned slot 1: %v, want its directory and key files gone", err)
	}
}

// A slot whose record of its key names is damaged stops the node, naming the file and the fix; no key is
// created in its place.
func TestSlotKeysFileDamaged(t *testing.T) {
	newToken(t, "signet-damaged")
	m := openPKCS11(t, "signet-damaged")
	dir := filepath.Join(t.TempDir(), "ca")
	openRotation(t, dir, m, "node-a", testkit.NewManualClock())
	path := filepath.Join(dir, "slot-1", keymanager.SlotKeysFile)
	for _, content := range []string{`{"x509_key": "pkcs11:object=x", "jwt_key": "pkcs11:id=01;object=j"}`, `{"x509_key": ""}`, `not json`} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := rotation.Open(rotation.Config{Dir: dir, Schedule: rotSchedule, Logger: testkit.Logger(t),
			New: rotation.KeyManagerFactory(td, rotSchedule.TTL, nil, m.SlotKeys("node-a"))})
		wantErr(t, err, path)
	}
	if got := tokenKeys(t, "signet-damaged"); !slices.Equal(got, slotLabels("node-a", "1")) {
		t.Fatalf("token keys: %q", got)
	}
}
