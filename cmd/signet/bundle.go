package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
)

func newBundleCmd() *cobra.Command {
	cmd := newGroupCmd("bundle", "Show the trust bundle")
	var admin, format string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the trust domain's bundle: X.509 roots (pem), the SPIFFE bundle document (jwks) or its key IDs (keys)",
		Long: `Print the trust domain's bundle. --format pem: the X.509 roots; jwks: the SPIFFE bundle document;
keys: each authority's key ID, as the ledger records the key that signed a credential ("ledger query
--signed-by"): an X.509 root's Subject Key Identifier in hex, a JWT key's kid. Under an upstream
authority (upstream_authority) the roots are the upstream's, and the answering server's own
intermediates, which sign its X.509-SVIDs, are listed too (kind x509-intermediate).`,
		Example: `  signet bundle show > bundle.pem
  signet bundle show --format jwks
  signet bundle show --format keys`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "pem" && format != "jwks" && format != "keys" {
				return usagef("--format %q: want pem, jwks or keys", format)
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			b, err := client.GetBundle(cmd.Context(), &adminv1.GetBundleRequest{})
			if err != nil {
				return rpcError("bundle show", err)
			}
			if format == "jwks" {
				_, err := cmd.OutOrStdout().Write(append(b.SpiffeBundle, '\n'))
				return err
			}
			var certs []*x509.Certificate
			for i, der := range b.X509Authorities {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return fmt.Errorf("bundle show: X.509 authority %d: %w", i, err)
				}
				certs = append(certs, c)
			}
			if format == "keys" {
				var inters []*x509.Certificate
				for i, der := range b.X509Intermediates {
					c, err := x509.ParseCertificate(der)
					if err != nil {
						return fmt.Errorf("bundle show: X.509 intermediate %d: %w", i, err)
					}
					inters = append(inters, c)
				}
				return printBundleKeys(cmd.OutOrStdout(), certs, inters, b.JwtAuthorities)
			}
			_, err = cmd.OutOrStdout().Write(ca.CertificatesPEM(certs))
			return err
		},
	}
	adminFlag(show, &admin)
	show.Flags().StringVar(&format, "format", "pem", "pem, jwks or keys")
	cmd.AddCommand(show)
	return cmd
}

// printBundleKeys lists the key ID of each authority of the bundle: X.509 roots (with their expiry)
// first, then the answering server's intermediates under an upstream authority (which sign its SVIDs:
// their key IDs are the ledger's signed_by), then JWT keys.
func printBundleKeys(w io.Writer, roots, intermediates []*x509.Certificate, jwtKeys []*adminv1.JWTKey) error {
	rows := make([][]string, 0, len(roots)+len(intermediates)+len(jwtKeys))
	for _, c := range roots {
		rows = append(rows, []string{"x509", ca.X509KeyID(c), c.NotAfter.UTC().Format(time.RFC3339)})
	}
	for _, c := range intermediates {
		rows = append(rows, []string{"x509-intermediate", ca.X509KeyID(c), c.NotAfter.UTC().Format(time.RFC3339)})
	}
	for _, k := range jwtKeys {
		rows = append(rows, []string{"jwt", k.KeyId, ""})
	}
	return printTable(w, []string{"KIND", "KEY ID", "NOT AFTER"}, rows)
}
