package adminapi

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// TestChunkSender: a body written in one piece is sent in chunks of at most SnapshotChunkSize, in order.
func TestChunkSender(t *testing.T) {
	in := make([]byte, 2*SnapshotChunkSize+123)
	rand.Read(in)
	var out []byte
	sends := 0
	w := &chunkSender{send: func(b []byte) error {
		if len(b) > SnapshotChunkSize {
			t.Fatalf("chunk of %d bytes", len(b))
		}
		sends++
		out = append(out, b...)
		return nil
	}}
	if n, err := w.Write(in); err != nil || n != len(in) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if sends != 3 || !bytes.Equal(in, out) {
		t.Fatalf("%d sends; body equal: %v", sends, bytes.Equal(in, out))
	}
}
