package main

import (
	"cmp"
	"fmt"
	"io"
	"strconv"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/storage"
	"github.com/spf13/cobra"
)

func newFederationCmd() *cobra.Command {
	cmd := newGroupCmd("federation", "Federate with other trust domains: their bundle endpoints and bundles (docs/federation.md)")
	var c adminv1.CreateFederationRequest
	var bundleFile string
	create := newAdminCmd("create", "Federate with another trust domain: the leader fetches its bundle from its bundle endpoint, at its refresh hint",
		`  signet bundle show --format jwks > example.org.json   # give it to the other side, out of band
  signet federation create --trust-domain other.org --bundle-endpoint https://bundle.other.org:8443/ \
      --profile https_spiffe --endpoint-spiffe-id spiffe://other.org/signet/server/node-1 --bundle-file other.json
  signet federation create --trust-domain partner.com --bundle-endpoint https://partner.com/bundle --profile https_web`,
		noArgs, func(cmd *cobra.Command, client adminv1.AdminClient, _ []string, output string) error {
			if bundleFile != "" {
				b, err := fsutil.ReadFileMax(bundleFile, storage.MaxFederatedBundleBytes)
				if err != nil {
					return usagef("--bundle-file: %v", err)
				}
				c.Bundle = b
			}
			f, err := client.CreateFederation(cmd.Context(), &c)
			if err != nil {
				return rpcError("federation create", err)
			}
			return printFederation(cmd.OutOrStdout(), f, output)
		})
	cf := create.Flags()
	cf.StringVar(&c.TrustDomain, "trust-domain", "", "the other trust domain (required), e.g. other.org")
	cf.StringVar(&c.BundleEndpointUrl, "bundle-endpoint", "", "its bundle endpoint URL, https (required)")
	cf.StringVar(&c.Profile, "profile", federation.ProfileHTTPSSPIFFE, "how its endpoint authenticates: https_spiffe (an SVID of --endpoint-spiffe-id, verified against its bundle) or https_web (Web PKI)")
	cf.StringVar(&c.EndpointSpiffeId, "endpoint-spiffe-id", "", "the SPIFFE ID its endpoint presents (https_spiffe; in that trust domain)")
	cf.StringVar(&bundleFile, "bundle-file", "", "its SPIFFE bundle document (the JSON of its 'signet bundle show --format jwks'), obtained out of band: required for https_spiffe, where it authenticates the first fetch")
	cf.StringVar(&c.Reason, "reason", "", "why, recorded in the audit log")

	list := newAdminCmd("list", "List the trust domains this one federates with", "  signet federation list", noArgs,
		func(cmd *cobra.Command, client adminv1.AdminClient, _ []string, output string) error {
			resp, err := client.ListFederations(cmd.Context(), &adminv1.ListFederationsRequest{})
			if err != nil {
				return rpcError("federation list", err)
			}
			if output == "json" {
				views := make([]federationView, 0, len(resp.Federations))
				for _, f := range resp.Federations {
					views = append(views, viewFederation(f))
				}
				return printJSON(cmd.OutOrStdout(), views)
			}
			rows := make([][]string, 0, len(resp.Federations))
			for _, f := range resp.Federations {
				rows = append(rows, []string{f.TrustDomain, f.Profile, f.BundleEndpointUrl, strconv.FormatUint(f.BundleRevision, 10), formatUnix(f.BundleUpdatedAt)})
			}
			return printTable(cmd.OutOrStdout(), []string{"TRUST DOMAIN", "PROFILE", "BUNDLE ENDPOINT", "BUNDLE REVISION", "BUNDLE UPDATED"}, rows)
		})
	show := newAdminCmd("show TRUST_DOMAIN", "Show a federation relationship and its stored bundle", "  signet federation show other.org\n  signet federation show other.org -o json",
		exactArgs(1, "the trust domain"), func(cmd *cobra.Command, client adminv1.AdminClient, args []string, output string) error {
			f, err := client.GetFederation(cmd.Context(), &adminv1.GetFederationRequest{TrustDomain: args[0]})
			if err != nil {
				return rpcError("federation show", err)
			}
			return printFederation(cmd.OutOrStdout(), f, output)
		})
	var delReason string
	del := newAdminCmd("delete TRUST_DOMAIN", "Stop federating with a trust domain: its bundle is removed and no longer delivered to workloads",
		`  signet federation delete other.org --reason "partnership ended"`, exactArgs(1, "the trust domain"),
		func(cmd *cobra.Command, client adminv1.AdminClient, args []string, output string) error {
			f, err := client.DeleteFederation(cmd.Context(), &adminv1.DeleteFederationRequest{TrustDomain: args[0], Reason: delReason})
			if err != nil {
				return rpcError("federation delete", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), viewFederation(f))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "no longer federating with %s\n", f.TrustDomain)
			return nil
		})
	del.Flags().StringVar(&delReason, "reason", "", "why, recorded in the audit log")
	refresh := newAdminCmd("refresh TRUST_DOMAIN", "Fetch a trust domain's bundle from its endpoint now, from this server, and store it if it changed",
		"  signet federation refresh other.org", exactArgs(1, "the trust domain"),
		func(cmd *cobra.Command, client adminv1.AdminClient, args []string, output string) error {
			resp, err := client.RefreshFederation(cmd.Context(), &adminv1.RefreshFederationRequest{TrustDomain: args[0]})
			if err != nil {
				return rpcError("federation refresh", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), struct {
					Changed    bool           `json:"changed"`
					Federation federationView `json:"federation"`
				}{resp.Changed, viewFederation(resp.Federation)})
			}
			what := "unchanged"
			if resp.Changed {
				what = "changed: stored"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bundle of %s %s (revision %d)\n", resp.Federation.TrustDomain, what, resp.Federation.BundleRevision)
			return nil
		})
	cmd.AddCommand(create, list, show, del, refresh)
	return cmd
}

type federationView struct {
	TrustDomain      string  `json:"trust_domain"`
	BundleEndpoint   string  `json:"bundle_endpoint"`
	Profile          string  `json:"profile"`
	EndpointSPIFFEID string  `json:"endpoint_spiffe_id,omitempty"`
	CreatedBy        string  `json:"created_by"`
	CreatedAt        string  `json:"created_at"`
	BundleRevision   uint64  `json:"bundle_revision"`
	BundleUpdatedAt  string  `json:"bundle_updated_at"`
	Bundle           rawJSON `json:"bundle,omitempty"`
}

func viewFederation(f *adminv1.Federation) federationView {
	v := federationView{TrustDomain: f.TrustDomain, BundleEndpoint: f.BundleEndpointUrl, Profile: f.Profile, EndpointSPIFFEID: f.EndpointSpiffeId,
		CreatedBy: f.CreatedBy, CreatedAt: formatUnix(f.CreatedAt), BundleRevision: f.BundleRevision, BundleUpdatedAt: formatUnix(f.BundleUpdatedAt)}
	if len(f.Bundle) > 0 {
		v.Bundle = rawJSON(f.Bundle)
	}
	return v
}

func printFederation(w io.Writer, f *adminv1.Federation, output string) error {
	v := viewFederation(f)
	if output == "json" {
		return printJSON(w, v)
	}
	authorities := "none yet"
	if len(f.Bundle) > 0 {
		authorities = "unreadable"
		if td, err := parseTrustDomain(f.TrustDomain); err == nil {
			if b, err := federation.ParseBundle(td, f.Bundle); err == nil {
				seq, _ := b.SequenceNumber()
				authorities = fmt.Sprintf("%d X.509, %d JWT (spiffe_sequence %d)", len(b.X509Authorities()), len(b.JWTAuthorities()), seq)
			}
		}
	}
	return printFields(w, [][2]string{
		{"Trust domain", v.TrustDomain}, {"Bundle endpoint", v.BundleEndpoint}, {"Profile", v.Profile},
		{"Endpoint SPIFFE ID", cmp.Or(v.EndpointSPIFFEID, "-")}, {"Created", v.CreatedAt + " by " + v.CreatedBy},
		{"Bundle revision", strconv.FormatUint(v.BundleRevision, 10)}, {"Bundle updated", v.BundleUpdatedAt}, {"Authorities", authorities},
	})
}
