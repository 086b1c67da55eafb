// Package workload is what the mTLS example's server and client share: a go-spiffe X509Source on the
// Workload API, serving the SVID of one chosen SPIFFE ID when the workload has several, and the
// plumbing of a small command (flags, signals, errors).
package workload

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// StartTimeout bounds the wait for the Workload API's first answer.
const StartTimeout = 30 * time.Second

// NewSource connects to the Workload API at $SPIFFE_ENDPOINT_SOCKET and waits for the first X.509 context.
// With id set, the source waits for and serves the SVID of that SPIFFE ID (the workload may be issued several, as
// in `signet dev`, which also issues one to every process of its user); otherwise the first.
func NewSource(ctx context.Context, id string) (*workloadapi.X509Source, error) {
	var opts []workloadapi.X509SourceOption
	if id != "" {
		want, err := ParseID("id", id)
		if err != nil {
			return nil, err
		}
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return nil
		}))
	}
	startCtx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(startCtx, opts...)
	if err != nil {
		return nil, fmt.Errorf("workload API (SPIFFE_ENDPOINT_SOCKET=%q): %w", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), err)
	}
	// An SVID minted on first request may come in an update after the first: wait for it.
	for {
		_, err := src.GetX509SVID()
		if err == nil {
			return src, nil
		}
		if werr := src.WaitUntilUpdated(startCtx); werr != nil {
			src.Close()
			return nil, fmt.Errorf("-id %s: the Workload API issued this process no SVID of that ID within %s (is there an entry whose selectors it has?): %w", id, StartTimeout, err)
		}
	}
}

// Main parses the flags already defined, runs run until it returns or SIGINT or SIGTERM cancels its
// context, and exits 1 with the error, prefixed with name, if it fails.
func Main(name string, run func(ctx context.Context) error) {
	flag.Parse()
	err := fmt.Errorf("unexpected arguments %q", flag.Args())
	if flag.NArg() == 0 {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = run(ctx)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// ParseID parses the SPIFFE ID given to flag name.
func ParseID(name, value string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(value)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("-%s %q: want a SPIFFE ID, e.g. spiffe://example.org/example/mtls-server: %w", name, value, err)
	}
	return id, nil
}
