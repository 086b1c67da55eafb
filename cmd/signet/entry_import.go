package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/selector"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

// importEntry is one entry of an import file (YAML or JSON: JSON is YAML).
type importEntry struct {
	SPIFFEID  string        `yaml:"spiffe_id"`
	ParentID  string        `yaml:"parent_id"`
	Selectors []string      `yaml:"selectors"`
	Owner     string        `yaml:"owner"`
	Purpose   string        `yaml:"purpose"`
	X509TTL   time.Duration `yaml:"x509_ttl"`
	JWTTTL    time.Duration `yaml:"jwt_ttl"`
	DNSNames  []string      `yaml:"dns_names"`
	ExpiresAt time.Time     `yaml:"expires_at"`
	JWTUnique bool          `yaml:"jwt_unique"`
}

// maxImportSize bounds an import file.
const maxImportSize = 64 << 20

func newEntryImportCmd() *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Create many entries in one call (one Raft write) from a YAML or JSON list",
		Long: `Create the entries listed in FILE (or standard input) in one call. Each list item has the keys of
'entry create': spiffe_id, selectors (list), owner, purpose, and optionally parent_id, x509_ttl, jwt_ttl
("1h"), dns_names, expires_at (RFC 3339), jwt_unique. Each entry succeeds or fails on its own; the
command exits 1 if any failed, after printing every failure.`,
		Example: `  cat > entries.yaml <<'EOF'
  - spiffe_id: spiffe://example.org/billing/api
    selectors: [unix:uid:1000]
    owner: alice
    purpose: billing API
  EOF
  signet entry import entries.yaml`,
		Args: exactArgs(1, "one file (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			entries, err := readImport(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			resp, err := client.BatchCreateEntries(cmd.Context(), &adminv1.BatchCreateEntriesRequest{Entries: entries})
			if err != nil {
				return rpcError("entry import", err)
			}
			var created []*adminv1.Entry
			failed := 0
			for i, r := range resp.Results {
				if r.ErrorCode != int32(codes.OK) {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "entry %d (%s): %s\n", i+1, entries[i].SpiffeId, r.ErrorMessage)
					continue
				}
				created = append(created, r.Entry)
			}
			if output == "json" {
				if err := printEntries(cmd.OutOrStdout(), created, output); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Created %d of %d entries.\n", len(created), len(entries))
			}
			if failed > 0 {
				return fmt.Errorf("entry import: %d of %d entries failed (listed above)", failed, len(entries))
			}
			return nil
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	return cmd
}

// readImport parses an import file strictly; errors name the file, the item and the key.
func readImport(path string, stdin io.Reader) ([]*adminv1.Entry, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, maxImportSize+1))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("entry import: %w", err)
	}
	if len(b) > maxImportSize {
		return nil, fmt.Errorf("entry import %s: larger than %d bytes", path, maxImportSize)
	}
	var items []importEntry
	if err := decodeYAML("entry import", path, b, &items, " (see 'signet entry import --help')"); err != nil {
		return nil, usageError{err}
	}
	if len(items) == 0 {
		return nil, usagef("entry import %s: no entries (want a list)", path)
	}
	out := make([]*adminv1.Entry, len(items))
	for i, it := range items {
		e := &adminv1.Entry{SpiffeId: it.SPIFFEID, ParentId: it.ParentID, Owner: it.Owner, Purpose: it.Purpose,
			X509TtlSeconds: int64(it.X509TTL / time.Second), JwtTtlSeconds: int64(it.JWTTTL / time.Second),
			DnsNames: it.DNSNames, JwtUnique: it.JWTUnique}
		if it.X509TTL < 0 || it.JWTTTL < 0 {
			return nil, usagef("entry import %s: item %d: x509_ttl and jwt_ttl must be positive", path, i+1)
		}
		for _, s := range it.Selectors {
			sel, err := selector.Parse(s)
			if err != nil {
				return nil, usagef("entry import %s: item %d: %v", path, i+1, err)
			}
			e.Selectors = append(e.Selectors, &adminv1.Selector{Type: sel.Type, Value: sel.Value})
		}
		if !it.ExpiresAt.IsZero() {
			e.ExpiresAt = it.ExpiresAt.Unix()
		}
		out[i] = e
	}
	return out, nil
}
