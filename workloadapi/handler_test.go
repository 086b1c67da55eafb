package workloadapi_test

import (
	"context"
	"crypto/x509"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawClient is a generated Workload API client on addr; withHeader adds the security header the spec
// requires, as every SPIFFE library does.
func rawClient(t *testing.T, addr string) workload.SpiffeWorkloadAPIClient {
	t.Helper()
	return workload.NewSpiffeWorkloadAPIClient(dial(t, addr))
}

// dial connects to the socket at addr until the test ends.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func TestNewValidatesConfig(t *testing.T) {
	att, err := unix.New(unix.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  workloadapi.Config
		want string
	}{
		{"no attestor", workloadapi.Config{}, "Attestors: at least one is required"},
		{"nil attestor", workloadapi.Config{Attestors: []workloadapi.Attestor{att, nil}}, "Attestors: a nil attestor"},
		{"no source", workloadapi.Config{Attestors: []workloadapi.Attestor{att}}, "Source is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := workloadapi.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRequestValidation: malformed or oversized fields are InvalidArgument naming the field, before
// any attestation or signing.
func TestRequestValidation(t *testing.T) {
	addr, _ := serveAgent(t, 1)
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 30*time.Second)
	defer cancel()

	many := make([]string, 17)
	for i := range many {
		many[i] = "aud"
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"JWT without audience", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{})
			return err
		}, "audience is required"},
		{"JWT with 17 audiences", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: many})
			return err
		}, "at most 16 allowed"},
		{"JWT with an empty audience value", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a", ""}})
			return err
		}, "each value must be 1 to"},
		{"JWT with an oversized audience", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{strings.Repeat("a", 257)}})
			return err
		}, "each value must be 1 to"},
		{"JWT with too many audience bytes", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{strings.Repeat("a", 256), strings.Repeat("b", 256), strings.Repeat("c", 256), strings.Repeat("d", 256), "e"}})
			return err
		}, "1025 bytes in all, at most 1024"},
		{"JWT for a malformed SPIFFE ID", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "https://example.org/x"})
			return err
		}, "spiffe_id"},
		{"validate without audience", func() error {
			_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Svid: "x.y.z"})
			return err
		}, "audience is required"},
		{"validate without svid", func() error {
			_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a"})
			return err
		}, "svid is required"},
		{"validate an oversized svid", func() error {
			_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: strings.Repeat("a", 64<<10+1)})
			return err
		}, "too large"},
		{"validate garbage", func() error {
			_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "not-a-jwt"})
			return err
		}, "invalid JWT-SVID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
}

// TestValidateBeforeBundle checks that validating a JWT-SVID before the agent has received its trust
// bundle is Unavailable (a client may retry), not a failed validation.
func TestValidateBeforeBundle(t *testing.T) {
	env := testenv.New(t)
	// Never run: the agent has no bundle.
	a, err := agent.New(agent.Config{Client: env.AgentClient(t, agentID), TrustDomain: testenv.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	c := rawClient(t, serveSource(t, a))
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 30*time.Second)
	defer cancel()
	_, err = c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "x.y.z"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "no JWT bundle yet") {
		t.Fatalf("ValidateJWTSVID before the bundle: %v, want Unavailable, no JWT bundle yet", err)
	}
}

// TestFetchAndValidate drives every Workload API RPC with the generated client: two entries match
// this process, so both SVIDs come in one response with the bundle; JWT-SVIDs validate through the
// socket against the JWT bundle the socket serves, and a token from a foreign key does not.
func TestFetchAndValidate(t *testing.T) {
	addr, env := serveAgent(t, 2)
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 30*time.Second)
	defer cancel()

	xs, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := xs.Recv()
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	var ids []string
	for _, s := range resp.Svids {
		ids = append(ids, s.SpiffeId)
		certs, err := x509.ParseCertificates(s.X509Svid)
		if err != nil || len(certs) == 0 {
			t.Fatalf("%s: certificate chain: %v", s.SpiffeId, err)
		}
		if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != s.SpiffeId {
			t.Fatalf("%s: leaf URI SANs %v", s.SpiffeId, certs[0].URIs)
		}
		if _, err := x509.ParsePKCS8PrivateKey(s.X509SvidKey); err != nil {
			t.Fatalf("%s: key is not PKCS#8: %v", s.SpiffeId, err)
		}
		roots, err := x509.ParseCertificates(s.Bundle)
		if err != nil || len(roots) == 0 || !roots[0].Equal(env.CA.X509Authority()) {
			t.Fatalf("%s: bundle is not the server's root (%v)", s.SpiffeId, err)
		}
	}
	slices.Sort(ids)
	if want := []string{"spiffe://example.org/workload/0", "spiffe://example.org/workload/1"}; !slices.Equal(ids, want) {
		t.Fatalf("SVIDs %v, want %v", ids, want)
	}

	bs, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	xb, err := bs.Recv()
	if err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}
	if _, ok := xb.Bundles["spiffe://example.org"]; !ok || len(xb.Bundles) != 1 {
		t.Fatalf("X.509 bundles keyed %v, want only spiffe://example.org", keys(xb.Bundles))
	}

	js, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	jb, err := js.Recv()
	if err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	bundle, err := jwtbundle.Parse(testenv.TrustDomain, jb.Bundles["spiffe://example.org"])
	if err != nil {
		t.Fatalf("JWT bundle does not parse as a JWK Set: %v", err)
	}
	if _, ok := bundle.FindJWTAuthority(env.CA.JWTKeyID()); !ok {
		t.Fatalf("JWT bundle lacks the server's key %q", env.CA.JWTKeyID())
	}

	// One JWT-SVID per identity without spiffe_id; exactly the one asked for with it.
	all, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"billing"}})
	if err != nil || len(all.Svids) != 2 {
		t.Fatalf("FetchJWTSVID: %v, %v; want 2 SVIDs", all, err)
	}
	one, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"billing"}, SpiffeId: "spiffe://example.org/workload/1"})
	if err != nil || len(one.Svids) != 1 || one.Svids[0].SpiffeId != "spiffe://example.org/workload/1" {
		t.Fatalf("FetchJWTSVID(workload/1): %v, %v", one, err)
	}
	if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"billing"}, SpiffeId: "spiffe://example.org/other"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("FetchJWTSVID for an identity not granted: %v, want PermissionDenied", err)
	}

	v, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "billing", Svid: one.Svids[0].Svid})
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if v.SpiffeId != "spiffe://example.org/workload/1" || v.Claims.Fields["sub"].GetStringValue() != v.SpiffeId {
		t.Fatalf("ValidateJWTSVID: spiffe_id %q, claims %v", v.SpiffeId, v.Claims)
	}
	if _, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "payments", Svid: one.Svids[0].Svid}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ValidateJWTSVID for another audience: %v, want InvalidArgument", err)
	}

	// Same trust domain and key ID format, but a key the trust domain never published.
	foreign := testkit.NewCA(t, testenv.TrustDomain, 0)
	forged, err := foreign.SignJWTSVID(ca.JWTSVIDParams{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/workload/1"), Audience: []string{"billing"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "billing", Svid: forged.Token}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ValidateJWTSVID of a token signed by a foreign key: %v, want InvalidArgument", err)
	}
}

// TestX509StreamPushesChanges: an open FetchX509SVID stream receives a new response, with no request
// from the client, when an entry for the caller is added, and is closed with PermissionDenied once the
// caller has no entry left (Workload API spec: the stream reflects the caller's current identities).
func TestX509StreamPushesChanges(t *testing.T) {
	addr, env := serveAgent(t, 1)
	c := rawClient(t, addr)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 60*time.Second)
	defer cancel()

	stream, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || len(first.Svids) != 1 {
		t.Fatalf("first response: %v, %v; want 1 SVID", first, err)
	}

	// An entry for another uid wakes the stream but changes nothing this caller sees: nothing is sent.
	env.Entries(t, agentID, "bench", "spiffe://example.org/other-uid", 1, "unix:uid:"+strconv.Itoa(os.Getuid()+1))
	env.Entries(t, agentID, "bench", "spiffe://example.org/added", 1, "unix:uid:"+strconv.Itoa(os.Getuid()))
	second, err := stream.Recv()
	if err != nil {
		t.Fatalf("after adding an entry: %v", err)
	}
	var ids []string
	for _, s := range second.Svids {
		ids = append(ids, s.SpiffeId)
	}
	slices.Sort(ids)
	if want := []string{"spiffe://example.org/added/0", "spiffe://example.org/workload/0"}; !slices.Equal(ids, want) {
		t.Fatalf("after adding an entry: SVIDs %v, want %v", ids, want)
	}

	// Delete every entry: the stream ends with PermissionDenied rather than serving stale SVIDs.
	for _, e := range env.Store.Entries() {
		if _, err := env.Store.DeleteEntry(context.Background(), e.ID); err != nil {
			t.Fatal(err)
		}
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue // an intermediate state with one of the two entries gone
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("after deleting every entry: %v, want PermissionDenied", err)
		}
		break
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
