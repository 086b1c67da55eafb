package oidc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/server/oidc"
)

// writeCert writes a new certificate and key (testkit.WriteTLSCert) and moves their modification time
// on, so that a rewrite within the file system's timestamp granularity is still seen as a change.
func writeCert(t *testing.T, dir, cn string, keyMode os.FileMode) *x509.Certificate {
	t.Helper()
	cert := testkit.WriteTLSCert(t, dir, cn, keyMode)
	later := time.Now().Add(time.Duration(len(cn)) * time.Second)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Chtimes(filepath.Join(dir, f), later, later); err != nil {
			t.Fatal(err)
		}
	}
	return cert
}

// TestServeTLS: the provider serves HTTPS (TLS 1.2 at least) with the configured certificate, picks a
// renewed certificate up from the files without a restart, and refuses a key file others can read.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCert(t, dir, "open", 0o644)
	if _, err := oidc.TLSConfig(crt, key); err == nil || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Fatalf("TLSConfig with a key file of mode 0644: %v, want an error saying to chmod 600 it", err)
	}
	if _, err := oidc.TLSConfig(filepath.Join(dir, "missing.crt"), key); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Fatalf("TLSConfig with a missing certificate: %v", err)
	}
	first := writeCert(t, dir, "first", 0o600)
	tlsCfg, err := oidc.TLSConfig(crt, key)
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	st := testkit.OpenStore(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logged := &testkit.SyncBuffer{}
	clock := testkit.NewManualClock()
	p, err := oidc.New(oidc.Config{Issuer: "https://" + ln.Addr().String(), Bundle: st, Clock: clock.Now, Logger: testkit.LoggerTo(t, logged)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ln, tlsCfg) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	// get fetches the discovery document trusting only want, over a new connection.
	get := func(want *x509.Certificate, maxVersion uint16) error {
		pool := x509.NewCertPool()
		pool.AddCert(want)
		c := &http.Client{Timeout: testkit.Deadline, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion}}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + ln.Addr().String() + oidc.DiscoveryPath)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(first, 0); err != nil {
		t.Fatalf("HTTPS GET: %v", err)
	}
	if err := get(first, tls.VersionTLS11); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	// Anyone can fail handshakes: at most ErrorLinesPerMinute lines a minute reach the log.
	const refused = "OIDC provider: connection failed"
	for range 3 * oidc.ErrorLinesPerMinute {
		_ = get(testkit.WriteTLSCert(t, t.TempDir(), "untrusted", 0o600), 0) // the client refuses the server's certificate
	}
	waitfor.Condition(t, testkit.Deadline, "failed handshakes logged", func() bool {
		return strings.Count(logged.String(), refused) == oidc.ErrorLinesPerMinute
	})
	heldBack := regexp.MustCompile(`not_logged_since_last=[1-9]`)
	clock.Advance(time.Minute)
	_ = get(testkit.WriteTLSCert(t, t.TempDir(), "untrusted", 0o600), 0)
	waitfor.Condition(t, testkit.Deadline, "a failed handshake logged a minute later, with the count held back", func() bool {
		return strings.Count(logged.String(), refused) > oidc.ErrorLinesPerMinute && heldBack.MatchString(logged.String())
	})
	if n := strings.Count(logged.String(), refused); n > 2*oidc.ErrorLinesPerMinute {
		t.Errorf("%d lines logged in two minutes, want at most %d", n, 2*oidc.ErrorLinesPerMinute)
	}

	second := writeCert(t, dir, "second-renewed", 0o600)
	waitfor.Condition(t, testkit.Deadline, "the renewed certificate served", func() bool { return get(second, 0) == nil })
}
