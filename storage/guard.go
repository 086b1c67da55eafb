package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// The state file (state.db) is derived data: everything in it can be rebuilt from the newest Raft
// snapshot plus the Raft log, which is fsynced on every append. So state.db is written without fsync
// (that halves the cost of every commit), and a small guard file says whether it can be trusted at the
// next start:
//
//   - closed cleanly (Close synced it): trusted;
//   - the process died (crash, kill -9) but the machine did not reboot: every write reached the page
//     cache and bbolt never overwrites a committed page before its next meta write, so the file is a
//     consistent state as of some applied index; trusted, and Raft replays the rest;
//   - the machine rebooted while the file was open (power loss, kernel crash): writes may have reached
//     the disk partly and out of order; the file is moved aside and rebuilt from the snapshot and log.
//
// Reboots are detected with the kernel's boot ID.
const (
	guardFile  = "state.db.guard"
	bootIDFile = "/proc/sys/kernel/random/boot_id"
)

type stateGuard struct {
	BootID string `json:"boot_id"`
	Clean  bool   `json:"clean"`
}

func currentBootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return "" // unknown: an unclean stop is then always treated as a reboot
	}
	return strings.TrimSpace(string(b))
}

// checkStateGuard decides whether an existing state file may be used, and marks it as open. It returns
// false when the file must be rebuilt.
func checkStateGuard(dir, statePath string) (trusted bool, err error) {
	guardPath := dir + "/" + guardFile
	boot := currentBootID()
	trusted = true
	if _, err := os.Stat(statePath); err == nil {
		var g stateGuard
		b, err := os.ReadFile(guardPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			trusted = false // written by nobody we know of
		case err != nil:
			return false, fmt.Errorf("storage: read %s: %w", guardPath, err)
		default:
			if json.Unmarshal(b, &g) != nil {
				trusted = false
			} else {
				trusted = g.Clean || (boot != "" && g.BootID == boot)
			}
		}
	}
	if err := writeGuard(guardPath, stateGuard{BootID: boot}); err != nil {
		return false, err
	}
	return trusted, nil
}

// markStateClean records that state.db was synced and closed.
func markStateClean(dir string) error {
	return writeGuard(dir+"/"+guardFile, stateGuard{BootID: currentBootID(), Clean: true})
}

func writeGuard(path string, g stateGuard) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	if err := writeFileSync(path, b, 0o600); err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	return nil
}
