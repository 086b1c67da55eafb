package storage

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestHCLogAdapterFormats: values raft logs with hclog.Fmt are printed formatted, not as the format verb
// and its operands; the adapter's own args are left as they were.
func TestHCLogAdapterFormats(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, nil)), "raft").With("peer", hclog.Fmt("%s-%d", "node", 1))
	type server struct{ ID, Address string }
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []server{{"n1", "127.0.0.1:1"}}))
	l.Info("second line")
	out := buf.String()
	if strings.Contains(out, "%") || !strings.Contains(out, `servers="[{ID:n1 Address:127.0.0.1:1}]"`) || strings.Count(out, "peer=node-1") != 2 {
		t.Fatalf("raft log lines:\n%s", out)
	}
}
