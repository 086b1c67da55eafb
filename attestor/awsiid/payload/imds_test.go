package payload_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/awsiid/awsiidtest"
	"github.com/signet-id/signet/attestor/awsiid/payload"
)

var pending = time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)

func newIMDS(t *testing.T, opts ...awsiidtest.IMDSOption) (*awsiidtest.IMDS, []byte, string) {
	t.Helper()
	doc := awsiidtest.NewDoc("111122223333", "i-0123456789abcdef0", pending).JSON(t)
	sig := awsiidtest.NewSigner(t).Sign(t, doc)
	return awsiidtest.NewIMDS(t, doc, sig, opts...), doc, sig
}

func TestPayloadReadsWithIMDSv2Token(t *testing.T) {
	m, doc, sig := newIMDS(t) // refuses every read without a valid token
	p, err := payload.Decode(m.Read(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.Document != string(doc) || p.RSA2048 != sig {
		t.Fatalf("payload = %+v, want the served document and signature", p)
	}
	if c, err := payload.New(payload.Config{}); err != nil || c.Type() != "aws_iid" {
		t.Fatalf("New(zero config): %v", err)
	}
}

func TestPayloadRefusedTokenIsNamed(t *testing.T) {
	m, _, _ := newIMDS(t, awsiidtest.RejectTokens())
	c, err := payload.New(payload.Config{Endpoint: m.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Payload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "session token was refused or expired") {
		t.Fatalf("err = %v, want a 401 naming the session token", err)
	}
}

func TestPayloadIMDSv1OnlyWhenConfigured(t *testing.T) {
	m, doc, _ := newIMDS(t, awsiidtest.NoV2())
	c, err := payload.New(payload.Config{Endpoint: m.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Payload(context.Background()); err == nil || !strings.Contains(err.Error(), "imds_v1") {
		t.Fatalf("err = %v, want a refusal naming imds_v1", err)
	}
	c, err = payload.New(payload.Config{Endpoint: m.URL, AllowIMDSv1: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Document != string(doc) {
		t.Fatalf("document = %q", p.Document)
	}
}

func TestPayloadNotOnEC2(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	c, err := payload.New(payload.Config{Endpoint: addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Payload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not on EC2 (no instance metadata service at "+addr+")") {
		t.Fatalf("err = %v, want 'not on EC2'", err)
	}
}

func TestPayloadTimeout(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a service that never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer s.Close()
	defer close(release)
	c, err := payload.New(payload.Config{Endpoint: s.URL, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Payload(context.Background()); err == nil || !strings.Contains(err.Error(), "not on EC2") {
		t.Fatalf("err = %v, want 'not on EC2' after the timeout", err)
	}
}

func TestPayloadBoundsAnswers(t *testing.T) {
	big := []byte(strings.Repeat("x", payload.MaxDocument+1))
	m := awsiidtest.NewIMDS(t, big, "c2ln")
	c, err := payload.New(payload.Config{Endpoint: m.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Payload(context.Background()); err == nil || !strings.Contains(err.Error(), "longer than 4096 bytes") {
		t.Fatalf("err = %v, want the document bound", err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		cfg  payload.Config
		want string
	}{
		{payload.Config{Endpoint: "169.254.169.254"}, "imds_endpoint"},
		{payload.Config{Endpoint: "http://169.254.169.254/latest"}, "imds_endpoint"},
		{payload.Config{Endpoint: "ftp://x"}, "imds_endpoint"},
		{payload.Config{Timeout: -time.Second}, "imds_timeout"},
		{payload.Config{Timeout: time.Hour}, "imds_timeout"},
		{payload.Config{TokenTTL: time.Millisecond}, "imds_token_ttl"},
		{payload.Config{TokenTTL: 7 * time.Hour}, "imds_token_ttl"},
	} {
		if _, err := payload.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestDecodeIsStrict(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want string
	}{
		"unknown field":  {`{"document":"{}","rsa2048":"c2ln","identity":"x"}`, "unknown field"},
		"no signature":   {`{"document":"{}"}`, "rsa2048: required"},
		"trailing data":  {`{"rsa2048":"c2ln"} {}`, "data after"},
		"not json":       {`rsa2048`, "not the agent's JSON form"},
		"huge signature": {`{"rsa2048":"` + strings.Repeat("A", payload.MaxSignature+1) + `"}`, "rsa2048:"},
		"too big":        {strings.Repeat(" ", payload.MaxPayload+1), "more than"},
	} {
		if _, err := payload.Decode([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode = %v, want %q", name, err, tc.want)
		}
	}
	b, err := payload.Payload{Document: "{}", RSA2048: "c2ln"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || m["rsa2048"] != "c2ln" || m["document"] != "{}" {
		t.Fatalf("Encode = %s, %v", b, err)
	}
}
