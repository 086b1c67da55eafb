package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of a restore streamed from a follower to the leader.
const (
	// MaxRestoreBytes is the largest snapshot body the leader accepts from a follower (the admin API's
	// own limit, server.DefaultMaxSnapshotSize, is checked first on the follower).
	MaxRestoreBytes = 16 << 30
	// restoreChunkBytes is the most body bytes in one Restore message.
	restoreChunkBytes = 1 << 20
)

// ForwardImport streams a restore made on this follower to the leader (storage.ImportForwarder). Nothing
// is read from r unless the leader is reachable; the outcome is then the leader's.
func (n *Node) ForwardImport(ctx context.Context, r io.Reader, want storage.ExportInfo) (storage.Outcome, error) {
	cc, st, instead, err := n.leaderConn(ctx)
	if err != nil || instead != nil {
		return deref(instead), err
	}
	fail := func(err error) (storage.Outcome, error) {
		return storage.Outcome{}, fmt.Errorf("cluster: restore through the leader %s at %s: %w", st.LeaderID, st.LeaderAddress, err)
	}
	stream, err := clusterv1.NewClusterClient(cc).Restore(ctx)
	if err != nil {
		return fail(errors.New(statusMessage(err)))
	}
	hdr := &clusterv1.RestoreHeader{SchemaVersion: want.SchemaVersion, AppliedIndex: want.AppliedIndex, Size: uint64(want.Size), Sha256: want.SHA256[:]}
	sendErr := stream.Send(&clusterv1.RestoreRequest{Part: &clusterv1.RestoreRequest_Header{Header: hdr}})
	buf := make([]byte, restoreChunkBytes)
	for sendErr == nil {
		k, rerr := io.ReadFull(r, buf)
		if k > 0 {
			// gRPC may hold the message after Send returns: each chunk is a buffer of its own.
			sendErr = stream.Send(&clusterv1.RestoreRequest{Part: &clusterv1.RestoreRequest_Chunk{Chunk: append([]byte(nil), buf[:k]...)}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fail(fmt.Errorf("read the snapshot: %w", rerr))
		}
	}
	// io.EOF from Send: the leader stopped reading (it refused the body); its answer says why.
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		return fail(errors.New(statusMessage(sendErr)))
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fail(errors.New(statusMessage(err)))
	}
	return storage.Outcome{Index: resp.GetIndex(), Code: storage.ErrorCode(resp.GetErrorCode()), Message: resp.GetErrorMessage()}, nil
}

// Restore installs a follower's restore on this leader (see the proto).
func (s *service) Restore(stream clusterv1.Cluster_RestoreServer) error {
	ctx := stream.Context()
	if err := s.authPeer(ctx); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	switch {
	case hdr == nil:
		return status.Error(codes.InvalidArgument, "cluster: restore: the first message must be the header")
	case len(hdr.GetSha256()) != sha256.Size:
		return status.Errorf(codes.InvalidArgument, "cluster: restore: header sha256: %d bytes, want %d", len(hdr.GetSha256()), sha256.Size)
	case hdr.GetSize() == 0 || hdr.GetSize() > MaxRestoreBytes:
		return status.Errorf(codes.InvalidArgument, "cluster: restore: header size %d: want 1 to %d bytes (MaxRestoreBytes)", hdr.GetSize(), MaxRestoreBytes)
	}
	want := storage.ExportInfo{SchemaVersion: hdr.GetSchemaVersion(), AppliedIndex: hdr.GetAppliedIndex(), Size: int64(hdr.GetSize())}
	copy(want.SHA256[:], hdr.GetSha256())
	body := &restoreBody{recv: stream.Recv}
	idx, err := s.n.cfg.Raft.ApplyImport(ctx, body, want)
	resp := &clusterv1.RestoreResponse{Index: idx}
	if err != nil {
		resp = &clusterv1.RestoreResponse{ErrorCode: uint32(storage.ErrorCodeOf(err)), ErrorMessage: err.Error()}
	}
	return stream.SendAndClose(resp)
}

// restoreBody reads the body chunks of a Restore stream, until it ends.
type restoreBody struct {
	recv func() (*clusterv1.RestoreRequest, error)
	buf  []byte
}

func (b *restoreBody) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		m, err := b.recv()
		if err != nil {
			return 0, err
		}
		if m.GetHeader() != nil {
			return 0, fmt.Errorf("cluster: restore: %w: a second header", storage.ErrInvalid)
		}
		b.buf = m.GetChunk()
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}
