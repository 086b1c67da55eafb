package main

import (
	"crypto/x509"
	"fmt"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
)

func newBundleCmd() *cobra.Command {
	cmd := newGroupCmd("bundle", "Show the trust bundle")
	var admin, format string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the trust domain's bundle: X.509 roots (pem) or the SPIFFE bundle document (jwks)",
		Example: `  signet bundle show > bundle.pem
  signet bundle show --format jwks`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "pem" && format != "jwks" {
				return usagef("--format %q: want pem or jwks", format)
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
			_, err = cmd.OutOrStdout().Write(ca.CertificatesPEM(certs))
			return err
		},
	}
	adminFlag(show, &admin)
	show.Flags().StringVar(&format, "format", "pem", "pem or jwks")
	cmd.AddCommand(show)
	return cmd
}
