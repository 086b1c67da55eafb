package workloadapi

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The default names of the resources with a meaning of their own (SPIRE's agent's, so Envoy
// configurations written for SPIRE work unchanged; SDSConfig renames them). Any other name is a
// SPIFFE ID (that SVID) or a trust domain ID such as spiffe://example.org (that trust domain's bundle).
const (
	// SDSDefaultSVIDName is the caller's default X.509-SVID (its first) as a TLS certificate.
	SDSDefaultSVIDName = "default"
	// SDSDefaultBundleName is the caller's own trust domain's bundle as a validation context.
	SDSDefaultBundleName = "ROOTCA"
	// SDSAllBundlesName is every bundle the caller trusts, its own and the federated ones, as one
	// SPIFFE certificate validator configuration.
	SDSAllBundlesName = "ALL"
)

// CheckSDSResourceName reports what is wrong with name as the name of one of the resources with a
// meaning of their own (SDSConfig's DefaultSVIDName, DefaultBundleName, DefaultAllBundlesName).
func CheckSDSResourceName(name string) error {
	switch {
	case name == "" || len(name) > MaxSDSResourceNameLen:
		return fmt.Errorf("%q: want 1 to %d bytes", name, MaxSDSResourceNameLen)
	case name == "*":
		return fmt.Errorf(`"*": xDS's wildcard (every resource); choose another name`)
	case strings.HasPrefix(strings.ToLower(name), "spiffe:"):
		return fmt.Errorf("%q: a SPIFFE ID or trust domain ID names that SVID or bundle; choose a name without the spiffe: scheme", name)
	}
	return nil
}

// withDefaults fills the resource names left empty and checks them.
func (c SDSConfig) withDefaults() (SDSConfig, error) {
	c.DefaultSVIDName = cmp.Or(c.DefaultSVIDName, SDSDefaultSVIDName)
	c.DefaultBundleName = cmp.Or(c.DefaultBundleName, SDSDefaultBundleName)
	c.DefaultAllBundlesName = cmp.Or(c.DefaultAllBundlesName, SDSAllBundlesName)
	for _, f := range []struct{ field, name string }{
		{"DefaultSVIDName", c.DefaultSVIDName}, {"DefaultBundleName", c.DefaultBundleName}, {"DefaultAllBundlesName", c.DefaultAllBundlesName},
	} {
		if err := CheckSDSResourceName(f.name); err != nil {
			return c, fmt.Errorf("workloadapi: SDS config: %s: %w", f.field, err)
		}
	}
	if c.DefaultSVIDName == c.DefaultBundleName || c.DefaultSVIDName == c.DefaultAllBundlesName || c.DefaultBundleName == c.DefaultAllBundlesName {
		return c, fmt.Errorf("workloadapi: SDS config: DefaultSVIDName %q, DefaultBundleName %q and DefaultAllBundlesName %q must differ",
			c.DefaultSVIDName, c.DefaultBundleName, c.DefaultAllBundlesName)
	}
	return c, nil
}

// Bounds on SDS requests: Envoy asks for one or a few names per stream.
const (
	MaxSDSResourceNames   = 64
	MaxSDSResourceNameLen = 2048 // the longest SPIFFE ID the spec allows
)

const (
	// secretTypeURL is the only resource type the secret discovery service serves.
	secretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	// spiffeValidatorName names Envoy's SPIFFE certificate validator extension.
	spiffeValidatorName = "envoy.tls.cert_validator.spiffe"
	// disableSPIFFEValidationKey is the Envoy node metadata key that overrides
	// SDSConfig.DisableSPIFFECertValidation for one Envoy (a bool, or a string strconv.ParseBool reads).
	disableSPIFFEValidationKey = "disable_spiffe_cert_validation"
	// disableSPIFFEValidationConfigKey names the agent configuration key in errors.
	disableSPIFFEValidationConfigKey = "sds.disable_spiffe_cert_validation"
)

// sdsNames is a validated, deduplicated, sorted set of requested resource names; wildcard (no names,
// or "*") asks for every SVID and bundle, each under its SPIFFE ID or trust domain ID.
type sdsNames struct {
	names    []string
	wildcard bool
}

// parseSDSRequest checks a request's type and the resource names in field.
func parseSDSRequest(typeURL, field string, names []string) (sdsNames, error) {
	if typeURL != "" && typeURL != secretTypeURL {
		return sdsNames{}, status.Errorf(codes.InvalidArgument, "type_url %q: the secret discovery service serves only %s", typeURL, secretTypeURL)
	}
	if len(names) > MaxSDSResourceNames {
		return sdsNames{}, status.Errorf(codes.InvalidArgument, "%s: %d names, at most %d allowed", field, len(names), MaxSDSResourceNames)
	}
	out := sdsNames{wildcard: len(names) == 0}
	for _, n := range names {
		switch {
		case n == "":
			return sdsNames{}, status.Errorf(codes.InvalidArgument, "%s: an empty name; name a secret (default, ROOTCA, ALL, a SPIFFE ID or a trust domain ID)", field)
		case len(n) > MaxSDSResourceNameLen:
			return sdsNames{}, status.Errorf(codes.InvalidArgument, "%s: a name of %d bytes, at most %d allowed", field, len(n), MaxSDSResourceNameLen)
		case n == "*":
			out.wildcard = true
		default:
			out.names = append(out.names, n)
		}
	}
	slices.Sort(out.names)
	out.names = slices.Compact(out.names)
	return out, nil
}

func (n sdsNames) equal(o sdsNames) bool {
	return n.wildcard == o.wildcard && slices.Equal(n.names, o.names)
}

// wantsSVIDs reports whether the names ask for a TLS certificate (defaultSVID is the default SVID's
// name), so SVIDs must be minted and kept rotated; names asking only for bundles mint nothing.
func (n sdsNames) wantsSVIDs(defaultSVID string) bool {
	if n.wildcard {
		return true
	}
	for _, name := range n.names {
		if name == defaultSVID {
			return true
		}
		if id, err := spiffeid.FromString(name); err == nil && id.Path() != "" {
			return true
		}
	}
	return false
}

// validationForm is how validation contexts are sent to one client.
type validationForm struct {
	// spiffe: as the SPIFFE certificate validator's configuration (Envoy 1.18 and later), which checks
	// a peer against the bundle of the trust domain in its SPIFFE ID; otherwise as trusted_ca, one PEM
	// bundle of the caller's own trust domain.
	spiffe bool
}

// formFor decides the validation form for a client from its node: the SPIFFE validator when this
// Envoy supports it (it announces version 1.18 or later) unless the agent disables it, and either
// way as the node's disable_spiffe_cert_validation metadata says, if it says.
func formFor(node *corev3.Node, disabled bool) validationForm {
	if v, ok := node.GetMetadata().GetFields()[disableSPIFFEValidationKey]; ok {
		switch k := v.GetKind().(type) {
		case *structpb.Value_BoolValue:
			disabled = k.BoolValue
		case *structpb.Value_StringValue:
			if b, err := strconv.ParseBool(k.StringValue); err == nil {
				disabled = b
			}
		}
	}
	ver := node.GetUserAgentBuildVersion().GetVersion()
	supported := ver.GetMajorNumber() > 1 || (ver.GetMajorNumber() == 1 && ver.GetMinorNumber() >= 18)
	return validationForm{spiffe: supported && !disabled}
}

// sdsSecret is one secret chosen for a response, before it is encoded.
type sdsSecret struct {
	name string
	// svid, if set, makes it a TLS certificate.
	svid *X509SVID
	// bundles otherwise make it a validation context; all marks the ALL context.
	bundles []FederatedBundle
	all     bool
}

// selectSecrets picks the secrets names ask for from ids; names that match nothing are left out, as
// the xDS protocol has a server do for resources it does not have (Envoy waits for them, and they
// are pushed once they exist: an entry added for the caller, a federated bundle received).
func selectSecrets(cfg SDSConfig, names sdsNames, ids Identities) []sdsSecret {
	own := FederatedBundle{TrustDomain: ids.TrustDomain, X509Bundle: ids.X509Bundle}
	bundleOf := func(id string) (FederatedBundle, bool) {
		if id == ids.TrustDomain.IDString() {
			return own, true
		}
		for _, f := range ids.Federated {
			if f.TrustDomain.IDString() == id {
				return f, true
			}
		}
		return FederatedBundle{}, false
	}
	svidOf := func(id string) *X509SVID {
		for i := range ids.SVIDs {
			if ids.SVIDs[i].SPIFFEID == id {
				return &ids.SVIDs[i]
			}
		}
		return nil
	}
	var out []sdsSecret
	if names.wildcard {
		for i := range ids.SVIDs {
			out = append(out, sdsSecret{name: ids.SVIDs[i].SPIFFEID, svid: &ids.SVIDs[i]})
		}
		out = append(out, sdsSecret{name: own.TrustDomain.IDString(), bundles: []FederatedBundle{own}})
		for _, f := range ids.Federated {
			out = append(out, sdsSecret{name: f.TrustDomain.IDString(), bundles: []FederatedBundle{f}})
		}
	}
	for _, n := range names.names {
		if names.wildcard && (svidOf(n) != nil || n == own.TrustDomain.IDString()) {
			continue // already in, under this name
		}
		switch {
		case n == cfg.DefaultSVIDName:
			if len(ids.SVIDs) > 0 {
				out = append(out, sdsSecret{name: n, svid: &ids.SVIDs[0]})
			}
		case n == cfg.DefaultBundleName:
			out = append(out, sdsSecret{name: n, bundles: []FederatedBundle{own}})
		case n == cfg.DefaultAllBundlesName:
			out = append(out, sdsSecret{name: n, bundles: append([]FederatedBundle{own}, ids.Federated...), all: true})
		default:
			if s := svidOf(n); s != nil {
				out = append(out, sdsSecret{name: n, svid: s})
			} else if b, ok := bundleOf(n); ok && !names.wildcard {
				out = append(out, sdsSecret{name: n, bundles: []FederatedBundle{b}})
			}
		}
	}
	return out
}

// secretsVersion is the version_info of a response holding secrets in form: a digest of what it
// serves (each name with its SVID's serial, or with the bundle sequence), so it changes whenever a
// served secret does, and only then.
func secretsVersion(secrets []sdsSecret, bundleSeq uint64, form validationForm) string {
	h := sha256.New()
	fmt.Fprintf(h, "spiffe=%t\n", form.spiffe)
	for _, s := range secrets {
		if s.svid != nil {
			fmt.Fprintf(h, "%s\x00svid\x00%s\n", s.name, s.svid.Serial)
		} else {
			fmt.Fprintf(h, "%s\x00bundle\x00%d\n", s.name, bundleSeq)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// encodeSecrets builds the response resources. It fails when a validation context cannot be given in
// this client's form (ALL without the SPIFFE validator).
func encodeSecrets(secrets []sdsSecret, form validationForm) ([]*anypb.Any, error) {
	out := make([]*anypb.Any, 0, len(secrets))
	for _, s := range secrets {
		secret, err := encodeSecret(s, form)
		if err != nil {
			return nil, err
		}
		a, err := anypb.New(secret)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode secret %q: %v", s.name, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func encodeSecret(s sdsSecret, form validationForm) (*tlsv3.Secret, error) {
	if s.svid != nil {
		chain, err := derToPEM(s.svid.CertChain)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "secret %q: certificate chain of %s: %v", s.name, s.svid.SPIFFEID, err)
		}
		key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.svid.Key})
		return &tlsv3.Secret{Name: s.name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(chain), PrivateKey: inline(key)}}}, nil
	}
	if !form.spiffe {
		if s.all {
			return nil, status.Errorf(codes.FailedPrecondition, "secret %q: every trust domain's bundle can only be sent as the SPIFFE certificate validator's configuration, "+
				"which needs Envoy 1.18 or later and %s false (and no %s: true in the Envoy node's metadata); ask for the default bundle or a trust domain ID instead",
				s.name, disableSPIFFEValidationConfigKey, disableSPIFFEValidationKey)
		}
		roots, err := derToPEM(s.bundles[0].X509Bundle)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "secret %q: bundle of %s: %v", s.name, s.bundles[0].TrustDomain, err)
		}
		return &tlsv3.Secret{Name: s.name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(roots)}}}, nil
	}
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	for _, b := range s.bundles {
		roots, err := derToPEM(b.X509Bundle)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "secret %q: bundle of %s: %v", s.name, b.TrustDomain, err)
		}
		cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{Name: b.TrustDomain.Name(), TrustBundle: inline(roots)})
	}
	typed, err := anypb.New(cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "secret %q: encode the SPIFFE validator configuration: %v", s.name, err)
	}
	return &tlsv3.Secret{Name: s.name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: spiffeValidatorName, TypedConfig: typed}}}}, nil
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// derToPEM turns concatenated DER certificates into PEM blocks, in order.
func derToPEM(der []byte) ([]byte, error) {
	certs, err := x509.ParseCertificates(der)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificates")
	}
	var b strings.Builder
	for _, c := range certs {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return []byte(b.String()), nil
}

// newSDSResponse is a response of secrets at version, with nonce (empty for FetchSecrets).
func newSDSResponse(resources []*anypb.Any, version, nonce string) *discoveryv3.DiscoveryResponse {
	return &discoveryv3.DiscoveryResponse{TypeUrl: secretTypeURL, VersionInfo: version, Nonce: nonce, Resources: resources}
}
