package jwtapi

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// MaxResponseSize bounds what Call reads of the API's answer.
const MaxResponseSize = 1 << 20

// FetchToken gets a JWT-SVID for audience from the Workload API at addr ("unix:///path"; empty: the
// SPIFFE_ENDPOINT_SOCKET environment variable).
func FetchToken(ctx context.Context, addr, audience string) (string, error) {
	var opts []workloadapi.ClientOption
	if addr != "" {
		opts = append(opts, workloadapi.WithAddr(addr))
	}
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience}, opts...)
	if err != nil {
		return "", fmt.Errorf("jwtapi: fetch a JWT-SVID for audience %q: %w", audience, err)
	}
	return svid.Marshal(), nil
}

// Call sends GET url with "Authorization: Bearer <token>" and returns the status code and body.
func Call(ctx context.Context, client *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize))
	return resp.StatusCode, string(b), err
}
