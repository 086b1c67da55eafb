package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// Configuration files are YAML, decoded strictly: an unknown key or a value of the wrong type is an
// error naming the file and line. docs/configuration.md documents every key; examples/config/ has
// commented examples.
//
// This file holds what the server and agent configurations share: strict decoding with errors naming
// the file, line and key, the checks of common values, and the defaults. config_server.go,
// config_raft.go and config_agent.go hold each file's sections.

// maxConfigSize bounds configuration files.
const maxConfigSize = 1 << 20

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// decodeConfig reads path into v, strictly.
func decodeConfig(path string, v any) error {
	_, err := decodeConfigKeys(path, v)
	return err
}

// decodeConfigKeys is decodeConfig that also returns the dotted names of the keys the file sets
// ("workload_attestors.unix"), for sections whose mere presence means something even when empty.
func decodeConfigKeys(path string, v any) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigSize)
	}
	keys, err := decodeYAMLKeys("config", path, b, v, " (see docs/configuration.md)")
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return set, nil
}

// decodeYAML decodes one YAML document strictly into v. Problems are reported one per line as
// "path:LINE: key \"section.key\": what is wrong", naming unknown keys and keys with values of the wrong
// type; what ("config", "entry import") prefixes errors that have no line.
func decodeYAML(what, path string, b []byte, v any, hint string) error {
	_, err := decodeYAMLKeys(what, path, b, v, hint)
	return err
}

// decodeYAMLKeys is decodeYAML that also returns, by line, the dotted name of each key set.
func decodeYAMLKeys(what, path string, b []byte, v any, hint string) (map[int]string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s %s: the file is empty", what, path)
		}
		return nil, fmt.Errorf("%s %s: %s", what, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s %s: more than one YAML document (another starts after line %d): keep one", what, path, root.Line)
	}
	keys := map[int]string{}
	indexKeys(&root, "", keys)
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	err := strict.Decode(v)
	if err == nil {
		return keys, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return nil, fmt.Errorf("%s %s: %s", what, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = path + ":" + describeYAMLProblem(m, keys, hint)
	}
	return nil, errors.New(strings.Join(msgs, "\n"))
}

// indexKeys records, for each line holding a key (or its value), the key's dotted path; list items are
// named by position ("[2].selectors").
func indexKeys(n *yaml.Node, prefix string, lines map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexKeys(c, prefix, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := k.Value
			if prefix != "" {
				name = prefix + "." + k.Value
			}
			lines[k.Line] = name
			if _, taken := lines[v.Line]; !taken {
				lines[v.Line] = name
			}
			indexKeys(v, name, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			indexKeys(c, prefix+"["+strconv.Itoa(i+1)+"]", lines)
		}
	}
}

var (
	yamlNotFoundRE  = regexp.MustCompile(`^field (.+) not found in type`)
	yamlUnmarshalRE = regexp.MustCompile(`^cannot unmarshal (!!\w+) (.*) into (.+)$`)
)

// friendlyType names the Go type a value was expected to decode into, in configuration terms.
func friendlyType(goType string) string {
	switch {
	case goType == daysTypeName:
		return "a duration such as 90m, 24h or 30d"
	case goType == "time.Duration":
		return "a duration such as 10m or 1h"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "string":
		return "a string"
	case goType == "time.Time":
		return "an RFC 3339 time"
	default:
		return "a section of keys"
	}
}

// describeYAMLProblem turns one yaml.TypeError line ("line 3: field foo not found in type ...", "line 4:
// cannot unmarshal !!str `abc` into uint32") into "3: key \"raft.foo\": ...".
func describeYAMLProblem(m string, keys map[int]string, hint string) string {
	sub := yamlLineRE.FindStringSubmatch(m)
	if sub == nil {
		return " " + m
	}
	line, _ := strconv.Atoi(sub[1])
	rest := yamlLineRE.ReplaceAllString(m, "")
	if f := yamlNotFoundRE.FindStringSubmatch(rest); f != nil {
		name := keys[line]
		if name == "" {
			name = f[1]
		}
		return fmt.Sprintf("%d: unknown key %q%s", line, name, hint)
	}
	if u := yamlUnmarshalRE.FindStringSubmatch(rest); u != nil {
		return fmt.Sprintf("%d: key %q: %s is not %s", line, keys[line], u[2], friendlyType(u[3]))
	}
	return fmt.Sprintf("%d: key %q: %s", line, keys[line], rest)
}

// configError names the file and key of a bad value.
func configError(path, key, format string, args ...any) error {
	return fmt.Errorf("config %s: %s: %s", path, key, fmt.Sprintf(format, args...))
}

func requireTrustDomain(path, v string) (spiffeid.TrustDomain, error) {
	if v == "" {
		return spiffeid.TrustDomain{}, configError(path, "trust_domain", "is required (e.g. example.org)")
	}
	td, err := parseTrustDomain(v)
	if err != nil {
		return spiffeid.TrustDomain{}, configError(path, "trust_domain", "%v", err)
	}
	return td, nil
}

// parseTrustDomain reads a trust domain as every trust_domain key and --trust-domain flag take it: the
// name ("example.org") or its SPIFFE URI ("spiffe://example.org"), but not a SPIFFE ID with a path.
func parseTrustDomain(v string) (spiffeid.TrustDomain, error) {
	name := v
	if rest, ok := strings.CutPrefix(v, "spiffe://"); ok {
		name = strings.TrimSuffix(rest, "/")
		if i := strings.IndexByte(name, '/'); i >= 0 {
			return spiffeid.TrustDomain{}, fmt.Errorf("%q: want the trust domain name alone, e.g. %q", v, name[:i])
		}
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("%q: %v (e.g. example.org)", v, err)
	}
	return td, nil
}

// checkHostPort checks a host:port key. A listen address may leave the host out (":8081", every
// interface); an address to connect to or advertise may not.
func checkHostPort(path, key, v string, listen bool) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && ae.Err == "missing port in address":
			return configError(path, key, "%q: missing port (want host:port)", v)
		case errors.As(err, &ae) && ae.Err == "too many colons in address":
			return configError(path, key, "%q: want host:port; write an IPv6 address in brackets, e.g. [::1]:8081", v)
		}
		return configError(path, key, "%q: want host:port (%v)", v, err)
	}
	if host == "" && !listen {
		return configError(path, key, "%q: missing host (want host:port)", v)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		return configError(path, key, "%q: port %q: want a number from 1 to 65535", v, port)
	}
	return nil
}

func requireAbs(path, key, v string) error {
	if v == "" {
		return configError(path, key, "is required")
	}
	if !filepath.IsAbs(v) {
		return configError(path, key, "%q must be an absolute path", v)
	}
	return nil
}

func checkLogLevel(path, v string) error {
	switch v {
	case "debug", "info", "warn", "error":
		return nil
	}
	return configError(path, "log_level", "%q: want debug, info, warn or error", v)
}

// Defaults of the configuration files (documented in docs/configuration.md).
const (
	defaultServerBind   = "0.0.0.0:8081"
	defaultRaftBind     = "127.0.0.1:8300"
	defaultAgentSocket  = "/run/signet/agent.sock"
	defaultSocketMode   = "0666"
	defaultServerAdmin  = "/run/signet/admin/admin.sock"
	defaultLogLevel     = "info"
	defaultAgentDataDir = "/var/lib/signet/agent"
	defaultMinFreeDisk  = "512MiB"
	// defaultStateMmapSize is storage.DefaultStateMmapSize as written in a config file.
	defaultStateMmapSize = "64GiB"
)

// parseSize parses a byte size with a binary unit: "512MiB", "2GiB", "1TiB".
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}}
	for _, u := range units {
		num, ok := strings.CutSuffix(strings.TrimSpace(s), u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
		if err != nil || n > (1<<(64-u.shift))-1 {
			break
		}
		return n << u.shift, nil
	}
	return 0, errors.New("want a whole number with a unit KiB, MiB, GiB or TiB, such as 512MiB")
}
