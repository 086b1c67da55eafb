package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestLoneVoterElectsAtOnce: a single-voter store becomes leader without waiting out its heartbeat
// timeout (set to an hour here, so only the immediate election can make it leader in time), after
// bootstrap and again after a restart.
func TestLoneVoterElectsAtOnce(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		s, err := Open(Config{Dir: dir, Bootstrap: true, Logger: testLogger(t), HeartbeatTimeout: time.Hour, ElectionTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.WaitLeader(ctx)
		cancel()
		if err != nil {
			t.Fatalf("a lone voter did not elect itself at once: %v", err)
		}
		s.Close()
	}
}

// inProcessForwarder hands a follower's proposals to the leader store directly: the storage side of
// forwarding, without the cluster transport (tested in package cluster).
type inProcessForwarder struct{ stores []*Store }

func (f inProcessForwarder) Forward(ctx context.Context, p Proposal) (Outcome, error) {
	for _, s := range f.stores {
		if s.IsLeader() {
			return s.ApplyProposal(ctx, p), nil
		}
	}
	return Outcome{Code: codeNotAppended, Message: "no leader"}, nil
}

// bootstrapThree opens three stores on 127.0.0.1 (the i-th with heartbeat and election timeout hb(i))
// and bootstraps them as one cluster.
func bootstrapThree(t *testing.T, hb func(i int) time.Duration) []*Store {
	t.Helper()
	return bootstrapThreeWith(t, func(i int) Config { return Config{HeartbeatTimeout: hb(i), ElectionTimeout: hb(i)} })
}

// bootstrapThreeWith is bootstrapThree with the i-th store's Config from cfg (Dir and Logger are set
// here).
func bootstrapThreeWith(t *testing.T, cfg func(i int) Config) []*Store {
	t.Helper()
	var stores []*Store
	for i := range 3 {
		c := cfg(i)
		c.Dir, c.Logger = t.TempDir(), testLogger(t)
		s, err := Open(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	var members []Member
	for _, s := range stores {
		members = append(members, Member{ID: s.NodeID(), Address: s.Address(), Voter: true})
	}
	for _, s := range stores {
		if err := s.BootstrapCluster(members); err != nil {
			t.Fatal(err)
		}
	}
	return stores
}

// openTestCluster starts three stores on 127.0.0.1 forming one cluster, forwarding to each other, and
// returns the leader first, once the leader has recorded every server's command version.
func openTestCluster(t *testing.T) []*Store {
	t.Helper()
	stores := bootstrapThree(t, func(int) time.Duration { return 200 * time.Millisecond })
	for _, s := range stores {
		s.SetForwarder(inProcessForwarder{slices.Clone(stores)}) // its own copy: stores is reordered below
	}
	leader := -1
	waitFor(t, "a leader among the three", func() bool {
		leader = slices.IndexFunc(stores, (*Store).IsLeader)
		return leader >= 0
	})
	stores[0], stores[leader] = stores[leader], stores[0]
	// The leader gates protobuf commands until every server has recorded its command version: the
	// followers' reports reach it through forwarding. Whichever leads next (the tests stop leaders)
	// catches up on them before it gates a write.
	for _, f := range stores {
		waitFor(t, f.NodeID()+"'s command version on the leader", func() bool {
			return recordedVersion(t, stores[0], f.NodeID()) == CommandVersion
		})
	}
	return stores
}

// TestWritesThroughAFollower: registry writes, a ledger append and an attestation (a command carrying a
// ledger record) made on a follower are applied by the leader; the follower sees them at once after; its
// results and errors are the leader's, sentinel identity included.
func TestWritesThroughAFollower(t *testing.T) {
	stores := openTestCluster(t)
	leader, follower := stores[0], stores[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	o, err := follower.CreateOwner(ctx, Owner{Name: "alice"})
	if err != nil || o.Name != "alice" {
		t.Fatalf("create owner on a follower: %+v, %v", o, err)
	}
	if _, err := follower.Owner("alice"); err != nil {
		t.Fatalf("the follower does not see its own write at once: %v", err)
	}
	if _, err := follower.CreateOwner(ctx, Owner{Name: "alice"}); !errors.Is(err, ErrOwnerExists) {
		t.Fatalf("duplicate owner through a follower: %v, want ErrOwnerExists", err)
	}
	e := testEntry(t, "e1", "spiffe://example.org/web", "alice")
	got, err := follower.CreateEntry(ctx, e)
	if err != nil || got.Revision == 0 {
		t.Fatalf("create entry on a follower: %+v, %v", got, err)
	}
	res, err := follower.CreateEntries(ctx, []Entry{e, testEntry(t, "e2", "spiffe://example.org/api", "alice")})
	if err != nil || len(res) != 2 || !errors.Is(res[0].Err, ErrInvalid) || res[1].Err != nil {
		t.Fatalf("batch through a follower: %+v, %v", res, err)
	}

	recs := []Issuance{issuance(1, "alice", "e1", time.Time{})}
	if err := follower.AppendLedger(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if recs[0].IssuedAt.IsZero() {
		t.Fatal("a forwarded ledger record was not given the leader's issued_at")
	}
	for _, s := range []*Store{follower, leader} {
		if err := s.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if r, err := s.LookupIssuance(recs[0].ID); err != nil || !r.IssuedAt.Equal(recs[0].IssuedAt) {
			t.Fatalf("%s: lookup after a forwarded append: %+v, %v", s.NodeID(), r, err)
		}
	}

	tok, err := follower.CreateJoinToken(ctx, JoinToken{ID: "tok1", SecretHash: []byte{0}, Owner: "alice", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	a := Agent{ID: "spiffe://example.org/signet/agent/join_token/tok1", AttestationType: "join_token", Owner: "alice", Serial: "1", SVIDExpiresAt: time.Now().Add(time.Hour)}
	rec := issuance(2, "alice", "", time.Time{})
	got2, err := follower.AttestAgent(ctx, tok.ID, a, time.Now(), rec)
	if err != nil || got2.ID != a.ID {
		t.Fatalf("attest through a follower: %+v, %v", got2, err)
	}
	if _, err := follower.AttestAgent(ctx, tok.ID, a, time.Now(), issuance(3, "alice", "", time.Time{})); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("reused token through a follower: %v, want ErrTokenUsed", err)
	}
	if err := leader.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.LookupIssuance(rec.ID); err != nil {
		t.Fatalf("the attestation's ledger record is not on the leader: %v", err)
	}
}

// TestMembershipChangesRefused: removing an unknown server or the last voter, and adding a duplicate
// node ID or address, are refused and change nothing.
func TestMembershipChangesRefused(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.RemoveServer(ctx, "nope"); !errors.Is(err, ErrMemberNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
	if err := s.RemoveServer(ctx, s.NodeID()); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("remove last voter: %v", err)
	}
	if err := s.AddVoter(ctx, s.NodeID(), "127.0.0.1:1"); !errors.Is(err, ErrMemberConflict) {
		t.Fatalf("duplicate node ID: %v", err)
	}
	if err := s.AddVoter(ctx, "other", s.Address()); !errors.Is(err, ErrMemberConflict) {
		t.Fatalf("duplicate address: %v", err)
	}
	if m, err := s.Members(); err != nil || len(m) != 1 {
		t.Fatalf("members after refused changes: %+v, %v", m, err)
	}
}

// TestWriteThroughAnElection: with the leader gone, a follower's writes (a registry write and a ledger
// append) wait for the new leader instead of failing with "not leader".
func TestWriteThroughAnElection(t *testing.T) {
	stores := openTestCluster(t)
	stores[0].Close() // the leader
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stores[1].CreateOwner(ctx, Owner{Name: "bob"}); err != nil {
		t.Fatalf("a write during the election: %v", err)
	}
	recs := []Issuance{issuance(7, "bob", "", time.Time{})}
	if err := stores[2].AppendLedger(ctx, recs); err != nil || recs[0].IssuedAt.IsZero() {
		t.Fatalf("a ledger append after the election: %v (issued_at %v)", err, recs[0].IssuedAt)
	}
	for _, s := range stores[1:] {
		if err := s.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Owner("bob"); err != nil {
			t.Fatalf("%s: %v", s.NodeID(), err)
		}
	}
}

// TestStoppingLeaderHandsOver: a leader that stops hands leadership to another voter. The followers'
// heartbeat timeout is an hour, so without the handover no one would lead within the test.
func TestStoppingLeaderHandsOver(t *testing.T) {
	stores := bootstrapThree(t, func(i int) time.Duration {
		if i == 0 {
			return 200 * time.Millisecond // the only one that stands for election on its own
		}
		return time.Hour
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := stores[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	stores[0].Close()
	for {
		if stores[1].IsLeader() || stores[2].IsLeader() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("no follower took over from the stopped leader")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestNewLeaderCatchesUpBeforeGating: a just-elected leader that has not yet applied what its
// predecessor committed (here its state file is held by a write transaction, so it applies nothing)
// does not refuse a write as an upgrade in progress: it waits for a barrier, then checks the command
// versions again, and the write goes through.
func TestNewLeaderCatchesUpBeforeGating(t *testing.T) {
	stores := bootstrapThree(t, func(i int) time.Duration {
		if i == 0 {
			return 200 * time.Millisecond // leads first; the others only through the transfer below
		}
		return time.Hour
	})
	for _, s := range stores {
		s.SetForwarder(inProcessForwarder{stores})
	}
	old, next := stores[0], stores[1]
	held, err := next.stateDB().Begin(true) // next applies nothing while it is held
	if err != nil {
		t.Fatal(err)
	}
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { held.Rollback() }) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := old.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		waitFor(t, s.NodeID()+"'s command version on the leader", func() bool { return recordedVersion(t, old, s.NodeID()) == CommandVersion })
	}
	if err := waitFuture(ctx, old.raft.LeadershipTransferToServer(raft.ServerID(next.NodeID()), raft.ServerAddress(next.Address()))); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	waitFor(t, "the new leader", next.IsLeader)
	if v := recordedVersion(t, next, old.NodeID()); v != 0 {
		t.Fatalf("the new leader applied the old one's command version (%d) while held: the test proves nothing", v)
	}

	before := next.raft.LastIndex()
	errc := make(chan error, 1)
	go func() {
		_, err := next.CreateOwner(ctx, Owner{Name: "alice"})
		errc <- err
	}()
	barrier := func() bool {
		for i := before + 1; i <= next.raft.LastIndex(); i++ {
			var l raft.Log
			if next.logStore.GetLog(i, &l) == nil && l.Type == raft.LogBarrier {
				return true
			}
		}
		return false
	}
	for !barrier() {
		select {
		case err := <-errc:
			t.Fatalf("the new leader answered a write before applying its predecessor's commits: %v", err)
		case <-ctx.Done():
			t.Fatal("the new leader neither answered nor waited for a barrier")
		case <-time.After(5 * time.Millisecond):
		}
	}
	release.Do(func() { held.Rollback() })
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("a write through the new leader: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the write through the new leader did not finish")
	}
	if _, err := next.Owner("alice"); err != nil {
		t.Fatal(err)
	}
}

// TestWritesDuringALeadershipTransfer: while the leader hands leadership over, Raft refuses its
// proposals without appending them (ErrLeadershipTransferInProgress). The leader's own writes, a
// registry write and a ledger append, are then retried (here, or at the new leader) instead of failing.
// The transfer target is down and behind the log, so the transfer lasts the whole election timeout and
// then fails: the writes made meanwhile must all succeed once it has.
func TestWritesDuringALeadershipTransfer(t *testing.T) {
	stores := openTestCluster(t)
	leader, target := stores[0], stores[2]
	targetID, targetAddr := raft.ServerID(target.NodeID()), raft.ServerAddress(target.Address())
	target.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := leader.CreateOwner(ctx, Owner{Name: "before"}); err != nil { // the target falls behind
		t.Fatal(err)
	}
	transfer := leader.raft.LeadershipTransferToServer(targetID, targetAddr)
	done := make(chan error, 1)
	go func() { done <- transfer.Error() }()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("the leadership transfer to a stopped server succeeded")
			}
			if i == 0 {
				t.Fatal("the transfer ended before the first write: no write was made during it")
			}
			return
		default:
		}
		appended := make(chan error, 1) // both writes at once, so both are made during the transfer
		go func() { appended <- leader.AppendLedger(ctx, []Issuance{issuance(1000+i, "before", "", time.Time{})}) }()
		if _, err := leader.CreateOwner(ctx, Owner{Name: fmt.Sprintf("during-%d", i)}); err != nil {
			t.Fatalf("a registry write during the leadership transfer: %v", err)
		}
		if err := <-appended; err != nil {
			t.Fatalf("a ledger append during the leadership transfer: %v", err)
		}
	}
}

// TestWriteWithoutQuorum: a server that finds no leader (here, one in no cluster at all: as cut off
// from every other server) does not hold a write until the caller's deadline; after NoLeaderWait it
// refuses it as ErrNotLeader, saying it cannot reach a quorum and that nothing was written.
func TestWriteWithoutQuorum(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir(), Logger: testLogger(t), NoLeaderWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetForwarder(inProcessForwarder{[]*Store{s}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = s.CreateOwner(ctx, Owner{Name: "alice"})
	if !errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
		t.Fatalf("a write without a leader: %v (caller's context: %v); want ErrNotLeader before the deadline", err, ctx.Err())
	}
	for _, want := range []string{"no leader for", "cannot reach a majority (quorum) of the cluster's servers", "nothing was written"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("the refusal %q does not say %q", err, want)
		}
	}
	err = s.AppendLedger(ctx, []Issuance{issuance(1, "alice", "", time.Time{})})
	if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "quorum") || ctx.Err() != nil {
		t.Fatalf("a ledger append without a leader: %v (caller's context: %v); want ErrNotLeader naming the quorum", err, ctx.Err())
	}
}
