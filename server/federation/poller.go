package federation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Store is what the poller needs of the store (storage.Store).
type Store interface {
	IsLeader() bool
	Changed() <-chan struct{}
	Federations() ([]storage.Federation, error)
	Federation(td string) (storage.Federation, error)
	SetFederatedBundle(ctx context.Context, td string, bundle []byte) (storage.Federation, error)
}

// Poll bounds: a remote's refresh hint is followed within MinPollInterval..MaxPollInterval; after a
// failed fetch the next is retried after MinPollInterval, doubling with each failure up to MaxPollInterval.
const (
	DefaultMinPollInterval = 30 * time.Second
	DefaultMaxPollInterval = time.Hour
	// ShortestPollInterval and LongestPollInterval bound what may be configured.
	ShortestPollInterval = time.Second
	LongestPollInterval  = 24 * time.Hour
)

// PollerConfig configures the poller.
type PollerConfig struct {
	Store Store
	// WebRoots are the roots https_web endpoints are verified with (nil: the system's).
	WebRoots *x509.CertPool
	// MinInterval and MaxInterval bound the time between two fetches of one trust domain (defaults
	// DefaultMinPollInterval, DefaultMaxPollInterval). A bundle without a refresh hint is fetched again
	// after DefaultRefreshHint (within the bounds).
	MinInterval, MaxInterval time.Duration
	// FetchTimeout bounds one fetch (default 30 s).
	FetchTimeout time.Duration
	// Clock and After are the poller's time (defaults time.Now and time.After): tests inject both.
	Clock  func() time.Time
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger
}

// CheckPollIntervals refuses poll bounds outside ShortestPollInterval..LongestPollInterval, or a
// maximum below the minimum.
func CheckPollIntervals(minInterval, maxInterval time.Duration) error {
	for _, d := range []time.Duration{minInterval, maxInterval} {
		if d < ShortestPollInterval || d > LongestPollInterval {
			return fmt.Errorf("poll interval %s is out of range: between %s and %s", d, ShortestPollInterval, LongestPollInterval)
		}
	}
	if maxInterval < minInterval {
		return fmt.Errorf("poll max_interval %s is below min_interval %s", maxInterval, minInterval)
	}
	return nil
}

// Poller fetches the bundles of the trust domains this cluster federates with, on the leader only, each
// at its refresh hint, and stores a bundle through Raft only when it changed.
type Poller struct {
	cfg PollerConfig

	mu    sync.Mutex
	sched map[string]schedule // trust domain -> its fetch schedule
}

// schedule is when a relationship is fetched next. created tells a relationship deleted and created
// again (a new schedule) from the one scheduled.
type schedule struct {
	created  time.Time
	due      time.Time
	failures int
}

// NewPoller builds a poller.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	if cfg.Store == nil {
		return nil, errors.New("federation: poller: Store is required")
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinPollInterval
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = DefaultMaxPollInterval
	}
	if err := CheckPollIntervals(cfg.MinInterval, cfg.MaxInterval); err != nil {
		return nil, fmt.Errorf("federation: poller: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Poller{cfg: cfg, sched: map[string]schedule{}}, nil
}

// Run polls until ctx ends. A follower only waits: when it becomes leader, every relationship is due.
func (p *Poller) Run(ctx context.Context) {
	for {
		changed := p.cfg.Store.Changed()
		wait := p.cfg.MinInterval
		if p.cfg.Store.IsLeader() {
			wait = p.pollDue(ctx)
		} else {
			p.mu.Lock()
			clear(p.sched) // a new leader fetches everything at once
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed: // a relationship created or deleted (or any other change: cheap to look)
		case <-p.cfg.After(wait):
		}
	}
}

// pollDue fetches every relationship that is due and returns how long until the next one is.
func (p *Poller) pollDue(ctx context.Context) time.Duration {
	fs, err := p.cfg.Store.Federations()
	if err != nil {
		p.cfg.Logger.Warn("federation: list relationships failed", "error", err)
		return p.cfg.MinInterval
	}
	wait := p.cfg.MaxInterval
	known := make(map[string]bool, len(fs))
	for _, f := range fs {
		known[f.TrustDomain] = true
		if due := p.due(f); !due.After(p.cfg.Clock()) {
			_, _, _ = p.refresh(ctx, f)
		}
		wait = min(wait, max(p.due(f).Sub(p.cfg.Clock()), 0))
	}
	p.mu.Lock()
	for td := range p.sched {
		if !known[td] {
			delete(p.sched, td)
		}
	}
	p.mu.Unlock()
	return wait
}

// due is when f is fetched next: at once if it has no schedule, or one of a relationship since deleted.
func (p *Poller) due(f storage.Federation) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	sc, ok := p.sched[f.TrustDomain]
	if !ok || !sc.created.Equal(f.CreatedAt) {
		return time.Time{}
	}
	return sc.due
}

// Refresh fetches td's bundle now (signet federation refresh) and stores it if it changed; it returns
// the relationship as stored and whether the bundle changed. It runs on any server: the write goes
// through Raft like every other.
func (p *Poller) Refresh(ctx context.Context, td string) (storage.Federation, bool, error) {
	f, err := p.cfg.Store.Federation(td)
	if err != nil {
		return storage.Federation{}, false, err
	}
	return p.refresh(ctx, f)
}

// refresh fetches f's bundle, stores it if it changed, and schedules the next fetch: at the fetched
// bundle's refresh hint, or after a backoff on failure.
func (p *Poller) refresh(ctx context.Context, f storage.Federation) (storage.Federation, bool, error) {
	got, err := p.fetch(ctx, f)
	changed := false
	if err == nil {
		changed, err = differs(f, got)
		if err == nil && changed {
			var doc []byte
			if doc, err = got.Marshal(); err == nil {
				f, err = p.cfg.Store.SetFederatedBundle(ctx, f.TrustDomain, doc)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Clock()
	sc := p.sched[f.TrustDomain]
	if !sc.created.Equal(f.CreatedAt) {
		sc = schedule{created: f.CreatedAt}
	}
	if err != nil {
		sc.failures++
		sc.due = now.Add(min(p.cfg.MinInterval<<min(sc.failures-1, 16), p.cfg.MaxInterval))
		p.sched[f.TrustDomain] = sc
		p.cfg.Logger.Warn("federation: fetching a trust domain's bundle failed; keeping the one stored", "trust_domain", f.TrustDomain,
			"endpoint", f.BundleEndpointURL, "error", err, "retry_in", sc.due.Sub(now))
		return f, false, err
	}
	hint, ok := got.RefreshHint()
	if !ok || hint <= 0 {
		hint = DefaultRefreshHint
	}
	sc.failures, sc.due = 0, now.Add(min(max(hint, p.cfg.MinInterval), p.cfg.MaxInterval))
	p.sched[f.TrustDomain] = sc
	if changed {
		p.cfg.Logger.Info("federation: stored a new bundle", "trust_domain", f.TrustDomain, "revision", f.BundleRevision)
	}
	return f, changed, nil
}

func (p *Poller) fetch(ctx context.Context, f storage.Federation) (*spiffebundle.Bundle, error) {
	r, err := RemoteOf(f)
	if err != nil {
		return nil, err
	}
	o := FetchOptions{WebRoots: p.cfg.WebRoots, Timeout: p.cfg.FetchTimeout}
	if r.Profile == ProfileHTTPSSPIFFE && len(f.Bundle) > 0 {
		known, err := ParseBundle(r.TrustDomain, f.Bundle)
		if err != nil {
			return nil, fmt.Errorf("federation: the stored bundle of %q: %w", f.TrustDomain, err)
		}
		o.Known = known.X509Bundle()
	}
	return Fetch(ctx, r, o)
}

// RemoteOf is the endpoint of a stored relationship.
func RemoteOf(f storage.Federation) (Remote, error) {
	td, err := spiffeid.TrustDomainFromString(f.TrustDomain)
	if err != nil {
		return Remote{}, fmt.Errorf("federation %q: trust domain: %w", f.TrustDomain, err)
	}
	r := Remote{TrustDomain: td, URL: f.BundleEndpointURL, Profile: f.Profile}
	if f.EndpointSPIFFEID != "" {
		if r.EndpointID, err = spiffeid.FromString(f.EndpointSPIFFEID); err != nil {
			return Remote{}, fmt.Errorf("federation %q: endpoint SPIFFE ID: %w", f.TrustDomain, err)
		}
	}
	return r, nil
}

// differs reports whether got differs from f's stored bundle (by content: authorities, sequence and
// refresh hint; a document's key order is not significant).
func differs(f storage.Federation, got *spiffebundle.Bundle) (bool, error) {
	if len(f.Bundle) == 0 {
		return true, nil
	}
	stored, err := spiffebundle.Parse(got.TrustDomain(), f.Bundle)
	if err != nil {
		return true, nil // a stored document that no longer parses is replaced
	}
	return !stored.Equal(got), nil
}
