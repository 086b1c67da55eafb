// Package jwtapi is the library half of the jwt-api example: an HTTP API that accepts a JWT-SVID
// instead of a static API key, validated the way any OIDC relying party validates a token (a standard
// JWT library, go-jose, against the keys the issuer's discovery document points to), and the client
// side, which gets its token from the SPIFFE Workload API.
//
//	v, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: "https://oidc.example.org", Audience: "orders-api"})
//	http.Handle("/orders", jwtapi.Protect(v, ordersHandler))
package jwtapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bounds of what the verifier reads and how often it asks the issuer again.
const (
	// MaxDocumentSize bounds the discovery document and the JWK Set.
	MaxDocumentSize = 1 << 20
	// MaxTokenSize bounds a bearer token.
	MaxTokenSize = 8 << 10
	// RefreshEvery is how often the JWK Set is fetched again: after this, or when a token names a key
	// the set does not have (at most once per MinRefreshInterval), for keys that rotate.
	RefreshEvery       = 5 * time.Minute
	MinRefreshInterval = 10 * time.Second
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway = 30 * time.Second
)

// ErrUnauthorized is wrapped by every refusal of a token (Verify); the API answers 401.
var ErrUnauthorized = errors.New("unauthorized")

// algorithms are the JWS algorithms accepted (never "none" or HMAC).
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the OIDC issuer URL: the discovery document is at Issuer + /.well-known/openid-configuration,
	// and a token's iss must equal it.
	Issuer string
	// Audience is this API's name: a token's aud must contain it.
	Audience string
	// HTTPClient fetches the documents (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// Clock is the time tokens are checked at (default time.Now).
	Clock func() time.Time
}

// Verifier validates JWT-SVIDs (any JWT) against an OIDC issuer's published keys.
type Verifier struct {
	cfg VerifierConfig

	mu        sync.Mutex
	keys      jose.JSONWebKeySet
	fetchedAt time.Time
}

// Claims are what the API learns of a caller from a valid token.
type Claims struct {
	Subject spiffeid.ID
	Expiry  time.Time
}

// NewVerifier checks cfg; the keys are fetched on first use.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("jwtapi: Issuer and Audience are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Verifier{cfg: cfg}, nil
}

// Verify checks token's signature against the issuer's keys and its iss, aud and exp (and nbf, iat)
// at the verifier's clock. Every refusal wraps ErrUnauthorized.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if len(token) > MaxTokenSize {
		return Claims{}, fmt.Errorf("%w: token larger than %d bytes", ErrUnauthorized, MaxTokenSize)
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: not a signed JWT: %v", ErrUnauthorized, err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return Claims{}, fmt.Errorf("%w: the token names no key (kid)", ErrUnauthorized)
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return Claims{}, err
	}
	var claims jwt.Claims
	if err := tok.Claims(key.Key, &claims); err != nil {
		return Claims{}, fmt.Errorf("%w: signature: %v", ErrUnauthorized, err)
	}
	if claims.Expiry == nil {
		return Claims{}, fmt.Errorf("%w: the token has no exp", ErrUnauthorized)
	}
	want := jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.cfg.Clock()}
	if err := claims.ValidateWithLeeway(want, Leeway); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	id, err := spiffeid.FromString(claims.Subject)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: sub %q is not a SPIFFE ID: %v", ErrUnauthorized, claims.Subject, err)
	}
	return Claims{Subject: id, Expiry: claims.Expiry.Time()}, nil
}

// key returns the published key kid, fetching the JWK Set when it is stale or lacks kid.
func (v *Verifier) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Clock()
	found := v.keys.Key(kid)
	stale := v.fetchedAt.IsZero() || now.Sub(v.fetchedAt) >= RefreshEvery || now.Before(v.fetchedAt)
	if stale || (len(found) == 0 && now.Sub(v.fetchedAt) >= MinRefreshInterval) {
		keys, err := v.fetchKeys(ctx)
		if err != nil && v.fetchedAt.IsZero() {
			return jose.JSONWebKey{}, err
		}
		if err == nil {
			v.keys, v.fetchedAt = keys, now
			found = v.keys.Key(kid)
		}
	}
	for _, k := range found {
		if k.Use == "" || k.Use == "sig" {
			return k, nil
		}
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: key %q is not published by %s", ErrUnauthorized, kid, v.cfg.Issuer)
}

// discovery is the part of the OIDC discovery document a relying party reads.
type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// fetchKeys reads the discovery document, checks its issuer, and reads the JWK Set it points to.
func (v *Verifier) fetchKeys(ctx context.Context) (jose.JSONWebKeySet, error) {
	var d discovery
	if err := v.getJSON(ctx, strings.TrimSuffix(v.cfg.Issuer, "/")+"/.well-known/openid-configuration", &d); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	// OpenID Connect Discovery §4.3: the issuer in the document must be the one asked.
	if d.Issuer != v.cfg.Issuer {
		return jose.JSONWebKeySet{}, fmt.Errorf("jwtapi: discovery document of %s names issuer %q", v.cfg.Issuer, d.Issuer)
	}
	var set jose.JSONWebKeySet
	if err := v.getJSON(ctx, d.JWKSURI, &set); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return set, nil
}

func (v *Verifier) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("jwtapi: %s: %w", url, err)
	}
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("jwtapi: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwtapi: GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentSize+1))
	if err != nil {
		return fmt.Errorf("jwtapi: GET %s: %w", url, err)
	}
	if len(b) > MaxDocumentSize {
		return fmt.Errorf("jwtapi: GET %s: larger than %d bytes", url, MaxDocumentSize)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("jwtapi: GET %s: %w", url, err)
	}
	return nil
}
