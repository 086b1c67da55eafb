package cluster

// The Raft connection's framing, for tests that speak it from outside.
const (
	RaftHeader     = raftHeader
	RaftProofBytes = raftProofBytes
)
