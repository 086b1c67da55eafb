package cluster

import "net"

// The Raft connection's framing, for tests that speak it from outside.
const (
	RaftHeader     = raftHeader
	RaftProofBytes = raftProofBytes
)

// BoundAddr is the address the cluster port listens on (Addr is the advertised one).
func (m *Mux) BoundAddr() net.Addr { return m.lis.Addr() }
