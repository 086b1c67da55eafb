package rotation

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/signet-id/signet/internal/fsutil"
)

// metaFile is the slot metadata in Config.Dir, written atomically with mode 0600.
const metaFile = "slots.json"

// maxMetaBytes bounds slots.json: at most a prepared, an active, a few old and MaxPrunedKept pruned
// slots of a few hundred bytes each.
const maxMetaBytes = 64 << 10

// maxLiveSlots bounds the live slots a metadata file may hold (prepared + active + old).
const maxLiveSlots = 16

type metaWire struct {
	Version int     `json:"version"`
	NextID  int     `json:"next_id"`
	Slots   []*Slot `json:"slots"`
	// HandledRequest is the Seq of the last rotation request (storage.RotationRequest) the node handled.
	HandledRequest uint64 `json:"handled_request,omitempty"`
}

// readMeta reads and checks slots.json; a missing file is a first start (no slots).
func readMeta(dir string) (metaWire, error) {
	path := filepath.Join(dir, metaFile)
	b, err := fsutil.ReadFileMax(path, maxMetaBytes)
	if errors.Is(err, os.ErrNotExist) {
		return metaWire{}, nil
	}
	if err != nil {
		return metaWire{}, fmt.Errorf("rotation: %w", err)
	}
	var w metaWire
	if err := json.Unmarshal(b, &w); err != nil {
		return metaWire{}, fmt.Errorf("rotation: %s: %w", path, err)
	}
	if w.Version != 1 {
		return metaWire{}, fmt.Errorf("rotation: %s: version %d, this build reads version 1", path, w.Version)
	}
	ids := map[string]bool{}
	live, active, prepared := 0, 0, 0
	for i, s := range w.Slots {
		if s == nil {
			return metaWire{}, fmt.Errorf("rotation: %s: slots[%d] is null", path, i)
		}
		n, err := strconv.Atoi(s.ID)
		if err != nil || n < 1 || n > w.NextID || ids[s.ID] {
			return metaWire{}, fmt.Errorf("rotation: %s: slots[%d]: id %q: want a unique number from 1 to next_id %d", path, i, s.ID, w.NextID)
		}
		ids[s.ID] = true
		switch s.State {
		case Active:
			active++
		case Prepared:
			prepared++
		case Old, Pruned:
		default:
			return metaWire{}, fmt.Errorf("rotation: %s: slots[%d]: state %q: want prepared, active, old or pruned", path, i, s.State)
		}
		if s.State != Pruned {
			live++
			if s.NotAfter.IsZero() || s.X509ID == "" || s.JWTKeyID == "" {
				return metaWire{}, fmt.Errorf("rotation: %s: slots[%d]: a live slot needs not_after, x509_id and jwt_key_id (state %s)", path, i, s.State)
			}
		}
	}
	if live > 0 && active == 0 {
		return metaWire{}, fmt.Errorf("rotation: %s: no active slot among the %d live ones; restore the file, or remove %s to start with new keys", path, live, dir)
	}
	if active > 1 || prepared > 1 || live > maxLiveSlots {
		return metaWire{}, fmt.Errorf("rotation: %s: %d active, %d prepared, %d live slots: at most one active, one prepared and %d live", path, active, prepared, live, maxLiveSlots)
	}
	return w, nil
}

func (m *Manager) saveLocked() error {
	b, err := json.MarshalIndent(metaWire{Version: 1, NextID: m.nextID, Slots: m.slots, HandledRequest: m.handled}, "", "  ")
	if err != nil {
		return fmt.Errorf("rotation: encode %s: %w", metaFile, err)
	}
	if err := fsutil.WriteFileAtomic(m.cfg.Dir, metaFile, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("rotation: %w", err)
	}
	return nil
}
