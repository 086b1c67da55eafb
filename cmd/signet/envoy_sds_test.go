package main

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAgentServesEnvoySDS: 'signet agent' serves Envoy's SDS on its Workload API socket, with its
// sds section applied: with sds.disable_spiffe_cert_validation, even an Envoy 1.30 gets ROOTCA as
// trusted_ca. (The protocol itself is tested in workloadapi.)
func TestAgentServesEnvoySDS(t *testing.T) {
	s := newTestServer(t).start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "sds:\n  disable_spiffe_cert_validation: true\n").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice", "--purpose", "web", "--parent-id", a.id)
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	conn, err := grpc.NewClient("unix://"+a.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := &corev3.Node{Id: "web", UserAgentName: "envoy", UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{
		UserAgentBuildVersion: &corev3.BuildVersion{Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 30}}}}
	resp, err := secretv3.NewSecretDiscoveryServiceClient(conn).FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{
		Node: node, ResourceNames: []string{"default", "ROOTCA"}})
	if err != nil {
		t.Fatalf("FetchSecrets on the agent's socket: %v", err)
	}
	got := map[string]*tlsv3.Secret{}
	for _, r := range resp.Resources {
		var sec tlsv3.Secret
		if err := r.UnmarshalTo(&sec); err != nil {
			t.Fatal(err)
		}
		got[sec.Name] = &sec
	}
	if got["default"].GetTlsCertificate().GetCertificateChain().GetInlineBytes() == nil {
		t.Fatalf("default: %v, want a TLS certificate", got["default"])
	}
	if vc := got["ROOTCA"].GetValidationContext(); vc.GetTrustedCa().GetInlineBytes() == nil || vc.GetCustomValidatorConfig() != nil {
		t.Fatalf("ROOTCA with sds.disable_spiffe_cert_validation: %v, want trusted_ca", got["ROOTCA"])
	}
}
