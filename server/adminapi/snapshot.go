package adminapi

import (
	"crypto/sha256"
	"fmt"
	"time"

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

// RestoreSnapshot replaces the whole state with a saved one on every server: the leader checks the
// header (trust domain, schema version, size) and the body's digest, then installs it through Raft. A
// snapshot that fails a check changes nothing. The restore is audited in the restored chain.
func (s *AdminService) RestoreSnapshot(stream adminv1.Admin_RestoreSnapshotServer) error {
	ctx := stream.Context()
	admin, err := s.authenticate(ctx)
	if err != nil {
		return toStatus(err)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := checkRequest(first); err != nil {
		return toStatus(err)
	}
	hdr := first.GetHeader()
	switch {
	case hdr == nil:
		return toStatus(fmt.Errorf("snapshot restore: %w: the first message must be the header", ErrInvalidArgument))
	case hdr.TrustDomain != s.cfg.TrustDomain.Name():
		return toStatus(fmt.Errorf("snapshot restore: %w: the snapshot is of trust domain %q, this cluster's is %q; nothing changed", ErrOtherTrustDomain, hdr.TrustDomain, s.cfg.TrustDomain.Name()))
	case len(hdr.Sha256) != sha256.Size:
		return toStatus(fmt.Errorf("snapshot restore: %w: header sha256: %d bytes, want %d", ErrInvalidArgument, len(hdr.Sha256), sha256.Size))
	case hdr.Size == 0:
		return toStatus(fmt.Errorf("snapshot restore: %w: header size: the body is empty", ErrInvalidArgument))
	case hdr.Size > uint64(s.maxSnapshotSize()):
		return toStatus(fmt.Errorf("snapshot restore: %w: the snapshot is %d bytes, more than the limit of %d (MaxSnapshotSize)", ErrResourceExhausted, hdr.Size, s.maxSnapshotSize()))
	}
	want := storage.ExportInfo{SchemaVersion: hdr.SchemaVersion, AppliedIndex: hdr.AppliedIndex, Size: int64(hdr.Size)}
	copy(want.SHA256[:], hdr.Sha256)
	body := &chunkReader{recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if err := checkRequest(m); err != nil {
			return nil, err
		}
		if m.GetHeader() != nil {
			return nil, fmt.Errorf("snapshot restore: %w: a second header", ErrInvalidArgument)
		}
		return m.GetChunk(), nil
	}}
	idx, err := s.cfg.Store.Import(ctx, body, want)
	if err != nil {
		return toStatus(err)
	}
	if err := s.cfg.Store.AppendAudit(storage.WithActor(ctx, admin), storage.AuditRecord{Time: s.cfg.Clock(), Actor: admin, Action: "snapshot.restore", Object: hdr.Node,
		Reason: fmt.Sprintf("snapshot of %s taken %s on %s at applied index %d, %d bytes, sha256 %x", hdr.TrustDomain,
			time.Unix(0, hdr.Time).UTC().Format(time.RFC3339), hdr.Node, hdr.AppliedIndex, hdr.Size, hdr.Sha256)}); err != nil {
		return toStatus(fmt.Errorf("snapshot restore: restored at index %d, but auditing it failed: %w", idx, err))
	}
	s.log.Warn("state replaced by a snapshot restore", "by", admin, "from_node", hdr.Node, "from_index", hdr.AppliedIndex, "index", idx)
	return stream.SendAndClose(&adminv1.RestoreSnapshotResponse{AppliedIndex: idx})
}

// chunkReader is an io.Reader over the chunks recv returns, until it returns io.EOF.
type chunkReader struct {
	recv func() ([]byte, error)
	buf  []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		b, err := c.recv()
		if err != nil {
			return 0, err
		}
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}
