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
