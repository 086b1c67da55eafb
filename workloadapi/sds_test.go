package workloadapi_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/workloadapi"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// serveSDS is serveAgentWith, and go-control-plane's generated SDS client on its socket, connected
// as Envoy connects: without the workload.spiffe.io header.
func serveSDS(t *testing.T, entries int, o serveOpts) (string, secretv3.SecretDiscoveryServiceClient, *testenv.Env) {
	t.Helper()
	addr, env := serveAgentWith(t, entries, o)
	return addr, secretv3.NewSecretDiscoveryServiceClient(dial(t, addr)), env
}

// sdsCtx bounds a test's calls: a minute, until the test ends.
func sdsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// envoyNode is the node an Envoy of version 1.minor sends in its first request, with metadata.
func envoyNode(t *testing.T, minor uint32, metadata map[string]any) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(metadata)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: "sidecar", Cluster: "web", Metadata: md, UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: minor}}}}
}

// secretsOf decodes a response's resources by name, checking their type.
func secretsOf(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	if resp.TypeUrl != secretType {
		t.Fatalf("response type_url %q, want %q", resp.TypeUrl, secretType)
	}
	out := map[string]*tlsv3.Secret{}
	for _, r := range resp.Resources {
		var s tlsv3.Secret
		if err := r.UnmarshalTo(&s); err != nil {
			t.Fatalf("resource of type %s: %v", r.TypeUrl, err)
		}
		out[s.Name] = &s
	}
	return out
}

// fetchNames calls FetchSecrets for names, as an Envoy 1.30, and returns the names of the secrets it
// answers with.
func fetchNames(t *testing.T, ctx context.Context, c secretv3.SecretDiscoveryServiceClient, names ...string) []string {
	t.Helper()
	resp, err := c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: envoyNode(t, 30, nil), ResourceNames: names})
	if err != nil {
		t.Fatalf("FetchSecrets %v: %v", names, err)
	}
	return secretNames(secretsOf(t, resp))
}

func secretNames(secrets map[string]*tlsv3.Secret) []string {
	out := keys(secrets)
	slices.Sort(out)
	return out
}

// checkTLSCertificate checks that s is a TLS certificate for id whose key matches its leaf, and
// returns the leaf.
func checkTLSCertificate(t *testing.T, s *tlsv3.Secret, id string) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil {
		t.Fatalf("secret %q: %T, want a TLS certificate", s.Name, s.Type)
	}
	certs := pemCerts(t, tc.GetCertificateChain().GetInlineBytes())
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != id {
		t.Fatalf("secret %q: leaf URI SANs %v, want %s", s.Name, certs[0].URIs, id)
	}
	block, _ := pem.Decode(tc.GetPrivateKey().GetInlineBytes())
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("secret %q: private key is not a PEM PRIVATE KEY", s.Name)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("secret %q: private key: %v", s.Name, err)
	}
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(certs[0].PublicKey) {
		t.Fatalf("secret %q: the private key does not match the leaf certificate", s.Name)
	}
	return certs[0]
}

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no PEM certificates")
	}
	return out
}

// trustedCA returns the roots of a trusted_ca validation context.
func trustedCA(t *testing.T, s *tlsv3.Secret) []*x509.Certificate {
	t.Helper()
	vc := s.GetValidationContext()
	if vc == nil || vc.GetCustomValidatorConfig() != nil {
		t.Fatalf("secret %q: %v, want a validation context with trusted_ca", s.Name, s.Type)
	}
	return pemCerts(t, vc.GetTrustedCa().GetInlineBytes())
}

// spiffeValidator returns the trust domains of a SPIFFE certificate validator validation context,
// with their roots.
func spiffeValidator(t *testing.T, s *tlsv3.Secret) map[string][]*x509.Certificate {
	t.Helper()
	cv := s.GetValidationContext().GetCustomValidatorConfig()
	if cv == nil || cv.Name != "envoy.tls.cert_validator.spiffe" || s.GetValidationContext().GetTrustedCa() != nil {
		t.Fatalf("secret %q: %v, want the SPIFFE certificate validator", s.Name, s.Type)
	}
	var cfg tlsv3.SPIFFECertValidatorConfig
	if err := cv.TypedConfig.UnmarshalTo(&cfg); err != nil {
		t.Fatalf("secret %q: %v", s.Name, err)
	}
	out := map[string][]*x509.Certificate{}
	for _, td := range cfg.TrustDomains {
		out[td.Name] = pemCerts(t, td.GetTrustBundle().GetInlineBytes())
	}
	return out
}

// subscribe opens a stream as Envoy does, with its node and the names it asks for, and returns it with
// the first response.
func subscribe(t *testing.T, ctx context.Context, c secretv3.SecretDiscoveryServiceClient, node *corev3.Node, names ...string) (secretv3.SecretDiscoveryService_StreamSecretsClient, *discoveryv3.DiscoveryResponse) {
	t.Helper()
	stream, err := c.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: node, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("first response to %v: %v", names, err)
	}
	return stream, resp
}

// ack acknowledges resp on stream, as Envoy does once it applied it.
func ack(t *testing.T, stream secretv3.SecretDiscoveryService_StreamSecretsClient, resp *discoveryv3.DiscoveryResponse, names ...string) {
	t.Helper()
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: names, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
		t.Fatal(err)
	}
}

// rotate changes the entry's X.509 TTL: the agent mints the entry a new SVID (new key, new serial),
// which an open stream must push.
func rotate(t *testing.T, env *testenv.Env, entryID string) {
	t.Helper()
	e, err := env.Store.Entry(entryID)
	if err != nil {
		t.Fatal(err)
	}
	e.X509TTL += time.Minute
	if _, err := env.Store.UpdateEntry(context.Background(), e, e.Revision, "rotate"); err != nil {
		t.Fatal(err)
	}
}

func entryOf(t *testing.T, env *testenv.Env, spiffeID string) string {
	t.Helper()
	for _, e := range env.Store.Entries() {
		if e.SPIFFEID == spiffeID {
			return e.ID
		}
	}
	t.Fatalf("no entry for %s", spiffeID)
	return ""
}

// TestSDSStream drives StreamSecrets as Envoy's SDS client does, over the real socket of a real
// agent: subscribe to default and ROOTCA, get both and ACK; an SVID rotation is pushed at a new
// version; a NACK is logged and not answered, and the next change is still pushed; a request with a
// stale nonce is ignored; a resubscription to other names is answered with those.
func TestSDSStream(t *testing.T) {
	addr, c, env := serveSDS(t, 2, serveOpts{})
	ctx := sdsCtx(t)
	// An Envoy older than 1.18 (no SPIFFE validator): ROOTCA comes as trusted_ca.
	stream, first := subscribe(t, ctx, c, envoyNode(t, 17, nil), "default", "ROOTCA")
	got := secretsOf(t, first)
	if n := secretNames(got); !slices.Equal(n, []string{"ROOTCA", "default"}) {
		t.Fatalf("first response: secrets %v, want ROOTCA and default", n)
	}
	if first.VersionInfo == "" || first.Nonce == "" {
		t.Fatalf("first response: version %q, nonce %q; want both set", first.VersionInfo, first.Nonce)
	}
	// The default is the caller's first SVID, as the Workload API orders them.
	xs, err := rawClient(t, addr).FetchX509SVID(withHeader(ctx), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := xs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	id0, id1 := x.Svids[0].SpiffeId, x.Svids[1].SpiffeId
	leaf := checkTLSCertificate(t, got["default"], id0)
	if roots := trustedCA(t, got["ROOTCA"]); len(roots) != 1 || !roots[0].Equal(env.CA.X509Authority()) {
		t.Fatalf("ROOTCA: %d roots, want the server's root", len(roots))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(trustedCA(t, got["ROOTCA"]))}); err != nil {
		t.Fatalf("default does not verify against ROOTCA: %v", err)
	}
	ack(t, stream, first, "default", "ROOTCA")

	// Rotation: pushed with no request, at a new version and nonce.
	rotate(t, env, entryOf(t, env, id0))
	second, err := stream.Recv()
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	got = secretsOf(t, second)
	rotated := checkTLSCertificate(t, got["default"], id0)
	if rotated.SerialNumber.Cmp(leaf.SerialNumber) == 0 || second.VersionInfo == first.VersionInfo || second.Nonce == first.Nonce {
		t.Fatalf("after rotation: serial %s (was %s), version %q (was %q), nonce %q (was %q): want all new",
			rotated.SerialNumber, leaf.SerialNumber, second.VersionInfo, first.VersionInfo, second.Nonce, first.Nonce)
	}

	// NACK: Envoy keeps the first version. The server does not resend (no loop); the next change is
	// still pushed, and it is the next response.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default", "ROOTCA"}, VersionInfo: first.VersionInfo,
		ResponseNonce: second.Nonce, ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "Failed to load certificate chain"}}); err != nil {
		t.Fatal(err)
	}
	rotate(t, env, entryOf(t, env, id0))
	third, err := stream.Recv()
	if err != nil {
		t.Fatalf("after a NACK and a rotation: %v", err)
	}
	got = secretsOf(t, third)
	again := checkTLSCertificate(t, got["default"], id0)
	if again.SerialNumber.Cmp(rotated.SerialNumber) == 0 || third.VersionInfo == second.VersionInfo {
		t.Fatalf("after a NACK and a rotation: serial %s, version %q: want a new SVID at a new version", again.SerialNumber, third.VersionInfo)
	}

	// A request with a stale nonce (the second response's) is ignored: its names are not taken up,
	// so the next push still holds default and ROOTCA.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"ROOTCA"}, VersionInfo: second.VersionInfo, ResponseNonce: second.Nonce}); err != nil {
		t.Fatal(err)
	}
	ack(t, stream, third, "default", "ROOTCA")
	rotate(t, env, entryOf(t, env, id0))
	fourth, err := stream.Recv()
	if err != nil {
		t.Fatalf("after a stale request: %v", err)
	}
	if n := secretNames(secretsOf(t, fourth)); !slices.Equal(n, []string{"ROOTCA", "default"}) {
		t.Fatalf("after a request with a stale nonce: secrets %v, want ROOTCA and default still", n)
	}

	// Resubscribe (ACK with other names): answered at once with the SVID named by its SPIFFE ID
	// and the trust domain's bundle named by its ID.
	ack(t, stream, fourth, id1, "spiffe://example.org")
	fifth, err := stream.Recv()
	if err != nil {
		t.Fatalf("after resubscribing: %v", err)
	}
	got = secretsOf(t, fifth)
	if n := secretNames(got); !slices.Equal(n, []string{"spiffe://example.org", id1}) { // id1 sorts after the trust domain ID
		t.Fatalf("after resubscribing: secrets %v", n)
	}
	checkTLSCertificate(t, got[id1], id1)
	if roots := trustedCA(t, got["spiffe://example.org"]); !roots[0].Equal(env.CA.X509Authority()) {
		t.Fatal("spiffe://example.org: not the server's root")
	}
	if fifth.VersionInfo == fourth.VersionInfo {
		t.Fatalf("after resubscribing: version %q unchanged", fifth.VersionInfo)
	}

	// A rotation of an SVID not asked for any more sends nothing: the next response is the rotation
	// of the one asked for.
	ack(t, stream, fifth, id1, "spiffe://example.org")
	rotate(t, env, entryOf(t, env, id0))
	rotate(t, env, entryOf(t, env, id1))
	sixth, err := stream.Recv()
	if err != nil {
		t.Fatalf("after rotating both SVIDs: %v", err)
	}
	if checkTLSCertificate(t, secretsOf(t, sixth)[id1], id1).SerialNumber.Cmp(checkTLSCertificate(t, got[id1], id1).SerialNumber) == 0 {
		t.Fatalf("the response after %s rotated is not %s's rotation: a change to a secret not asked for was pushed", id0, id1)
	}
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestSDSFetchSecrets: the unary form answers the names it has and leaves out those it does not
// (an identity the caller is not entitled to, an unknown name), without the security header.
func TestSDSFetchSecrets(t *testing.T) {
	_, c, env := serveSDS(t, 1, serveOpts{})
	ctx := sdsCtx(t)
	resp, err := c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: envoyNode(t, 30, nil),
		ResourceNames: []string{"default", "ROOTCA", "spiffe://example.org/not-mine", "no-such-secret"}})
	if err != nil {
		t.Fatalf("FetchSecrets: %v", err)
	}
	got := secretsOf(t, resp)
	if n := secretNames(got); !slices.Equal(n, []string{"ROOTCA", "default"}) {
		t.Fatalf("FetchSecrets: secrets %v, want ROOTCA and default only", n)
	}
	checkTLSCertificate(t, got["default"], "spiffe://example.org/workload/0")
	if tds := spiffeValidator(t, got["ROOTCA"]); len(tds) != 1 || !tds["example.org"][0].Equal(env.CA.X509Authority()) {
		t.Fatalf("ROOTCA for Envoy 1.30: trust domains %v, want example.org with the server's root", keys(tds))
	}
	if resp.VersionInfo == "" || resp.Nonce != "" {
		t.Fatalf("FetchSecrets: version %q, nonce %q; want a version and no nonce", resp.VersionInfo, resp.Nonce)
	}

	// Wildcard (no names): every SVID under its SPIFFE ID and the bundle under the trust domain ID.
	if n := fetchNames(t, ctx, c); !slices.Equal(n, []string{"spiffe://example.org", "spiffe://example.org/workload/0"}) {
		t.Fatalf("FetchSecrets of everything: %v", n)
	}
}

// TestSDSBundlesDoNotMint: validation contexts alone are served without the agent minting an SVID
// (an Envoy that only verifies peers); asking for default then mints the caller's.
func TestSDSBundlesDoNotMint(t *testing.T) {
	_, c, env := serveSDS(t, 1, serveOpts{})
	ctx := sdsCtx(t)
	stream, resp := subscribe(t, ctx, c, envoyNode(t, 30, nil), "ROOTCA")
	if n := secretNames(secretsOf(t, resp)); !slices.Equal(n, []string{"ROOTCA"}) {
		t.Fatalf("secrets %v, want ROOTCA", n)
	}
	if n := ledgerRecords(t, env.Store); n != 0 {
		t.Fatalf("serving ROOTCA minted %d SVIDs, want none", n)
	}
	ack(t, stream, resp, "ROOTCA", "default")
	if resp, err := stream.Recv(); err != nil || !slices.Equal(secretNames(secretsOf(t, resp)), []string{"ROOTCA", "default"}) {
		t.Fatalf("after asking for default too: %v, %v", resp, err)
	}
	if n := ledgerRecords(t, env.Store); n != 1 {
		t.Fatalf("asking for default left %d ledger records, want 1", n)
	}
}

// TestSDSDeliveriesNameTheCaller: an SVID handed to Envoy over SDS, by FetchSecrets or a stream, is a
// delivery naming the attested caller, as over the Workload API.
func TestSDSDeliveriesNameTheCaller(t *testing.T) {
	_, c, env := serveSDS(t, 1, serveOpts{agent: func(c *agent.Config) { c.DeliveryReportInterval = 20 * time.Millisecond }})
	ctx := sdsCtx(t)
	resp, err := c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf := checkTLSCertificate(t, secretsOf(t, resp)["default"], "spiffe://example.org/workload/0")
	serial := leaf.SerialNumber.Text(16)
	if d := waitDeliveries(t, env.Store, serial, 1); d.Caller.PID != int32(os.Getpid()) || d.Caller.UID != uint32(os.Getuid()) || d.Agent != agentID {
		t.Fatalf("delivery %+v: want this process (pid %d, uid %d) through %s", d, os.Getpid(), os.Getuid(), agentID)
	}
	// A stream's response counts too: the same record, count 2.
	subscribe(t, ctx, c, nil, "ROOTCA", "spiffe://example.org/workload/0")
	waitDeliveries(t, env.Store, serial, 2)
}

// TestSDSNACKLogBounded: an Envoy rejecting every response, with huge messages and versions, costs
// a bounded number of log lines of bounded size.
func TestSDSNACKLogBounded(t *testing.T) {
	var logs testkit.SyncBuffer
	_, c, _ := serveSDS(t, 1, serveOpts{logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := sdsCtx(t)
	stream, first := subscribe(t, ctx, c, nil, "default")
	const nacks = 100
	for range nacks {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}, ResponseNonce: first.Nonce,
			VersionInfo: strings.Repeat("v", 10<<10), ErrorDetail: &status.Status{Message: strings.Repeat("m", 100<<10)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Requests are taken in order: once a resubscription is answered, every NACK before it was seen.
	ack(t, stream, first, "default", "ROOTCA")
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "Envoy rejected the secrets") {
			n++
			if len(l) > 1024 {
				t.Fatalf("a NACK log line of %d bytes:\n%.300s...", len(l), l)
			}
		}
	}
	// 5 lines per 10 s; the NACKs take a second at most, so one or two windows.
	if n < 1 || n > 10 {
		t.Fatalf("%d NACKs logged %d lines, want 1 to 10", nacks, n)
	}
}

// TestSDSRefusesCallerWithoutIdentity: a process no entry matches is refused on both RPCs, as on the
// Workload API.
func TestSDSRefusesCallerWithoutIdentity(t *testing.T) {
	_, c, _ := serveSDS(t, 0, serveOpts{})
	ctx := sdsCtx(t)
	if _, err := c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"ROOTCA"}}); grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("FetchSecrets without an identity: %v, want PermissionDenied", err)
	}
	stream, err := c.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(grpcstatus.Convert(err).Message(), "no registration entry matches") {
		t.Fatalf("StreamSecrets without an identity: %v, want PermissionDenied", err)
	}
}

// TestSDSRefusesUnattestedCaller: a caller whose attestation fails (its pid is not in the attestor's
// proc root, as a process that exited) is refused on all three RPCs before anything is served.
func TestSDSRefusesUnattestedCaller(t *testing.T) {
	empty := t.TempDir()
	_, c, _ := serveSDS(t, 1, serveOpts{attestor: func(cfg *unix.Config) { cfg.ProcRoot = empty }})
	ctx := sdsCtx(t)
	refused := func(rpc string, err error) {
		t.Helper()
		if grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(grpcstatus.Convert(err).Message(), "could not attest the calling process") {
			t.Fatalf("%s: %v, want PermissionDenied (could not attest)", rpc, err)
		}
	}
	_, err := c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}})
	refused("FetchSecrets", err)
	stream, err := c.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	refused("StreamSecrets", err)
	d, err := c.DeltaSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Recv()
	refused("DeltaSecrets", err)
}

// TestSDSValidationForms: the SPIFFE certificate validator for an Envoy of 1.18 or later, unless the
// agent's configuration or the Envoy's node metadata disables it; ALL needs it.
func TestSDSValidationForms(t *testing.T) {
	ctx := sdsCtx(t)
	fetch := func(c secretv3.SecretDiscoveryServiceClient, node *corev3.Node, name string) (*tlsv3.Secret, error) {
		resp, err := c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: node, ResourceNames: []string{name}})
		if err != nil {
			return nil, err
		}
		return secretsOf(t, resp)[name], nil
	}

	_, c, _ := serveSDS(t, 1, serveOpts{})
	for _, tc := range []struct {
		name   string
		node   *corev3.Node
		spiffe bool
	}{
		{"Envoy 1.30", envoyNode(t, 30, nil), true},
		{"Envoy 1.18", envoyNode(t, 18, nil), true},
		{"Envoy 1.17", envoyNode(t, 17, nil), false},
		{"no node", nil, false},
		{"Envoy 1.30 disabling it", envoyNode(t, 30, map[string]any{"disable_spiffe_cert_validation": true}), false},
		{"Envoy 1.30 disabling it as a string", envoyNode(t, 30, map[string]any{"disable_spiffe_cert_validation": "true"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := fetch(c, tc.node, "ROOTCA")
			if err != nil {
				t.Fatal(err)
			}
			if tc.spiffe {
				spiffeValidator(t, s)
			} else {
				trustedCA(t, s)
			}
		})
	}

	// Disabled by the agent: trusted_ca, unless one Envoy's metadata enables it again; ALL is
	// refused in the trusted_ca form, naming the setting.
	_, c, _ = serveSDS(t, 1, serveOpts{sds: workloadapi.SDSConfig{DisableSPIFFECertValidation: true}})
	s, err := fetch(c, envoyNode(t, 30, nil), "ROOTCA")
	if err != nil {
		t.Fatal(err)
	}
	trustedCA(t, s)
	if s, err = fetch(c, envoyNode(t, 30, map[string]any{"disable_spiffe_cert_validation": false}), "ROOTCA"); err != nil {
		t.Fatal(err)
	}
	spiffeValidator(t, s)
	if _, err := fetch(c, envoyNode(t, 30, nil), "ALL"); grpcstatus.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(grpcstatus.Convert(err).Message(), "sds.disable_spiffe_cert_validation") {
		t.Fatalf("ALL in the trusted_ca form: %v, want FailedPrecondition naming the setting", err)
	}
}

// TestSDSRenamedResources: with other names configured, those name the default SVID and the bundles,
// and the default names are ordinary (unknown) names.
func TestSDSRenamedResources(t *testing.T) {
	_, c, _ := serveSDS(t, 1, serveOpts{sds: workloadapi.SDSConfig{DefaultSVIDName: "svid", DefaultBundleName: "bundle", DefaultAllBundlesName: "bundles"}})
	ctx := sdsCtx(t)
	if n := fetchNames(t, ctx, c, "svid", "bundle", "bundles", "default", "ROOTCA", "ALL"); !slices.Equal(n, []string{"bundle", "bundles", "svid"}) {
		t.Fatalf("renamed resources: %v, want bundle, bundles and svid", n)
	}
}

// TestSDSConfigValidated: resource names that would collide with xDS's wildcard, a SPIFFE ID or each
// other are refused, naming the field.
func TestSDSConfigValidated(t *testing.T) {
	att, err := unix.New(unix.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Client: testenv.New(t).AgentClient(t, agentID), TrustDomain: testenv.TrustDomain}) // never run: not needed
	if err != nil {
		t.Fatal(err)
	}
	h, err := workloadapi.New(workloadapi.Config{Attestors: []workloadapi.Attestor{att}, Source: a})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  workloadapi.SDSConfig
		want string
	}{
		{workloadapi.SDSConfig{DefaultSVIDName: "*"}, "DefaultSVIDName: \"*\": xDS's wildcard"},
		{workloadapi.SDSConfig{DefaultBundleName: "spiffe://example.org"}, "DefaultBundleName: \"spiffe://example.org\""},
		{workloadapi.SDSConfig{DefaultAllBundlesName: strings.Repeat("a", 2049)}, "DefaultAllBundlesName: "},
		{workloadapi.SDSConfig{DefaultAllBundlesName: "ROOTCA"}, "must differ"},
	} {
		if _, err := h.SDS(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SDS(%+v): %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// federating is the real agent with one federated bundle added to what it gives every caller: the
// agent does not fetch federated bundles in this branch (the federation work fills Federated).
type federating struct {
	*agent.Agent
	fed workloadapi.FederatedBundle
}

func (f federating) Identities(sels []selector.Selector) (workloadapi.Identities, <-chan struct{}) {
	ids, changed := f.Agent.Identities(sels)
	ids.Federated = append(ids.Federated, f.fed)
	return ids, changed
}

func (f federating) Bundles(sels []selector.Selector) (workloadapi.Identities, <-chan struct{}) {
	ids, changed := f.Agent.Bundles(sels)
	ids.Federated = append(ids.Federated, f.fed)
	return ids, changed
}

// TestSDSFederatedBundles: ALL is the SPIFFE validator with every trust domain's bundle; a federated
// trust domain's ID names its bundle alone; the wildcard includes it.
func TestSDSFederatedBundles(t *testing.T) {
	other := spiffeid.RequireTrustDomainFromString("other.org")
	otherRoot := testkit.NewCA(t, other, 0).X509Authority()
	_, c, env := serveSDS(t, 1, serveOpts{source: func(a *agent.Agent) workloadapi.Source {
		return federating{Agent: a, fed: workloadapi.FederatedBundle{TrustDomain: other, X509Bundle: otherRoot.Raw}}
	}})
	ctx := sdsCtx(t)

	_, resp := subscribe(t, ctx, c, envoyNode(t, 30, nil), "ALL", "spiffe://other.org")
	got := secretsOf(t, resp)
	tds := spiffeValidator(t, got["ALL"])
	if n := keys(tds); len(n) != 2 || !tds["example.org"][0].Equal(env.CA.X509Authority()) || !tds["other.org"][0].Equal(otherRoot) {
		t.Fatalf("ALL: trust domains %v, want example.org and other.org with their roots", n)
	}
	if one := spiffeValidator(t, got["spiffe://other.org"]); len(one) != 1 || !one["other.org"][0].Equal(otherRoot) {
		t.Fatalf("spiffe://other.org: trust domains %v, want other.org alone", keys(one))
	}

	if n := fetchNames(t, ctx, c, "*"); !slices.Equal(n, []string{"spiffe://example.org", "spiffe://example.org/workload/0", "spiffe://other.org"}) {
		t.Fatalf("wildcard: %v", n)
	}
}

// TestSDSRequestBounds: requests out of bounds are InvalidArgument naming the field.
func TestSDSRequestBounds(t *testing.T) {
	_, c, _ := serveSDS(t, 1, serveOpts{})
	ctx := sdsCtx(t)
	many := make([]string, workloadapi.MaxSDSResourceNames+1)
	for i := range many {
		many[i] = "spiffe://example.org/" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		name string
		req  *discoveryv3.DiscoveryRequest
		want string
	}{
		{"too many names", &discoveryv3.DiscoveryRequest{ResourceNames: many}, "at most 64 allowed"},
		{"a name too long", &discoveryv3.DiscoveryRequest{ResourceNames: []string{"spiffe://example.org/" + strings.Repeat("a", 2048)}}, "at most 2048 allowed"},
		{"an empty name", &discoveryv3.DiscoveryRequest{ResourceNames: []string{"default", ""}}, "an empty name"},
		{"another type", &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}, "type_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.FetchSecrets(ctx, tc.req)
			if grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(grpcstatus.Convert(err).Message(), tc.want) {
				t.Fatalf("FetchSecrets: %v, want InvalidArgument containing %q", err, tc.want)
			}
			stream, err := c.StreamSecrets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(grpcstatus.Convert(err).Message(), tc.want) {
				t.Fatalf("StreamSecrets: %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
	// Delta: the subscription is bounded in all, across requests.
	d, err := c.DeltaSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*discoveryv3.DeltaDiscoveryRequest{
		{TypeUrl: secretType, ResourceNamesSubscribe: many[:40]},
		{TypeUrl: secretType, ResourceNamesSubscribe: many[40:]},
	} {
		if err := d.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Recv(); grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(grpcstatus.Convert(err).Message(), "65 names subscribed in all, at most 64") {
		t.Fatalf("DeltaSecrets subscribing to 65 names: %v, want InvalidArgument", err)
	}
}
