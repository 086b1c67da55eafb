package issuer

import (
	"context"
	"errors"

	"github.com/signet-id/signet/server/groupcommit"
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

// Recorder group-commits issuance records (see groupcommit): concurrent Record calls are gathered into
// one Raft command while the previous one commits.
type Recorder struct {
	g *groupcommit.Committer[storage.Issuance]
}

// ErrRecorderStopped is returned by Record after the recorder's Run has returned.
var ErrRecorderStopped = groupcommit.ErrStopped

// NewRecorder returns a recorder; call Run to start it.
func NewRecorder(cfg RecorderConfig) (*Recorder, error) {
	if cfg.Appender == nil {
		return nil, errors.New("issuer: recorder config: Appender is required")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 2
	}
	propose := func(recs []storage.Issuance) groupcommit.Proposal { return cfg.Appender.ProposeLedger(recs) }
	return &Recorder{g: groupcommit.New("record issuance", cfg.MaxBatch, cfg.InFlight, propose)}, nil
}

// Record commits recs and returns when they are durable, or with the error that prevented it. A caller
// must not hand out the credentials unless Record returned nil. Recording no records is a no-op.
func (r *Recorder) Record(ctx context.Context, recs ...storage.Issuance) error {
	return r.g.Submit(ctx, recs)
}

// Run gathers and commits batches until ctx ends. Records still queued then fail with
// ErrRecorderStopped; batches already committing finish.
func (r *Recorder) Run(ctx context.Context) { r.g.Run(ctx) }
