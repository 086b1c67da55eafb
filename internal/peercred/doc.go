// Package peercred provides gRPC transport credentials for Unix-socket servers that record who
// connected: the peer's pid, uid and gid as the kernel saw them at connect time (SO_PEERCRED).
// The Workload API uses them to attest callers; the admin API to name and authorize admins.
//
//	srv := grpc.NewServer(grpc.Creds(peercred.Credentials()))
//	…
//	info, ok := peercred.FromContext(ctx) // in a handler
package peercred
