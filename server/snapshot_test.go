package server

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// saveAll runs SaveSnapshot and returns the header and the body it streamed.
func saveAll(tb testing.TB, c adminv1.AdminClient) (*adminv1.SnapshotHeader, []byte, error) {
	tb.Helper()
	stream, err := c.SaveSnapshot(testCtx(tb), &adminv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, nil, err
	}
	var hdr *adminv1.SnapshotHeader
	var body []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return hdr, body, nil
		}
		if err != nil {
			return hdr, body, err
		}
		if h := m.GetHeader(); h != nil {
			if hdr != nil || body != nil {
				tb.Fatal("a second header, or a header after the body")
			}
			hdr = h
			continue
		}
		body = append(body, m.GetChunk()...)
	}
}

func snapshotSaves(tb testing.TB, st *storage.Store) []storage.AuditRecord {
	tb.Helper()
	recs, _, err := st.AuditLog(storage.AuditQuery{Action: "snapshot.save", Limit: 100})
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// TestSaveSnapshot: the header comes first and describes the body; the save is audited; a state larger
// than MaxSnapshotSize is refused with RESOURCE_EXHAUSTED before anything is sent or audited.
func TestSaveSnapshot(t *testing.T) {
	e := newEnv(t)
	c := unixAdmin(t, e, "")
	hdr, body, err := saveAll(t, c)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if hdr == nil || hdr.TrustDomain != testTD.Name() || hdr.Size != uint64(len(body)) || !bytes.Equal(hdr.Sha256, sum[:]) ||
		hdr.AppliedIndex == 0 || hdr.Node != e.st.NodeID() || hdr.Time == 0 {
		t.Fatalf("header %v does not describe the %d-byte body", hdr, len(body))
	}
	if n := len(snapshotSaves(t, e.st)); n != 1 {
		t.Fatalf("%d snapshot.save audit records, want 1", n)
	}

	svc, err := adminapi.NewAdminService(adminapi.AdminServiceConfig{Store: e.st, CA: e.ca, TrustDomain: testTD, Selectors: testSelectors(), Authenticate: adminapi.UnixAdminAuth(uint32(os.Getuid())),
		MaxSnapshotSize: 4096, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, err = saveAll(t, adminClient(t, svc))
	if status.Code(err) != codes.ResourceExhausted || hdr != nil || !bytes.Contains([]byte(err.Error()), []byte("MaxSnapshotSize")) {
		t.Fatalf("save over the limit: header %v, error %v; want RESOURCE_EXHAUSTED naming MaxSnapshotSize", hdr, err)
	}
	if n := len(snapshotSaves(t, e.st)); n != 1 {
		t.Fatalf("%d snapshot.save audit records after a refused save, want 1", n)
	}
}
