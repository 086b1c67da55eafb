package k8spsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/internal/fsutil"
)

// tokenAlgorithms are the signature algorithms of service-account tokens Signet accepts.
var tokenAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// leeway is the clock skew allowed for a token's exp, nbf and iat.
const leeway = 30 * time.Second

// keySource holds a cluster's service-account issuer keys: read once from a file, or fetched from a URL
// (the JWKS, or an OIDC discovery document naming it) and fetched again every refresh, or at once for a
// key ID it does not know (at most once per refresh/10).
type keySource struct {
	file, url string
	refresh   time.Duration
	client    *http.Client

	mu        sync.Mutex
	keys      *jose.JSONWebKeySet
	fetchedAt time.Time
	// triedAt is the last fetch, successful or not: fetches are at least refresh/10 apart, so tokens
	// sent while the URL is down do not each wait for it.
	triedAt time.Time
}

func newKeySource(cc ClusterConfig) (*keySource, error) {
	ks := &keySource{file: cc.JWKSFile, url: cc.JWKSURL, refresh: cc.JWKSRefresh, client: cc.HTTPClient}
	if ks.file != "" {
		b, err := fsutil.ReadFileMax(ks.file, MaxJWKSSize)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
		set, err := parseJWKS(b)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %s: %w", ks.file, err)
		}
		ks.keys = set
	}
	return ks, nil
}

func parseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the JWKS holds no keys")
	}
	for i, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			return nil, fmt.Errorf("key %d (kid %q): not a valid public key", i, k.KeyID)
		}
	}
	return &set, nil
}

// key returns the keys that may have signed a token with key ID kid (all keys if kid is empty).
func (ks *keySource) key(ctx context.Context, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.url != "" {
		stale := ks.keys == nil || now.Sub(ks.fetchedAt) >= ks.refresh
		unknown := ks.keys != nil && kid != "" && len(ks.keys.Key(kid)) == 0
		if (stale || unknown) && (ks.triedAt.IsZero() || now.Sub(ks.triedAt) >= ks.refresh/10) {
			ks.triedAt = now
			set, err := ks.fetch(ctx)
			if err == nil {
				ks.keys, ks.fetchedAt = set, now
			} else if ks.keys == nil {
				return nil, fmt.Errorf("%w: service-account issuer keys from %s: %v", nodeattest.ErrUnavailable, ks.url, err)
			}
		}
		if ks.keys == nil {
			return nil, fmt.Errorf("%w: service-account issuer keys from %s: not fetched yet (the last attempt failed); retry", nodeattest.ErrUnavailable, ks.url)
		}
	}
	if kid == "" {
		return ks.keys.Keys, nil
	}
	return ks.keys.Key(kid), nil
}

// fetch reads the JWKS from the URL; a discovery document's jwks_uri is followed once.
func (ks *keySource) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	b, err := ks.get(ctx, ks.url)
	if err != nil {
		return nil, err
	}
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if json.Unmarshal(b, &disc) == nil && disc.JWKSURI != "" {
		if b, err = ks.get(ctx, disc.JWKSURI); err != nil {
			return nil, err
		}
	}
	return parseJWKS(b)
}

func (ks *keySource) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(b) > MaxJWKSSize {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, MaxJWKSSize)
	}
	return b, nil
}

// precheck refuses, before the API server is asked, a token that cannot be valid whoever signed it:
// not a JWT, for another audience, or expired (its claims are read unverified: TokenReview verifies).
func precheck(token, audience string, now time.Time) error {
	tok, err := jwt.ParseSigned(token, tokenAlgorithms)
	if err != nil {
		return fmt.Errorf("%w: token is not a signed JWT (RS256 or ES256): %v", nodeattest.ErrMalformed, err)
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return fmt.Errorf("%w: token claims: %v", nodeattest.ErrMalformed, err)
	}
	return checkTimesAndAudience(claims, jwt.Expected{AnyAudience: jwt.Audience{audience}, Time: now}, audience)
}

// checkTimesAndAudience checks a token's issuer (if expected), audience, expiry and not-before.
func checkTimesAndAudience(claims jwt.Claims, want jwt.Expected, audience string) error {
	err := claims.ValidateWithLeeway(want, leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return fmt.Errorf("%w: token expired at %s", nodeattest.ErrRefused, claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fmt.Errorf("%w: token audience %q, want %q (the projected volume's audience)", nodeattest.ErrRefused, []string(claims.Audience), audience)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return fmt.Errorf("%w: token issuer %q, want %q", nodeattest.ErrRefused, claims.Issuer, want.Issuer)
	case err != nil:
		return fmt.Errorf("%w: token: %v", nodeattest.ErrRefused, err)
	}
	if claims.Expiry == nil {
		return fmt.Errorf("%w: token has no expiry (a legacy service account token? use a projected one)", nodeattest.ErrRefused)
	}
	return nil
}

// psatClaims are the claims of a projected service account token.
type psatClaims struct {
	jwt.Claims
	K8s struct {
		Namespace      string  `json:"namespace"`
		ServiceAccount objRef  `json:"serviceaccount"`
		Pod            *objRef `json:"pod"`
		Node           *objRef `json:"node"`
	} `json:"kubernetes.io"`
}

type objRef struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// validateOffline checks the token's signature against the cluster's issuer keys, and its issuer,
// audience and validity times; the token must be bound to a pod (a projected token, not a legacy
// secret-based one).
func (c *cluster) validateOffline(ctx context.Context, token string, now time.Time) (identity, error) {
	tok, err := jwt.ParseSigned(token, tokenAlgorithms)
	if err != nil {
		return identity{}, fmt.Errorf("%w: token is not a signed JWT (RS256 or ES256): %v", nodeattest.ErrMalformed, err)
	}
	keys, err := c.keys.key(ctx, tok.Headers[0].KeyID, now)
	if err != nil {
		return identity{}, err
	}
	var claims psatClaims
	verified := false
	for _, k := range keys {
		if tok.Claims(k.Key, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return identity{}, fmt.Errorf("%w: token signature does not verify with the cluster's service-account issuer keys (a token of another cluster?)", nodeattest.ErrRefused)
	}
	if err := checkTimesAndAudience(claims.Claims, jwt.Expected{Issuer: c.cfg.Issuer, AnyAudience: jwt.Audience{c.cfg.Audience}, Time: now}, c.cfg.Audience); err != nil {
		return identity{}, err
	}
	k := claims.K8s
	if k.Namespace == "" || k.ServiceAccount.Name == "" || k.Pod == nil || k.Pod.Name == "" {
		return identity{}, fmt.Errorf("%w: token is not bound to a pod (want a projected service account token with the kubernetes.io claim)", nodeattest.ErrRefused)
	}
	id := identity{namespace: k.Namespace, serviceAccount: k.ServiceAccount.Name, podName: k.Pod.Name, podUID: k.Pod.UID}
	if k.Node != nil {
		id.nodeName, id.nodeUID = k.Node.Name, k.Node.UID
	}
	return id, nil
}
