package oidc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/internal/ratelimit"
)

// Timeouts and sizes of the provider's HTTP server: requests are a line and a few headers, responses
// a few kilobytes, so a slow or oversized client is cut off early.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 10 * time.Second
	IdleTimeout       = time.Minute
	MaxHeaderBytes    = 8 << 10
	// ShutdownGrace is how long Serve lets requests in progress finish once ctx ends.
	ShutdownGrace = 2 * time.Second
	// MaxCertFileSize bounds the certificate and key files.
	MaxCertFileSize = 1 << 20
	// ErrorLinesPerMinute bounds the log lines of failed connections (TLS handshakes that fail, …):
	// anyone who reaches the port can cause them.
	ErrorLinesPerMinute = 10
)

// Serve serves the provider on ln until ctx ends: HTTPS with tlsConfig (TLSConfig), or plain HTTP
// when tlsConfig is nil. It returns nil once ctx ended and the server shut down.
func (p *Provider) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		TLSConfig:         tlsConfig,
		ErrorLog: log.New(errorLog{log: p.cfg.Logger, clock: p.cfg.Clock,
			lines: &ratelimit.Lines{Every: time.Minute, Burst: ErrorLinesPerMinute}}, "", 0),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	var err error
	if tlsConfig != nil {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return fmt.Errorf("oidc: serve on %s: %w", ln.Addr(), err)
}

// errorLog carries the HTTP server's own log lines (failed connections) to the node's log, at most
// ErrorLinesPerMinute a minute.
type errorLog struct {
	log   *slog.Logger
	clock func() time.Time
	lines *ratelimit.Lines
}

func (e errorLog) Write(p []byte) (int, error) {
	e.lines.Warn(e.log, e.clock(), "OIDC provider: connection failed", "error", strings.TrimSpace(string(p)))
	return len(p), nil
}

// TLSConfig is the provider's TLS configuration from a PEM certificate chain and key file (a web PKI
// certificate relying parties trust: they fetch the documents over the Internet). The key file must
// be readable by its owner only. TLS 1.2 is the minimum, as outside consumers need. The files are read
// again when either changes (a renewed certificate is served from the next handshake on); while a
// renewal does not load (files half written), the previous pair is served.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.get() },
		NextProtos:     []string{"h2", "http/1.1"},
	}, nil
}

// certReloader holds the certificate loaded from two files and reloads it when their modification
// time or size changes.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	stamp             [2]fileStamp
	cert              *tls.Certificate
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

func (r *certReloader) get() (*tls.Certificate, error) {
	cs, err1 := stampOf(r.certFile)
	ks, err2 := stampOf(r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(err1, err2); err != nil {
		if r.cert != nil {
			return r.cert, nil // a renewal in progress (file replaced): keep serving the loaded pair
		}
		return nil, fmt.Errorf("oidc: TLS certificate: %w", err)
	}
	if r.cert != nil && r.stamp == [2]fileStamp{cs, ks} {
		return r.cert, nil
	}
	cert, err := loadPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, err
	}
	r.cert, r.stamp = cert, [2]fileStamp{cs, ks}
	return cert, nil
}

// loadPair reads a certificate chain and its private key (the key file only if no one else can read it).
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := fsutil.ReadFileMax(certFile, MaxCertFileSize)
	if err != nil {
		return nil, fmt.Errorf("oidc: TLS certificate file: %w", err)
	}
	keyPEM, err := fsutil.ReadPrivateFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("oidc: TLS key file: %w", err)
	}
	defer clear(keyPEM)
	if len(keyPEM) > MaxCertFileSize {
		return nil, fmt.Errorf("oidc: TLS key file %s: larger than %d bytes", keyFile, MaxCertFileSize)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls's errors describe the PEM blocks, never the key material.
		return nil, fmt.Errorf("oidc: TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}
