// Package testkit builds the real components tests start from: a logger that writes to the test log,
// a single-node Raft store on a temporary directory, and a CA with on-disk keys. It imports only
// storage and ca, so the tests of server (package server) can use it as well as those of agent,
// workloadapi and internal/testenv.
package testkit

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Deadline bounds every wait the helpers make.
const Deadline = 30 * time.Second

// Logger writes warnings and errors to tb's log, so they show beside the failure they explain.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// LoggerTo is Logger that also writes every line to w (a SyncBuffer the test reads).
func LoggerTo(tb testing.TB, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(tbWriter{tb}, w), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// OpenStore opens a real single-node Raft store in a temporary directory, waits for it to lead and
// closes it when the test ends. log may be nil (Logger(tb)).
func OpenStore(tb testing.TB, log *slog.Logger) *storage.Store {
	tb.Helper()
	if log == nil {
		log = Logger(tb)
	}
	st, err := storage.Open(storage.Config{Dir: filepath.Join(tb.TempDir(), "data"), Bootstrap: true, Logger: log,
		HeartbeatTimeout: 150 * time.Millisecond, ElectionTimeout: 150 * time.Millisecond})
	if err != nil {
		tb.Fatalf("storage.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Errorf("store Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		tb.Fatalf("WaitLeader: %v", err)
	}
	return st
}

// NewCA creates CA authorities for td with on-disk keys in a temporary directory; ttl is the root's
// lifetime (0: the default).
func NewCA(tb testing.TB, td spiffeid.TrustDomain, ttl time.Duration) *ca.CA {
	tb.Helper()
	return NewCAIn(tb, filepath.Join(tb.TempDir(), "ca"), td, ttl, nil)
}

// NewCAIn loads or creates the CA of td in dir, with its private keys in keys (nil: files in dir).
func NewCAIn(tb testing.TB, dir string, td spiffeid.TrustDomain, ttl time.Duration, keys ca.KeyManager) *ca.CA {
	tb.Helper()
	x, j, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: dir, TrustDomain: td, TTL: ttl, Keys: keys})
	if err != nil {
		tb.Fatalf("ca.LoadOrCreate: %v", err)
	}
	c, err := ca.New(ca.Config{TrustDomain: td, X509: x, JWT: j})
	if err != nil {
		tb.Fatalf("ca.New: %v", err)
	}
	return c
}

// DirNames lists the names in dir, sorted.
func DirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// WriteFileMode writes content to dir/name with exactly mode (whatever the umask) and returns the path.
func WriteFileMode(tb testing.TB, dir, name, content string, mode os.FileMode) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		tb.Fatal(err)
	}
	return p
}
