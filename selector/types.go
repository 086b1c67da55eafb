package selector

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Kind says what a selector type describes.
type Kind int

const (
	// Workload selectors describe a process calling the Workload API.
	Workload Kind = iota + 1
	// Node selectors describe a node (an agent) as attested to the server.
	Node
)

// valueCheck validates the value part of a key (the text after "type:key:").
type valueCheck func(v string) error

// known lists every selector type and key Signet understands. Adding an attestor adds its keys here, so
// that an entry can never be registered with a selector no attestor will ever produce.
var known = map[string]struct {
	kind Kind
	keys map[string]valueCheck
}{
	"unix": {kind: Workload, keys: map[string]valueCheck{
		"uid":    uint32Value,
		"gid":    uint32Value,
		"user":   NameValue,
		"group":  NameValue,
		"path":   absPathValue,
		"sha256": sha256Value,
	}},
	// join_token: a node attested with a join token. owner is the token's owner, id the token's ID.
	"join_token": {kind: Node, keys: map[string]valueCheck{
		"owner": NameValue,
		"id":    tokenIDValue,
	}},
	// k8s_psat: a node attested with a Kubernetes projected service account token (attestor/k8spsat,
	// whose SelectorKeys these are).
	"k8s_psat": {kind: Node, keys: map[string]valueCheck{
		"cluster":          NameValue,
		"agent_ns":         NameValue,
		"agent_sa":         NameValue,
		"agent_pod_name":   NameValue,
		"agent_pod_uid":    NameValue,
		"agent_node_name":  NameValue,
		"agent_node_uid":   NameValue,
		"agent_node_label": LabelValue,
		"agent_pod_label":  LabelValue,
	}},
}

// KindOf returns the kind of a selector type, or 0 if the type is unknown.
func KindOf(typ string) Kind { return known[typ].kind }

// Validate checks that s has a known type and key and a well-formed value.
func Validate(s Selector) error {
	if len(s.Type)+len(s.Value)+1 > MaxLength {
		return fmt.Errorf("selector %.40q…: %w: longer than %d bytes", s.String(), ErrInvalid, MaxLength)
	}
	t, ok := known[s.Type]
	if !ok {
		return fmt.Errorf("selector %q: %w: unknown type %q (known: %s)", s.String(), ErrInvalid, s.Type, knownTypes())
	}
	key, value, ok := strings.Cut(s.Value, ":")
	if !ok {
		return fmt.Errorf("selector %q: %w: want %s:key:value", s.String(), ErrInvalid, s.Type)
	}
	check, ok := t.keys[key]
	if !ok {
		return fmt.Errorf("selector %q: %w: unknown key %q for type %q (known: %s)", s.String(), ErrInvalid, key, s.Type, knownKeys(s.Type))
	}
	if err := check(value); err != nil {
		return fmt.Errorf("selector %q: %w: %v", s.String(), ErrInvalid, err)
	}
	return nil
}

func knownTypes() string {
	return strings.Join(slices.Sorted(maps.Keys(known)), ", ")
}

func knownKeys(typ string) string {
	return strings.Join(slices.Sorted(maps.Keys(known[typ].keys)), ", ")
}

func uint32Value(v string) error {
	if _, err := strconv.ParseUint(v, 10, 32); err != nil {
		return fmt.Errorf("value %q is not a decimal number in [0, 4294967295]", v)
	}
	return nil
}

// NameValue accepts a user, group or object name: not empty, without ':', '/', NUL or newline.
func NameValue(v string) error {
	if v == "" || strings.ContainsAny(v, ":/\x00\n") {
		return fmt.Errorf("value %q is not a user or group name", v)
	}
	return nil
}

func absPathValue(v string) error {
	if !path.IsAbs(v) || path.Clean(v) != v {
		return fmt.Errorf("value %q is not a clean absolute path", v)
	}
	return nil
}

func tokenIDValue(v string) error {
	if v == "" || len(v) > 64 || strings.Trim(v, "0123456789abcdef") != "" {
		return fmt.Errorf("value %q is not a join token ID (lowercase hex)", v)
	}
	return nil
}

// LabelValue accepts a Kubernetes label as KEY:VALUE: a key (which may hold '/', as in
// app.kubernetes.io/name) without ':', and a value (possibly empty), neither with NUL or newline.
func LabelValue(v string) error {
	k, _, ok := strings.Cut(v, ":")
	if !ok || k == "" || strings.ContainsAny(v, "\x00\n") {
		return fmt.Errorf("value %q is not a label KEY:VALUE", v)
	}
	return nil
}

func sha256Value(v string) error {
	if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
		return fmt.Errorf("value %q is not 64 lowercase hex digits", v)
	}
	return nil
}
