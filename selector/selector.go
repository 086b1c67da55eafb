// Package selector defines the vocabulary that attestors produce and registration entries match on.
//
// A selector is a typed property of a workload or a node, written "type:key:value", for example
// "unix:uid:1000" or "unix:sha256:9f86d0…". Attestors emit selectors for a caller; an entry matches a
// caller when every one of the entry's selectors is among the caller's (subset semantics, as in SPIRE).
//
// The vocabulary is open: each attestor package declares its selector types (a Type: kind, keys and
// the check of each key's values), and a server validates entries against the Registry of the
// attestors it is built with. Parse checks only the syntax every selector shares, so a client (the
// CLI, an agent) passes on types it does not know itself and the server decides.
//
//	s, err := selector.Parse("unix:uid:1000")          // syntax only
//	reg, err := selector.NewRegistry(unix.SelectorType(), k8s.SelectorType())
//	err = reg.Validate(s)                                // type, key and value
//	ok := selector.Subset(entrySelectors, callerSelectors)
package selector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxLength bounds the textual length of one selector; longer input is refused.
const MaxLength = 1024

// maxTypeLen bounds the length of a selector type name.
const maxTypeLen = 64

// ErrInvalid is returned (wrapped) for a selector that is malformed or, by a Registry or Type, of an
// unknown type or key or with a bad value.
var ErrInvalid = errors.New("invalid selector")

// Selector is one attested property: Type names the attestor ("unix"), Value is "key:value".
type Selector struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// String returns the selector in its "type:key:value" form.
func (s Selector) String() string { return s.Type + ":" + s.Value }

// Key returns the part of Value before the first colon ("uid" for "unix:uid:1000").
func (s Selector) Key() string {
	k, _, _ := strings.Cut(s.Value, ":")
	return k
}

// Parse parses "type:key:value" and checks the syntax every selector shares (a type name of
// lowercase letters, digits and _; a key; a value; at most MaxLength bytes). It does not know types:
// a Registry or a Type validates keys and values.
func Parse(text string) (Selector, error) {
	if len(text) > MaxLength {
		return Selector{}, fmt.Errorf("selector %.40q…: %w: longer than %d bytes", text, ErrInvalid, MaxLength)
	}
	typ, value, ok := strings.Cut(text, ":")
	if !ok || typ == "" || value == "" {
		return Selector{}, fmt.Errorf("selector %q: %w: want type:key:value, e.g. unix:uid:1000", text, ErrInvalid)
	}
	s := Selector{Type: typ, Value: value}
	if err := checkSyntax(s); err != nil {
		return Selector{}, err
	}
	return s, nil
}

// ParseAll parses every element of texts; the error names the first bad one.
func ParseAll(texts []string) ([]Selector, error) {
	out := make([]Selector, 0, len(texts))
	for _, t := range texts {
		s, err := Parse(t)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Strings renders selectors in their textual form.
func Strings(ss []Selector) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

// Compare orders selectors by type, then value.
func Compare(a, b Selector) int {
	if c := strings.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// Normalize returns a sorted copy without duplicates: the canonical form stored in entries.
func Normalize(ss []Selector) []Selector {
	out := slices.Clone(ss)
	slices.SortFunc(out, Compare)
	return slices.Compact(out)
}

// Equal reports whether two normalized selector lists are identical.
func Equal(a, b []Selector) bool { return slices.Equal(a, b) }

// Subset reports whether every selector in want is present in have. Both lists need not be sorted;
// an empty want is never a subset (an entry with no selectors matches nothing).
func Subset(want, have []Selector) bool {
	if len(want) == 0 {
		return false
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
