package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
)

// Versioned commands, in the state and across the cluster.
//
// The state records the highest command version it has applied (meta "schema_version"): a build that
// understands less refuses to open it, instead of misreading it. Each node records in Raft the command
// version it understands (a node-version command, optional so older nodes skip it), and the leader
// proposes a command type only when every server of the Raft configuration has recorded a version that
// understands it: during a rolling upgrade no replica is handed a command it would have to stop on.

var (
	bucketNodeVersions = []byte("node_versions") // node ID -> command version (4 bytes, big endian)

	keySchemaVersion = []byte("schema_version")
)

// versionReportRetry is how long a node waits before trying again to record its version after a failed
// attempt (it also tries at once whenever the cluster's leader changes).
const versionReportRetry = 2 * time.Second

type nodeVersionCmd struct {
	NodeID  string
	Version uint32
}

func (c nodeVersionCmd) wire() *raftv1.NodeVersion {
	return &raftv1.NodeVersion{NodeId: c.NodeID, Version: c.Version}
}

func nodeVersionFromWire(m *raftv1.NodeVersion) nodeVersionCmd {
	return nodeVersionCmd{NodeID: m.GetNodeId(), Version: m.GetVersion()}
}

func applyNodeVersion(tx *bolt.Tx, c nodeVersionCmd) (applied, error) {
	if c.NodeID == "" || c.Version == 0 {
		return applied{}, fmt.Errorf("node version: %w: node ID %q, version %d (both required)", ErrInvalid, c.NodeID, c.Version)
	}
	mustPut(tx.Bucket(bucketNodeVersions), []byte(c.NodeID), binary.BigEndian.AppendUint32(nil, c.Version))
	return applied{}, nil
}

// noteSchemaVersion raises the state's schema version to the version of t, if it is newer.
func noteSchemaVersion(tx *bolt.Tx, t commandType) error {
	meta := tx.Bucket(bucketMeta)
	if v := uint64(t.since()); v > getUint64(meta, keySchemaVersion) {
		return putUint64(meta, keySchemaVersion, v)
	}
	return nil
}

// checkSchemaVersion refuses a state that has applied commands newer than this build understands.
func checkSchemaVersion(tx *bolt.Tx) error {
	if v := getUint64(tx.Bucket(bucketMeta), keySchemaVersion); v > uint64(CommandVersion) {
		return fmt.Errorf("storage: %w: it has applied command version %d, this signet understands up to %d: run the newer signet on this data dir", ErrStateTooNew, v, CommandVersion)
	}
	return nil
}

// nodeVersions returns the command version each node has recorded.
func nodeVersions(tx *bolt.Tx) map[string]uint32 {
	out := map[string]uint32{}
	_ = tx.Bucket(bucketNodeVersions).ForEach(func(k, v []byte) error {
		if len(v) == 4 {
			out[string(k)] = binary.BigEndian.Uint32(v)
		}
		return nil
	})
	return out
}

// checkProposable refuses a command that a server of the cluster may not understand (checkVersions). A
// leader judges by the versions in its state, which may not hold yet what its predecessor committed (a
// just-elected leader applies the log up to the commit index only once its first entry commits): before
// refusing, a leader that has not yet caught up in its term waits, bounded by ctx, for a barrier (every
// committed entry applied) and checks again. So a new leader never refuses a write the old one accepted.
func (s *Store) checkProposable(ctx context.Context, cmd []byte) error {
	err := s.checkVersions(cmd)
	if err == nil || !errors.Is(err, ErrUpgradeInProgress) || s.raft.State() != raft.Leader {
		return err
	}
	term := s.raft.CurrentTerm()
	if s.caughtUpTerm.Load() == term {
		return err
	}
	if berr := waitFuture(ctx, s.raft.Barrier(timeoutFrom(ctx))); berr != nil {
		return fmt.Errorf("storage: apply what the previous leader committed before checking the cluster's command versions: %w", mapRaftError(berr))
	}
	s.caughtUpTerm.Store(term)
	return s.checkVersions(cmd)
}

// checkVersions refuses a command that a server of the Raft configuration may not understand: one
// that has not recorded a command version at least the one that introduced the command's type (a server
// that recorded none is of the JSON era, version 1). This node understands everything it proposes.
// Optional commands (the ignore-if-unknown bit) are never refused: a node that does not know one skips it.
// Non-voters are checked too: they apply the log like voters.
func (s *Store) checkVersions(cmd []byte) error {
	if len(cmd) == 0 {
		return nil
	}
	t := commandType(cmd[0])
	if _, known := commandNames[t]; !known && t&ignoreIfUnknown == 0 {
		// A newer follower forwarded a command this leader would stop on: it waits for this node's upgrade.
		return fmt.Errorf("storage: %s: %w: this server (%s) does not understand the command: upgrade it, then retry", t, ErrUpgradeInProgress, s.nodeID)
	}
	need := t.since()
	if inner := wrappedType(cmd); inner != 0 {
		// A policy-checked command is applied as the command it wraps: every server must understand that.
		need = max(need, inner.since())
	}
	if need <= commandVersionJSON || t&ignoreIfUnknown != 0 {
		return nil
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("storage: %s: read the raft configuration: %w", t, mapRaftError(err))
	}
	var versions map[string]uint32
	if err := s.view(func(tx *bolt.Tx) error { versions = nodeVersions(tx); return nil }); err != nil {
		return err
	}
	for _, srv := range f.Configuration().Servers {
		id := string(srv.ID)
		if id == s.nodeID {
			continue
		}
		if v := max(versions[id], commandVersionJSON); v < need {
			reported := fmt.Sprintf("reported command version %d", v)
			if versions[id] == 0 {
				reported = "has not reported a command version (it predates them, or has not caught up yet)"
			}
			return fmt.Errorf("storage: %s: %w: server %s (%s) %s, and this command needs version %d: upgrade it, or wait until it has started and caught up, then retry",
				t, ErrUpgradeInProgress, id, srv.Address, reported, need)
		}
	}
	return nil
}

// wrappedType returns the type of the command a policy-checked cmd wraps (0 for any other command, or
// one that does not decode: the state machine refuses it).
func wrappedType(cmd []byte) commandType {
	if len(cmd) == 0 || commandType(cmd[0]) != cmdPolicyChecked {
		return 0
	}
	m := &raftv1.PolicyChecked{}
	if decodeWire(cmd[1:], m) != nil || len(m.GetCommand()) == 0 {
		return 0
	}
	return commandType(m.GetCommand()[0])
}

// reportVersion records this node's command version in Raft, unless the state already holds it.
func (s *Store) reportVersion(ctx context.Context) error {
	return s.RecordNodeVersion(ctx, s.nodeID, CommandVersion)
}

// RecordNodeVersion records in Raft that server id understands command version v, unless the state
// already holds it. The cluster's leader calls it for a joining server, which cannot forward its own
// report (runVersionReport) before it is registered.
func (s *Store) RecordNodeVersion(ctx context.Context, id string, v uint32) error {
	if id == "" || v == 0 {
		return fmt.Errorf("storage: record a node's command version: %w: node ID %q, version %d (both required)", ErrInvalid, id, v)
	}
	var have uint32
	if err := s.view(func(tx *bolt.Tx) error { have = nodeVersions(tx)[id]; return nil }); err != nil {
		return err
	}
	if have == v {
		return nil
	}
	if _, err := s.propose(ctx, cmdNodeVersion, nodeVersionCmd{NodeID: id, Version: v}.wire()); err != nil {
		return fmt.Errorf("storage: record node %s's command version %d: %w", id, v, err)
	}
	return nil
}

// runVersionReport records this node's command version through the normal write path: at start, and
// again whenever the leader changes or versionReportRetry after a failure, until it is recorded or the
// store closes.
func (s *Store) runVersionReport() {
	obs := make(chan raft.Observation, 8)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(o)
	defer s.raft.DeregisterObserver(o)
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-obs:
		case <-retry.C:
		}
		if addr, _ := s.raft.LeaderWithID(); addr == "" {
			continue // no leader yet: the next leader observation wakes us
		}
		ctx, cancel := context.WithTimeout(context.Background(), versionReportRetry)
		err := s.reportVersion(ctx)
		cancel()
		if err == nil {
			return
		}
		s.log.Debug("recording this node's command version failed; retrying", "error", err, "in", versionReportRetry)
		retry.Reset(versionReportRetry)
	}
}
