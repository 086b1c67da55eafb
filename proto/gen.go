// Package proto holds Signet's own gRPC APIs. The generated code is committed; regenerate it with
// `make proto` (needs protoc, protoc-gen-go and protoc-gen-go-grpc).
package proto

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative adminv1/admin.proto agentv1/agent.proto clusterv1/cluster.proto
