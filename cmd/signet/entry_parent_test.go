package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestEntryCreateUnknownParent: a --parent-id no agent, alias, entry or unused join token has is created
// with a warning, or refused with --strict; known parents raise no warning.
func TestEntryCreateUnknownParent(t *testing.T) {
	p := startDev(t, newDevDirs(t))
	_, owner := devIdentity(t)
	create := func(id, parent string, extra ...string) (string, string, int) {
		return p.cli(append([]string{"entry", "create", "--spiffe-id", id, "--selector", myUID, "--owner", owner,
			"--purpose", "parent check", "--parent-id", parent}, extra...)...)
	}
	const typo = "spiffe://example.org/signet/agent/dve"
	_, stderr, code := create("spiffe://example.org/a", typo)
	if code != 0 || !strings.Contains(stderr, "warning: --parent-id "+typo+": no agent has attested with this ID") {
		t.Fatalf("unknown parent: exit %d, stderr %s", code, stderr)
	}
	_, stderr, code = create("spiffe://example.org/b", "spiffe://example.org/nodes/none", "--strict")
	if code != 1 || !strings.Contains(stderr, "refused because of --strict") {
		t.Fatalf("unknown parent with --strict: exit %d, stderr %s", code, stderr)
	}
	if out := p.mustCLI("entry", "list", "--spiffe-id", "spiffe://example.org/b"); strings.Contains(out, "example.org/b") {
		t.Fatalf("--strict created the entry anyway:\n%s", out)
	}

	// Known parents: the server ID (a node alias is defined under it), the alias, the dev agent (parent
	// of the dev entry), and the ID an unused join token will give an agent.
	_, stderr, code = p.cli("entry", "create", "--spiffe-id", "spiffe://example.org/nodes/all", "--selector", "join_token:owner:"+owner,
		"--owner", owner, "--purpose", "alias", "--parent-id", "spiffe://example.org/signet/server", "--strict")
	if code != 0 || strings.Contains(stderr, "warning") {
		t.Fatalf("node alias under the server ID: exit %d, stderr %s", code, stderr)
	}
	p.mustCLI("token", "create", "--owner", owner, "--spiffe-id", "spiffe://example.org/signet/agent/web-1")
	for i, parent := range []string{"spiffe://example.org/nodes/all", "spiffe://example.org/signet/agent/dev", "spiffe://example.org/signet/agent/web-1"} {
		_, stderr, code = create("spiffe://example.org/known/"+strconv.Itoa(i), parent, "--strict")
		if code != 0 || strings.Contains(stderr, "warning") {
			t.Fatalf("known parent %s: exit %d, stderr %s", parent, code, stderr)
		}
	}
}
