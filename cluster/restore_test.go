package cluster_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRestoreStreamBounds: the leader's Restore refuses a header over MaxRestoreBytes and a body that is
// not the size its header says, and a follower's ForwardImport hands back the leader's refusal as the
// storage sentinel; nothing changes.
func TestRestoreStreamBounds(t *testing.T) {
	nodes, _, follower := startCluster(t)
	var leader *testNode
	for _, n := range nodes {
		if n.st.IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	stream, err := dialCluster(t, leader.mux.Addr().String(), follower.ident.Certificate()).Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("x"))
	if err := stream.Send(&clusterv1.RestoreRequest{Part: &clusterv1.RestoreRequest_Header{Header: &clusterv1.RestoreHeader{
		Size: cluster.MaxRestoreBytes + 1, Sha256: sum[:]}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "MaxRestoreBytes") {
		t.Fatalf("a restore over MaxRestoreBytes: %v", err)
	}

	body := strings.NewReader("twenty bytes of body")
	out, err := follower.node.ForwardImport(ctx, body, storage.ExportInfo{Size: 10, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if rerr := storage.ErrorFromCode(out.Code, out.Message); !errors.Is(rerr, storage.ErrInvalid) || !strings.Contains(rerr.Error(), "the header says 10") {
		t.Fatalf("a body longer than its header says, through a follower: %+v", out)
	}
	for i, n := range nodes {
		if id, err := n.st.RestoreID(); err != nil || id != "" {
			t.Fatalf("node %d after the refused restores: restore ID %q, %v", i, id, err)
		}
	}
}
