package storage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingForwarder forwards like inProcessForwarder and keeps the codes the leader answered with.
type recordingForwarder struct {
	inProcessForwarder
	mu    sync.Mutex
	codes []ErrorCode
}

func (f *recordingForwarder) Forward(ctx context.Context, p Proposal) (Outcome, error) {
	out, err := f.inProcessForwarder.Forward(ctx, p)
	f.mu.Lock()
	f.codes = append(f.codes, out.Code)
	f.mu.Unlock()
	return out, err
}

func (f *recordingForwarder) last() ErrorCode {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.codes) == 0 {
		return codeOK
	}
	return f.codes[len(f.codes)-1]
}

// TestForwardedWritesAreGatedByTheLeader: the followers' node-version reports travel the forwarded
// write path, so the leader records every server; a write forwarded from a follower is gated by the
// leader (ErrUpgradeInProgress while a server has not reported a version that understands it, and for a
// command type the leader itself does not know), ledger records keep flowing and are stamped by the
// leader, and the leader's full disk reaches the follower's caller as ErrDiskFull.
func TestForwardedWritesAreGatedByTheLeader(t *testing.T) {
	stores := openTestCluster(t) // waits until the leader has recorded every server's version
	leader, follower := stores[0], stores[1]
	fwd := &recordingForwarder{inProcessForwarder: inProcessForwarder{stores}}
	follower.SetForwarder(fwd)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := follower.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatalf("an admin write through a follower once every server reported: %v", err)
	}

	addr := startOldNode(t, "old-node")
	if err := leader.raft.AddVoter("old-node", addr, 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	_, err := follower.CreateOwner(ctx, Owner{Name: "payments"})
	if !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), "server old-node") {
		t.Fatalf("CreateOwner through a follower: %v; want ErrUpgradeInProgress naming old-node", err)
	}
	if fwd.last() != codeUpgradeInProgress {
		t.Fatalf("the leader answered code %d; want it to refuse the forwarded write (code %d)", fwd.last(), codeUpgradeInProgress)
	}
	a := Agent{ID: "spiffe://example.org/signet/agent/join_token/tok1", Owner: "alice", Serial: "1", SVIDExpiresAt: time.Now().Add(time.Hour)}
	if _, err := follower.AttestAgent(ctx, "tok1", a, time.Now(), issuance(1, "alice", "", time.Time{})); !errors.Is(err, ErrUpgradeInProgress) || fwd.last() != codeUpgradeInProgress {
		t.Fatalf("AttestAgent (a command carrying ledger records) through a follower: %v (leader's code %d); want ErrUpgradeInProgress from the leader", err, fwd.last())
	}
	if err := follower.ProposeDeliveries([]Delivery{sampleDelivery(42)}).Wait(ctx); !errors.Is(err, ErrUpgradeInProgress) || fwd.last() != codeUpgradeInProgress {
		t.Fatalf("ProposeDeliveries through a follower: %v (leader's code %d); want ErrUpgradeInProgress from the leader", err, fwd.last())
	}
	recs := []Issuance{issuance(2, "alice", "", time.Time{})}
	if err := follower.AppendLedger(ctx, recs); err != nil || recs[0].IssuedAt.IsZero() {
		t.Fatalf("a ledger append through a follower during the upgrade: %v (issued_at %v)", err, recs[0].IssuedAt)
	}

	// A newer follower's command type this leader does not know: the leader refuses it, not its FSM.
	if out := leader.ApplyProposal(ctx, Proposal{Command: []byte{99}}); out.Code != codeUpgradeInProgress {
		t.Fatalf("a forwarded command of a type the leader does not know: %+v; want code %d", out, codeUpgradeInProgress)
	}

	// The old server is upgraded: forwarded writes go through again.
	if _, err := leader.propose(ctx, cmdNodeVersion, nodeVersionCmd{NodeID: "old-node", Version: CommandVersion}.wire()); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.CreateOwner(ctx, Owner{Name: "payments"}); err != nil {
		t.Fatalf("CreateOwner through a follower once every server understands it: %v", err)
	}
	if err := follower.ProposeDeliveries([]Delivery{sampleDelivery(43)}).Wait(ctx); err != nil {
		t.Fatalf("ProposeDeliveries through a follower once every server understands it: %v", err)
	}

	// The leader's state file is full: the follower's callers see ErrDiskFull, for commands and ledger
	// records alike.
	leader.stateFull.Store(true)
	if _, err := follower.CreateOwner(ctx, Owner{Name: "bob"}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("CreateOwner through a follower with the leader's disk full: %v; want ErrDiskFull", err)
	}
	if err := follower.AppendLedger(ctx, []Issuance{issuance(3, "alice", "", time.Time{})}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("AppendLedger through a follower with the leader's disk full: %v; want ErrDiskFull", err)
	}
	leader.stateFull.Store(false)
}

// TestForwardedLedgerAppendReturnsOnCommit (issue 10): a ledger append through a follower returns once
// the leader has committed it, without waiting until the follower learns of the commit, which hashicorp/
// raft tells followers only with the leader's next AppendEntries (new entries, or after CommitTimeout:
// an hour here, so a follower that waited would block past the caller's deadline). The next write
// brings the record to the follower.
func TestForwardedLedgerAppendReturnsOnCommit(t *testing.T) {
	stores := bootstrapThreeWith(t, func(int) Config {
		return Config{HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, CommitTimeout: time.Hour}
	})
	var leader, follower *Store
	waitFor(t, "a leader", func() bool {
		for i, s := range stores {
			if s.IsLeader() {
				leader, follower = s, stores[(i+1)%3]
				return true
			}
		}
		return false
	})
	// Only this follower forwards (the other's version reports fail without writing anything). Its own
	// version report is a forwarded command, which waits until applied: once its state holds it, its
	// reporter stops, and nothing writes but this test.
	follower.SetForwarder(inProcessForwarder{stores})
	waitFor(t, "the follower's command version in its own state", func() bool {
		return recordedVersion(t, follower, follower.NodeID()) == CommandVersion
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs := []Issuance{issuance(1, "alice", "e1", time.Time{})}
	if err := follower.AppendLedger(ctx, recs); err != nil {
		t.Fatalf("a ledger append through a follower: %v; want it answered once the leader committed it", err)
	}
	if recs[0].IssuedAt.IsZero() {
		t.Fatal("the forwarded record was not given the leader's issued_at")
	}
	if _, err := leader.LookupIssuance(recs[0].ID); err != nil {
		t.Fatalf("the acknowledged record is not on the leader: %v", err)
	}
	if err := leader.AppendLedger(ctx, []Issuance{issuance(2, "alice", "e1", time.Time{})}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forwarded record on the follower after the next write", func() bool {
		r, err := follower.LookupIssuance(recs[0].ID)
		return err == nil && r.IssuedAt.Equal(recs[0].IssuedAt)
	})
}
