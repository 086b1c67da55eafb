package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/signet-id/signet/storage"
)

// LedgerAppender commits batches of issuance records durably (the storage Store). Proposals must enter
// the log in call order: the store stamps each batch's issuance time, and the ledger is time-ordered.
type LedgerAppender interface {
	ProposeLedger(recs []storage.Issuance) *storage.LedgerProposal
}

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	// Appender receives each batch. Required.
	Appender LedgerAppender
	// MaxBatch caps the records in one Raft command (default 4096).
	MaxBatch int
	// InFlight is how many batches may be committing at once (default 2): while one batch is in the
	// FSM, the next is being written to the Raft log.
	InFlight int
}

// Recorder group-commits issuance records: concurrent Record calls are gathered into one Raft command
// while the previous one commits, so the cost of a commit (an fsync, a network round trip) is shared by
// every issuance waiting for it. There is no timer: an idle recorder commits a lone record at once, and a
// busy one batches exactly as much as arrived during the previous commit.
type Recorder struct {
	cfg     RecorderConfig
	queue   chan *pendingRecords
	stopped chan struct{} // closed when Run returns
}

type pendingRecords struct {
	recs []storage.Issuance
	done chan error
}

// ErrRecorderStopped is returned by Record after the recorder's Run has returned.
var ErrRecorderStopped = errors.New("ledger recorder stopped")

// NewRecorder returns a recorder; call Run to start it.
func NewRecorder(cfg RecorderConfig) (*Recorder, error) {
	if cfg.Appender == nil {
		return nil, errors.New("server: recorder config: Appender is required")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 2
	}
	return &Recorder{cfg: cfg, queue: make(chan *pendingRecords, 4096), stopped: make(chan struct{})}, nil
}

// Record commits recs and returns when they are durable, or with the error that prevented it. A caller
// must not hand out the credentials unless Record returned nil. Recording no records is a no-op.
func (r *Recorder) Record(ctx context.Context, recs ...storage.Issuance) error {
	if len(recs) == 0 {
		return nil
	}
	p := &pendingRecords{recs: recs, done: make(chan error, 1)}
	select {
	case r.queue <- p:
	case <-r.stopped:
		return fmt.Errorf("server: record issuance: %w", ErrRecorderStopped)
	case <-ctx.Done():
		return fmt.Errorf("server: record issuance: %w", ctx.Err())
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("server: record issuance: %w", err)
		}
		return nil
	case <-r.stopped:
		return fmt.Errorf("server: record issuance: %w", ErrRecorderStopped)
	case <-ctx.Done():
		// The batch may still commit: an issuance recorded but never handed out is harmless.
		return fmt.Errorf("server: record issuance: %w", ctx.Err())
	}
}

// Run gathers and commits batches until ctx ends. Records still queued then fail with
// ErrRecorderStopped; batches already committing finish.
func (r *Recorder) Run(ctx context.Context) {
	defer close(r.stopped)
	slots := make(chan struct{}, r.cfg.InFlight)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var first *pendingRecords
		select {
		case first = <-r.queue:
		case <-ctx.Done():
			return
		}
		batch := []*pendingRecords{first}
		n := len(first.recs)
	gather:
		for n < r.cfg.MaxBatch {
			select {
			case p := <-r.queue:
				batch = append(batch, p)
				n += len(p.recs)
			default:
				break gather
			}
		}
		recs := batch[0].recs
		if len(batch) > 1 {
			recs = make([]storage.Issuance, 0, n)
			for _, p := range batch {
				recs = append(recs, p.recs...)
			}
		}
		// Proposed here, in order; waited for in parallel with the next batch's gathering.
		proposal := r.cfg.Appender.ProposeLedger(recs)
		go func() {
			defer func() { <-slots }()
			// The commit is not tied to any one caller's context: it serves them all.
			err := proposal.Wait(context.WithoutCancel(ctx))
			for _, p := range batch {
				p.done <- err
			}
		}()
	}
}
