package main

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/storage"
)

// This file holds the checks of the server's raft section: the cluster keys, the snapshot keys and the
// join secret.

// maxRetryJoin bounds raft.retry_join: a cluster has at most 5 voters.
const maxRetryJoin = 16

// checkCluster validates the cluster keys and settles raft.bootstrap: a node configured to find its
// peers (bootstrap_expect above 1, or retry_join) does not bootstrap alone.
func checkCluster(path string, c *serverFileConfig) error {
	r := &c.Raft
	switch r.BootstrapExpect {
	case 0, 1, 3, 5:
	default:
		return configError(path, "raft.bootstrap_expect", "%d: use 1 (a single server), 3 or 5 (a cluster that survives 1 or 2 lost servers)", r.BootstrapExpect)
	}
	if len(r.RetryJoin) > maxRetryJoin {
		return configError(path, "raft.retry_join", "%d addresses: at most %d", len(r.RetryJoin), maxRetryJoin)
	}
	for i, a := range r.RetryJoin {
		if err := checkHostPort(path, fmt.Sprintf("raft.retry_join[%d]", i), a, false); err != nil {
			return err
		}
	}
	if r.BootstrapExpect > 1 && len(r.RetryJoin) < r.BootstrapExpect-1 {
		return configError(path, "raft.retry_join", "lists %d servers; raft.bootstrap_expect %d needs the addresses of the other %d", len(r.RetryJoin), r.BootstrapExpect, r.BootstrapExpect-1)
	}
	if len(r.ClusterID) > 64 || strings.IndexFunc(r.ClusterID, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}) >= 0 {
		return configError(path, "raft.cluster_id", "%q: up to 64 letters, digits, '-', '_' or '.'", r.ClusterID)
	}
	if len(r.RetryJoin) == 0 {
		r.RetryJoin = nil // "retry_join: []" and no retry_join are the same
	}
	if err := checkSnapshots(path, c); err != nil {
		return err
	}
	finds := r.BootstrapExpect > 1 || len(r.RetryJoin) > 0
	if r.Bootstrap == nil {
		b := !finds
		r.Bootstrap = &b
	}
	if *r.Bootstrap && finds {
		return configError(path, "raft.bootstrap", "true with raft.bootstrap_expect or raft.retry_join: a node that bootstraps alone forms a cluster of its own; remove raft.bootstrap (the servers form the cluster together)")
	}
	return checkJoinSecret(path, r.JoinSecretFile, finds, &r.joinSecret)
}

// Bounds of the raft snapshot keys: a snapshot at most every 16 entries or 100ms (each one writes the
// whole state), and at most 10 million log entries kept or between snapshots.
const (
	minSnapshotEntries  = 16
	maxSnapshotEntries  = 10_000_000
	minSnapshotInterval = 100 * time.Millisecond
	maxSnapshotInterval = 24 * time.Hour
)

// checkSnapshots validates raft.snapshot_threshold, raft.snapshot_interval and raft.trailing_logs and
// fills their defaults (storage's).
func checkSnapshots(path string, c *serverFileConfig) error {
	r := &c.Raft
	r.SnapshotThreshold = cmp.Or(r.SnapshotThreshold, storage.DefaultSnapshotThreshold)
	r.TrailingLogs = cmp.Or(r.TrailingLogs, storage.DefaultTrailingLogs)
	if r.SnapshotInterval == 0 {
		r.SnapshotInterval = storage.DefaultSnapshotInterval
	}
	for _, k := range []struct {
		key string
		n   uint64
	}{{"raft.snapshot_threshold", r.SnapshotThreshold}, {"raft.trailing_logs", r.TrailingLogs}} {
		if k.n < minSnapshotEntries || k.n > maxSnapshotEntries {
			return configError(path, k.key, "%d: must be between %d and %d log entries", k.n, minSnapshotEntries, maxSnapshotEntries)
		}
	}
	if r.SnapshotInterval < minSnapshotInterval || r.SnapshotInterval > maxSnapshotInterval {
		return configError(path, "raft.snapshot_interval", "%s: must be between %s and %s", r.SnapshotInterval, minSnapshotInterval, maxSnapshotInterval)
	}
	return nil
}

// checkJoinSecret reads raft.join_secret_file into secret. The file is required for a node that forms
// or joins a cluster (finds); without it a single server accepts no other servers.
func checkJoinSecret(path, file string, finds bool, secret *[]byte) error {
	const key = "raft.join_secret_file"
	if file == "" {
		if finds {
			return configError(path, key, "is required with raft.bootstrap_expect or raft.retry_join: the servers of a cluster share a join secret (create one with `head -c 32 /dev/urandom | base64 > /etc/signet/join.secret && chmod 600 /etc/signet/join.secret` and copy it to every server)")
		}
		return nil
	}
	if err := requireAbs(path, key, file); err != nil {
		return err
	}
	b, err := cluster.ReadJoinSecretFile(file)
	if err != nil {
		return configError(path, key, "%v", err)
	}
	*secret = b
	return nil
}
