package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/signet-id/signet/server/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// federationFileConfig is the server's federation block (docs/federation.md):
//
//	federation:
//	  bundle_endpoint:
//	    listen_address: 0.0.0.0:8443
//	    profile: https_spiffe      # or https_web, with cert_file and key_file
//	    refresh_hint: 5m
type federationFileConfig struct {
	BundleEndpoint struct {
		// ListenAddress turns the bundle endpoint on (off when empty).
		ListenAddress string `yaml:"listen_address"`
		// Profile is https_spiffe (default: the node's server SVID) or https_web (CertFile, KeyFile).
		Profile  string `yaml:"profile"`
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		// RefreshHint is the spiffe_refresh_hint served (federation.DefaultRefreshHint).
		RefreshHint time.Duration `yaml:"refresh_hint"`
	} `yaml:"bundle_endpoint"`
	// Poll bounds the leader's fetches of federated bundles (federation.PollerConfig).
	Poll struct {
		MinInterval time.Duration `yaml:"min_interval"`
		MaxInterval time.Duration `yaml:"max_interval"`
	} `yaml:"poll"`
	// WebRootsFile holds the PEM roots https_web endpoints are verified with (default: the system's).
	WebRootsFile string `yaml:"web_roots_file"`
	// webRoots is WebRootsFile's pool, filled by check.
	webRoots *x509.CertPool
}

// check validates the federation block and fills its defaults.
func (f *federationFileConfig) check(path string) error {
	be := &f.BundleEndpoint
	if be.ListenAddress != "" {
		if err := checkHostPort(path, "federation.bundle_endpoint.listen_address", be.ListenAddress, true); err != nil {
			return err
		}
	} else if be.CertFile != "" || be.KeyFile != "" {
		return configError(path, "federation.bundle_endpoint.listen_address", "is required with cert_file and key_file (it turns the endpoint on)")
	}
	if be.Profile == "" {
		be.Profile = federation.ProfileHTTPSSPIFFE
	}
	switch be.Profile {
	case federation.ProfileHTTPSSPIFFE:
		if be.CertFile != "" || be.KeyFile != "" {
			return configError(path, "federation.bundle_endpoint.cert_file", "only with profile https_web (https_spiffe presents the server's SVID)")
		}
	case federation.ProfileHTTPSWeb:
		if be.ListenAddress == "" {
			break
		}
		if err := requireAbs(path, "federation.bundle_endpoint.cert_file", be.CertFile); err != nil {
			return err
		}
		if err := requireAbs(path, "federation.bundle_endpoint.key_file", be.KeyFile); err != nil {
			return err
		}
	default:
		return configError(path, "federation.bundle_endpoint.profile", "%q: want %s or %s", be.Profile, federation.ProfileHTTPSSPIFFE, federation.ProfileHTTPSWeb)
	}
	if be.RefreshHint == 0 {
		be.RefreshHint = federation.DefaultRefreshHint
	}
	if err := federation.CheckRefreshHint(be.RefreshHint); err != nil {
		return configError(path, "federation.bundle_endpoint.refresh_hint", "%v", err)
	}
	p := &f.Poll
	if p.MinInterval == 0 {
		p.MinInterval = federation.DefaultMinPollInterval
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = max(federation.DefaultMaxPollInterval, p.MinInterval)
	}
	if err := federation.CheckPollIntervals(p.MinInterval, p.MaxInterval); err != nil {
		return configError(path, "federation.poll", "%v", err)
	}
	if f.WebRootsFile != "" {
		if err := requireAbs(path, "federation.web_roots_file", f.WebRootsFile); err != nil {
			return err
		}
		roots, err := readPEMCerts(f.WebRootsFile, "the PEM roots that https_web bundle endpoints' certificates chain to")
		if err != nil {
			return configError(path, "federation.web_roots_file", "%v", err)
		}
		f.webRoots = x509.NewCertPool()
		for _, r := range roots {
			f.webRoots.AddCert(r)
		}
	}
	return nil
}

// pollerConfig maps the federation block onto the bundle poller's configuration.
func (f *federationFileConfig) pollerConfig() federation.PollerConfig {
	return federation.PollerConfig{MinInterval: f.Poll.MinInterval, MaxInterval: f.Poll.MaxInterval, WebRoots: f.webRoots}
}

// bundleEndpointOptions is what a server node's bundle endpoint is started with.
type bundleEndpointOptions struct {
	Profile           string
	CertFile, KeyFile string
	RefreshHint       time.Duration
}

// startBundleEndpoint serves the node's trust bundle on lis until ctx ends (docs/federation.md); the
// returned function stops it and waits.
func startBundleEndpoint(ctx context.Context, node *serverNode, td spiffeid.TrustDomain, lis net.Listener, o bundleEndpointOptions, log *slog.Logger) (stop func(), err error) {
	e, err := federation.NewEndpoint(federation.EndpointConfig{TrustDomain: td, Bundles: node.store,
		Profile: o.Profile, ServerCert: node.srv.Issuer, CertFile: o.CertFile, KeyFile: o.KeyFile, RefreshHint: o.RefreshHint, Logger: log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Serve(ctx, lis); err != nil {
			log.Error("bundle endpoint stopped", "error", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// bundleEndpointURL is the URL of the endpoint listening on lis, as printed at start.
func bundleEndpointURL(lis net.Listener) string {
	return fmt.Sprintf("https://%s/", lis.Addr())
}

// serverSVIDID is the SPIFFE ID of a node's server SVID: the endpoint SPIFFE ID of its https_spiffe
// bundle endpoint.
func serverSVIDID(td spiffeid.TrustDomain, node string) string {
	id, err := spiffeid.FromSegments(td, "signet", "server", node)
	if err != nil {
		return fmt.Sprintf("spiffe://%s/signet/server/%s", td.Name(), node)
	}
	return id.String()
}
