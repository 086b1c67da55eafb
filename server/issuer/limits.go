package issuer

import (
	"fmt"
	"sync"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/server/apierr"
)

// Default issuance rate limits (token buckets; one SVID costs one token, a batch of N costs N).
//
// The per-agent bucket bounds how fast one agent can make the server sign and record anything. Its
// burst is sized for an agent that starts (or restarts) with a large entry set and mints one SVID for
// each at once: 10,000 SVIDs, ten full CSR batches. Its rate is what an agent with 100,000 one-hour
// entries needs to rotate them at half life (56/s), with room to spare.
//
// The per-entry bucket is kept per agent and entry: an entry parented to a node alias is legitimately
// issued by every agent of the alias, so a fleet-wide per-entry bucket would throttle honest agents.
// It bounds how fast one agent mints one identity: X.509-SVIDs are minted once per half life, JWT-SVIDs
// once per (audience, half life), or on every fetch for jwt_unique entries.
const (
	DefaultAgentIssueRate  = 100.0
	DefaultAgentIssueBurst = 10000
	DefaultEntryIssueRate  = 10.0
	DefaultEntryIssueBurst = 100
)

// IssuanceLimits are the token buckets of issuance. Zero fields take the defaults above.
type IssuanceLimits struct {
	// AgentRate is the sustained SVIDs per second one agent may have signed; AgentBurst how many at once
	// (at least MaxCSRBatch, so that a full batch can pass).
	AgentRate  float64
	AgentBurst int
	// EntryRate and EntryBurst bound the SVIDs of one entry signed for one agent.
	EntryRate  float64
	EntryBurst int
}

func (l *IssuanceLimits) withDefaults() (IssuanceLimits, error) {
	out := *l
	if out.AgentRate == 0 {
		out.AgentRate = DefaultAgentIssueRate
	}
	if out.AgentBurst == 0 {
		out.AgentBurst = DefaultAgentIssueBurst
	}
	if out.EntryRate == 0 {
		out.EntryRate = DefaultEntryIssueRate
	}
	if out.EntryBurst == 0 {
		out.EntryBurst = DefaultEntryIssueBurst
	}
	switch {
	case out.AgentRate < 0 || out.EntryRate < 0:
		return out, fmt.Errorf("issuance limits: rates %g and %g: must be positive", out.AgentRate, out.EntryRate)
	case out.AgentBurst < MaxCSRBatch:
		return out, fmt.Errorf("issuance limits: AgentBurst %d: at least %d, the largest CSR batch", out.AgentBurst, MaxCSRBatch)
	case out.EntryBurst < 1:
		return out, fmt.Errorf("issuance limits: EntryBurst %d: at least 1", out.EntryBurst)
	}
	return out, nil
}

// DefaultMinFreeDisk is the free space under the server's data directory below which the server stops
// issuing: the ledger and the Raft log must never fill the disk.
const DefaultMinFreeDisk = 512 << 20

// DiskCheckEvery is how long one free-space reading is trusted: a request never costs a statfs.
const DiskCheckEvery = 5 * time.Second

// FreeDiskFunc returns the bytes available under dir.
type FreeDiskFunc func(dir string) (uint64, error)

// StatfsFree is the FreeDiskFunc of a real file system: the space available to unprivileged users
// (the root reserve is not counted on).
func StatfsFree(dir string) (uint64, error) { return fsutil.FreeBytes(dir) }

// diskGuard refuses issuance when the data directory's file system is nearly full. Readings are cached
// for DiskCheckEvery.
type diskGuard struct {
	dir   string
	min   uint64
	free  FreeDiskFunc
	clock func() time.Time

	mu      sync.Mutex
	readAt  time.Time
	avail   uint64
	readErr error
}

// check returns nil when there is room to issue, or an ErrResourceExhausted error saying how much is
// free. A guard without a directory checks nothing.
func (d *diskGuard) check() error {
	if d == nil || d.dir == "" {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	if d.readAt.IsZero() || now.Sub(d.readAt) >= DiskCheckEvery || now.Before(d.readAt) {
		d.avail, d.readErr = d.free(d.dir)
		d.readAt = now
	}
	switch {
	case d.readErr != nil:
		return fmt.Errorf("server disk: %w", d.readErr)
	case d.avail < d.min:
		return fmt.Errorf("%w: server disk nearly full: %d MiB free under data_dir %s, below min_free_disk (%d MiB); free space or raise the disk before issuance resumes",
			apierr.ErrResourceExhausted, d.avail>>20, d.dir, d.min>>20)
	}
	return nil
}
