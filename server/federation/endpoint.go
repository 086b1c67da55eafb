// Package federation is SPIFFE federation for a server node (SPIFFE Federation spec): the bundle
// endpoint that serves this trust domain's bundle to other trust domains (Endpoint), and the fetching of
// other trust domains' bundles from their endpoints (Fetch, Poller).
package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Endpoint profiles (SPIFFE Federation §5.2).
const (
	// ProfileHTTPSWeb: the endpoint presents a Web PKI certificate (§5.2.1).
	ProfileHTTPSWeb = "https_web"
	// ProfileHTTPSSPIFFE: the endpoint presents an X.509-SVID of its endpoint SPIFFE ID, validated
	// against the bundle of its trust domain the client already holds (§5.2.2).
	ProfileHTTPSSPIFFE = "https_spiffe"
)

// Bounds of the refresh hint this node advertises (spiffe_refresh_hint) and follows when it fetches.
const (
	DefaultRefreshHint = 5 * time.Minute
	MinRefreshHint     = 10 * time.Second
	MaxRefreshHint     = 24 * time.Hour
)

// maxCertFileSize bounds the https_web certificate chain file.
const maxCertFileSize = 1 << 20

// BundleSource is the trust domain's bundle as the store holds it (storage.Store).
type BundleSource interface {
	Bundle() storage.Bundle
}

// CertSource is the node's server SVID (issuer.Issuer): the certificate of the https_spiffe profile.
type CertSource interface {
	ServerCertificate(ctx context.Context) (*tls.Certificate, error)
}

// EndpointConfig configures the bundle endpoint.
type EndpointConfig struct {
	TrustDomain spiffeid.TrustDomain
	Bundles     BundleSource
	// Profile is ProfileHTTPSSPIFFE (default) or ProfileHTTPSWeb.
	Profile string
	// ServerCert is required for ProfileHTTPSSPIFFE: the endpoint presents the node's server SVID, as
	// SPIRE does, so the endpoint SPIFFE ID of this node is spiffe://<td>/signet/server/<node-id>.
	ServerCert CertSource
	// CertFile and KeyFile are required for ProfileHTTPSWeb: a PEM certificate chain and its private
	// key (the key file must be 0600 or stricter). Read once, at NewEndpoint.
	CertFile, KeyFile string
	// RefreshHint is the spiffe_refresh_hint served (default DefaultRefreshHint, within
	// MinRefreshHint..MaxRefreshHint).
	RefreshHint time.Duration
	Logger      *slog.Logger
}

// Endpoint serves this trust domain's SPIFFE bundle over HTTPS.
type Endpoint struct {
	cfg     EndpointConfig
	tls     *tls.Config
	handler http.Handler
}

// NewEndpoint validates cfg and builds the endpoint; with ProfileHTTPSWeb it reads the certificate and key.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.TrustDomain.IsZero() || cfg.Bundles == nil {
		return nil, errors.New("federation: bundle endpoint: TrustDomain and Bundles are required")
	}
	if cfg.RefreshHint == 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	if err := CheckRefreshHint(cfg.RefreshHint); err != nil {
		return nil, fmt.Errorf("federation: bundle endpoint: refresh hint: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileHTTPSSPIFFE
	}
	e := &Endpoint{cfg: cfg}
	switch cfg.Profile {
	case ProfileHTTPSSPIFFE:
		if cfg.ServerCert == nil {
			return nil, errors.New("federation: bundle endpoint: profile https_spiffe needs the node's server SVID (ServerCert)")
		}
		e.tls = &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cfg.ServerCert.ServerCertificate(hello.Context())
		}}
	case ProfileHTTPSWeb:
		cert, err := loadKeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("federation: bundle endpoint (https_web): %w", err)
		}
		e.tls = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	default:
		return nil, fmt.Errorf("federation: bundle endpoint: profile %q: want %s or %s", cfg.Profile, ProfileHTTPSSPIFFE, ProfileHTTPSWeb)
	}
	h, err := gofed.NewHandler(cfg.TrustDomain, e)
	if err != nil {
		return nil, fmt.Errorf("federation: bundle endpoint: %w", err)
	}
	e.handler = h
	return e, nil
}

// CheckRefreshHint refuses a refresh hint outside MinRefreshHint..MaxRefreshHint.
func CheckRefreshHint(d time.Duration) error {
	if d < MinRefreshHint || d > MaxRefreshHint {
		return fmt.Errorf("%s is out of range: between %s and %s", d, MinRefreshHint, MaxRefreshHint)
	}
	return nil
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New("a certificate file and a key file are required")
	}
	certPEM, err := fsutil.ReadFileMax(certFile, maxCertFileSize)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	keyPEM, err := fsutil.ReadPrivateFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key: %w", err)
	}
	defer clear(keyPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors name no key material.
		return tls.Certificate{}, fmt.Errorf("certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// GetBundleForTrustDomain is the bundle the endpoint serves (spiffebundle.Source): the store's X.509
// authorities and JWT keys, spiffe_sequence the bundle's sequence (it increases whenever the set of
// authorities changes) and the configured spiffe_refresh_hint.
func (e *Endpoint) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != e.cfg.TrustDomain {
		return nil, fmt.Errorf("federation: no bundle for trust domain %q", td.Name())
	}
	return BundleOf(td, e.cfg.Bundles.Bundle(), e.cfg.RefreshHint), nil
}

// BundleOf is b as a SPIFFE bundle of td with its sequence and refresh hint.
func BundleOf(td spiffeid.TrustDomain, b storage.Bundle, refreshHint time.Duration) *spiffebundle.Bundle {
	out := spiffebundle.FromX509Authorities(td, b.X509Authorities)
	out.SetJWTAuthorities(b.JWTAuthorities)
	out.SetSequenceNumber(b.Sequence)
	out.SetRefreshHint(refreshHint)
	return out
}

// Handler is the HTTP handler of the endpoint (GET: the bundle document).
func (e *Endpoint) Handler() http.Handler { return e.handler }

// TLSConfig is the endpoint's TLS configuration (TLS 1.3).
func (e *Endpoint) TLSConfig() *tls.Config { return e.tls.Clone() }

// Serve serves the endpoint on lis (plain TCP; TLS is added here) until ctx ends.
func (e *Endpoint) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           e.handler,
		TLSConfig:         e.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(e.cfg.Logger.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		case <-done:
		}
	}()
	defer close(done)
	e.cfg.Logger.Info("bundle endpoint serving", "address", lis.Addr().String(), "profile", e.cfg.Profile, "refresh_hint", e.cfg.RefreshHint)
	if err := srv.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("federation: bundle endpoint on %s: %w", lis.Addr(), err)
	}
	return nil
}
