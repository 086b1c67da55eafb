package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
)

// importEntry is one entry of an import file (YAML or JSON: JSON is YAML). Its keys are the flags of
// 'entry create' (see entryFields), checked the same way.
type importEntry struct {
	SPIFFEID     string        `yaml:"spiffe_id"`
	ParentID     string        `yaml:"parent_id"`
	Selectors    []string      `yaml:"selectors"`
	Owner        string        `yaml:"owner"`
	Purpose      string        `yaml:"purpose"`
	Ticket       string        `yaml:"ticket"`
	X509TTL      time.Duration `yaml:"x509_ttl"`
	JWTTTL       time.Duration `yaml:"jwt_ttl"`
	DNSNames     []string      `yaml:"dns_names"`
	ExpiresAt    time.Time     `yaml:"expires_at"`
	ExpiresIn    yamlDays      `yaml:"expires_in"`
	NeverExpires bool          `yaml:"never_expires"`
	JWTUnique    bool          `yaml:"jwt_unique"`
	Prefetch     bool          `yaml:"prefetch"`
	Federates    []string      `yaml:"federates_with"`
}

// options returns the item as entry options, and which of its keys are set (by flag name).
func (it importEntry) options() (*entryOptions, map[string]bool) {
	o := &entryOptions{spiffeID: it.SPIFFEID, parentID: it.ParentID, selectors: it.Selectors, owner: it.Owner, purpose: it.Purpose,
		ticket: it.Ticket, x509TTL: it.X509TTL, jwtTTL: it.JWTTTL, dnsNames: it.DNSNames, expiresIn: time.Duration(it.ExpiresIn),
		neverExpires: it.NeverExpires, jwtUnique: it.JWTUnique, prefetch: it.Prefetch, federates: it.Federates}
	if !it.ExpiresAt.IsZero() {
		o.expiresAt = it.ExpiresAt.Format(time.RFC3339)
	}
	// A key left out and a key set to its zero value are the same: the server's default.
	given := map[string]bool{"spiffe-id": it.SPIFFEID != "", "parent-id": it.ParentID != "", "selector": len(it.Selectors) > 0,
		"owner": it.Owner != "", "purpose": it.Purpose != "", "ticket": it.Ticket != "", "x509-ttl": it.X509TTL != 0,
		"jwt-ttl": it.JWTTTL != 0, "dns-name": len(it.DNSNames) > 0, "expires-at": o.expiresAt != "", "expires-in": it.ExpiresIn != 0,
		"never-expires": it.NeverExpires, "jwt-unique": it.JWTUnique, "prefetch": it.Prefetch, "federates-with": len(it.Federates) > 0}
	return o, given
}

// yamlDays is a duration in an import file that also takes days ("90d"), as --expires-in does.
type yamlDays time.Duration

func (d *yamlDays) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDays(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		// A TypeError is reported like every other value of the wrong type: with its line and key.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s `%s` into %s", n.Line, n.ShortTag(), n.Value, daysTypeName)}}
	}
	*d = yamlDays(v)
	return nil
}

// maxImportSize bounds an import file.
const maxImportSize = 64 << 20

func newEntryImportCmd() *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Create many entries in one call (one Raft write) from a YAML or JSON list",
		Long: `Create the entries listed in FILE (or standard input) in one call. Each list item has the keys of
'entry create', checked the same way: spiffe_id, selectors (list), owner, purpose, and optionally
parent_id, ticket, x509_ttl, jwt_ttl ("1h"), dns_names (list), expires_at (RFC 3339), expires_in ("90d",
"2160h"), never_expires, jwt_unique, prefetch, federates_with. A file that is not valid is refused whole (exit 2). Otherwise each
entry succeeds or fails on its own; the command exits 1 if any failed, after printing every failure.`,
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

// readBounded reads the file path, or standard input for "-", refusing more than limit bytes; what
// prefixes errors.
func readBounded(what, path string, stdin io.Reader, limit int) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", what, path, limit)
	}
	return b, nil
}

// readImport parses an import file strictly; errors name the file, the item and the key.
func readImport(path string, stdin io.Reader) ([]*adminv1.Entry, error) {
	b, err := readBounded("entry import", path, stdin, maxImportSize)
	if err != nil {
		return nil, err
	}
	var items []importEntry
	if err := decodeYAML("entry import", path, b, &items, " (see 'signet entry import --help')"); err != nil {
		return nil, usageError{err}
	}
	if len(items) == 0 {
		return nil, usagef("entry import %s: no entries (want a list)", path)
	}
	out := make([]*adminv1.Entry, len(items))
	keyName := func(f entryField) string { return f.key }
	for i, it := range items {
		o, given := it.options()
		e, _, err := o.build(func(flag string) bool { return given[flag] }, keyName, true)
		if err != nil {
			return nil, usageError{fmt.Errorf("entry import %s: item %d: %w", path, i+1, err)}
		}
		out[i] = e
	}
	return out, nil
}
