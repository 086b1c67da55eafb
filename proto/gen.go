// Package proto holds Signet's own gRPC APIs (adminv1, agentv1 with the agent status API, clusterv1
// between the servers of a cluster) and the wire form of its replicated Raft commands (raftv1). The
// generated code is committed; regenerate it with `make proto` (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc).
package proto

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative adminv1/admin.proto agentv1/agent.proto agentv1/status.proto clusterv1/cluster.proto
//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative raftv1/raft.proto
