// Package groupcommit gathers concurrent submissions of a server node's recorders (issuance records,
// delivery reports) into one Raft proposal while the previous ones commit.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
)

// ErrStopped is returned by Submit after Run has returned.
var ErrStopped = errors.New("ledger recorder stopped")

// Proposal is a batch on its way through Raft: Wait returns once it is committed, or with the error
// that prevented it.
type Proposal interface {
	Wait(ctx context.Context) error
}

// Committer gathers concurrent submissions into one proposal while the previous ones commit, so
// the cost of a commit (an fsync, a network round trip) is shared by every caller waiting for it.
// There is no timer: an idle committer proposes a lone submission at once, and a busy one batches
// exactly as much as arrived during the previous commit. The Recorder (issuance records) and the
// DeliveryRecorder (delivery reports) are the two.
type Committer[T any] struct {
	maxBatch int // items in one proposal
	inFlight int // proposals committing at once
	propose  func([]T) Proposal
	what     string // for errors: "record issuance"
	queue    chan *pendingItems[T]
	stopped  chan struct{} // closed when run returns
}

type pendingItems[T any] struct {
	items []T
	done  chan error
}

// New returns a committer of at most maxBatch items per proposal and inFlight proposals committing at
// once; what names it in errors. Call Run to start it.
func New[T any](what string, maxBatch, inFlight int, propose func([]T) Proposal) *Committer[T] {
	return &Committer[T]{maxBatch: maxBatch, inFlight: inFlight, propose: propose, what: what,
		queue: make(chan *pendingItems[T], 4096), stopped: make(chan struct{})}
}

// Submit commits items and returns when they are durable, or with the error that prevented it.
// Submitting nothing is a no-op.
func (g *Committer[T]) Submit(ctx context.Context, items []T) error {
	if len(items) == 0 {
		return nil
	}
	p := &pendingItems[T]{items: items, done: make(chan error, 1)}
	select {
	case g.queue <- p:
	case <-g.stopped:
		return fmt.Errorf("server: %s: %w", g.what, ErrStopped)
	case <-ctx.Done():
		return fmt.Errorf("server: %s: %w", g.what, ctx.Err())
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("server: %s: %w", g.what, err)
		}
		return nil
	case <-g.stopped:
		return fmt.Errorf("server: %s: %w", g.what, ErrStopped)
	case <-ctx.Done():
		// The batch may still commit: the caller only stops waiting.
		return fmt.Errorf("server: %s: %w", g.what, ctx.Err())
	}
}

// Run gathers and commits batches until ctx ends. Items still queued then fail with ErrStopped;
// batches already committing finish.
func (g *Committer[T]) Run(ctx context.Context) {
	defer close(g.stopped)
	slots := make(chan struct{}, g.inFlight)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var first *pendingItems[T]
		select {
		case first = <-g.queue:
		case <-ctx.Done():
			return
		}
		batch := []*pendingItems[T]{first}
		n := len(first.items)
	gather:
		for n < g.maxBatch {
			select {
			case p := <-g.queue:
				batch = append(batch, p)
				n += len(p.items)
			default:
				break gather
			}
		}
		items := batch[0].items
		if len(batch) > 1 {
			items = make([]T, 0, n)
			for _, p := range batch {
				items = append(items, p.items...)
			}
		}
		// Proposed here, in order; waited for in parallel with the next batch's gathering.
		prop := g.propose(items)
		go func() {
			defer func() { <-slots }()
			// The commit is not tied to any one caller's context: it serves them all.
			err := prop.Wait(context.WithoutCancel(ctx))
			for _, p := range batch {
				p.done <- err
			}
		}()
	}
}
