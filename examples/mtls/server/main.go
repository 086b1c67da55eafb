// Command server is the mTLS example's server: an HTTPS server that presents its X.509-SVID from the
// SPIFFE Workload API and answers only the one client SPIFFE ID it is given (-client-id). SVIDs and
// the trust bundle come from a go-spiffe X509Source, so a rotated SVID or bundle is used by the next
// handshake without a restart.
//
// With API_KEY in its environment the server is in the transition of docs/migrating-from-api-keys.md:
// a client without a certificate may still authenticate with "Authorization: Bearer <API_KEY>" (each
// such request is logged, to find the clients left to move); a client with a certificate must still be
// -client-id. See examples/mtls/README.md.
package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/signet-id/signet/examples/mtls/internal/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

var (
	addr       = flag.String("addr", "127.0.0.1:8443", "address to listen on (port 0: any free port, printed when listening)")
	clientID   = flag.String("client-id", "", "the one client SPIFFE ID to accept (required)")
	id         = flag.String("id", "", "which of this workload's SPIFFE IDs to serve as, if it has several (default: the first)")
	maxConnAge = flag.Duration("max-conn-age", 5*time.Minute, "close keep-alive connections older than this, so clients handshake again with current SVIDs")
)

func main() {
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), `Usage: server -client-id SPIFFE-ID [flags]

Serves HTTPS with this workload's X.509-SVID and accepts only the client SPIFFE ID -client-id.
With API_KEY in the environment, a client without a certificate may also send
"Authorization: Bearer <API_KEY>" (the transition of docs/migrating-from-api-keys.md).

`)
		flag.PrintDefaults()
	}
	workload.Main("mtls server", run)
}

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

	a := authorizer{allowed: allowed, bundles: src, apiKey: os.Getenv("API_KEY")}
	tlsConf := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeID(allowed))
	accepting := allowed.String()
	if a.apiKey != "" {
		// The transition: ask for a client certificate without requiring one, and decide in the handler.
		tlsConf = tlsconfig.TLSServerConfig(src)
		tlsConf.ClientAuth = tls.RequestClientCert
		accepting += " and, without a certificate, the API key (until API_KEY is unset)"
	}
	tlsConf.MinVersion = tls.VersionTLS13
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           handler(*maxConnAge, a),
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
	fmt.Printf("listening on %s, accepting %s\n", lis.Addr(), accepting)
	if err := srv.ServeTLS(lis, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type connStartKey struct{}

// handler greets the client by the SPIFFE ID of its certificate, or as the API key's holder. A request
// on a connection older than maxAge is answered with "Connection: close": the client's next request
// opens a new connection, whose handshake presents the SVIDs of now (TLS checks certificates only when
// a connection starts).
func handler(maxAge time.Duration, a authorizer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if start, ok := r.Context().Value(connStartKey{}).(time.Time); ok && time.Since(start) > maxAge {
			w.Header().Set("Connection", "close")
		}
		if len(r.TLS.PeerCertificates) == 0 {
			if !a.keyMatches(r) {
				http.Error(w, "present an X.509-SVID (or, during the transition, the API key)", http.StatusUnauthorized)
				return
			}
			slog.Warn("request authenticated by the API key: move this client to an SVID", "remote", r.RemoteAddr)
			fmt.Fprintln(w, "authenticated_by=api_key")
			return
		}
		// In strict mode the handshake has already done this; in the transition it has not.
		got, _, err := x509svid.Verify(r.TLS.PeerCertificates, a.bundles)
		if err == nil && got != a.allowed {
			err = fmt.Errorf("unexpected ID %q", got)
		}
		if err != nil {
			slog.Warn("client certificate refused", "remote", r.RemoteAddr, "error", err)
			http.Error(w, "client certificate refused", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "client_id=%s client_serial=%s\n", got, r.TLS.PeerCertificates[0].SerialNumber.Text(16))
	})
}

// authorizer is who may call: the client SPIFFE ID, and during the transition the API key's holder.
type authorizer struct {
	allowed spiffeid.ID
	bundles *workloadapi.X509Source
	apiKey  string // "" once the key is retired
}

// keyMatches reports whether the request carries the API key, compared in constant time.
func (a authorizer) keyMatches(r *http.Request) bool {
	return a.apiKey != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+a.apiKey)) == 1
}
