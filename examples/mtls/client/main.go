// Command client is the mTLS example's client: it calls the example server over HTTPS with its own
// X.509-SVID from the SPIFFE Workload API and talks only to the server SPIFFE ID it is given
// (-server-id). One http.Client keeps its connections alive across requests; new connections present
// the SVID of the moment, so rotation needs no restart. See examples/mtls/README.md.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"time"

	"github.com/signet-id/signet/examples/mtls/internal/workload"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

var (
	url      = flag.String("url", "https://127.0.0.1:8443/", "the server's URL")
	serverID = flag.String("server-id", "", "the server's SPIFFE ID: any other is refused (required)")
	id       = flag.String("id", "", "which of this workload's SPIFFE IDs to present, if it has several (default: the first)")
	requests = flag.Int("requests", 5, "how many requests to make (0: until interrupted)")
	interval = flag.Duration("interval", time.Second, "pause between requests")
)

func main() { workload.Main("mtls client", run) }

func run(ctx context.Context) error {
	allowed, err := workload.ParseID("server-id", *serverID)
	if err != nil {
		return err
	}
	if *requests < 0 {
		return fmt.Errorf("-requests %d: want 0 (until interrupted) or more", *requests)
	}
	if *interval < 0 {
		return fmt.Errorf("-interval %s: must not be negative", *interval)
	}
	src, err := workload.NewSource(ctx, *id)
	if err != nil {
		return err
	}
	defer src.Close()

	tlsConf := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(allowed))
	tlsConf.MinVersion = tls.VersionTLS13
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()

	for n := 1; *requests == 0 || n <= *requests; n++ {
		line, err := call(ctx, client, *url)
		if ctx.Err() != nil {
			return nil // interrupted
		}
		if err != nil {
			return fmt.Errorf("request %d: %w", n, err)
		}
		fmt.Printf("request %d: %s\n", n, line)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
	return nil
}

// call makes one GET and describes it: the connection (new or reused from the pool), the serial of
// the server's certificate and the server's answer.
func call(ctx context.Context, client *http.Client, url string) (string, error) {
	reused := false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("-url %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	conn := "new"
	if reused {
		conn = "reused"
	}
	return fmt.Sprintf("%s conn=%s server_serial=%s %s", resp.Status, conn, resp.TLS.PeerCertificates[0].SerialNumber.Text(16), strings.TrimSpace(string(body))), nil
}
