package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Membership errors. A refused change leaves the Raft configuration as it was.
var (
	// ErrMemberNotFound is returned when removing a server that is not in the Raft configuration.
	ErrMemberNotFound = errors.New("no such server in the cluster")
	// ErrLastVoter is returned when removing the only voter: the cluster would have no one to commit.
	ErrLastVoter = errors.New("it is the last voter")
	// ErrMemberConflict is returned when adding a server whose ID or address another server already has.
	ErrMemberConflict = errors.New("conflicts with a server of the cluster")
)

// Member is one server of the Raft configuration.
type Member struct {
	ID      string
	Address string
	Voter   bool
}

// RaftStatus is this node's view of Raft.
type RaftStatus struct {
	NodeID        string
	Address       string
	State         string // Follower, Candidate, Leader, Shutdown
	Term          uint64
	LastIndex     uint64
	CommitIndex   uint64
	AppliedIndex  uint64
	LeaderID      string
	LeaderAddress string
}

// Status returns this node's Raft state, term and indexes, and the leader it knows of.
func (s *Store) Status() RaftStatus {
	addr, id := s.raft.LeaderWithID()
	return RaftStatus{NodeID: s.nodeID, Address: string(s.trans.LocalAddr()), State: s.raft.State().String(),
		Term: s.raft.CurrentTerm(), LastIndex: s.raft.LastIndex(), CommitIndex: s.raft.CommitIndex(),
		AppliedIndex: s.appliedIdx.Load(), LeaderID: string(id), LeaderAddress: string(addr)}
}

// Address is the address other servers reach this node's Raft transport (and cluster API) at.
func (s *Store) Address() string { return string(s.trans.LocalAddr()) }

// Leader returns the leader this node knows of, or empty strings when there is none.
func (s *Store) Leader() (id, address string) {
	addr, sid := s.raft.LeaderWithID()
	return string(sid), string(addr)
}

// Members returns the servers of the latest Raft configuration, sorted by ID.
func (s *Store) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("storage: raft configuration: %w", mapRaftError(err))
	}
	var out []Member
	for _, sv := range f.Configuration().Servers {
		out = append(out, Member{ID: string(sv.ID), Address: string(sv.Address), Voter: sv.Suffrage == raft.Voter})
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// HasClusterState reports whether this node has Raft state (it was bootstrapped or joined a cluster).
func (s *Store) HasClusterState() bool {
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// BootstrapCluster forms a new cluster of members (this node among them) on a node with no Raft state.
// Every member bootstrapped with the same list forms the same cluster.
func (s *Store) BootstrapCluster(members []Member) error {
	conf := raft.Configuration{}
	self := false
	for _, m := range members {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Address), Suffrage: raft.Voter})
		self = self || m.ID == s.nodeID
	}
	if !self {
		return fmt.Errorf("storage: bootstrap: this node (%s) is not among the %d members", s.nodeID, len(members))
	}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("storage: bootstrap %d members: %w", len(members), err)
	}
	s.electLoneVoter()
	return nil
}

// AddVoter adds a server to the cluster as a voter. On a node that is not the leader it fails with
// ErrNotLeader. A server already in the configuration with the same ID and address is left as it is; an
// ID or address that another server has is refused (ErrMemberConflict).
func (s *Store) AddVoter(ctx context.Context, id, address string) error {
	members, err := s.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		switch {
		case m.ID == id && m.Address == address:
			return nil
		case m.ID == id:
			return fmt.Errorf("storage: add server %s at %s: node ID %w (server %s is at %s); give the new node its own node ID or remove the old one first", id, address, ErrMemberConflict, m.ID, m.Address)
		case m.Address == address:
			return fmt.Errorf("storage: add server %s at %s: address %w (server %s)", id, address, ErrMemberConflict, m.ID)
		}
	}
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(address), 0, timeoutFrom(ctx)).Error(); err != nil {
		return fmt.Errorf("storage: add server %s at %s: %w", id, address, mapRaftError(err))
	}
	s.log.Info("added a voter", "added", id, "address", address)
	return nil
}

// RemoveServer removes a server from the cluster (a dead one, usually). Removing a server that is not in
// the configuration (ErrMemberNotFound) or the last voter (ErrLastVoter) is refused.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	members, err := s.Members()
	if err != nil {
		return err
	}
	found, voters := false, 0
	for _, m := range members {
		found = found || m.ID == id
		if m.Voter {
			voters++
		}
	}
	if !found {
		ids := make([]string, len(members))
		for i, m := range members {
			ids[i] = m.ID
		}
		return fmt.Errorf("storage: remove server %q: %w (servers: %v)", id, ErrMemberNotFound, ids)
	}
	if voters <= 1 {
		return fmt.Errorf("storage: remove server %q: %w; a cluster needs one", id, ErrLastVoter)
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, timeoutFrom(ctx)).Error(); err != nil {
		return fmt.Errorf("storage: remove server %q: %w", id, mapRaftError(err))
	}
	s.log.Info("removed a server", "removed", id)
	return nil
}

// electLoneVoter makes a node that is the only voter of its configuration stand for election at once,
// with a TimeoutNow RPC to itself (what raft's leadership transfer sends its target), instead of first
// waiting out the heartbeat timeout: a single-node server serves within milliseconds of its start.
// With any other voter in the configuration it does nothing: elections then take their normal course.
func (s *Store) electLoneVoter() {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	if len(servers) != 1 || servers[0].ID != raft.ServerID(s.nodeID) || servers[0].Suffrage != raft.Voter || s.raft.State() != raft.Follower {
		return
	}
	addr := s.trans.LocalAddr()
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(s.nodeID), Addr: []byte(addr)}}
	if err := s.trans.TimeoutNow(raft.ServerID(s.nodeID), addr, req, &raft.TimeoutNowResponse{}); err != nil {
		s.log.Debug("lone voter: immediate election not started; raft elects after its heartbeat timeout", "error", err)
	}
}

// WaitApplied blocks until this node has applied the log up to index, or ctx ends.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	err := s.waitIndex(ctx, index, s.appliedIdx.Load)
	if err == nil || err == ErrClosed {
		return err
	}
	return fmt.Errorf("storage: wait for index %d (applied %d): %w", index, s.appliedIdx.Load(), err)
}

// waitIndex waits until current() reaches index; ctx's error if it ends first, ErrClosed if the store
// closes.
func (s *Store) waitIndex(ctx context.Context, index uint64, current func() uint64) error {
	if current() >= index {
		return nil
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for current() < index {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// handoverTimeout bounds how long a stopping leader waits for another server to take over.
const handoverTimeout = 5 * time.Second

// HandOverLeadership makes a stopping leader with other voters hand leadership to one of them (raft's
// leadership transfer) instead of leaving the cluster without a leader until an election timeout: a
// rolling restart costs no election wait. Close does it; a node calls it earlier while it still serves
// the cluster API, so the writes its followers forwarded get their answers (or are sent to the new
// leader) instead of a broken connection. A no-op on a follower.
func (s *Store) HandOverLeadership() {
	if s.raft.State() != raft.Leader {
		return
	}
	members, err := s.Members()
	if err != nil {
		return
	}
	voters := 0
	for _, m := range members {
		if m.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handoverTimeout)
	defer cancel()
	if err := waitFuture(ctx, s.raft.LeadershipTransfer()); err != nil {
		s.log.Warn("stopping without handing over leadership; the others elect a leader after their heartbeat timeout", "error", err)
		return
	}
	s.log.Info("handed over leadership before stopping")
}
