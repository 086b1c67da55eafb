package storage

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Config configures a Store. Zero values take the defaults noted on each field.
type Config struct {
	// Dir holds raft.db (the Raft log), snapshots/, state.db and node-id. Required; created 0700.
	Dir string
	// NodeID is this node's Raft server ID. Default: the ID stored in Dir/node-id, or a new random one.
	// A data dir keeps its node ID for life: a different non-empty NodeID is refused.
	NodeID string
	// RaftBind is the TCP address the Raft transport listens on. Default "127.0.0.1:0".
	RaftBind string
	// RaftAdvertise is the address other nodes reach this one at. Default: the bound address.
	RaftAdvertise string
	// StreamLayer, if set, carries Raft's traffic instead of a TCP listener on RaftBind (the cluster
	// package shares one port between Raft and the servers' own API); its Addr is this node's address.
	StreamLayer raft.StreamLayer
	// Bootstrap makes a node with no Raft state form a new cluster with itself as the only voter.
	Bootstrap bool
	// Logger receives the store's and Raft's logs. Default: slog.Default().
	Logger *slog.Logger
	// HeartbeatTimeout and ElectionTimeout tune Raft's failure detection (default 1s each).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// CommitTimeout is how long a leader with no new writes waits (a random time between one and two
	// of it) before it tells followers what it has committed (default DefaultCommitTimeout, Raft's).
	// Tests set it long to show what waits for it.
	CommitTimeout time.Duration
	// Clock stamps ledger batches and the audit records of registry writes. Default: time.Now.
	Clock func() time.Time
	// SnapshotThreshold is how many log entries trigger a snapshot (default DefaultSnapshotThreshold);
	// TrailingLogs how many are kept after it (default DefaultTrailingLogs): a follower further behind
	// catches up by receiving the snapshot; SnapshotInterval how often the threshold is checked (default
	// DefaultSnapshotInterval; Raft waits a random time between one and two intervals).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// MinFreeBytes is the free space on Dir's file system below which Health reports ErrDiskFull
	// (default DefaultMinFreeBytes). DiskFullRetry is how often a committed entry that state.db had no
	// room for is retried (default DefaultDiskFullRetry).
	MinFreeBytes  uint64
	DiskFullRetry time.Duration
	// NoLeaderWait bounds how long a write waits for a leader (an election, a leader moving) before it
	// fails saying this server cannot reach a majority of the cluster (default DefaultNoLeaderWait).
	// An election takes a few seconds at most; a server cut off from the majority never finds one,
	// and must answer its callers while they still wait.
	NoLeaderWait time.Duration
	// StateMmapSize is how much address space state.db is mapped with (default DefaultStateMmapSize;
	// at least MinStateMmapSize, at most MaxStateMmapSize). A write that grows the file past it has to
	// remap, which waits for every open read, a snapshot's included: size it above the largest state.db
	// expected (a 10,000,000-record ledger is about 6 GiB). It reserves address space, not memory.
	StateMmapSize int64
}

// DefaultNoLeaderWait is Config.NoLeaderWait's default: several election timeouts, and well within the
// deadline of an agent's signing call.
const DefaultNoLeaderWait = 10 * time.Second

// DefaultCommitTimeout is Config.CommitTimeout's default (hashicorp/raft's own). Writes never wait for
// it: a forwarded ledger append returns once the leader has committed it (see route).
const DefaultCommitTimeout = 50 * time.Millisecond

// The defaults of Config's snapshot settings (hashicorp/raft's own).
const (
	DefaultSnapshotThreshold = 8192
	DefaultTrailingLogs      = 10240
	DefaultSnapshotInterval  = 2 * time.Minute
)

// Store is one node's replicated state: a hashicorp/raft instance whose log lives in bbolt (raft.db), and
// the state it applies to, also in bbolt (state.db), with an in-memory view of the registry for fast
// reads. Writes go through Raft; reads are served from this node's state.
type Store struct {
	cfg    Config
	log    *slog.Logger
	nodeID string

	mu sync.RWMutex // guards db, swapped by restore
	db *bolt.DB

	reg      *registry
	raft     *raft.Raft
	logStore *raftboltdb.BoltStore
	snaps    *raft.FileSnapshotStore
	trans    *raft.NetworkTransport
	closed   atomic.Bool
	closing  chan struct{} // closed by Close: stops the FSM's disk-full retries
	disk     diskAlarm
	// stateFull is set while the FSM retries entries state.db has no room for: writes are refused
	// before they are proposed (they could not be applied), reads go on.
	stateFull atomic.Bool
	// applyAbandoned is set when the FSM left an entry unapplied because the store closed: no later
	// entry may be applied (the next start replays from the stored applied index).
	applyAbandoned atomic.Bool
	// untrusted is the state file moved aside (or left by an earlier start) for a rebuild; it is removed
	// once the state has applied rebuildTarget, the last log index at open.
	untrusted      string
	rebuildPending atomic.Bool
	rebuildTarget  atomic.Uint64

	ledgerMu       sync.Mutex // orders ledger proposals and their times
	lastLedgerTime time.Time

	fwd forwarderSlot // sends a follower's writes to the leader
	// appliedIdx is the last log index whose effects are in the state and the registry (raft's own
	// AppliedIndex moves when an entry is handed to the FSM, before it is applied).
	appliedIdx atomic.Uint64
	// caughtUpTerm is the leader term in which this node last applied, through a barrier, everything
	// committed before it (checkProposable).
	caughtUpTerm atomic.Uint64
}

// noteApplied records that the state holds every entry up to idx.
func (s *Store) noteApplied(idx uint64) {
	for {
		cur := s.appliedIdx.Load()
		if idx <= cur || s.appliedIdx.CompareAndSwap(cur, idx) {
			return
		}
	}
}

const (
	stateFile  = "state.db"
	raftFile   = "raft.db"
	nodeIDFile = "node-id"
)

// rebuildProgress removes the untrusted state file once the state has applied every entry the log held
// at open: the rebuild is complete.
func (s *Store) rebuildProgress(applied uint64) {
	if !s.rebuildPending.Load() || applied < s.rebuildTarget.Load() || !s.rebuildPending.CompareAndSwap(true, false) {
		return
	}
	if err := os.Remove(s.untrusted); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("state rebuilt, but removing the untrusted copy failed; remove it by hand", "path", s.untrusted, "error", err)
		return
	}
	s.log.Info("state rebuilt; removed the untrusted copy", "path", s.untrusted, "applied_index", applied)
}

// Open opens or creates the store in cfg.Dir and starts Raft. An error caused by a full disk wraps
// ErrDiskFull.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("storage: config: Dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.RaftBind == "" {
		cfg.RaftBind = "127.0.0.1:0"
	}
	if cfg.MinFreeBytes == 0 {
		cfg.MinFreeBytes = DefaultMinFreeBytes
	}
	if cfg.DiskFullRetry <= 0 {
		cfg.DiskFullRetry = DefaultDiskFullRetry
	}
	if cfg.NoLeaderWait <= 0 {
		cfg.NoLeaderWait = DefaultNoLeaderWait
	}
	if cfg.StateMmapSize == 0 {
		cfg.StateMmapSize = DefaultStateMmapSize
	}
	if cfg.StateMmapSize < MinStateMmapSize || cfg.StateMmapSize > MaxStateMmapSize {
		return nil, fmt.Errorf("storage: StateMmapSize %d bytes is out of range: use %d (1 GiB) to %d (1 TiB), or 0 for the default %d (64 GiB)",
			cfg.StateMmapSize, int64(MinStateMmapSize), int64(MaxStateMmapSize), int64(DefaultStateMmapSize))
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return nil, openError(cfg.Dir, err)
	}
	if err := checkFreeSpace(cfg.Dir, cfg.MinFreeBytes); err != nil {
		return nil, err
	}
	nodeID, err := loadNodeID(cfg.Dir, cfg.NodeID)
	if err != nil {
		return nil, openError(cfg.Dir, err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "storage", "node", nodeID), nodeID: nodeID, reg: newRegistry(), closing: make(chan struct{})}
	if err := s.openState(); err != nil {
		return nil, openError(cfg.Dir, err)
	}
	if err := s.startRaft(); err != nil {
		s.db.Close()
		return nil, openError(cfg.Dir, err)
	}
	go s.runVersionReport()
	return s, nil
}

// prepareDir creates dir (0700) and checks that it is a writable directory.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("storage: data dir %q: cannot create it: %w (choose another data dir or fix the parent's permissions)", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("storage: data dir %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("storage: data dir %q: not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return fmt.Errorf("storage: data dir %q is not writable: %w (choose another data dir or fix its permissions)", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

func loadNodeID(dir, want string) (string, error) {
	path := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		have := strings.TrimSpace(string(b))
		if have == "" {
			return "", fmt.Errorf("storage: %s is empty: restore it or remove the data dir", path)
		}
		if want != "" && want != have {
			return "", fmt.Errorf("storage: node ID %q: this data dir belongs to node %q (%s); use that ID or a fresh data dir", want, have, path)
		}
		return have, nil
	case errors.Is(err, os.ErrNotExist):
		id := want
		if id == "" {
			var r [6]byte
			if _, err := rand.Read(r[:]); err != nil {
				return "", fmt.Errorf("storage: generate node ID: %w", err)
			}
			id = "node-" + hex.EncodeToString(r[:])
		}
		if err := writeFileSync(path, []byte(id+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("storage: write %s: %w", path, err)
		}
		return id, nil
	default:
		return "", fmt.Errorf("storage: read %s: %w", path, err)
	}
}

// openState opens state.db and makes sure it is not behind the newest Raft snapshot (which would happen
// if the file was lost or replaced): Raft only replays log entries after its snapshot, so such a state is
// first restored from that snapshot.
func (s *Store) openState() error {
	path := filepath.Join(s.cfg.Dir, stateFile)
	trusted, err := checkStateGuard(s.cfg.Dir, path)
	if err != nil {
		return err
	}
	aside := path + ".untrusted"
	if !trusted {
		s.log.Warn("state file was open when the machine went down; rebuilding it from the Raft snapshot and log", "moved_to", aside)
		if err := os.Rename(path, aside); err != nil {
			return fmt.Errorf("storage: move untrusted state aside: %w", err)
		}
	}
	if _, err := os.Stat(aside); err == nil {
		s.untrusted = aside // this start's, or left by one that failed before the rebuild finished
	}
	db, err := openStateDB(path, s.cfg.StateMmapSize)
	if err != nil {
		return err
	}
	s.db = db
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.Dir, 2, newHCLog(s.log, "raft-snapshots"))
	if err != nil {
		db.Close()
		return fmt.Errorf("storage: open snapshots in %s: %w", s.cfg.Dir, err)
	}
	s.snaps = snaps
	applied, err := readAppliedIndex(db)
	if err != nil {
		db.Close()
		return fmt.Errorf("storage: read %s: %w", path, err)
	}
	s.noteApplied(applied)
	metas, err := snaps.List()
	if err != nil {
		db.Close()
		return fmt.Errorf("storage: list snapshots: %w", err)
	}
	if len(metas) > 0 && metas[0].Index > applied {
		s.log.Warn("state is behind the newest snapshot; restoring it", "state_index", applied, "snapshot_index", metas[0].Index)
		_, rc, err := snaps.Open(metas[0].ID)
		if err != nil {
			db.Close()
			return fmt.Errorf("storage: open snapshot %s: %w", metas[0].ID, err)
		}
		err = s.restoreState(rc)
		rc.Close()
		if err != nil {
			s.db.Close() // the state before the failed restore, still open
			return err
		}
		return nil
	}
	st, err := readRegistry(db)
	if err != nil {
		db.Close()
		return err
	}
	s.reg.load(st)
	return nil
}

func (s *Store) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.nodeID)
	rc.Logger = newHCLog(s.log, "raft")
	rc.NoSnapshotRestoreOnStart = true // state.db is durable; see openState
	rc.BatchApplyCh = true             // proposals queue instead of waiting for the leader loop
	if s.cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, s.cfg.HeartbeatTimeout)
	}
	if s.cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = s.cfg.ElectionTimeout
	}
	rc.CommitTimeout = cmp.Or(max(s.cfg.CommitTimeout, 0), DefaultCommitTimeout)
	rc.SnapshotThreshold = cmp.Or(s.cfg.SnapshotThreshold, DefaultSnapshotThreshold)
	rc.TrailingLogs = cmp.Or(s.cfg.TrailingLogs, DefaultTrailingLogs)
	rc.SnapshotInterval = cmp.Or(max(s.cfg.SnapshotInterval, 0), DefaultSnapshotInterval)
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("storage: raft config: %w", err)
	}

	logPath := filepath.Join(s.cfg.Dir, raftFile)
	ls, err := raftboltdb.New(raftboltdb.Options{Path: logPath, BoltOptions: &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true, InitialMmapSize: 256 << 20}})
	if err != nil {
		return fmt.Errorf("storage: open raft log %s: %w (is another signet process using this data dir?)", logPath, err)
	}
	s.logStore = ls
	if s.untrusted != "" {
		last, err := ls.LastIndex()
		if err != nil {
			ls.Close()
			return fmt.Errorf("storage: read raft log %s: %w", logPath, err)
		}
		s.rebuildTarget.Store(last)
		s.rebuildPending.Store(true)
		applied, err := readAppliedIndex(s.db)
		if err != nil {
			ls.Close()
			return fmt.Errorf("storage: read state: %w", err)
		}
		s.rebuildProgress(applied)
	}
	cached, err := raft.NewLogCache(1024, ls)
	if err != nil {
		ls.Close()
		return fmt.Errorf("storage: raft log cache: %w", err)
	}

	var advertise net.Addr
	if s.cfg.RaftAdvertise != "" {
		a, err := net.ResolveTCPAddr("tcp", s.cfg.RaftAdvertise)
		if err != nil {
			ls.Close()
			return fmt.Errorf("storage: raft advertise address %q: %w", s.cfg.RaftAdvertise, err)
		}
		advertise = a
	}
	var trans *raft.NetworkTransport
	if s.cfg.StreamLayer != nil {
		trans = raft.NewNetworkTransportWithLogger(s.cfg.StreamLayer, 3, 10*time.Second, newHCLog(s.log, "raft-net"))
	} else if trans, err = raft.NewTCPTransportWithLogger(s.cfg.RaftBind, advertise, 3, 10*time.Second, newHCLog(s.log, "raft-net")); err != nil {
		ls.Close()
		return fmt.Errorf("storage: raft listen on %q: %w", s.cfg.RaftBind, err)
	}
	s.trans = trans

	if s.cfg.Bootstrap {
		has, err := raft.HasExistingState(cached, ls, s.snaps)
		if err != nil {
			s.closeRaftResources()
			return fmt.Errorf("storage: inspect raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, cached, ls, s.snaps, trans, conf); err != nil {
				s.closeRaftResources()
				return fmt.Errorf("storage: bootstrap raft: %w", err)
			}
			s.log.Info("bootstrapped a new single-voter cluster", "address", trans.LocalAddr())
		}
	}
	r, err := raft.NewRaft(rc, &fsm{s: s}, cached, ls, s.snaps, trans)
	if err != nil {
		s.closeRaftResources()
		return fmt.Errorf("storage: start raft: %w", err)
	}
	s.raft = r
	s.electLoneVoter()
	return nil
}

func (s *Store) closeRaftResources() {
	if s.trans != nil {
		s.trans.Close()
	}
	if s.logStore != nil {
		s.logStore.Close()
	}
}

// NodeID returns this node's Raft server ID.
func (s *Store) NodeID() string { return s.nodeID }

// IsLeader reports whether this node is currently the Raft leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// WaitLeader blocks until this node is the leader and its state includes every committed write (a Raft
// barrier), or ctx ends. It gives up at once, with ErrDiskFull, when a write fails for lack of space
// meanwhile (a node that cannot write its log or state cannot become a usable leader).
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.raft.State() != raft.Leader {
		if cause := s.diskFullCause(); cause != nil {
			return fmt.Errorf("storage: wait for leadership: %w", s.diskFullError(cause))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: wait for leadership: %w", ctx.Err())
		case <-t.C:
		}
	}
	f := s.raft.Barrier(timeoutFrom(ctx))
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("storage: leader barrier: %w", s.raftError(err))
			}
			s.rebuildProgress(s.raft.AppliedIndex()) // the state holds every committed entry
			return nil
		case <-ctx.Done():
			return fmt.Errorf("storage: leader barrier: %w", s.waitError(ctx.Err()))
		case <-t.C:
			if cause := s.diskFullCause(); cause != nil {
				return fmt.Errorf("storage: leader barrier: %w", s.diskFullError(cause))
			}
		}
	}
}

// Close stops Raft and closes the files. Safe to call more than once.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.closing)
	s.HandOverLeadership()
	var errs []error
	if err := s.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
	}
	s.closeRaftResources()
	s.mu.Lock()
	if err := s.db.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("sync state: %w", err))
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("state: %w", err))
	}
	s.mu.Unlock()
	if len(errs) == 0 {
		if err := markStateClean(s.cfg.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

func timeoutFrom(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 30 * time.Second
}

func mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		// Raft refuses a proposal while the leader hands over without appending it (a leader that
		// stops does so first): like one made on a follower, it is safe to send again.
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", errNotAppended, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return err
	}
}

// apply proposes cmd through Raft — on the leader, forwarded to it from a follower — and waits until it
// is applied on this node. The FSM's response is returned; a response that is an error (the state
// refused the command) is returned as the error.
func (s *Store) apply(ctx context.Context, cmd []byte) (any, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.forwards() {
		return s.forwardCommand(ctx, cmd)
	}
	resp, _, err := s.applyLocal(ctx, cmd)
	if errors.Is(err, errNotAppended) && s.forwarder() != nil {
		return s.forwardCommand(ctx, cmd) // leadership moved away meanwhile
	}
	return resp, err
}

// applyLocal hands cmd to this node's Raft (as leader; enqueue gates it by the cluster's command
// versions, whichever node the write came through) and waits until it is applied; it returns the FSM's
// response and the entry's log index.
func (s *Store) applyLocal(ctx context.Context, cmd []byte) (any, uint64, error) {
	full := s.diskFullWatch()
	f, err := s.enqueue(ctx, cmd)
	if err != nil {
		return nil, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, 0, s.raftError(err)
		}
		s.wroteOK()
	case <-full:
		// The command may be in the log and take effect once space is freed; the caller stops waiting.
		return nil, 0, s.waitError(nil)
	case <-ctx.Done():
		// The command may still commit; the caller only stops waiting.
		return nil, 0, s.waitError(ctx.Err())
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, f.Index(), err
	}
	return resp, f.Index(), nil
}

// enqueue hands cmd to Raft unless the store is closed, the state file is full, or a server of the
// cluster may not understand the command (ErrUpgradeInProgress). Waiting for room in Raft's queue ends
// with ctx's deadline.
func (s *Store) enqueue(ctx context.Context, cmd []byte) (raft.ApplyFuture, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := s.refuseWhileStateFull(); err != nil {
		return nil, err
	}
	if err := s.checkProposable(ctx, cmd); err != nil {
		return nil, err
	}
	return s.raft.Apply(cmd, timeoutFrom(ctx)), nil
}

func (s *Store) stateDB() *bolt.DB {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.View(fn)
}

// restoreState replaces state.db with the database streamed from r (a snapshot), atomically: the new file
// is written and synced beside the old one, opened and read there (a snapshot that is not a usable state
// is refused before anything is replaced), then renamed over the old one and swapped in under the
// store's lock. On any failure the store keeps the state it had, open, with its registry: it stays
// usable, and the error says what failed.
func (s *Store) restoreState(r io.Reader) error {
	path := filepath.Join(s.cfg.Dir, stateFile)
	tmp := path + ".restore"
	if err := writeFromReader(tmp, r); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: write %s: %w", tmp, err)
	}
	// bbolt would initialise an empty file as a new, empty state: a snapshot is never empty.
	if fi, err := os.Stat(tmp); err == nil && fi.Size() == 0 {
		os.Remove(tmp)
		return errors.New("storage: restore: snapshot is not a usable state: it is empty")
	}
	st, err := readStateFile(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: snapshot is not a usable state: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The old database stays open (on its own inode) until the new one is open at path.
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: %w", err)
	}
	db, err := openStateDB(path, s.cfg.StateMmapSize)
	if err != nil {
		// path holds the restored file, which a restart opens; until then the old state serves.
		return fmt.Errorf("storage: restore: %w", err)
	}
	old := s.db
	s.db = db
	s.reg.load(st)
	if idx, err := readAppliedIndex(db); err == nil {
		s.appliedIdx.Store(idx) // the snapshot's: a restore may move it back
	}
	if old != nil {
		// Closing waits for every read transaction of the old database, and one may be a Raft snapshot
		// being persisted: its goroutine asks Raft's main loop for the configuration, and the main loop
		// waits for this restore (a follower installing the leader's snapshot). Close in the background:
		// the restore returns, and the old file goes once its last reader is done.
		go func() {
			if err := old.Close(); err != nil {
				s.log.Warn("restore: closing the replaced state failed", "error", err)
			}
		}()
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return fmt.Errorf("storage: restore: state restored, but syncing %s failed: %w", s.cfg.Dir, err)
	}
	return nil
}

// readStateFile opens the state database at path, reads its registry and closes it.
func readStateFile(path string) (registryState, error) {
	db, err := openStateDB(path, MinStateMmapSize)
	if err != nil {
		return registryState{}, err
	}
	st, err := readRegistry(db)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("storage: close %s: %w", path, cerr)
	}
	return st, err
}

func writeFromReader(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := writeFromReader(tmp, strings.NewReader(string(data))); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Snapshot asks Raft to take a snapshot now (it also takes them on its own schedule).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("storage: snapshot: %w", mapRaftError(err))
	}
	return nil
}
