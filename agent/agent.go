// Package agent is the Signet node agent: it keeps the entries its server says it may issue, mints an
// entry's X.509-SVID when a matching workload first asks (or ahead of time for prefetch entries), in
// batches (keys are generated here and never leave the node), rotates it at half life while it is in
// use and drops it once unused for a whole lifetime, caches JWT-SVIDs, and answers the Workload API
// from that cache.
//
//	a, err := agent.New(agent.Config{Client: agentv1.NewAgentClient(conn), TrustDomain: td})
//	go a.Run(ctx)
//	// a implements workloadapi.Source
package agent

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config configures an Agent.
type Config struct {
	// Client talks to the server's agent API. Required.
	Client agentv1.AgentClient
	// TrustDomain is the agent's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// MintBatch is how many CSRs go in one signing call (default 500).
	MintBatch int
	// OnBundle, if set, receives the X.509 authorities whenever the server pushes a new bundle (the agent
	// process persists them for its next start), and the key IDs of the revoked upstream intermediates
	// (ServerConn.RenewIfUntrusted).
	OnBundle func(roots []*x509.Certificate, revokedSigners []string)
	// OnRevoked, if set, is called once when the server refuses this agent's identity (evicted, banned):
	// the agent has already dropped every SVID it held and stopped syncing.
	OnRevoked func(err error)
	// JWTMintRate is how many JWT-SVIDs per second the agent asks the server to mint for one caller uid
	// (a token bucket holding up to JWTMintBurst); JWT-SVIDs served from the cache do not count. Past
	// it, FetchJWTSVIDs refuses with workloadapi.ErrRateLimited. Default DefaultJWTMintRate.
	JWTMintRate float64
	// JWTMintBurst is how many mints one caller uid may have in a row. Default DefaultJWTMintBurst.
	JWTMintBurst int
	// JWTCacheSize bounds the JWT-SVIDs kept for reuse; the least recently used is evicted when it is
	// reached. Default DefaultJWTCacheSize.
	JWTCacheSize int
	// DeliveryReportInterval is how often the agent reports to the server which workloads it handed
	// credentials to (default DefaultDeliveryReportInterval); a failed report is retried as long.
	DeliveryReportInterval time.Duration
	// MaxTrackedDeliveries bounds the (credential, caller) pairs kept for reports (default
	// DefaultMaxTrackedDeliveries).
	MaxTrackedDeliveries int
	Clock                func() time.Time
	Logger               *slog.Logger
}

// maxLimitedCallers bounds the caller uids the JWT mint limiter tracks at once.
const maxLimitedCallers = 4096

// Defaults applied by New to zero Config fields.
const (
	// DefaultJWTMintRate allows a workload a new audience every few seconds for each of its identities
	// and then some, while bounding what one uid can add to the issuance ledger.
	DefaultJWTMintRate = 20
	// DefaultJWTMintBurst covers a workload fetching tokens for many audiences at start.
	DefaultJWTMintBurst = 50
	// DefaultJWTCacheSize is the number of JWT-SVIDs the agent keeps for reuse.
	DefaultJWTCacheSize = 10000
)

// Agent is a node agent's cache and its sync with the server.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	revision uint64
	synced   bool // a complete update has been applied
	entries  map[string]*entryState
	// index holds each entry under its first selector: a caller's candidates are the entries indexed
	// under one of its own selectors, so matching does not scan every entry.
	index map[selector.Selector][]*entryState
	// selectorKeys counts the entries' selectors by type and key (the value up to its first colon).
	selectorKeys map[selectorKey]int
	bundle       bundleState
	removedKeys  removedKeys // key IDs that have left the bundle (under mu)
	federated    federatedState
	changed      chan struct{} // closed and replaced whenever what workloads see changes

	mintWake chan struct{}
	jwts     *jwtCache
	// limiter holds a token bucket per caller uid for the JWT-SVIDs minted for it.
	limiter *ratelimit.Buckets[uint32]
	// serverHolds are the entries whose JWT-SVIDs the server refused for a limit of its own.
	serverHolds *holdOffs
	revoked     sync.Once

	// wanted holds entries a workload asked for while their SVIDs were pending: they are minted first.
	wantedMu sync.Mutex
	wanted   map[string]bool

	// deliveries are the hand-overs of credentials to workloads, until reported to the server.
	deliveries *deliveryLog

	// streams are the open X.509 streams (under mu): the entries they match are in use while open.
	streams map[*x509Stream]struct{}
}

// x509Stream is one open Workload API X.509 stream, registered by KeepX509.
type x509Stream struct{ sels []selector.Selector }

type entryState struct {
	entry     *agentv1.Entry
	selectors []selector.Selector
	expiresAt time.Time // zero: never
	svid      *x509SVID // nil until minted
	// lastUsed is when a workload last fetched the entry's X.509-SVID (unix nanoseconds; 0: never). It
	// is written under the read lock, hence atomic.
	lastUsed atomic.Int64
}

// defaultUseWindow is how long a fetch keeps an entry in use when neither its SVID nor the entry
// says how long SVIDs live (the server always sends a TTL; this is a floor for a zero one).
const defaultUseWindow = time.Hour

// useWindow is how long after a fetch the entry stays in use without another: the life of its SVID.
func (e *entryState) useWindow() time.Duration {
	if e.svid != nil {
		return e.svid.life()
	}
	if ttl := time.Duration(e.entry.X509TtlSeconds) * time.Second; ttl > 0 {
		return ttl
	}
	return defaultUseWindow
}

// usedUntil is when the last fetch stops keeping the entry in use (zero if it was never fetched).
func (e *entryState) usedUntil() time.Time {
	lu := e.lastUsed.Load()
	if lu == 0 {
		return time.Time{}
	}
	return time.Unix(0, lu).Add(e.useWindow())
}

func (e *entryState) expired(now time.Time) bool {
	return !e.expiresAt.IsZero() && !now.Before(e.expiresAt)
}

// New validates cfg and returns an Agent; call Run to start syncing.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil {
		return nil, errors.New("agent: config: Client is required")
	}
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("agent: config: TrustDomain is required")
	}
	if cfg.MintBatch <= 0 {
		cfg.MintBatch = 500
	}
	switch {
	case cfg.JWTMintRate < 0:
		return nil, fmt.Errorf("agent: config: JWTMintRate %g is negative: want mints per second per uid, or 0 for the default %d", cfg.JWTMintRate, DefaultJWTMintRate)
	case cfg.JWTMintBurst < 0:
		return nil, fmt.Errorf("agent: config: JWTMintBurst %d is negative: want at least 1, or 0 for the default %d", cfg.JWTMintBurst, DefaultJWTMintBurst)
	case cfg.JWTCacheSize < 0:
		return nil, fmt.Errorf("agent: config: JWTCacheSize %d is negative: want at least 1, or 0 for the default %d", cfg.JWTCacheSize, DefaultJWTCacheSize)
	case cfg.DeliveryReportInterval < 0:
		return nil, fmt.Errorf("agent: config: DeliveryReportInterval %s is negative: want a positive interval, or 0 for the default %s", cfg.DeliveryReportInterval, DefaultDeliveryReportInterval)
	case cfg.MaxTrackedDeliveries < 0:
		return nil, fmt.Errorf("agent: config: MaxTrackedDeliveries %d is negative: want at least 1, or 0 for the default %d", cfg.MaxTrackedDeliveries, DefaultMaxTrackedDeliveries)
	}
	if cfg.DeliveryReportInterval == 0 {
		cfg.DeliveryReportInterval = DefaultDeliveryReportInterval
	}
	if cfg.MaxTrackedDeliveries == 0 {
		cfg.MaxTrackedDeliveries = DefaultMaxTrackedDeliveries
	}
	if cfg.JWTMintRate == 0 {
		cfg.JWTMintRate = DefaultJWTMintRate
	}
	if cfg.JWTMintBurst == 0 {
		cfg.JWTMintBurst = DefaultJWTMintBurst
	}
	if cfg.JWTCacheSize == 0 {
		cfg.JWTCacheSize = DefaultJWTCacheSize
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "agent"),
		entries:      map[string]*entryState{},
		index:        map[selector.Selector][]*entryState{},
		selectorKeys: map[selectorKey]int{},
		changed:      make(chan struct{}),
		mintWake:     make(chan struct{}, 1),
		jwts:         newJWTCache(cfg.JWTCacheSize),
		limiter:      ratelimit.NewBuckets[uint32](cfg.JWTMintRate, cfg.JWTMintBurst, maxLimitedCallers),
		serverHolds:  newHoldOffs(),
		wanted:       map[string]bool{},
		streams:      map[*x509Stream]struct{}{},
		deliveries:   newDeliveryLog(cfg.MaxTrackedDeliveries),
	}, nil
}

// Run syncs entries and mints SVIDs until ctx ends.
func (a *Agent) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); a.syncLoop(ctx) }()
	go func() { defer wg.Done(); a.mintLoop(ctx) }()
	go func() { defer wg.Done(); a.reportLoop(ctx) }()
	wg.Wait()
}

// WaitReady blocks until the first complete entry update has been applied and every prefetch entry
// then known has an SVID, or ctx ends. Other entries are minted when a workload asks.
func (a *Agent) WaitReady(ctx context.Context) error {
	for {
		a.mu.RLock()
		ready := a.synced && a.allMintedLocked()
		ch := a.changed
		a.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("agent: wait for first SVIDs: %w", ctx.Err())
		}
	}
}

func (a *Agent) allMintedLocked() bool {
	now := a.cfg.Clock()
	for _, e := range a.entries {
		if e.entry.Prefetch && !e.expired(now) && (e.svid == nil || !now.Before(e.svid.notAfter)) {
			return false
		}
	}
	return true
}

// revoke drops every entry and SVID (workloads get PermissionDenied from now on) and reports why.
func (a *Agent) revoke(err error) {
	a.revoked.Do(func() {
		a.log.Error("the server refused this agent's identity; dropping all SVIDs", "error", err)
		a.mu.Lock()
		for _, e := range a.entries {
			a.removeEntryLocked(e)
		}
		a.notifyLocked()
		a.mu.Unlock()
		if a.cfg.OnRevoked != nil {
			a.cfg.OnRevoked(err)
		}
	})
}

func isRevocation(err error) bool {
	return status.Code(err) == codes.PermissionDenied
}

// notifyLocked wakes every Workload API stream.
func (a *Agent) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// want marks entries a workload is waiting for, so the minter takes them first.
func (a *Agent) want(ids []string) {
	if len(ids) == 0 {
		return
	}
	a.wantedMu.Lock()
	fresh := false
	for _, id := range ids {
		if !a.wanted[id] {
			a.wanted[id], fresh = true, true
		}
	}
	a.wantedMu.Unlock()
	if fresh {
		a.wakeMinter()
	}
}

// takeWanted returns and clears the wanted set.
func (a *Agent) takeWanted() map[string]bool {
	a.wantedMu.Lock()
	defer a.wantedMu.Unlock()
	w := a.wanted
	a.wanted = map[string]bool{}
	return w
}

func (a *Agent) wakeMinter() {
	select {
	case a.mintWake <- struct{}{}:
	default:
	}
}

// selectorKey is a selector's type and key: "unix" and "sha256" for unix:sha256:<hex>.
type selectorKey struct{ typ, key string }

func keyOf(s selector.Selector) selectorKey {
	k, _, _ := strings.Cut(s.Value, ":")
	return selectorKey{s.Type, k}
}

// UsesSelector reports whether any entry the agent holds has a selector of type typ whose value
// starts with key and a colon ("unix", "sha256"): an attestor need not produce, or pay for, selectors
// no entry can match on.
func (a *Agent) UsesSelector(typ, key string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.selectorKeys[selectorKey{typ, key}] > 0
}

func (a *Agent) indexAddLocked(e *entryState) {
	for _, s := range e.selectors {
		a.selectorKeys[keyOf(s)]++
	}
	if len(e.selectors) == 0 {
		return
	}
	k := e.selectors[0]
	a.index[k] = append(a.index[k], e)
}

func (a *Agent) indexRemoveLocked(e *entryState) {
	for _, s := range e.selectors {
		k := keyOf(s)
		if a.selectorKeys[k]--; a.selectorKeys[k] <= 0 {
			delete(a.selectorKeys, k)
		}
	}
	if len(e.selectors) == 0 {
		return
	}
	k := e.selectors[0]
	list := a.index[k]
	if i := slices.Index(list, e); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(a.index, k)
	} else {
		a.index[k] = list
	}
}

// matchLocked returns the entries whose selectors are all among sels, sorted by SPIFFE ID then entry ID
// so responses are stable.
func (a *Agent) matchLocked(sels []selector.Selector) []*entryState {
	var out []*entryState
	for _, s := range sels {
		for _, e := range a.index[s] {
			if selector.Subset(e.selectors, sels) {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(x, y *entryState) int {
		return cmp.Or(cmp.Compare(x.entry.SpiffeId, y.entry.SpiffeId), cmp.Compare(x.entry.Id, y.entry.Id))
	})
	return slices.CompactFunc(out, func(x, y *entryState) bool { return x == y })
}
