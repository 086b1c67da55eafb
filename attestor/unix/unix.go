package unix

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/signet-id/signet/internal/procfs"
	"github.com/signet-id/signet/selector"
)

// ErrProcessGone is returned (wrapped, naming the pid) when the process being attested exited, or
// its pid came to name a different process, while Attest was reading it. The selectors read so far
// cannot be trusted to describe the caller, so none are returned; callers should refuse the request.
// Test for it with errors.Is.
var ErrProcessGone = errors.New("process exited or its pid was reused")

// Defaults applied by New to zero Config fields.
const (
	DefaultProcRoot = "/proc"
	// DefaultMaxHashSize keeps the cost of hashing one executable well under a second: about 0.4 s
	// for 128 MiB on one core of a typical server.
	DefaultMaxHashSize int64 = 128 << 20
	// DefaultMaxHashesPerUID is how many executables of one uid are hashed at the same time.
	DefaultMaxHashesPerUID = 2
)

const (
	digestCacheSize = 1024            // digests kept per cache generation
	nameCacheSize   = 1024            // user and group names kept
	nameTTL         = time.Minute     // how long a resolved (or unresolvable) id is remembered
	selectorType    = "unix"          // selector type produced by this attestor
	errPrefix       = "attestor/unix" // prefix of every error message
)

// SelectorType declares the selectors this attestor produces, for a server's selector.Registry.
func SelectorType() selector.Type {
	return selector.Type{Name: selectorType, Kind: selector.Workload, Keys: map[string]selector.ValueCheck{
		"uid":    selector.Uint32Value,
		"gid":    selector.Uint32Value,
		"user":   selector.NameValue,
		"group":  selector.NameValue,
		"path":   selector.AbsPathValue,
		"sha256": selector.SHA256Value,
	}}
}

// Config configures an Attestor. The zero value is usable.
type Config struct {
	// ProcRoot is where the proc file system of the callers' pid namespace is mounted.
	// Default "/proc".
	ProcRoot string
	// Logger receives debug messages about selectors that could not be produced (an executable
	// too large to hash, an id without a name). Default: messages are discarded.
	Logger *slog.Logger
	// MaxHashSize is the size in bytes above which an executable is not hashed: it then gets no
	// sha256 selector. Zero means DefaultMaxHashSize (128 MiB); negative values are refused.
	MaxHashSize int64
	// DigestWanted, if set, is asked on every attestation whether a sha256 selector is wanted at all
	// (the agent answers whether any of its entries has one); when it returns false the executable is
	// not hashed. Nil: always hash.
	DigestWanted func() bool
	// MaxHashesPerUID bounds how many executables of processes of one uid are hashed at the same
	// time; further attestations of that uid that need a hash wait (until their context ends).
	// Zero means DefaultMaxHashesPerUID; negative values are refused.
	MaxHashesPerUID int
}

// Attestor produces unix selectors for processes. It is safe for concurrent use.
type Attestor struct {
	procRoot     string
	log          *slog.Logger
	maxHashSize  int64
	digestWanted func() bool

	selectors selector.Type

	digests   *digestCache
	hashSlots *hashSlots
	names     *nameCache

	// onHash, if set, is called each time an executable is actually hashed (a digest cache miss).
	// Tests use it to count hashes and to interleave events with an attestation.
	onHash func()
}

// New returns an Attestor configured by cfg, with defaults applied to zero fields.
func New(cfg Config) (*Attestor, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	root, err := procfs.Root(cmp.Or(cfg.ProcRoot, DefaultProcRoot))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	maxHash, err := orDefault("MaxHashSize", cfg.MaxHashSize, DefaultMaxHashSize)
	if err != nil {
		return nil, err
	}
	perUID, err := orDefault("MaxHashesPerUID", cfg.MaxHashesPerUID, DefaultMaxHashesPerUID)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attestor{
		procRoot:     root,
		log:          log.With("attestor", "unix"),
		maxHashSize:  maxHash,
		digestWanted: cfg.DigestWanted,
		selectors:    SelectorType(),
		digests:      newDigestCache(digestCacheSize),
		hashSlots:    newHashSlots(perUID),
		names:        newNameCache(nameCacheSize, nameTTL, time.Now),
	}, nil
}

// orDefault returns v, or def when v is zero; a negative v is an error naming the field.
func orDefault[T int | int64](field string, v, def T) (T, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return 0, fmt.Errorf("%s: config: %s %d is negative", errPrefix, field, v)
	}
	return v, nil
}

// Attest returns the selectors of process pid, sorted by selector.Normalize:
//
//	unix:uid:<real uid>, unix:gid:<real gid>,
//	unix:user:<name> and unix:group:<name> when the ids resolve to names that are valid selector values,
//	unix:path:<absolute executable path> only if that path, resolved in the agent's mount namespace,
//	    is the file the process runs (see the package doc),
//	unix:sha256:<hex digest of the executable> unless it is larger than Config.MaxHashSize or
//	    Config.DigestWanted says no entry uses one.
//
// startTime is the start time the process had when it connected (peercred.Info.StartTime): pid and
// start time together name one process, so a pid that has since been reused by another process is
// refused, as is a process that exits or whose pid is reused during attestation; those errors wrap
// ErrProcessGone. Reading another user's process needs the privileges to inspect it (normally root
// or CAP_SYS_PTRACE).
func (a *Attestor) Attest(ctx context.Context, pid int32, startTime uint64) ([]selector.Selector, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("%s: pid %d: not a process id", errPrefix, pid)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: pid %d: %w", errPrefix, pid, err)
	}
	return a.attest(ctx, pid, startTime)
}
