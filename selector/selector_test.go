package selector_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/signet-id/signet/selector"
)

// colour is a selector type as an attestor package declares it.
func colour() selector.Type {
	return selector.Type{Name: "colour", Kind: selector.Workload, Keys: map[string]selector.ValueCheck{
		"name": selector.NameValue,
		"uid":  selector.Uint32Value,
	}}
}

func site() selector.Type {
	return selector.Type{Name: "site", Kind: selector.Node, Keys: map[string]selector.ValueCheck{"id": selector.TokenIDValue}}
}

// TestParseChecksSyntaxOnly: Parse accepts any well-formed type, known or not (the server decides),
// and refuses what no type could be.
func TestParseChecksSyntaxOnly(t *testing.T) {
	for _, text := range []string{"unix:uid:1000", "docker:label:x", "k8s:pod-label:app:web", "join_token:id:ab"} {
		if _, err := selector.Parse(text); err != nil {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
	for text, want := range map[string]string{
		"":                       "want type:key:value",
		"unix":                   "want type:key:value",
		"unix:":                  "want type:key:value",
		":uid:1":                 "want type:key:value",
		"unix:uid":               "want unix:key:value",
		"unix::1":                "want unix:key:value",
		"unix:uid:":              "want unix:key:value",
		"Unix:uid:1":             `type "Unix" is not a selector type`,
		"un ix:uid:1":            `type "un ix" is not a selector type`,
		"1unix:uid:1":            `type "1unix" is not a selector type`,
		"unix:uid:1\nunix:uid:0": "no NUL or newline",
		"x:k:" + strings.Repeat("v", selector.MaxLength): "longer than 1024 bytes",
		strings.Repeat("t", 65) + ":k:v":                 "is not a selector type",
	} {
		_, err := selector.Parse(text)
		if !errors.Is(err, selector.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%.50q): %v, want ErrInvalid saying %q", text, err, want)
		}
	}
}

// TestRegistryValidates: a registry knows the types it was built with, and each type its keys and
// values; the errors name the selector and what is known.
func TestRegistryValidates(t *testing.T) {
	reg, err := selector.NewRegistry(colour(), site())
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"colour:name:red", "colour:uid:7", "site:id:0a"} {
		s, _ := selector.Parse(text)
		if err := reg.Validate(s); err != nil {
			t.Errorf("Validate(%s): %v", text, err)
		}
	}
	for text, want := range map[string]string{
		"docker:label:x":  `selector "docker:label:x": invalid selector: unknown type "docker": no attestor of this server produces it (known: colour, site)`,
		"colour:shade:x":  `unknown key "shade" for type "colour" (known: name, uid)`,
		"colour:uid:-1":   `value "-1" is not a decimal number`,
		"colour:name:a/b": `value "a/b" is not a user or group name`,
		"site:id:XY":      "not a join token ID",
	} {
		s, err := selector.Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		err = reg.Validate(s)
		if !errors.Is(err, selector.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%s): %v, want ErrInvalid saying %q", text, err, want)
		}
	}
	if reg.KindOf("colour") != selector.Workload || reg.KindOf("site") != selector.Node || reg.KindOf("docker") != 0 {
		t.Errorf("KindOf: colour %d, site %d, docker %d", reg.KindOf("colour"), reg.KindOf("site"), reg.KindOf("docker"))
	}
	// A selector built by hand (not parsed) is checked for syntax too.
	if err := reg.Validate(selector.Selector{Type: "colour", Value: "name"}); !errors.Is(err, selector.ErrInvalid) {
		t.Errorf("Validate(colour:name): %v, want ErrInvalid", err)
	}
	// A type validates only its own selectors.
	if err := colour().Validate(selector.Selector{Type: "site", Value: "id:0a"}); err == nil || !strings.Contains(err.Error(), `not of type "colour"`) {
		t.Errorf("colour.Validate(site:id:0a): %v", err)
	}
}

// TestNewRegistryRefusesBadTypes: a type declared twice, or without a valid name, kind or keys, is a
// programming error reported when the registry is built.
func TestNewRegistryRefusesBadTypes(t *testing.T) {
	noKeys := colour()
	noKeys.Keys = nil
	noKind := colour()
	noKind.Kind = 0
	badName := colour()
	badName.Name = "Colour"
	for name, tc := range map[string]struct {
		types []selector.Type
		want  string
	}{
		"twice":    {[]selector.Type{colour(), site(), colour()}, `type "colour" declared twice`},
		"no keys":  {[]selector.Type{noKeys}, `type "colour" declares no keys`},
		"no kind":  {[]selector.Type{noKind}, "neither Workload nor Node"},
		"bad name": {[]selector.Type{badName}, `type name "Colour"`},
	} {
		if _, err := selector.NewRegistry(tc.types...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewRegistry: %v, want an error saying %q", name, err, tc.want)
		}
	}
}
