// Package envoy_test checks the Envoy example: Envoy is not installed on the build machines, so its
// bootstrap file is loaded with go-control-plane's generated types, strictly, and validated as
// Envoy's own validation rules (protoc-gen-validate) would.
package envoy_test

import (
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// The types the example's typed_config fields name: linked so that protojson resolves them.
var (
	_ = tcpproxyv3.TcpProxy{}
	_ = httpv3.HttpProtocolOptions{}
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// load reads a YAML file into m as Envoy reads its bootstrap: unknown fields are errors.
func load(t *testing.T, path string, m proto.Message) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, m); err != nil {
		t.Fatalf("%s does not load as %s: %v", path, m.ProtoReflect().Descriptor().FullName(), err)
	}
	if err := m.(validator).ValidateAll(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// unpack decodes a typed_config and validates it (ValidateAll does not look inside an Any).
func unpack[M any, P interface {
	*M
	proto.Message
}](t *testing.T, a *anypb.Any) P {
	t.Helper()
	m := P(new(M))
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("typed_config %s: %v", a.GetTypeUrl(), err)
	}
	if err := any(m).(validator).ValidateAll(); err != nil {
		t.Fatalf("typed_config %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

// TestEnvoyExample: the bootstrap loads strictly; the listener's TLS context takes the SVID named
// default and the validation context named ROOTCA over SDS from the cluster signet_agent, which is
// the example agent configuration's socket, over HTTP/2 (gRPC).
func TestEnvoyExample(t *testing.T) {
	var b bootstrapv3.Bootstrap
	load(t, "envoy.yaml", &b)
	var agentCfg struct {
		SocketPath string `json:"socket_path"`
	}
	raw, err := os.ReadFile("../config/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &agentCfg); err != nil || agentCfg.SocketPath == "" {
		t.Fatalf("../config/agent.yaml: socket_path %q, %v", agentCfg.SocketPath, err)
	}

	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
		for _, o := range c.GetTypedExtensionProtocolOptions() {
			unpack[httpv3.HttpProtocolOptions](t, o)
		}
		if c.GetName() != "signet_agent" {
			continue
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			t.Fatalf("cluster signet_agent: %d endpoint groups, want one endpoint", len(eps))
		}
		if p := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath(); p != agentCfg.SocketPath {
			t.Fatalf("cluster signet_agent: pipe %q, want the agent's socket_path %q", p, agentCfg.SocketPath)
		}
		opts := unpack[httpv3.HttpProtocolOptions](t, c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"])
		if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Fatal("cluster signet_agent: not HTTP/2; gRPC needs it")
		}
	}
	if !clusters["signet_agent"] {
		t.Fatal("no cluster signet_agent")
	}

	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) == 0 {
		t.Fatal("no listener")
	}
	for _, l := range listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if proxy := unpack[tcpproxyv3.TcpProxy](t, f.GetTypedConfig()); !clusters[proxy.GetCluster()] {
					t.Fatalf("listener %s: tcp_proxy to %q, not a cluster", l.GetName(), proxy.GetCluster())
				}
			}
			tls := unpack[tlsv3.DownstreamTlsContext](t, fc.GetTransportSocket().GetTypedConfig())
			common := tls.GetCommonTlsContext()
			certs := common.GetTlsCertificateSdsSecretConfigs()
			if len(certs) != 1 || certs[0].GetName() != "default" {
				t.Fatalf("listener %s: TLS certificates over SDS %v, want default", l.GetName(), certs)
			}
			checkSDS(t, certs[0].GetSdsConfig())
			vc := common.GetValidationContextSdsSecretConfig()
			if vc.GetName() != "ROOTCA" {
				t.Fatalf("listener %s: validation context %q over SDS, want ROOTCA", l.GetName(), vc.GetName())
			}
			checkSDS(t, vc.GetSdsConfig())
			if !tls.GetRequireClientCertificate().GetValue() {
				t.Fatalf("listener %s: client certificates not required (not mutual TLS)", l.GetName())
			}
		}
	}
}

// checkSDS checks an sds_config reaches the agent: gRPC, v3, cluster signet_agent.
func checkSDS(t *testing.T, c *corev3.ConfigSource) {
	t.Helper()
	src := c.GetApiConfigSource()
	if c.GetResourceApiVersion() != corev3.ApiVersion_V3 || src.GetApiType() != corev3.ApiConfigSource_GRPC || src.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Fatalf("sds_config: %v, want gRPC and API v3", c)
	}
	if gs := src.GetGrpcServices(); len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != "signet_agent" {
		t.Fatalf("sds_config: gRPC services %v, want the cluster signet_agent", gs)
	}
}
