package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Bounds of a fetched bundle: a document larger, or with more authorities, is refused and nothing is
// stored.
const (
	MaxBundleBytes       = 256 << 10
	MaxBundleAuthorities = 64 // X.509 authorities and JWT keys together
	maxURLLen            = 2048
)

// ErrEndpointUnavailable marks a fetch that got no bundle: the endpoint could not be reached or
// authenticated, or answered with an HTTP error.
var ErrEndpointUnavailable = errors.New("bundle endpoint unavailable")

// ErrBadBundle marks a fetched bundle that is refused: too large, too many authorities, no X.509
// authority, or authorities of another trust domain.
var ErrBadBundle = errors.New("bundle refused")

// Endpoint of another trust domain: where its bundle is and how its server is authenticated.
type Remote struct {
	TrustDomain spiffeid.TrustDomain
	// URL is the bundle endpoint URL (https).
	URL     string
	Profile string
	// EndpointID is the SPIFFE ID the endpoint presents (ProfileHTTPSSPIFFE), in TrustDomain.
	EndpointID spiffeid.ID
}

// Check validates r: an https URL with a host, a known profile, for https_spiffe an endpoint SPIFFE ID
// in the trust domain (SPIFFE Federation §5.2.2), and not the local trust domain.
func (r Remote) Check(local spiffeid.TrustDomain) error {
	if r.TrustDomain.IsZero() {
		return errors.New("trust domain: required (--trust-domain)")
	}
	if r.TrustDomain == local {
		return fmt.Errorf("trust domain %q: that is this server's own trust domain; federate with another one", r.TrustDomain.Name())
	}
	if len(r.URL) > maxURLLen {
		return fmt.Errorf("bundle endpoint URL: longer than %d characters", maxURLLen)
	}
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("bundle endpoint URL %q: want https://host[:port]/path, without user info or fragment (--bundle-endpoint)", r.URL)
	}
	switch r.Profile {
	case ProfileHTTPSSPIFFE:
		if r.EndpointID.IsZero() {
			return errors.New("endpoint SPIFFE ID: required for profile https_spiffe (--endpoint-spiffe-id)")
		}
		if r.EndpointID.TrustDomain() != r.TrustDomain {
			return fmt.Errorf("endpoint SPIFFE ID %s: not in trust domain %q (--endpoint-spiffe-id)", r.EndpointID, r.TrustDomain.Name())
		}
	case ProfileHTTPSWeb:
		if !r.EndpointID.IsZero() {
			return errors.New("endpoint SPIFFE ID: only for profile https_spiffe (drop --endpoint-spiffe-id)")
		}
	default:
		return fmt.Errorf("profile %q: want %s or %s (--profile)", r.Profile, ProfileHTTPSSPIFFE, ProfileHTTPSWeb)
	}
	return nil
}

// FetchOptions are what Fetch authenticates the endpoint with.
type FetchOptions struct {
	// Known is the bundle of the remote trust domain held before this fetch: required for
	// ProfileHTTPSSPIFFE (the endpoint's SVID must chain to it).
	Known *x509bundle.Bundle
	// WebRoots are the roots of ProfileHTTPSWeb (nil: the system's).
	WebRoots *x509.CertPool
	// Timeout bounds the whole request (default 30 s).
	Timeout time.Duration
}

// Fetch gets r's bundle from its endpoint (SPIFFE Federation §5), authenticated per its profile, and
// checks it (CheckBundle). It reads at most MaxBundleBytes+1 bytes and follows no redirect.
func Fetch(ctx context.Context, r Remote, o FetchOptions) (*spiffebundle.Bundle, error) {
	var tc *tls.Config
	switch r.Profile {
	case ProfileHTTPSSPIFFE:
		if o.Known == nil || len(o.Known.X509Authorities()) == 0 {
			return nil, fmt.Errorf("federation: fetch %s: profile https_spiffe needs a bundle of %q to authenticate the endpoint, and there is none", r.URL, r.TrustDomain.Name())
		}
		tc = tlsconfig.TLSClientConfig(o.Known, tlsconfig.AuthorizeID(r.EndpointID))
	case ProfileHTTPSWeb:
		tc = &tls.Config{RootCAs: o.WebRoots}
	default:
		return nil, fmt.Errorf("federation: fetch %s: profile %q: want %s or %s", r.URL, r.Profile, ProfileHTTPSSPIFFE, ProfileHTTPSWeb)
	}
	tc.MinVersion = tls.VersionTLS12 // other SPIFFE implementations' endpoints; ours serves TLS 1.3
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, MaxResponseHeaderBytes: 64 << 10},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("federation: fetch %s: %w", r.URL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("federation: fetch the bundle of %q: %w: %w", r.TrustDomain.Name(), ErrEndpointUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("federation: fetch %s: %w: HTTP status %s", r.URL, ErrEndpointUnavailable, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("federation: fetch %s: %w: %w", r.URL, ErrEndpointUnavailable, err)
	}
	return ParseBundle(r.TrustDomain, body)
}

// ParseBundle parses a SPIFFE bundle document of td and checks it (CheckBundle); data larger than
// MaxBundleBytes is refused unread.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	if len(data) > MaxBundleBytes {
		return nil, fmt.Errorf("federation: bundle of %q: %w: larger than %d bytes", td.Name(), ErrBadBundle, MaxBundleBytes)
	}
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("federation: bundle of %q: %w: %w", td.Name(), ErrBadBundle, err)
	}
	if err := CheckBundle(b); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckBundle refuses a bundle with no X.509 authority, more than MaxBundleAuthorities, or an X.509
// authority that is not a CA or whose SPIFFE ID is of another trust domain (X509-SVID §3.2, §6.1).
func CheckBundle(b *spiffebundle.Bundle) error {
	td := b.TrustDomain()
	x := b.X509Authorities()
	if len(x) == 0 {
		return fmt.Errorf("federation: bundle of %q: %w: it has no X.509 authority", td.Name(), ErrBadBundle)
	}
	if n := len(x) + len(b.JWTAuthorities()); n > MaxBundleAuthorities {
		return fmt.Errorf("federation: bundle of %q: %w: %d authorities, at most %d", td.Name(), ErrBadBundle, n, MaxBundleAuthorities)
	}
	for i, c := range x {
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("federation: bundle of %q: %w: X.509 authority %d is not a CA certificate", td.Name(), ErrBadBundle, i)
		}
		for _, u := range c.URIs {
			if u.Scheme != "spiffe" {
				continue
			}
			id, err := spiffeid.FromURI(u)
			if err != nil || id.TrustDomain() != td {
				return fmt.Errorf("federation: bundle of %q: %w: X.509 authority %d is for %q, another trust domain", td.Name(), ErrBadBundle, i, u.String())
			}
		}
	}
	return nil
}
