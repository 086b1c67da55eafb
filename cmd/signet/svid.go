package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// workloadFlags are the flags of the Workload API client commands.
type workloadFlags struct {
	socket  string
	timeout time.Duration
	output  string
}

func (w *workloadFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&w.socket, "socket", "", "Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET, else "+defaultWorkloadSocket()+")")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 10*time.Second, "how long to wait for the Workload API")
	outputFlag(cmd, &w.output)
}

// addr returns the Workload API address in the form go-spiffe takes.
func (w *workloadFlags) addr() string {
	s := w.socket
	if s == "" {
		s = os.Getenv("SPIFFE_ENDPOINT_SOCKET")
	}
	if s == "" {
		s = defaultWorkloadSocket()
	}
	if !strings.Contains(s, "://") {
		s = "unix://" + s
	}
	return s
}

// workloadSocketHint is what to do when there is no Workload API socket to talk to.
const workloadSocketHint = "is the agent (or 'signet dev') running? (set --socket or SPIFFE_ENDPOINT_SOCKET)"

func (w *workloadFlags) client(ctx context.Context) (*workloadapi.Client, error) {
	if err := checkOutput(w.output); err != nil {
		return nil, err
	}
	if w.timeout <= 0 {
		return nil, usagef("--timeout %s: must be positive", w.timeout)
	}
	if path, ok := strings.CutPrefix(w.addr(), "unix://"); ok {
		if err := reachSocket(ctx, path, "Workload API socket", workloadSocketHint); err != nil {
			return nil, err
		}
	}
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(w.addr()))
	if err != nil {
		return nil, fmt.Errorf("workload API %s: %w", w.addr(), err)
	}
	return c, nil
}

func newSVIDCmd() *cobra.Command {
	cmd := newGroupCmd("svid", "Workload API client for X.509-SVIDs")
	var wf workloadFlags
	var writeDir string
	fetch := &cobra.Command{
		Use:   "fetch",
		Short: "Fetch this process's X.509-SVIDs from the Workload API",
		Long: `Fetch the X.509-SVIDs the Workload API issues to this process and print their SPIFFE ID, serial
and expiry. With --write DIR, write svid.N.pem (certificate chain), svid.N.key (private key, mode 0600)
and bundle.N.pem (trust bundle) for each SVID.`,
		Example: "  signet svid fetch --write /tmp/svids",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), wf.timeout)
			defer cancel()
			c, err := wf.client(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			x509ctx, err := c.FetchX509Context(ctx)
			if err != nil {
				return fmt.Errorf("svid fetch from %s: %w", wf.addr(), err)
			}
			type svidView struct {
				SPIFFEID  string `json:"spiffe_id"`
				Serial    string `json:"serial"`
				NotBefore string `json:"not_before"`
				NotAfter  string `json:"not_after"`
				Hint      string `json:"hint,omitempty"`
				Files     string `json:"files,omitempty"`
			}
			var views []svidView
			for i, s := range x509ctx.SVIDs {
				leaf := s.Certificates[0]
				v := svidView{SPIFFEID: s.ID.String(), Serial: leaf.SerialNumber.Text(16),
					NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339), NotAfter: leaf.NotAfter.UTC().Format(time.RFC3339), Hint: s.Hint}
				if writeDir != "" {
					b, err := x509ctx.Bundles.GetX509BundleForTrustDomain(s.ID.TrustDomain())
					if err != nil {
						return fmt.Errorf("svid fetch: bundle for %s: %w", s.ID.TrustDomain(), err)
					}
					certs, key, err := s.Marshal()
					if err != nil {
						return fmt.Errorf("svid fetch: encode %s: %w", s.ID, err)
					}
					bundle, err := b.Marshal()
					if err != nil {
						return fmt.Errorf("svid fetch: encode bundle: %w", err)
					}
					if err := writeSVIDFiles(writeDir, i, certs, key, bundle); err != nil {
						return err
					}
					v.Files = filepath.Join(writeDir, fmt.Sprintf("svid.%d.{pem,key}", i))
				}
				views = append(views, v)
			}
			if wf.output == "json" {
				return printJSON(cmd.OutOrStdout(), views)
			}
			rows := make([][]string, len(views))
			for i, v := range views {
				rows[i] = []string{v.SPIFFEID, v.Serial, v.NotAfter, v.Files}
			}
			return printTable(cmd.OutOrStdout(), []string{"SPIFFE ID", "SERIAL", "EXPIRES", "WRITTEN TO"}, rows)
		},
	}
	wf.add(fetch)
	fetch.Flags().StringVar(&writeDir, "write", "", "directory to write the SVIDs, keys and bundle to as PEM")
	cmd.AddCommand(fetch)
	return cmd
}

// writeSVIDFiles writes one SVID's files: keys 0600, the rest 0644, in a directory created 0700.
func writeSVIDFiles(dir string, i int, certs, key, bundle []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--write %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{fmt.Sprintf("svid.%d.pem", i), certs, 0o644},
		{fmt.Sprintf("svid.%d.key", i), key, 0o600},
		{fmt.Sprintf("bundle.%d.pem", i), bundle, 0o644},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := writeFileMode(path, f.data, f.mode); err != nil {
			return fmt.Errorf("--write: %s: %w", path, err)
		}
	}
	return nil
}

// writeFileMode writes data to path with exactly mode, even if the file existed with another mode.
func writeFileMode(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func newJWTCmd() *cobra.Command {
	cmd := newGroupCmd("jwt", "Workload API client for JWT-SVIDs")
	var wf workloadFlags
	var audience []string
	var spiffeID string
	fetch := &cobra.Command{
		Use:     "fetch",
		Short:   "Fetch a JWT-SVID for an audience from the Workload API",
		Example: "  signet jwt fetch --audience billing",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(audience) == 0 {
				return usagef("--audience is required: name the service the token is for")
			}
			params := jwtsvid.Params{Audience: audience[0], ExtraAudiences: audience[1:]}
			if spiffeID != "" {
				id, err := spiffeid.FromString(spiffeID)
				if err != nil {
					return usagef("--spiffe-id %q: %v", spiffeID, err)
				}
				params.Subject = id
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wf.timeout)
			defer cancel()
			c, err := wf.client(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			svids, err := c.FetchJWTSVIDs(ctx, params)
			if err != nil {
				return fmt.Errorf("jwt fetch from %s: %w", wf.addr(), err)
			}
			return printJWTs(cmd.OutOrStdout(), svids, wf.output)
		},
	}
	wf.add(fetch)
	fetch.Flags().StringArrayVar(&audience, "audience", nil, "audience of the token (required; repeat for more, though one is safest)")
	fetch.Flags().StringVar(&spiffeID, "spiffe-id", "", "only this identity, if the workload has several")
	cmd.AddCommand(fetch)
	return cmd
}

func printJWTs(w io.Writer, svids []*jwtsvid.SVID, format string) error {
	type jwtView struct {
		SPIFFEID  string   `json:"spiffe_id"`
		Audience  []string `json:"audience"`
		ExpiresAt string   `json:"expires_at"`
		Token     string   `json:"token"`
	}
	views := make([]jwtView, len(svids))
	for i, s := range svids {
		views[i] = jwtView{SPIFFEID: s.ID.String(), Audience: s.Audience, ExpiresAt: s.Expiry.UTC().Format(time.RFC3339), Token: s.Marshal()}
	}
	if format == "json" {
		return printJSON(w, views)
	}
	for _, v := range views {
		if err := printFields(w, [][2]string{{"SPIFFE ID", v.SPIFFEID}, {"Audience", strings.Join(v.Audience, ", ")}, {"Expires at", v.ExpiresAt}, {"Token", v.Token}}); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}
