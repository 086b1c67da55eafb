package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/awsiid/awsiidtest"
)

// TestAWSIIDEndToEnd: real server and agent processes; the agent reads its instance identity document
// from a local IMDS (IMDSv2) signed by a locally generated certificate, which the server trusts through
// node_attestors.aws_iid.certificates. The agent's ID names the instance; a node alias by
// aws_iid:account parents an entry that go-spiffe then fetches; the ledger, 'ledger lookup' and 'agent
// show' show aws_iid and its selectors. A second attestation of the same instance is refused (trust on
// first use), also after the server restarted, and audited; an account not allowed is refused and
// audited; once the agent is evicted, the instance attests again.
func TestAWSIIDEndToEnd(t *testing.T) {
	const account, instance = "111122223333", "i-0123456789abcdef0"
	signer := awsiidtest.NewSigner(t)
	imdsFor := func(account, instance string) *awsiidtest.IMDS {
		doc := awsiidtest.NewDoc(account, instance, time.Now().Add(-10*time.Minute)).JSON(t)
		return awsiidtest.NewIMDS(t, doc, signer.Sign(t, doc))
	}
	imds := imdsFor(account, instance)

	s := newTestServer(t)
	certFile := filepath.Join(s.dir, "aws-test-signer.pem")
	writeFile(t, certFile, string(signer.CertPEM()))
	s.appendConfig(t, fmt.Sprintf(`node_attestors:
  aws_iid:
    accounts: ["%s"]
    certificates:
      us-east-1: %s
`, account, certFile))
	s.start(t)
	s.mustCLI("owner", "add", "alice")

	awsAgent := func(m *awsiidtest.IMDS) *testAgent {
		return s.newAgent(t, fmt.Sprintf("node_attestor:\n  aws_iid:\n    imds_endpoint: %s\n", m.URL))
	}
	a := awsAgent(imds).startWith(t, nil)
	wantID := "spiffe://example.org/signet/agent/aws_iid/" + account + "/us-east-1/" + instance
	if a.id != wantID {
		t.Fatalf("agent ID %s, want %s", a.id, wantID)
	}

	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/nodes/aws", "--selector", "aws_iid:account:"+account,
		"--owner", "alice", "--purpose", "every instance of the account", "--parent-id", "spiffe://example.org/signet/server")
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", myUID, "--owner", "alice",
		"--purpose", "web on the account's instances", "--parent-id", "spiffe://example.org/nodes/aws")
	waitForIDs(t, a.socket, "spiffe://example.org/web")

	checkNodeAttested(t, s, a, "aws_iid", "aws_iid:instance_id:"+instance, "aws_iid:account:"+account, "aws_iid:region:us-east-1",
		"aws_iid:az:us-east-1a", "aws_iid:instance_id:"+instance, "aws_iid:image_id:ami-0abcdef1234567890", "aws_iid:instance_type:m5.large")

	// The same instance again (its document copied to another agent): refused, audited; also after
	// the server restarted, since the store decides it.
	replayRefused := func(when string) {
		t.Helper()
		code, stderr := awsAgent(imds).startFailing(t, "")
		if code == 0 || !strings.Contains(stderr, "already attested") || !strings.Contains(stderr, "evict") {
			t.Fatalf("second attestation of the instance %s: exit %d\n%s", when, code, stderr)
		}
	}
	replayRefused("")
	eventually(t, 10*time.Second, "the refused second attestation in the audit log", func() bool {
		out, _, code := s.cli("audit", "list", "--action", "agent.attest", "-o", "json")
		return code == 0 && strings.Contains(out, wantID) && strings.Contains(out, "already attested")
	})
	a.stop()
	s.stop()
	s.start(t)
	replayRefused("after a restart")

	// An account not allowed: refused with the reason, audited, no agent.
	code, stderr := awsAgent(imdsFor("999988887777", "i-0fedcba9876543210")).startFailing(t, "")
	if code == 0 || !strings.Contains(stderr, "account 999988887777 is not in accounts") {
		t.Fatalf("agent of an account not allowed: exit %d\n%s", code, stderr)
	}
	eventually(t, 10*time.Second, "the refused account in the audit log", func() bool {
		out, _, code := s.cli("audit", "list", "--action", "agent.attest", "-o", "json")
		return code == 0 && strings.Contains(out, "aws_iid/999988887777/us-east-1/i-0fedcba9876543210") && strings.Contains(out, "not allowed")
	})

	// Evicted, the instance may attest again (a new agent, the same ID).
	s.mustCLI("agent", "evict", wantID)
	if b := awsAgent(imds).startWith(t, nil); b.id != wantID {
		t.Fatalf("agent ID after eviction %s, want %s", b.id, wantID)
	}
}
