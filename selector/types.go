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

// ValueCheck validates the value part of a key (the text after "type:key:"). Its error says what a
// good value looks like; it is wrapped with the selector and ErrInvalid.
type ValueCheck func(v string) error

// Type is one selector type as the attestor package that produces it declares it: its name ("unix"),
// its kind, and each key with the check of its values. There is no closed list here: each attestor
// package exports its Type, and a server validates entries against the Registry of the attestors it
// is built with.
type Type struct {
	Name string
	Kind Kind
	// Keys maps each key to the check of its values. A value may itself hold colons
	// (k8s:pod-label:app:web): the check gets everything after "type:key:".
	Keys map[string]ValueCheck
}

// Validate checks that s is of type t, with a known key and a well-formed value.
func (t Type) Validate(s Selector) error {
	if err := checkSyntax(s); err != nil {
		return err
	}
	if s.Type != t.Name {
		return fmt.Errorf("selector %q: %w: not of type %q", s.String(), ErrInvalid, t.Name)
	}
	key, value, ok := strings.Cut(s.Value, ":")
	if !ok {
		return fmt.Errorf("selector %q: %w: want %s:key:value", s.String(), ErrInvalid, s.Type)
	}
	check, ok := t.Keys[key]
	if !ok {
		return fmt.Errorf("selector %q: %w: unknown key %q for type %q (known: %s)", s.String(), ErrInvalid, key, s.Type,
			strings.Join(slices.Sorted(maps.Keys(t.Keys)), ", "))
	}
	if err := check(value); err != nil {
		return fmt.Errorf("selector %q: %w: %v", s.String(), ErrInvalid, err)
	}
	return nil
}

// Registry is the set of selector types one server (or tool) knows: those of the attestor packages it
// is built with. It is immutable once built and safe for concurrent use.
type Registry struct {
	types map[string]Type
}

// NewRegistry builds a registry of types; a type without a name, kind or keys, or declared twice, is
// refused.
func NewRegistry(types ...Type) (*Registry, error) {
	r := &Registry{types: make(map[string]Type, len(types))}
	for _, t := range types {
		switch {
		case !validTypeName(t.Name):
			return nil, fmt.Errorf("selector registry: type name %q: want lowercase letters, digits and _", t.Name)
		case t.Kind != Workload && t.Kind != Node:
			return nil, fmt.Errorf("selector registry: type %q: kind %d is neither Workload nor Node", t.Name, t.Kind)
		case len(t.Keys) == 0:
			return nil, fmt.Errorf("selector registry: type %q declares no keys", t.Name)
		}
		if _, dup := r.types[t.Name]; dup {
			return nil, fmt.Errorf("selector registry: type %q declared twice", t.Name)
		}
		r.types[t.Name] = t
	}
	return r, nil
}

// KindOf returns the kind of a selector type, or 0 if the registry does not know the type.
func (r *Registry) KindOf(typ string) Kind { return r.types[typ].Kind }

// Validate checks that s has a type this registry knows, a known key and a well-formed value.
func (r *Registry) Validate(s Selector) error {
	if err := checkSyntax(s); err != nil {
		return err
	}
	t, ok := r.types[s.Type]
	if !ok {
		return fmt.Errorf("selector %q: %w: unknown type %q: no attestor of this server produces it (known: %s)",
			s.String(), ErrInvalid, s.Type, strings.Join(slices.Sorted(maps.Keys(r.types)), ", "))
	}
	return t.Validate(s)
}

// NameValue accepts a user, group or object name: not empty, without ':', '/', NUL or newline.
func NameValue(v string) error {
	if v == "" || strings.ContainsAny(v, ":/\x00\n") {
		return fmt.Errorf("value %q is not a user or group name", v)
	}
	return nil
}

// Uint32Value accepts a decimal number in [0, 4294967295] (a uid, a gid).
func Uint32Value(v string) error {
	if _, err := strconv.ParseUint(v, 10, 32); err != nil {
		return fmt.Errorf("value %q is not a decimal number in [0, 4294967295]", v)
	}
	return nil
}

// AbsPathValue accepts a clean absolute path.
func AbsPathValue(v string) error {
	if !path.IsAbs(v) || path.Clean(v) != v {
		return fmt.Errorf("value %q is not a clean absolute path", v)
	}
	return nil
}

// SHA256Value accepts 64 lowercase hex digits.
func SHA256Value(v string) error {
	if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
		return fmt.Errorf("value %q is not 64 lowercase hex digits", v)
	}
	return nil
}

// TokenIDValue accepts a join token ID: 1 to 64 lowercase hex digits.
func TokenIDValue(v string) error {
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

// validTypeName reports whether typ is a selector type name: 1 to 64 of [a-z0-9_], starting with a letter.
func validTypeName(typ string) bool {
	if typ == "" || len(typ) > maxTypeLen || typ[0] < 'a' || typ[0] > 'z' {
		return false
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// checkSyntax checks what every selector must be, whatever its type: bounded, a well-formed type
// name, and "key:value" with a key.
func checkSyntax(s Selector) error {
	if len(s.Type)+len(s.Value)+1 > MaxLength {
		return fmt.Errorf("selector %.40q…: %w: longer than %d bytes", s.String(), ErrInvalid, MaxLength)
	}
	if !validTypeName(s.Type) {
		return fmt.Errorf("selector %q: %w: type %q is not a selector type (lowercase letters, digits and _, e.g. unix)", s.String(), ErrInvalid, s.Type)
	}
	key, value, ok := strings.Cut(s.Value, ":")
	if !ok || key == "" || value == "" || strings.ContainsAny(s.Value, "\x00\n") {
		return fmt.Errorf("selector %q: %w: want %s:key:value, with no NUL or newline", s.String(), ErrInvalid, s.Type)
	}
	return nil
}
