// Package oidc is a server node's OIDC discovery provider: over HTTP(S), on a listener of its own, it
// serves the discovery document (/.well-known/openid-configuration, OpenID Connect Discovery 1.0 §4)
// and the JWK Set of the trust domain's JWT-SVID keys (/keys, the document's jwks_uri), so that systems
// that federate with an OIDC provider (AWS IAM web identity, GCP workload identity federation, Azure
// federated credentials, Vault's JWT auth) accept JWT-SVIDs carrying the configured issuer as iss.
//
// The JWK Set is every JWT key of the bundle (every server's prepared, active and old keys; pruned keys
// leave the bundle), each with "use":"sig", its "kid" and "alg". Both documents are rebuilt when the
// bundle changes (Run, woken by the store), carry an ETag and a Cache-Control max-age, and answer
// If-None-Match with 304. Only GET and HEAD are served.
//
//	p, err := oidc.New(oidc.Config{Issuer: "https://oidc.example.org", Bundle: store})
//	go p.Run(ctx)
//	err = p.Serve(ctx, listener, tlsConfig) // nil tlsConfig: plain HTTP, behind a TLS-terminating proxy
package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/storage"
)

// Paths served, below the issuer URL's path.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	KeysPath      = "/keys"
)

// Bounds and defaults.
const (
	// DefaultMaxAge is how long relying parties may cache either document (Cache-Control max-age).
	// Short, because a prepared key must reach them before it signs.
	DefaultMaxAge = 5 * time.Minute
	// MinMaxAge and MaxMaxAge bound Config.MaxAge.
	MinMaxAge = 10 * time.Second
	MaxMaxAge = time.Hour
	// MaxIssuerLen bounds the issuer URL (it is in every JWT-SVID).
	MaxIssuerLen = ca.MaxIssuerLen
)

// ErrInvalidIssuer is returned (wrapped, saying what is wrong) for an issuer URL the provider cannot
// serve.
var ErrInvalidIssuer = errors.New("invalid OIDC issuer URL")

// BundleSource is the replicated trust bundle: its JWT keys, and a channel closed at its next change
// (storage.Store).
type BundleSource interface {
	Bundle() storage.Bundle
	Changed() <-chan struct{}
}

// Config configures a Provider.
type Config struct {
	// Issuer is the issuer URL: https, a host, no query, fragment, user info or trailing slash
	// (OpenID Connect Discovery 1.0 §3). It is the iss of the JWT-SVIDs and the base of both paths.
	Issuer string
	// AllowHTTP accepts an http issuer URL: for a provider behind a TLS-terminating proxy that
	// forwards to it, or a local test; relying parties require https.
	AllowHTTP bool
	// Bundle is where the keys come from; required.
	Bundle BundleSource
	// MaxAge is the Cache-Control max-age of both documents (default DefaultMaxAge, between MinMaxAge
	// and MaxMaxAge).
	MaxAge time.Duration
	// Clock is the time of log lines' rate limits (default time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
}

// Provider serves the discovery document and the JWK Set.
type Provider struct {
	cfg    Config
	prefix string // the issuer URL's path, without a trailing slash
	docs   atomic.Pointer[documents]
}

// documents are both responses built from one bundle sequence.
type documents struct {
	sequence  uint64
	discovery response
	keys      response
}

type response struct {
	body []byte
	etag string
}

// ParseIssuer checks an issuer URL (Config.Issuer) and returns it parsed.
func ParseIssuer(s string, allowHTTP bool) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty; want an https URL such as https://oidc.example.org", ErrInvalidIssuer)
	}
	if len(s) > MaxIssuerLen || !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: at most %d bytes of UTF-8", ErrInvalidIssuer, MaxIssuerLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidIssuer, s, err)
	}
	switch {
	case u.Scheme == "http" && !allowHTTP:
		return nil, fmt.Errorf("%w: %q: want https (http only behind a TLS-terminating proxy: oidc.insecure_http)", ErrInvalidIssuer, s)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w: %q: want an https URL such as https://oidc.example.org", ErrInvalidIssuer, s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w: %q: no host", ErrInvalidIssuer, s)
	case u.User != nil:
		return nil, fmt.Errorf("%w: %q: no user info allowed", ErrInvalidIssuer, s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("%w: %q: no query allowed (OpenID Connect Discovery §3)", ErrInvalidIssuer, s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("%w: %q: no fragment allowed (OpenID Connect Discovery §3)", ErrInvalidIssuer, s)
	case strings.HasSuffix(u.Path, "/"):
		return nil, fmt.Errorf("%w: %q: no trailing slash (the iss of tokens must match it exactly): write %q", ErrInvalidIssuer, s, strings.TrimRight(s, "/"))
	case u.String() != s:
		return nil, fmt.Errorf("%w: %q: not in canonical form (write %q)", ErrInvalidIssuer, s, u.String())
	}
	return u, nil
}

// New checks cfg and builds the documents from the current bundle.
func New(cfg Config) (*Provider, error) {
	u, err := ParseIssuer(cfg.Issuer, cfg.AllowHTTP)
	if err != nil {
		return nil, fmt.Errorf("oidc: config: Issuer: %w", err)
	}
	if cfg.Bundle == nil {
		return nil, errors.New("oidc: config: Bundle is required")
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxAge < MinMaxAge || cfg.MaxAge > MaxMaxAge {
		return nil, fmt.Errorf("oidc: config: MaxAge %s: want between %s and %s", cfg.MaxAge, MinMaxAge, MaxMaxAge)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	p := &Provider{cfg: cfg, prefix: u.Path}
	if err := p.rebuild(); err != nil {
		return nil, err
	}
	return p, nil
}

// Run rebuilds the documents whenever the bundle changes, until ctx ends.
func (p *Provider) Run(ctx context.Context) {
	var failed uint64 // the bundle sequence last refused, logged once
	for {
		changed := p.cfg.Bundle.Changed()
		if seq := p.cfg.Bundle.Bundle().Sequence; seq != failed {
			if err := p.rebuild(); err != nil {
				// The keys in the bundle were checked when published; keep serving the last good set.
				p.cfg.Logger.Error("OIDC provider: JWK Set not rebuilt; serving the previous one", "error", err)
				failed = seq
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// rebuild makes both documents from the bundle, unless they are of its sequence already.
func (p *Provider) rebuild() error {
	b := p.cfg.Bundle.Bundle()
	if cur := p.docs.Load(); cur != nil && cur.sequence == b.Sequence {
		return nil
	}
	keys, algs, err := ca.MarshalSigningJWKS(b.JWTAuthorities)
	if err != nil {
		return fmt.Errorf("oidc: bundle %d: %w", b.Sequence, err)
	}
	if len(algs) == 0 {
		algs = []string{"ES256"} // what Signet signs with, before any key is published
	}
	disc, err := json.Marshal(discoveryDoc{
		Issuer:                p.cfg.Issuer,
		JWKSURI:               p.cfg.Issuer + KeysPath,
		AuthorizationEndpoint: "",
		ResponseTypes:         []string{"id_token"},
		SubjectTypes:          []string{"public"},
		SigningAlgs:           algs,
	})
	if err != nil {
		return fmt.Errorf("oidc: discovery document: %w", err)
	}
	p.docs.Store(&documents{sequence: b.Sequence, discovery: newResponse(disc), keys: newResponse(keys)})
	return nil
}

// discoveryDoc is the OpenID Provider Metadata (OpenID Connect Discovery 1.0 §3) a JWT-only provider
// can state: no authorization endpoint (it issues no tokens over OAuth), id_token responses, public
// subjects.
type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
}

func newResponse(body []byte) response {
	sum := sha256.Sum256(body)
	return response{body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
}

// ServeHTTP answers GET and HEAD of the discovery document and the JWK Set, at the issuer URL's path
// and, when that path is not empty, also at the root (for a proxy that strips it); anything else is
// 404, another method 405.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	docs := p.docs.Load()
	var res response
	switch path := strings.TrimPrefix(r.URL.Path, p.prefix); {
	case path == DiscoveryPath || r.URL.Path == DiscoveryPath:
		res = docs.discovery
	case path == KeysPath || r.URL.Path == KeysPath:
		res = docs.keys
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(p.cfg.MaxAge/time.Second)))
	h.Set("ETag", res.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatches(r.Header.Get("If-None-Match"), res.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(res.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(res.body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (RFC 9110 §13.1.2: "*", or a list
// of entity tags compared weakly).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}
