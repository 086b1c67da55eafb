// Package denials carries a server node's refused requests, from both APIs, to the audit log off the
// request path, coalescing repeats so that a flood of refusals costs a bounded number of Raft writes.
package denials

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/storage"
)

// Bounds of the denial log.
const (
	// QueueLen is how many refusals may wait for the writer; more are dropped and counted.
	QueueLen = 1024
	// denialWindow is how long repeats of a refusal are held back and counted before one record
	// stands for them all.
	denialWindow = 10 * time.Second
	// maxDenialKinds bounds the distinct refusals (actor, action, reason) tracked within a window;
	// refusals of a further kind are dropped and counted.
	maxDenialKinds = 1024
	// maxDenialKindsPerActor bounds the kinds of refusal of one actor recorded one by one within a
	// window; its refusals of further kinds are counted in one record (action denialOverflowAction).
	maxDenialKindsPerActor = 8
	denialOverflowAction   = "refusals.other"
	// denialWriteTimeout bounds one audit write; denialFlushTimeout the last writes when the log stops.
	denialWriteTimeout = 5 * time.Second
	denialFlushTimeout = 2 * time.Second
)

// DenialLog carries refused requests to the audit log off the request path: the handler hands a
// refusal over without waiting (when the queue is full it is dropped and counted in a log line), and
// Run writes them one Raft command at a time. The first refusal of a kind — same actor, action and
// reason, whatever object it named — is written at once; repeats within the next window are counted and
// written as one record that says how many refusals it stands for. A flood of refusals thus costs a
// bounded number of Raft writes, at most one in flight, and never slows the handler.
type DenialLog struct {
	store   *storage.Store
	clock   func() time.Time
	log     *slog.Logger
	window  time.Duration
	queue   chan denial
	dropped atomic.Uint64
	// actorKinds counts the kinds of refusal each actor has in the current window (Run's goroutine only).
	actorKinds map[string]int
}

// NewDenialLog returns a denial log writing to store; it records nothing until Run is called. clock
// stamps the refusals (nil: time.Now).
func NewDenialLog(store *storage.Store, clock func() time.Time, log *slog.Logger) *DenialLog {
	if clock == nil {
		clock = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &DenialLog{store: store, clock: clock, log: log.With("component", "audit"), window: denialWindow,
		queue: make(chan denial, QueueLen), actorKinds: map[string]int{}}
}

// SetWindow sets how long repeats of a refusal are held back and counted (default 10 s); call it
// before Run.
func (l *DenialLog) SetWindow(d time.Duration) { l.window = d }

// Dropped is how many refusals were dropped since the last count was logged (Run logs it every half
// window).
func (l *DenialLog) Dropped() uint64 { return l.dropped.Load() }

// denial is one refused request.
type denial struct {
	at                            time.Time
	actor, action, object, reason string
}

// kind is what makes two refusals repeats of each other: the object the caller named is left out of the
// reason, so a caller cannot make each refusal distinct by naming a new object.
type denialKind struct{ actor, action, reason string }

func (d *denial) kind() denialKind {
	reason := d.reason
	if d.object != "" {
		// Errors name objects quoted (%q), which escapes some characters: replace the quoted form first.
		reason = strings.ReplaceAll(reason, strconv.Quote(d.object), `"…"`)
		reason = strings.ReplaceAll(reason, d.object, "…")
	}
	return denialKind{d.actor, d.action, reason}
}

// record is the audit record of d standing for count refusals, the last at last.
func (d *denial) record(count int, last time.Time) storage.AuditRecord {
	reason := d.reason
	if count > 1 {
		reason += fmt.Sprintf(" [%d refusals like this one from %s to %s]", count,
			d.at.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339))
	}
	return storage.AuditRecord{Time: d.at, Actor: d.actor, Action: d.action, Object: d.object,
		Outcome: storage.AuditDenied, Reason: reason}
}

// denialGroup is a kind of refusal written within the current window, and its repeats held back.
type denialGroup struct {
	first denial // the first repeat held back
	count int    // repeats held back
	last  time.Time
	ticks int // window ticks left before the repeats are written (or the group forgotten)
	// actor is the actor whose kinds the group counts in actorKinds ("" for an overflow group).
	actor string
}

// add hands a refusal to the writer without blocking.
func (l *DenialLog) add(d denial) {
	select {
	case l.queue <- d:
	default:
		l.dropped.Add(1)
	}
}

// Run writes refusals to the audit log until ctx ends, then writes what it still holds (briefly).
func (l *DenialLog) Run(ctx context.Context) {
	// A window lasts two ticks: repeats are written half a window to a window after the refusal that
	// opened it, and then at most once a window while they go on.
	tick := time.NewTicker(l.window / 2)
	defer tick.Stop()
	groups := map[denialKind]*denialGroup{}
	for {
		select {
		case <-ctx.Done():
			l.stop(context.WithoutCancel(ctx), groups)
			return
		case d := <-l.queue:
			l.take(ctx, groups, d, true)
		case <-tick.C:
			l.tick(ctx, groups)
			l.reportDropped()
		}
	}
}

// take counts d in its kind's group. A kind not seen in the current window opens one and, when
// writeNew, is written at once; a repeat is held back for the window's record.
func (l *DenialLog) take(ctx context.Context, groups map[denialKind]*denialGroup, d denial, writeNew bool) {
	k := d.kind()
	g, ok := groups[k]
	if !ok && l.actorKinds[d.actor] >= maxDenialKindsPerActor {
		// The actor had its share of records this window: count the rest in one.
		d = denial{at: d.at, actor: d.actor, action: denialOverflowAction,
			reason: "refusals of further kinds, not recorded one by one (see the server log)"}
		k, writeNew = d.kind(), false
		g, ok = groups[k]
	}
	if !ok {
		if len(groups) >= maxDenialKinds {
			l.dropped.Add(1)
			return
		}
		g = &denialGroup{ticks: 2}
		if d.action != denialOverflowAction {
			g.actor = d.actor
			l.actorKinds[d.actor]++
		}
		groups[k] = g
		if writeNew {
			l.write(ctx, d.record(1, d.at))
			return
		}
	}
	if g.count == 0 {
		g.first = d
	}
	g.count++
	g.last = d.at
}

// tick ends the windows that are over: repeats held back are written as one record (and a new window
// opens), a kind without repeats is forgotten.
func (l *DenialLog) tick(ctx context.Context, groups map[denialKind]*denialGroup) {
	for k, g := range groups {
		if g.ticks--; g.ticks > 0 {
			continue
		}
		if g.count == 0 {
			delete(groups, k)
			if g.actor != "" {
				if l.actorKinds[g.actor]--; l.actorKinds[g.actor] <= 0 {
					delete(l.actorKinds, g.actor)
				}
			}
			continue
		}
		l.write(ctx, g.first.record(g.count, g.last))
		g.count, g.ticks = 0, 2
	}
}

// stop writes the repeats still held back, and what is still queued, within denialFlushTimeout.
func (l *DenialLog) stop(ctx context.Context, groups map[denialKind]*denialGroup) {
	ctx, cancel := context.WithTimeout(ctx, denialFlushTimeout)
	defer cancel()
	for drained := false; !drained; {
		select {
		case d := <-l.queue:
			l.take(ctx, groups, d, false)
		default:
			drained = true
		}
	}
	for _, g := range groups {
		if g.count > 0 {
			l.write(ctx, g.first.record(g.count, g.last))
		}
	}
	l.reportDropped()
}

func (l *DenialLog) write(ctx context.Context, r storage.AuditRecord) {
	wctx, cancel := context.WithTimeout(ctx, denialWriteTimeout)
	defer cancel()
	if err := l.store.AppendAudit(wctx, r); err != nil {
		l.log.Error("could not record a refused request in the audit log", "action", r.Action, "actor", r.Actor, "error", err)
	}
}

func (l *DenialLog) reportDropped() {
	if n := l.dropped.Swap(0); n > 0 {
		l.log.Warn("refused requests not recorded in the audit log: too many at once", "dropped", n)
	}
}

// Auditor hands refused requests to the server's denial log. A refusal never waits for the audit log;
// without a denial log (a service built on its own) refusals are only logged, at most as often as Limit
// lets them.
type Auditor struct {
	Denials *DenialLog
	Log     *slog.Logger
	Limit   *ratelimit.Lines
}

// Denied records that actor was refused action on object with err.
func (a Auditor) Denied(_ context.Context, actor, action, object string, err error) {
	if actor == "" {
		actor = "unknown"
	}
	if a.Denials == nil {
		a.Limit.Warn(a.Log, time.Now(), "refused request (no denial log: not audited)", "actor", actor, "action", action, "object", object, "error", err)
		return
	}
	a.Denials.add(denial{at: a.Denials.clock(), actor: actor, action: action, object: object, reason: err.Error()})
}
