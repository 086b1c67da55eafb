package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// appendConfig adds top-level keys to a server's configuration file.
func appendConfig(t *testing.T, s *testServer, extra string) {
	t.Helper()
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.config, string(b)+extra)
}

// waitPolicy waits until every server has applied policy revision rev, with one digest, and returns it.
func (c *testCluster) waitPolicy(rev uint64) policyView {
	c.t.Helper()
	var got policyView
	eventually(c.t, 30*time.Second, fmt.Sprintf("policy revision %d on every server", rev), func() bool {
		digests := map[string]bool{}
		for _, s := range c.servers {
			out, _, code := s.cli("policy", "show", "-o", "json")
			if code != 0 {
				return false
			}
			got = decodeJSON[policyView](c.t, out)
			if got.Revision != rev {
				return false
			}
			digests[got.SHA256] = true
		}
		return len(digests) == 1
	})
	return got
}

// TestClusterPolicyIsReplicated: the entry policy is the cluster's, not each server's YAML. Two servers
// configured with different policies and one with none: one configured policy seeds the cluster and all
// three hold it; 'policy set' through a follower reaches every server, and then an entry the policy
// denies is denied through every server (naming the rule) and an entry it allows is created through
// every one; the policy's limits (a minimum X.509-SVID lifetime, a default entry lifetime) decide on
// every server, one configured otherwise included; a policy file that does not compile, or with a limit
// out of bounds, is refused naming it, and nothing changes; a server restarted with a configured policy
// that differs from the cluster's warns that the cluster's decides, and decides by the cluster's.
func TestClusterPolicyIsReplicated(t *testing.T) {
	c := newTestCluster(t, 3)
	appendConfig(t, c.servers[0], `policy:
  rules:
    - name: seed-zero
      deny_unless: 'entry.purpose != "zero"'
`)
	appendConfig(t, c.servers[1], `policy:
  rules:
    - name: seed-one
      deny_unless: 'entry.purpose != "one"'
`)
	appendConfig(t, c.servers[2], "min_x509_svid_ttl: 1s\ndefault_entry_ttl: 1000h\n")
	c.startAll()
	seeded := c.waitPolicy(1)
	if len(seeded.Rules) != 1 || (seeded.Rules[0].Name != "seed-zero" && seeded.Rules[0].Name != "seed-one") ||
		!strings.HasPrefix(seeded.SetBy, "config:") || !strings.Contains(seeded.Reason, "seeded from the configuration") {
		t.Fatalf("the seeded policy: %+v", seeded)
	}

	leader := c.leaderIndex(0, 1, 2)
	follower := c.servers[(leader+1)%3]
	follower.mustCLI("owner", "add", "alice")

	// A policy set through a follower reaches every server.
	file := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, file, `limits:
  min_x509_svid_ttl: 10m
  default_entry_ttl: 48h
rules:
  - name: max-ttl
    description: X.509-SVIDs live at most an hour
    deny_unless: entry.x509_ttl <= duration("1h")
  - name: team-path
    deny_unless: entry.path.startsWith("/team/")
`)
	if _, stderr, code := follower.cli("policy", "set", file); code != exitUsage || !strings.Contains(stderr, "--reason is required") {
		t.Fatalf("policy set without a reason: exit %d, %s", code, stderr)
	}
	out := follower.mustCLI("policy", "set", file, "--reason", "CHG-1: short SVIDs")
	if !strings.Contains(out, "revision 2, 2 rules") {
		t.Fatalf("policy set: %s", out)
	}
	set := c.waitPolicy(2)
	if set.Rules[0].Name != "max-ttl" || set.Reason != "CHG-1: short SVIDs" || set.SetBy == "" || set.SetAt == "" ||
		set.Limits["min_x509_svid_ttl"] != "10m0s" || set.Limits["default_entry_ttl"] != "48h0m0s" || set.Limits["min_jwt_svid_ttl"] != "" {
		t.Fatalf("the policy as set: %+v", set)
	}
	yamlOut := c.servers[leader].mustCLI("policy", "show")
	if !strings.Contains(yamlOut, "# revision: 2") || !strings.Contains(yamlOut, "# sha256: "+set.SHA256) || !strings.Contains(yamlOut, "- name: max-ttl") ||
		!strings.Contains(yamlOut, "limits:\n  min_x509_svid_ttl: 10m0s\n  default_entry_ttl: 48h0m0s\n") {
		t.Fatalf("policy show (yaml):\n%s", yamlOut)
	}

	// Every server decides by it, whatever its own configuration says.
	create := func(s *testServer, path, ttl, purpose string) (string, int) {
		_, stderr, code := s.cli("entry", "create", "--spiffe-id", "spiffe://example.org"+path, "--selector", myUID, "--owner", "alice",
			"--purpose", purpose, "--parent-id", "spiffe://example.org/nobody", "--x509-ttl", ttl)
		return stderr, code
	}
	for i, s := range c.servers {
		if stderr, code := create(s, fmt.Sprintf("/team/a/%d", i), "2h", "x"); code == 0 || !strings.Contains(stderr, `policy rule "max-ttl" denies this entry: X.509-SVIDs live at most an hour`) {
			t.Fatalf("server %d: an entry above the TTL: exit %d, %s", i, code, stderr)
		}
		if stderr, code := create(s, fmt.Sprintf("/web/%d", i), "30m", "x"); code == 0 || !strings.Contains(stderr, `policy rule "team-path"`) {
			t.Fatalf("server %d: an entry outside /team/: exit %d, %s", i, code, stderr)
		}
		// The seeded rules are gone: a purpose they denied passes.
		for _, purpose := range []string{"zero", "one"} {
			if stderr, code := create(s, fmt.Sprintf("/team/%s/%d", purpose, i), "30m", purpose); code != 0 {
				t.Fatalf("server %d: an entry the policy allows: exit %d, %s", i, code, stderr)
			}
		}
		// The cluster's limits, whatever the server's configuration (server 2 allows 1s and defaults to 1000h).
		if stderr, code := create(s, fmt.Sprintf("/team/short/%d", i), "5m", "x"); code == 0 || !strings.Contains(stderr, "x509_ttl 5m0s: invalid argument: at least 10m0s") {
			t.Fatalf("server %d: an X.509 lifetime below the cluster's minimum: exit %d, %s", i, code, stderr)
		}
		out := s.mustCLI("entry", "create", "--spiffe-id", fmt.Sprintf("spiffe://example.org/team/default/%d", i), "--selector", myUID, "--owner", "alice",
			"--purpose", "x", "--parent-id", "spiffe://example.org/nobody", "--x509-ttl", "30m", "-o", "json")
		expires, err := time.Parse(time.RFC3339, decodeJSON[entryView](t, out).ExpiresAt)
		if left := time.Until(expires); err != nil || left < 47*time.Hour || left > 49*time.Hour {
			t.Fatalf("server %d: an entry created without an expiry expires at %v (%v), want in 48h (the cluster's default)", i, expires, err)
		}
	}

	// A policy that does not compile is refused, naming the rule; nothing changes.
	writeFile(t, file, `rules:
  - name: fine
    deny_unless: "true"
  - name: broken
    deny_unless: entry.x509ttl < duration("1h")
`)
	if _, stderr, code := c.servers[(leader+2)%3].cli("policy", "set", file, "--reason", "typo"); code == 0 ||
		!strings.Contains(stderr, `policy rule "broken": deny_unless: entry has no key "x509ttl"`) || strings.Contains(stderr, `"fine"`) {
		t.Fatalf("a policy that does not compile: exit %d, %s", code, stderr)
	}
	writeFile(t, file, "limits:\n  default_entry_ttl: 30m\nrules: []\n")
	if _, stderr, code := follower.cli("policy", "set", file, "--reason", "too short"); code == 0 ||
		!strings.Contains(stderr, "limits.default_entry_ttl 30m0s: want 0 (each server's configured value) or between 1h0m0s and") {
		t.Fatalf("a limit out of bounds: exit %d, %s", code, stderr)
	}
	// A set based on a revision that is no longer the policy's is refused too.
	writeFile(t, file, "rules: []\n")
	if _, stderr, code := follower.cli("policy", "set", file, "--reason", "stale", "--if-revision", "1"); code == 0 ||
		!strings.Contains(stderr, "it is at revision 2, the change was based on revision 1") {
		t.Fatalf("a stale policy set: exit %d, %s", code, stderr)
	}
	for i, s := range c.servers {
		if got := decodeJSON[policyView](t, s.mustCLI("policy", "show", "-o", "json")); got.Revision != 2 || got.SHA256 != set.SHA256 {
			t.Fatalf("server %d: the refused sets changed the policy: %+v", i, got)
		}
	}
	// The seed, the set and the refused set are audited (refusals are written off the request path).
	eventually(t, 15*time.Second, "the policy changes and the refusal in the audit log", func() bool {
		audit := follower.mustCLI("audit", "list", "--object", "policy", "-o", "json")
		return strings.Count(audit, `"policy.set"`) == 3 && strings.Contains(audit, set.SHA256) && strings.Contains(audit, `policy rule \"broken\"`)
	})

	// A server restarted with its own configured policy warns that the cluster's decides, and does.
	s1 := c.servers[1]
	s1.stop()
	s1.start(t)
	eventually(t, 15*time.Second, "the warning about the configured policy", func() bool {
		return strings.Contains(s1.stderr.String(), "configured policy differs from the cluster's entry policy")
	})
	if stderr, code := create(s1, "/team/again/one", "2h", "one"); code == 0 || !strings.Contains(stderr, `policy rule "max-ttl"`) {
		t.Fatalf("the restarted server: exit %d, %s", code, stderr)
	}
}
