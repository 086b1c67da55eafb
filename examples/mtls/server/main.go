// Command server is the mTLS example's server: an HTTPS server that presents its X.509-SVID from the
// SPIFFE Workload API and answers only the one client SPIFFE ID it is given (-client-id). SVIDs and
// the trust bundle come from a go-spiffe X509Source, so a rotated SVID or bundle is used by the next
// handshake without a restart. See examples/mtls/README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/signet-id/signet/examples/mtls/internal/workload"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

var (
	addr       = flag.String("addr", "127.0.0.1:8443", "address to listen on (port 0: any free port, printed when listening)")
	clientID   = flag.String("client-id", "", "the one client SPIFFE ID to accept (required)")
	id         = flag.String("id", "", "which of this workload's SPIFFE IDs to serve as, if it has several (default: the first)")
	maxConnAge = flag.Duration("max-conn-age", 5*time.Minute, "close keep-alive connections older than this, so clients handshake again with current SVIDs")
)

func main() { workload.Main("mtls server", run) }

func run(ctx context.Context) error {
	allowed, err := workload.ParseID("client-id", *clientID)
	if err != nil {
		return err
	}
	if *maxConnAge <= 0 {
		return fmt.Errorf("-max-conn-age %s: must be positive", *maxConnAge)
	}
	src, err := workload.NewSource(ctx, *id)
	if err != nil {
		return err
	}
	defer src.Close()

	tlsConf := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeID(allowed))
	tlsConf.MinVersion = tls.VersionTLS13
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           handler(*maxConnAge),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connStartKey{}, time.Now())
		},
	}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	fmt.Printf("listening on %s, accepting %s\n", lis.Addr(), allowed)
	if err := srv.ServeTLS(lis, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type connStartKey struct{}

// handler greets the client by the SPIFFE ID of its certificate. A request on a connection older than
// maxAge is answered with "Connection: close": the client's next request opens a new connection, whose
// handshake presents the SVIDs of now (TLS checks certificates only when a connection starts).
func handler(maxAge time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if start, ok := r.Context().Value(connStartKey{}).(time.Time); ok && time.Since(start) > maxAge {
			w.Header().Set("Connection", "close")
		}
		leaf := r.TLS.PeerCertificates[0] // present and authorized: the handshake required it
		fmt.Fprintf(w, "client_id=%s client_serial=%s\n", leaf.URIs[0], leaf.SerialNumber.Text(16))
	})
}
