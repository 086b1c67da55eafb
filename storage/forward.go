package storage

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/signet-id/signet/proto/raftv1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Proposal is a write as it crosses from a follower to the leader: the encoded command, as this node
// would have handed it to raft.Apply, and the command's ledger records, unstamped: the leader stamps
// issued_at, so that log order and time order agree whichever node the issuance came through. A command
// carrying ledger records (agent attestation and renewal) is encoded with an empty ledger; a proposal
// with no command is a plain ledger append. A proposal with neither asks for a read index.
type Proposal struct {
	Command []byte
	Ledger  []byte
}

// Outcome is the leader's answer to a Proposal: the log index the write was committed at (or, for a
// read-index request, the index a linearizable read must wait for), the FSM's result (encoded, see
// encodeResult), the issued_at the leader stamped on ledger records, or the error, as a code that maps
// back to this package's sentinel errors and the leader's message.
type Outcome struct {
	Index    uint64
	Result   []byte
	IssuedAt time.Time
	Code     ErrorCode
	Message  string
}

// Forwarder sends a proposal to the leader and returns its outcome; an error is a transport failure
// (the proposal may or may not have been applied). cluster.Client implements it.
type Forwarder interface {
	Forward(ctx context.Context, p Proposal) (Outcome, error)
}

// forwarderSlot holds the forwarder, set once the cluster client exists (it needs this store).
type forwarderSlot struct{ p atomic.Pointer[Forwarder] }

// SetForwarder makes writes on a follower go to the leader through f. Until it is called, a follower's
// writes fail with ErrNotLeader.
func (s *Store) SetForwarder(f Forwarder) { s.fwd.p.Store(&f) }

func (s *Store) forwarder() Forwarder {
	if p := s.fwd.p.Load(); p != nil {
		return *p
	}
	return nil
}

// forwards reports whether this node's writes go to the leader: it has a forwarder and does not lead.
func (s *Store) forwards() bool { return s.forwarder() != nil && s.raft.State() != raft.Leader }

// forwardRetry is how often a write retries while the cluster has no leader (an election).
const forwardRetry = 50 * time.Millisecond

// errNotAppended marks a proposal raft refused because this node is not the leader: it is not in the
// log, so it is safe to send again (unlike a leadership lost after appending).
var errNotAppended = fmt.Errorf("%w: the proposal was not appended", ErrNotLeader)

// route applies p on the leader: here if this node leads, else through the forwarder. While there is
// no leader, or leadership moves, a proposal that was not appended is retried until ctx ends or
// Config.NoLeaderWait has passed: callers never see "not leader" during an election, and a server cut
// off from the majority tells them so (noLeaderError) instead of leaving them to time out. After a
// forwarded write this node waits until it has applied the write too, so a read here afterwards sees
// it.
func (s *Store) route(ctx context.Context, p Proposal) (Outcome, error) {
	start := time.Now()
	giveUp := time.NewTimer(s.cfg.NoLeaderWait)
	defer giveUp.Stop()
	for {
		var out Outcome
		f := s.forwarder()
		if f == nil || s.raft.State() == raft.Leader {
			out = s.ApplyProposal(ctx, p)
		} else if _, leader := s.Leader(); leader == "" {
			out = Outcome{Code: codeNotAppended, Message: "the cluster has no leader"}
		} else {
			var err error
			if out, err = f.Forward(ctx, p); err != nil {
				return Outcome{}, err
			}
			if out.Code == codeOK {
				if err := s.WaitApplied(ctx, out.Index); err != nil {
					return Outcome{}, err
				}
			}
		}
		if out.Code != codeNotAppended || f == nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return Outcome{}, noLeaderError(time.Since(start), out.Message, ctx.Err())
		case <-giveUp.C:
			return Outcome{}, noLeaderError(time.Since(start), out.Message, nil)
		case <-s.closing:
			return Outcome{}, ErrClosed
		case <-time.After(forwardRetry):
		}
	}
}

// noLeaderError is what a write reports when it stops waiting for a leader (cause: the caller's
// context ended first, or nil). It was never appended: nothing was written.
func noLeaderError(waited time.Duration, last string, cause error) error {
	const why = "this server cannot reach a majority (quorum) of the cluster's servers — it is cut off from them, or most of them are down — so it cannot commit; nothing was written"
	if cause != nil {
		return fmt.Errorf("%w: no leader for %s (until the request's deadline: %w), last: %s: %s", ErrNotLeader, waited.Round(time.Millisecond), cause, last, why)
	}
	return fmt.Errorf("%w: no leader for %s, last: %s: %s", ErrNotLeader, waited.Round(time.Millisecond), last, why)
}

// ApplyProposal applies p if this node is the leader and returns the outcome, errors included as codes.
// It is what the cluster service runs for a follower's forwarded write.
func (s *Store) ApplyProposal(ctx context.Context, p Proposal) Outcome {
	if len(p.Command) == 0 && len(p.Ledger) == 0 {
		idx, err := s.readIndex(ctx)
		return outcomeOf(idx, nil, err)
	}
	if len(p.Ledger) == 0 {
		resp, idx, err := s.applyLocal(ctx, p.Command) // gated by the cluster's versions in enqueue
		return s.resultOutcome(resultType(p.Command), idx, resp, err)
	}
	u, err := decodeUnstampedWire(p.Ledger)
	if err != nil {
		return outcomeOf(0, nil, err)
	}
	var build ledgerBuild
	t := cmdLedgerAppend
	if len(p.Command) > 0 {
		// The leader gates what it proposes, whichever node the write came through.
		if err := s.checkProposable(ctx, p.Command); err != nil {
			return outcomeOf(0, nil, err)
		}
		t = commandType(p.Command[0])
		build = func(batch []byte, signed bool) ([]byte, error) { return withLedger(p.Command, batch, signed) }
	}
	lp := s.proposeUnstamped(ctx, u, len(u.ends), build)
	if err := lp.Wait(ctx); err != nil {
		return outcomeOf(0, nil, err)
	}
	out := s.resultOutcome(t, lp.index(), lp.response(), nil)
	out.IssuedAt = lp.issuedAt
	return out
}

func (s *Store) resultOutcome(t commandType, idx uint64, resp any, err error) Outcome {
	if err != nil {
		return outcomeOf(idx, nil, err)
	}
	b, err := encodeResult(t, resp)
	return outcomeOf(idx, b, err)
}

func outcomeOf(idx uint64, result []byte, err error) Outcome {
	if err != nil {
		return Outcome{Index: idx, Code: errorCodeOf(err), Message: err.Error()}
	}
	return Outcome{Index: idx, Result: result}
}

// forwardCommand proposes an encoded command through propose and decodes the FSM's result.
func (s *Store) forwardCommand(ctx context.Context, cmd []byte) (any, error) {
	out, err := s.route(ctx, Proposal{Command: cmd})
	if err != nil {
		return nil, err
	}
	if out.Code != codeOK {
		return nil, out.err()
	}
	return decodeResult(resultType(cmd), out.Result)
}

// readIndex returns the commit index a linearizable read must wait for, after confirming that this node
// is still the leader (a deposed leader's state may be stale).
func (s *Store) readIndex(ctx context.Context) (uint64, error) {
	idx := s.raft.CommitIndex()
	if err := waitFuture(ctx, s.raft.VerifyLeader()); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return 0, errNotAppended
		}
		return 0, fmt.Errorf("storage: verify leadership: %w", mapRaftError(err))
	}
	return idx, nil
}

// ReadBarrier makes the next read on this node linearizable: it returns once this node has applied
// everything the cluster had committed when it was called (the leader's read index, confirmed by a
// round of heartbeats). Reads that must see every acknowledged write, whichever server took it, call it
// first; see docs/architecture.md for which do.
func (s *Store) ReadBarrier(ctx context.Context) error {
	out, err := s.route(ctx, Proposal{})
	if err != nil {
		return fmt.Errorf("storage: read barrier: %w", err)
	}
	if out.Code != codeOK {
		return fmt.Errorf("storage: read barrier: %w", out.err())
	}
	return s.WaitApplied(ctx, out.Index)
}

func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withLedger returns cmd (a protobuf command carrying ledger records, encoded with none) with the
// stamped batch. The follower's encoded command is decoded strictly, so the leader proposes exactly the
// command the follower built, plus the batch: in the type whose records may carry signed_by if signed
// (the follower sends the type that predates it; the leader decides).
func withLedger(cmd, batch []byte, signed bool) ([]byte, error) {
	t := unsignedType(commandType(cmd[0]))
	var m proto.Message
	switch t {
	case cmdAgentAttest:
		a := &raftv1.AgentAttest{}
		if err := decodeWire(cmd[1:], a); err != nil {
			return nil, fmt.Errorf("%w: forwarded %s: %v", ErrInvalid, t, err)
		}
		a.LedgerBatch, m = batch, a
	case cmdAgentAttestNode:
		a := &raftv1.AgentAttestNode{}
		if err := decodeWire(cmd[1:], a); err != nil {
			return nil, fmt.Errorf("%w: forwarded %s: %v", ErrInvalid, t, err)
		}
		a.LedgerBatch, m = batch, a
	case cmdAgentRenew:
		r := &raftv1.AgentRenew{}
		if err := decodeWire(cmd[1:], r); err != nil {
			return nil, fmt.Errorf("%w: forwarded %s: %v", ErrInvalid, t, err)
		}
		r.LedgerBatch, m = batch, r
	default:
		return nil, fmt.Errorf("%w: forwarded %s carries ledger records; it takes none", ErrInvalid, t)
	}
	if signed {
		t = signedType(t)
	}
	return encodeCommand(t, m)
}

// wire is the unstamped batch as it crosses to the leader: each record's fields but issued_at, as
// field 1 (bytes), back to back.
func (u *unstampedBatch) wire() []byte {
	var b []byte
	start := 0
	for _, end := range u.ends {
		b = protowire.AppendBytes(protowire.AppendTag(b, 1, protowire.BytesType), u.bodies[start:end])
		start = end
	}
	return b
}

func decodeUnstampedWire(b []byte) (unstampedBatch, error) {
	var u unstampedBatch
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return unstampedBatch{}, fmt.Errorf("%w: forwarded ledger records: %w", ErrInvalid, errBadRecord)
		}
		body, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return unstampedBatch{}, fmt.Errorf("%w: forwarded ledger records: %w", ErrInvalid, errBadRecord)
		}
		u.bodies = append(u.bodies, body...)
		u.ends = append(u.ends, len(u.bodies))
		b = b[n+m:]
	}
	return u, nil
}
