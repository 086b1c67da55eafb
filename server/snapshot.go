package server

import (
	"fmt"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
)

// Bounds of a state snapshot (`signet snapshot save`).
const (
	// SnapshotChunkSize is the most body bytes in one SaveSnapshot message (under gRPC's 4 MiB limit).
	SnapshotChunkSize = 1 << 20
	// DefaultMaxSnapshotSize is the largest snapshot served or accepted unless configured otherwise.
	DefaultMaxSnapshotSize = 16 << 30
)

// SaveSnapshot streams the whole state as of one consistent read: a header (trust domain, schema
// version, applied index, time, size, SHA-256), then the body. The export is audited before it is sent.
func (s *AdminService) SaveSnapshot(req *adminv1.SaveSnapshotRequest, stream adminv1.Admin_SaveSnapshotServer) error {
	if err := checkRequest(req); err != nil {
		return toStatus(err)
	}
	ctx := stream.Context()
	admin, err := s.authenticate(ctx)
	if err != nil {
		return toStatus(err)
	}
	exp, err := s.cfg.Store.Export()
	if err != nil {
		return toStatus(err)
	}
	defer exp.Close()
	info := exp.Info
	if max := s.maxSnapshotSize(); info.Size > max {
		return toStatus(fmt.Errorf("snapshot save: %w: the state is %d bytes, more than the limit of %d (MaxSnapshotSize)", ErrResourceExhausted, info.Size, max))
	}
	now := s.cfg.Clock()
	if err := s.cfg.Store.AppendAudit(storage.WithActor(ctx, admin), storage.AuditRecord{Time: now, Actor: admin, Action: "snapshot.save", Object: s.cfg.Store.NodeID(),
		Reason: fmt.Sprintf("applied index %d, %d bytes, sha256 %x", info.AppliedIndex, info.Size, info.SHA256)}); err != nil {
		return toStatus(err)
	}
	hdr := &adminv1.SnapshotHeader{TrustDomain: s.cfg.TrustDomain.Name(), SchemaVersion: info.SchemaVersion, AppliedIndex: info.AppliedIndex,
		Time: now.UnixNano(), Size: uint64(info.Size), Sha256: info.SHA256[:], Node: s.cfg.Store.NodeID()}
	if err := stream.Send(&adminv1.SaveSnapshotResponse{Part: &adminv1.SaveSnapshotResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	if _, err := exp.WriteTo(&chunkSender{send: func(b []byte) error {
		return stream.Send(&adminv1.SaveSnapshotResponse{Part: &adminv1.SaveSnapshotResponse_Chunk{Chunk: b}})
	}}); err != nil {
		return toStatus(err)
	}
	s.log.Info("state snapshot saved", "by", admin, "applied_index", info.AppliedIndex, "bytes", info.Size)
	return nil
}

func (s *AdminService) maxSnapshotSize() int64 {
	if s.cfg.MaxSnapshotSize > 0 {
		return s.cfg.MaxSnapshotSize
	}
	return DefaultMaxSnapshotSize
}

// chunkSender is an io.Writer that sends what is written in pieces of at most SnapshotChunkSize.
type chunkSender struct {
	send func([]byte) error
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), SnapshotChunkSize)
		// gRPC may hold the message after Send returns: never hand it a buffer the writer reuses.
		if err := c.send(append([]byte(nil), p[:k]...)); err != nil {
			return n, err
		}
		n, p = n+k, p[k:]
	}
	return n, nil
}
