package payload

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the instance metadata service of every EC2 instance.
const DefaultEndpoint = "http://169.254.169.254"

// Defaults and bounds of Config.
const (
	// DefaultTimeout bounds each request to the metadata service (it answers in milliseconds on EC2; off
	// EC2 nothing answers, and the agent should say so soon).
	DefaultTimeout = 5 * time.Second
	MaxTimeout     = time.Minute
	// DefaultTokenTTL is the life asked for an IMDSv2 session token: the token is used for the two GETs
	// that follow at once, then dropped.
	DefaultTokenTTL = time.Minute
	maxToken        = 1 << 10
)

// The metadata service's paths; /rsa2048 is the PKCS#7 signature made with SHA-256 and an RSA-2048 key
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/verify-rsa2048.html). The other two are not
// used: /pkcs7 is SHA-1 with DSA (Go verifies neither DSA nor, safely, SHA-1 signatures), /signature is
// a bare signature with no signed content to read the document from.
const (
	tokenPath     = "/latest/api/token"
	documentPath  = "/latest/dynamic/instance-identity/document"
	signaturePath = "/latest/dynamic/instance-identity/rsa2048"
)

// Config configures the metadata client. The zero value reads the real metadata service with IMDSv2.
type Config struct {
	// Endpoint is the metadata service's base URL (default DefaultEndpoint); tests use a local server.
	Endpoint string
	// AllowIMDSv1 lets the client read without a session token when the token request is refused with
	// an HTTP status (a service that predates IMDSv2). Off by default: IMDSv1 answers any request an
	// SSRF-able process on the instance can be tricked into making.
	AllowIMDSv1 bool
	// Timeout bounds each request (default DefaultTimeout, at most MaxTimeout).
	Timeout time.Duration
	// TokenTTL is the IMDSv2 token life asked for (default DefaultTokenTTL; 1s to 6h, the service's range).
	TokenTTL time.Duration
}

// Client reads the instance identity document and its signature. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	v1       bool
	timeout  time.Duration
	tokenTTL time.Duration
	http     *http.Client
}

// New checks cfg (errors name the configuration key) and returns a client.
func New(cfg Config) (*Client, error) {
	endpoint := cmp.Or(cfg.Endpoint, DefaultEndpoint)
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("aws_iid: imds_endpoint %q: want a base URL such as %s", endpoint, DefaultEndpoint)
	}
	u.Path = ""
	timeout := cmp.Or(cfg.Timeout, DefaultTimeout)
	if timeout < 0 || timeout > MaxTimeout {
		return nil, fmt.Errorf("aws_iid: imds_timeout %s: want more than 0 and at most %s", timeout, MaxTimeout)
	}
	ttl := cmp.Or(cfg.TokenTTL, DefaultTokenTTL)
	if ttl < time.Second || ttl > 6*time.Hour {
		return nil, fmt.Errorf("aws_iid: imds_token_ttl %s: want 1s to 6h", ttl)
	}
	// No proxy: the metadata service is link-local, and a proxy would be asked for this instance's
	// identity instead.
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: timeout}).DialContext, MaxIdleConns: 1}
	return &Client{base: u, v1: cfg.AllowIMDSv1, timeout: timeout, tokenTTL: ttl,
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Type returns "aws_iid".
func (c *Client) Type() string { return Type }

// Payload reads the document and its RSA-2048 signature and returns the encoded payload.
func (c *Client) Payload(ctx context.Context) ([]byte, error) {
	p, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	return p.Encode()
}

// Read reads the document and its RSA-2048 signature with one IMDSv2 session token.
func (c *Client) Read(ctx context.Context) (Payload, error) {
	token, err := c.token(ctx)
	if err != nil {
		return Payload{}, err
	}
	doc, err := c.get(ctx, documentPath, token, MaxDocument)
	if err != nil {
		return Payload{}, err
	}
	sig, err := c.get(ctx, signaturePath, token, MaxSignature)
	if err != nil {
		return Payload{}, err
	}
	return Payload{Document: string(doc), RSA2048: string(sig)}, nil
}

// token asks for an IMDSv2 session token; "" means IMDSv1 (allowed, and the service has no tokens).
func (c *Client) token(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodPut, tokenPath, func(h http.Header) {
		h.Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(int(c.tokenTTL/time.Second)))
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := readBounded(resp.Body, maxToken)
	switch {
	case resp.StatusCode != http.StatusOK && c.v1:
		return "", nil
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("aws_iid: IMDSv2 session token: %s answered %s (set imds_v1 to read without a token, if this metadata service predates IMDSv2)", c.base, resp.Status)
	case err != nil:
		return "", fmt.Errorf("aws_iid: IMDSv2 session token: %w", err)
	}
	token := strings.TrimSpace(string(body))
	if token == "" {
		return "", fmt.Errorf("aws_iid: IMDSv2 session token: %s answered an empty token", c.base)
	}
	return token, nil
}

func (c *Client) get(ctx context.Context, path, token string, limit int64) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, path, func(h http.Header) {
		if token != "" {
			h.Set("X-aws-ec2-metadata-token", token)
		}
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (the session token was refused or expired)"
		}
		return nil, fmt.Errorf("aws_iid: GET %s: %s%s", path, resp.Status, hint)
	}
	body, err := readBounded(resp.Body, limit)
	if err != nil {
		return nil, fmt.Errorf("aws_iid: GET %s: %w", path, err)
	}
	if len(body) == 0 {
		return nil, fmt.Errorf("aws_iid: GET %s: empty answer", path)
	}
	return body, nil
}

func (c *Client) do(ctx context.Context, method, path string, header func(http.Header)) (*http.Response, error) {
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	u := c.base.JoinPath(path).String()
	req, err := http.NewRequestWithContext(reqCtx, method, u, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("aws_iid: %s %s: %w", method, u, err)
	}
	header(req.Header)
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		if ctx.Err() != nil { // the caller gave up, the service may well be there
			return nil, fmt.Errorf("aws_iid: %s %s: %w", method, u, err)
		}
		return nil, fmt.Errorf("aws_iid: not on EC2 (no instance metadata service at %s): %w", c.base, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// readBounded reads at most limit bytes, and refuses a longer body.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer longer than %d bytes", limit)
	}
	return b, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
