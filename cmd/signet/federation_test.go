package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// federatedDev is a 'signet dev' of trust domain td serving its bundle endpoint on a free port.
type federatedDev struct {
	*devProc
	td, url, endpointID string
}

func startFederatedDev(t *testing.T, td string) *federatedDev {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	d := newDevDirs(t)
	p := startDev(t, d, "--trust-domain", td, "--bundle-endpoint-address", "127.0.0.1:"+port)
	node, err := os.ReadFile(filepath.Join(d.dataDir, "server", "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	return &federatedDev{devProc: p, td: td, url: "https://127.0.0.1:" + port + "/",
		endpointID: "spiffe://" + td + "/signet/server/" + strings.TrimSpace(string(node))}
}

// federateWith makes f federate with other through other's https_spiffe bundle endpoint, its bundle
// given out of band as 'signet bundle show --format jwks' prints it.
func (f *federatedDev) federateWith(t *testing.T, other *federatedDev) {
	t.Helper()
	file := filepath.Join(t.TempDir(), other.td+".json")
	writeFile(t, file, other.mustCLI("bundle", "show", "--format", "jwks"))
	f.mustCLI("federation", "create", "--trust-domain", other.td, "--bundle-endpoint", other.url, "--profile", "https_spiffe",
		"--endpoint-spiffe-id", other.endpointID, "--bundle-file", file, "--reason", "interop")
}

// The federation commands on a real dev process, against another one's real bundle endpoint.
func TestFederationCLI(t *testing.T) {
	a, b := startFederatedDev(t, "example.org"), startFederatedDev(t, "other.org")
	// Refusals name the flag to fix.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--trust-domain", "other.org", "--bundle-endpoint", b.url, "--endpoint-spiffe-id", b.endpointID}, "--bundle-file"},
		{[]string{"--trust-domain", "other.org", "--bundle-endpoint", "http://127.0.0.1/", "--endpoint-spiffe-id", b.endpointID}, "--bundle-endpoint"},
		{[]string{"--trust-domain", "example.org", "--bundle-endpoint", b.url, "--profile", "https_web"}, "own trust domain"},
		{[]string{"--trust-domain", "other.org", "--bundle-endpoint", b.url, "--bundle-file", "/nonexistent.json"}, "--bundle-file"},
	} {
		_, errOut, code := a.cli(append([]string{"federation", "create"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("federation create %v: exit %d, %q; want a refusal naming %s", tc.args, code, errOut, tc.want)
		}
	}
	a.federateWith(t, b)
	// The bundle given equals the one b's endpoint serves (same sequence and refresh hint): fetching it
	// (from this server, now) changes nothing.
	if out := a.mustCLI("federation", "refresh", "other.org"); !strings.Contains(out, "unchanged") {
		t.Errorf("federation refresh: %q, want unchanged", out)
	}
	shown := decodeJSON[struct {
		BundleRevision uint64          `json:"bundle_revision"`
		Bundle         json.RawMessage `json:"bundle"`
	}](t, a.mustCLI("federation", "show", "other.org", "-o", "json"))
	if shown.BundleRevision != 1 || !strings.Contains(string(shown.Bundle), `"spiffe_refresh_hint"`) {
		t.Errorf("federation show -o json: revision %d, bundle %s", shown.BundleRevision, shown.Bundle)
	}
	out := a.mustCLI("federation", "show", "other.org")
	for _, want := range []string{"Trust domain:", "other.org", b.endpointID, "Authorities:", "1 X.509, 1 JWT"} {
		if !strings.Contains(out, want) {
			t.Errorf("federation show: %q lacks %q", out, want)
		}
	}
	if out := a.mustCLI("federation", "list"); !strings.Contains(out, "other.org") || !strings.Contains(out, b.url) {
		t.Errorf("federation list: %q", out)
	}
	if out := a.mustCLI("audit", "list", "--action", "federation.create"); !strings.Contains(out, "other.org") {
		t.Errorf("audit of the create: %q", out)
	}
	a.mustCLI("federation", "delete", "other.org", "--reason", "done")
	if _, errOut, code := a.cli("federation", "show", "other.org"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("show after delete: exit %d, %q", code, errOut)
	}
}

// devEntryID returns the ID of the dev identity entry of p's trust domain.
func (f *federatedDev) devEntryID(t *testing.T) string {
	t.Helper()
	_, name := devIdentity(t)
	want := "spiffe://" + f.td + "/dev/" + name
	for _, e := range decodeJSON[[]entryView](t, f.mustCLI("entry", "list", "-o", "json")) {
		if e.SPIFFEID == want {
			return e.ID
		}
	}
	t.Fatalf("%s: no entry %s", f.td, want)
	return ""
}

// x509Source is a go-spiffe X509Source on p's Workload API socket.
func (f *federatedDev) x509Source(t *testing.T, ctx context.Context) *workloadapi.X509Source {
	t.Helper()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+f.socket)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// mtlsAcross runs a go-spiffe mTLS server on server's identity that accepts only members of clientTD,
// and has a client on client's identity that accepts only members of serverTD connect and exchange a
// line: the error of either side, nil when the exchange worked.
func mtlsAcross(t *testing.T, server, client *workloadapi.X509Source, serverTD, clientTD spiffeid.TrustDomain) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(server, server, tlsconfig.AuthorizeMemberOf(clientTD)))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err == nil {
			_, err = conn.Write([]byte("pong:" + line))
		}
		served <- err
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), tlsconfig.MTLSClientConfig(client, client, tlsconfig.AuthorizeMemberOf(serverTD)))
	if err != nil {
		lis.Close()
		<-served
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		lis.Close()
		<-served
		return err
	}
	if reply != "pong:ping\n" {
		return fmt.Errorf("reply %q", reply)
	}
	return <-served
}

// TestFederationInterop: two Signet trust domains (two real 'signet dev' processes), federated with each
// other through their https_spiffe bundle endpoints, a go-spiffe service in each: mTLS across with
// tlsconfig.AuthorizeMemberOf(the other trust domain) fails until their entries federate with the other
// trust domain, then works; the same for a JWT-SVID of one domain validated by the other's Workload API.
func TestFederationInterop(t *testing.T) {
	a, b := startFederatedDev(t, "example.org"), startFederatedDev(t, "other.org")
	tdA, tdB := spiffeid.RequireTrustDomainFromString(a.td), spiffeid.RequireTrustDomainFromString(b.td)
	a.federateWith(t, b)
	b.federateWith(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srcA, srcB := a.x509Source(t, ctx), b.x509Source(t, ctx)
	jwtA, jwtB := newClient(t, ctx, a.socket), newClient(t, ctx, b.socket)

	// Federated relationships alone deliver nothing: the entries do not federate.
	if err := mtlsAcross(t, srcA, srcB, tdA, tdB); err == nil {
		t.Fatal("mTLS across trust domains worked before the entries federate with each other")
	}
	if _, err := srcA.GetX509BundleForTrustDomain(tdB); err == nil {
		t.Fatal("example.org's workload holds other.org's bundle before its entry federates with it")
	}
	tokB, err := jwtB.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "example-service"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtA.ValidateJWTSVID(ctx, tokB.Marshal(), "example-service"); err == nil {
		t.Fatal("example.org validated an other.org JWT-SVID before federating")
	}

	a.mustCLI("entry", "update", a.devEntryID(t), "--federates-with", b.td, "--reason", "talk to other.org")
	b.mustCLI("entry", "update", b.devEntryID(t), "--federates-with", a.td, "--reason", "talk to example.org")
	// The bundle change reaches the open Workload API streams.
	eventually(t, 30*time.Second, "each workload to hold the other trust domain's bundle", func() bool {
		_, errA := srcA.GetX509BundleForTrustDomain(tdB)
		_, errB := srcB.GetX509BundleForTrustDomain(tdA)
		return errA == nil && errB == nil
	})
	if err := mtlsAcross(t, srcA, srcB, tdA, tdB); err != nil {
		t.Fatalf("mTLS example.org server <- other.org client: %v", err)
	}
	if err := mtlsAcross(t, srcB, srcA, tdB, tdA); err != nil {
		t.Fatalf("mTLS other.org server <- example.org client: %v", err)
	}
	got, err := jwtA.ValidateJWTSVID(ctx, tokB.Marshal(), "example-service")
	if err != nil || got.ID.TrustDomain() != tdB {
		t.Fatalf("example.org validating an other.org JWT-SVID: %v, %v", got, err)
	}
	jwtBundles, err := jwtA.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtBundles.GetJWTBundleForTrustDomain(tdB); err != nil {
		t.Fatalf("FetchJWTBundles lacks other.org: %v", err)
	}
	x509Bundles, err := jwtA.FetchX509Bundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509Bundles.GetX509BundleForTrustDomain(tdB); err != nil {
		t.Fatalf("FetchX509Bundles lacks other.org: %v", err)
	}

	// Stopping the federation takes the bundle away from the workloads.
	a.mustCLI("federation", "delete", b.td)
	eventually(t, 30*time.Second, "example.org's workload to drop other.org's bundle", func() bool {
		_, err := srcA.GetX509BundleForTrustDomain(tdB)
		return err != nil
	})
	if err := mtlsAcross(t, srcA, srcB, tdA, tdB); err == nil {
		t.Fatal("mTLS across worked after example.org stopped federating with other.org")
	}
}

// 'signet server' serves its bundle endpoint as configured (federation.bundle_endpoint): https_spiffe
// with its server SVID, verified by go-spiffe against the trust domain's bundle.
func TestServerBundleEndpoint(t *testing.T) {
	s := newTestServer(t)
	port := freePort(t)
	s.appendConfig(t, fmt.Sprintf("federation:\n  bundle_endpoint:\n    listen_address: 127.0.0.1:%d\n    refresh_hint: 1m\n", port))
	s.proc = startProc(t, "server", "server", "--config", s.config)
	line := s.waitLine("Bundle endpoint:", 60*time.Second)
	var url, endpointID string
	if _, err := fmt.Sscanf(line, "Bundle endpoint: %s (https_spiffe, endpoint SPIFFE ID %s", &url, &endpointID); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	endpointID = strings.TrimSuffix(endpointID, ").")
	bundle := s.mustCLI("bundle", "show", "--format", "jwks")
	known, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), []byte(bundle))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := gofed.FetchBundle(ctx, known.TrustDomain(), url, gofed.WithSPIFFEAuth(known, spiffeid.RequireFromString(endpointID)))
	if err != nil {
		t.Fatal(err)
	}
	if hint, _ := got.RefreshHint(); hint != time.Minute || !got.X509Bundle().Equal(known.X509Bundle()) {
		t.Fatalf("served bundle: refresh hint %s, same roots %v", hint, got.X509Bundle().Equal(known.X509Bundle()))
	}
}
