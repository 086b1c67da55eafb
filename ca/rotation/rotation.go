// Package rotation manages the set of CA keys of one server node and rotates them on a Schedule without
// an outage. Each key is a slot: one ca.CA (an X.509 root and a JWT signing key) made by a Factory in a
// directory of its own, moving through the states prepared → active → old → pruned. The node signs with
// the active slot; its trust bundle must carry every prepared, active and old slot (the caller publishes
// them: this package knows nothing of Raft). Slot metadata is kept in Dir/slots.json (0600, Dir 0700).
//
//	m, err := rotation.Open(rotation.Config{Dir: dir, Schedule: s, New: factory})
//	for {
//		publish(m.Slots())                 // every live slot into the bundle
//		m.Advance(isPublished)             // prepare, activate (once published), prune
//		sleep until m.NextEvent()
//	}
package rotation

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/fsutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// State is where a slot is in its life.
type State string

// Slot states, in order.
const (
	// Prepared: in the bundle, signs nothing yet.
	Prepared State = "prepared"
	// Active: signs every SVID of the node. Exactly one slot is active.
	Active State = "active"
	// Old: replaced by a successor, still in the bundle until its NotAfter.
	Old State = "old"
	// Pruned: expired, out of the bundle, key files deleted (keys in an HSM or KMS destroyed: Config.Destroy).
	// Kept in the metadata for status only.
	Pruned State = "pruned"
)

// MaxPrunedKept is how many pruned slots the metadata remembers (for status); older ones are forgotten,
// so the file stays bounded however long the node runs.
const MaxPrunedKept = 8

// Factory loads the CA of slot (its ID, "1", "2", …) whose files are in dir, creating its keys on first
// use (ca.LoadOrCreate with the schedule's TTL: DiskFactory, or KeyManagerFactory with
// keymanager.Manager.SlotKeys for keys in an HSM or KMS, named per slot). dir exists, mode 0700.
type Factory func(slot, dir string) (*ca.CA, error)

// Destroyer deletes the keys of a pruned slot that live outside dir (in an HSM or KMS); dir itself is
// removed after it returns.
type Destroyer func(slot, dir string) error

// Config configures Open.
type Config struct {
	// Dir holds slots.json and one subdirectory per slot. Created 0700 if missing.
	Dir      string
	Schedule Schedule
	New      Factory
	// Destroy, if set, deletes a pruned slot's keys kept outside its directory (keymanager.Manager's
	// DestroySlot); nil when every key is a file in the slot's directory. A failure is logged: the slot is
	// pruned all the same (out of the bundle), its keys left for the operator to delete.
	Destroy Destroyer
	// AdoptFiles, on a first start (no slots.json), are files in Dir of a key store kept before keys
	// rotated (ca.X509KeyFile, …, in the order to move them: keys first): if the first exists, they are
	// moved into the first slot's directory, and that slot, the node's key until now, stays active.
	AdoptFiles []string
	Clock      func() time.Time // nil means time.Now
	Logger     *slog.Logger     // nil means slog.Default()
}

// Slot is one key of the node as the metadata records it.
type Slot struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// CreatedAt is when the slot was prepared; ActivateAt when it becomes (or became) active;
	// OldSince when a successor replaced it; PrunedAt when it was pruned.
	CreatedAt  time.Time `json:"created_at"`
	ActivateAt time.Time `json:"activate_at"`
	OldSince   time.Time `json:"old_since,omitzero"`
	PrunedAt   time.Time `json:"pruned_at,omitzero"`
	// Revoked: pruned early because the key was revoked after a compromise (Revoke).
	Revoked bool `json:"revoked,omitempty"`
	// NotAfter is the key's expiry (the root's NotAfter; the JWT key's too).
	NotAfter time.Time `json:"not_after"`
	// X509ID is the hex SHA-256 of the root certificate (the bundle's ID of it); JWTKeyID the kid.
	X509ID   string `json:"x509_id"`
	JWTKeyID string `json:"jwt_key_id"`

	// CA is the slot's loaded CA; nil once pruned.
	CA *ca.CA `json:"-"`
}

// Manager holds a node's slots. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	slots  []*Slot // in creation order
	nextID int
	// active is read on every issuance without mu, so signing never waits for a rotation that holds mu
	// while it makes a key (in an HSM, tens of milliseconds).
	active atomic.Pointer[ca.CA]
	// handled is the Seq of the last rotation request handled (HandledRequest).
	handled uint64
}

// Open validates cfg, loads the slots recorded in cfg.Dir (and their CAs) and, on a first start, creates
// the first slot and makes it active at once (nothing was signed before it). Errors name the file.
func Open(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("rotation: config: Dir is required")
	}
	if cfg.New == nil {
		return nil, errors.New("rotation: config: New (the CA factory) is required")
	}
	cfg.Schedule = cfg.Schedule.WithDefaults()
	if err := cfg.Schedule.Validate(); err != nil {
		return nil, fmt.Errorf("rotation: config: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("rotation: key directory %s: %w", cfg.Dir, err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("rotation: key directory %s: %w", cfg.Dir, err)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "ca-rotation")}
	meta, err := readMeta(cfg.Dir)
	if err != nil {
		return nil, err
	}
	m.slots, m.nextID, m.handled = meta.Slots, meta.NextID, meta.HandledRequest
	now := m.now()
	changed := false
	for _, s := range slices.Clone(m.slots) {
		if s.State == Pruned {
			continue
		}
		if !now.Before(s.NotAfter) {
			// The node was down past this key's expiry: nothing it signed is valid any more.
			if s.State == Active {
				m.log.Warn("the active CA key expired while the node was down; a successor signs at once", "slot", s.ID, "not_after", s.NotAfter.Format(time.RFC3339))
			}
			m.pruneLocked(s, now)
			changed = true
			continue
		}
		if _, err := os.Stat(m.slotDir(s.ID)); err != nil {
			return nil, fmt.Errorf("rotation: slot %s (%s) in %s: its key directory: %w", s.ID, s.State, filepath.Join(cfg.Dir, metaFile), err)
		}
		if s.CA, err = m.load(s.ID); err != nil {
			return nil, fmt.Errorf("rotation: slot %s (%s): %w", s.ID, s.State, err)
		}
		if sum := sha256.Sum256(s.CA.X509Authority().Raw); hex.EncodeToString(sum[:]) != s.X509ID || s.CA.JWTKeyID() != s.JWTKeyID {
			return nil, fmt.Errorf("rotation: slot %s (%s): the keys in %s are not the ones %s records", s.ID, s.State, m.slotDir(s.ID), filepath.Join(cfg.Dir, metaFile))
		}
		if s.State == Active {
			m.active.Store(s.CA)
		}
	}
	if m.active.Load() == nil && m.preparedLocked() != nil {
		// The active key expired while the node was down: its prepared successor, already in the
		// bundle, signs at once.
		m.activateLocked(m.preparedLocked(), now)
		changed = true
	}
	if m.active.Load() == nil {
		adopted, err := m.adopt()
		if err != nil {
			return nil, err
		}
		s, err := m.prepareLocked(now)
		if err != nil {
			return nil, err
		}
		if adopted {
			// The schedule runs from the adopted key's creation (its NotBefore is backdated by ca.Backdate).
			s.CreatedAt = s.CA.X509Authority().NotBefore.Add(ca.Backdate).UTC()
		}
		s.ActivateAt = now
		m.activateLocked(s, now)
		changed = true
	}
	if changed {
		if err := m.saveLocked(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Active returns the CA of the active slot: the one to sign with. It never waits for a rotation in
// progress.
func (m *Manager) Active() *ca.CA { return m.active.Load() }

// Schedule returns the schedule in use (with defaults).
func (m *Manager) Schedule() Schedule { return m.cfg.Schedule }

// Slots returns a copy of every slot, pruned ones included, in creation order.
func (m *Manager) Slots() []Slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Slot, 0, len(m.slots))
	for _, s := range m.slots {
		out = append(out, *s)
	}
	return out
}

// Advance applies the schedule at the current time: prepares the active slot's successor from
// PrepareBefore before its activation, activates a prepared slot once its time has come and published
// reports it is in the bundle (the active one becomes old), and prunes old slots past their NotAfter
// (deleting their key files). It reports whether anything changed; the metadata is saved before it
// returns.
func (m *Manager) Advance(published func(Slot) bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	changed := false
	for _, s := range slices.Clone(m.slots) {
		if s.State == Old && !now.Before(s.NotAfter) {
			m.pruneLocked(s, now)
			changed = true
		}
	}
	cur := m.activeSlotLocked()
	next := m.preparedLocked()
	if next == nil && cur != nil {
		at := activateSuccessorAt(cur.CreatedAt, cur.NotAfter)
		if !now.Before(at.Add(-m.cfg.Schedule.PrepareBefore)) {
			s, err := m.prepareLocked(now)
			if err != nil {
				return changed, err
			}
			// Prepared late (the node was down at the time): it is still in the bundle PrepareBefore.
			s.ActivateAt = at
			if earliest := now.Add(m.cfg.Schedule.PrepareBefore); at.Before(earliest) {
				s.ActivateAt = earliest
			}
			next, changed = s, true
		}
	}
	if next != nil && !now.Before(next.ActivateAt) && published(*next) {
		m.activateLocked(next, now)
		changed = true
	}
	if !changed {
		return false, nil
	}
	return true, m.saveLocked()
}

// Rotate prepares a successor now if there is none, and activates the prepared slot as soon as
// published reports it is in the bundle (the caller publishes Slots() between the two calls: first
// call Rotate, publish, call Rotate again). It reports the slot activated, if any.
func (m *Manager) Rotate(published func(Slot) bool) (activated *Slot, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	next := m.preparedLocked()
	if next == nil {
		if next, err = m.prepareLocked(now); err != nil {
			return nil, err
		}
		next.ActivateAt = now
		return nil, m.saveLocked()
	}
	if !published(*next) {
		return nil, nil
	}
	next.ActivateAt = now
	m.activateLocked(next, now)
	s := *next
	return &s, m.saveLocked()
}

// ErrUnknownKey: no live slot holds the key named.
var ErrUnknownKey = errors.New("no live key slot holds this key")

// BundleRootIDs are the bundle IDs (hex SHA-256) of the X.509 roots the slot's CA needs in the bundle:
// its own root, or its upstream authority's roots (none once pruned).
func (s Slot) BundleRootIDs() []string {
	if s.CA == nil {
		return nil
	}
	var ids []string
	for _, r := range s.CA.X509Roots() {
		sum := sha256.Sum256(r.Raw)
		ids = append(ids, hex.EncodeToString(sum[:]))
	}
	return ids
}

// Holds reports whether key ID id is one of the slot's: its X.509 ID (hex SHA-256 of the root), its
// root's Subject Key Identifier in hex (the ledger's signed_by) or its JWT kid.
func (s Slot) Holds(id string) bool {
	if id == "" {
		return false
	}
	if id == s.X509ID || id == s.JWTKeyID {
		return true
	}
	return s.CA != nil && id == s.CA.X509KeyID()
}

// Revoke takes the live slot holding key id (see Slot.Holds) out of service at once, after a compromise:
// if it is the active slot, a successor becomes active now (the prepared slot, or a new one), published
// or not — the caller publishes it next: a compromised key must stop signing before its successor has
// spent PrepareBefore in the bundle. The revoked slot is pruned (its key files deleted) and marked
// Revoked. It returns the slot activated (nil when the active slot stays) and the slot revoked; no live
// slot holding id is ErrUnknownKey.
func (m *Manager) Revoke(id string) (activated *Slot, revoked Slot, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var s *Slot
	for _, x := range m.slots {
		if x.State != Pruned && x.Holds(id) {
			s = x
		}
	}
	if s == nil {
		return nil, Slot{}, fmt.Errorf("rotation: key %s: %w", id, ErrUnknownKey)
	}
	if s.State == Active {
		next := m.preparedLocked()
		if next == nil {
			if next, err = m.prepareLocked(now); err != nil {
				return nil, Slot{}, err
			}
		}
		next.ActivateAt = now
		m.activateLocked(next, now)
		a := *next
		activated = &a
	}
	m.pruneLocked(s, now)
	s.Revoked = true
	m.log.Warn("CA key revoked: slot pruned, its key files deleted", "slot", s.ID, "x509_id", s.X509ID, "jwt_key_id", s.JWTKeyID)
	return activated, *s, m.saveLocked()
}

// HandledRequest is the Seq of the last rotation request (storage.RotationRequest) recorded as handled.
func (m *Manager) HandledRequest() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handled
}

// SetHandledRequest records seq as the last rotation request handled (kept in slots.json).
func (m *Manager) SetHandledRequest(seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handled = seq
	return m.saveLocked()
}

// NextEvent is when Advance next has something to do (a preparation, activation or pruning), or the
// zero time if nothing is scheduled.
func (m *Manager) NextEvent() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, s := range m.slots {
		switch s.State {
		case Old:
			consider(s.NotAfter)
		case Prepared:
			consider(s.ActivateAt)
		}
	}
	if cur := m.activeSlotLocked(); cur != nil && m.preparedLocked() == nil {
		consider(activateSuccessorAt(cur.CreatedAt, cur.NotAfter).Add(-m.cfg.Schedule.PrepareBefore))
	}
	return next
}

func (m *Manager) now() time.Time { return m.cfg.Clock().UTC().Truncate(time.Second) }

func (m *Manager) activeSlotLocked() *Slot {
	for _, s := range m.slots {
		if s.State == Active {
			return s
		}
	}
	return nil
}

func (m *Manager) preparedLocked() *Slot {
	for _, s := range m.slots {
		if s.State == Prepared {
			return s
		}
	}
	return nil
}

func (m *Manager) slotDir(id string) string { return filepath.Join(m.cfg.Dir, "slot-"+id) }

// load makes the CA of slot id from its directory.
func (m *Manager) load(id string) (*ca.CA, error) {
	dir := m.slotDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key directory %s: %w", dir, err)
	}
	c, err := m.cfg.New(id, dir)
	if err != nil {
		return nil, fmt.Errorf("keys in %s: %w", dir, err)
	}
	return c, nil
}

// adopt moves AdoptFiles from Dir into the directory of the first slot, if any of them is in Dir (an
// adoption interrupted by a crash is finished).
func (m *Manager) adopt() (bool, error) {
	if m.nextID != 0 || !slices.ContainsFunc(m.cfg.AdoptFiles, func(name string) bool {
		_, err := os.Stat(filepath.Join(m.cfg.Dir, name))
		return err == nil
	}) {
		return false, nil
	}
	dir := m.slotDir("1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("rotation: adopt the existing keys: %w", err)
	}
	for _, name := range m.cfg.AdoptFiles {
		err := os.Rename(filepath.Join(m.cfg.Dir, name), filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("rotation: adopt the existing keys: %w", err)
		}
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return false, fmt.Errorf("rotation: adopt the existing keys: %w", err)
	}
	if err := fsutil.SyncDir(m.cfg.Dir); err != nil {
		return false, fmt.Errorf("rotation: adopt the existing keys: %w", err)
	}
	m.log.Info("existing CA keys adopted as the first slot", "dir", dir)
	return true, nil
}

// prepareLocked creates a new slot in the Prepared state (its ActivateAt is the caller's to set).
func (m *Manager) prepareLocked(now time.Time) (*Slot, error) {
	m.nextID++
	id := strconv.Itoa(m.nextID)
	c, err := m.load(id)
	if err != nil {
		// Nothing was created (an upstream that refused leaves no key): the number is reused.
		m.nextID--
		_ = os.Remove(m.slotDir(id)) // only if empty
		return nil, fmt.Errorf("rotation: prepare slot %s: %w", id, err)
	}
	sum := sha256.Sum256(c.X509Authority().Raw)
	s := &Slot{ID: id, State: Prepared, CreatedAt: now, NotAfter: c.NotAfter(), X509ID: hex.EncodeToString(sum[:]), JWTKeyID: c.JWTKeyID(), CA: c}
	m.slots = append(m.slots, s)
	m.log.Info("CA key prepared", "slot", id, "x509_id", s.X509ID, "jwt_key_id", s.JWTKeyID, "not_after", s.NotAfter.Format(time.RFC3339))
	return s, nil
}

func (m *Manager) activateLocked(s *Slot, now time.Time) {
	if cur := m.activeSlotLocked(); cur != nil {
		cur.State, cur.OldSince = Old, now
	}
	s.State = Active
	m.active.Store(s.CA)
	m.log.Info("CA key active", "slot", s.ID, "x509_id", s.X509ID, "jwt_key_id", s.JWTKeyID)
}

func (m *Manager) pruneLocked(s *Slot, now time.Time) {
	s.State, s.PrunedAt, s.CA = Pruned, now, nil
	if m.cfg.Destroy != nil {
		if err := m.cfg.Destroy(s.ID, m.slotDir(s.ID)); err != nil {
			m.log.Warn("CA key pruned but its keys could not be deleted from the key manager; delete them by hand", "slot", s.ID, "error", err)
		}
	}
	if err := os.RemoveAll(m.slotDir(s.ID)); err != nil {
		m.log.Warn("CA key pruned but its files could not be removed", "slot", s.ID, "dir", m.slotDir(s.ID), "error", err)
	}
	m.log.Info("CA key pruned", "slot", s.ID, "x509_id", s.X509ID, "jwt_key_id", s.JWTKeyID)
	// Forget the oldest pruned slots beyond MaxPrunedKept.
	var pruned int
	for i := len(m.slots) - 1; i >= 0; i-- {
		if m.slots[i].State != Pruned {
			continue
		}
		if pruned++; pruned > MaxPrunedKept {
			m.slots = slices.Delete(m.slots, i, i+1)
		}
	}
}

// DiskFactory is the Factory of keys kept in files (ca.LoadOrCreate): each slot's root lives ttl from
// its creation by clock (nil: time.Now), and its CA signs by the same clock.
func DiskFactory(td spiffeid.TrustDomain, ttl time.Duration, clock func() time.Time) Factory {
	return SlotFactory(td, ttl, clock, nil, nil)
}

// UpstreamFactory is DiskFactory whose new X.509 authorities up signs as intermediates (ca/upstream);
// nil up means self-signed roots. Each new slot asks up for its certificate.
func UpstreamFactory(td spiffeid.TrustDomain, ttl time.Duration, clock func() time.Time, up ca.Upstream) Factory {
	return SlotFactory(td, ttl, clock, nil, up)
}

// KeyManagerFactory is DiskFactory with each slot's private keys in the ca.KeyManager keys returns for it
// (keymanager.Manager.SlotKeys: per-slot key names in an HSM or KMS); the slot's directory keeps only the
// certificate, the kid and what keys records there. A nil keys means key files in the slot's directory.
func KeyManagerFactory(td spiffeid.TrustDomain, ttl time.Duration, clock func() time.Time, keys func(slot, dir string) (ca.KeyManager, error)) Factory {
	return SlotFactory(td, ttl, clock, keys, nil)
}

// SlotFactory is the Factory of both: keys from keys (nil: files in the slot's directory), X.509
// authorities signed by up (nil: self-signed roots).
func SlotFactory(td spiffeid.TrustDomain, ttl time.Duration, clock func() time.Time, keys func(slot, dir string) (ca.KeyManager, error), up ca.Upstream) Factory {
	return func(slot, dir string) (*ca.CA, error) {
		cfg := ca.KeyStoreConfig{Dir: dir, TrustDomain: td, TTL: ttl, Clock: clock, Upstream: up}
		if keys != nil {
			km, err := keys(slot, dir)
			if err != nil {
				return nil, err
			}
			cfg.Keys = km
		}
		x, j, err := ca.LoadOrCreate(cfg)
		if err != nil {
			return nil, err
		}
		return ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j, Clock: clock})
	}
}

// Roots returns the X.509 signing certificates of every live slot (prepared, active, old): what the
// node's own signatures may verify against (with an upstream authority, the slots' intermediates).
func (m *Manager) Roots() []*x509.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*x509.Certificate
	for _, s := range m.slots {
		if s.CA != nil {
			out = append(out, s.CA.X509Authority())
		}
	}
	return out
}
