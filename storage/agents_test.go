package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/selector"
)

func agentFixture(t *testing.T) (*Store, context.Context) {
	t.Helper()
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	return s, ctx
}

func newToken(t *testing.T, s *Store, id string, expires time.Time) {
	t.Helper()
	if _, err := s.CreateJoinToken(context.Background(), JoinToken{ID: id, SecretHash: []byte("h"), Owner: "alice",
		ExpiresAt: expires, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func testAgent(id, serial string) Agent {
	return Agent{ID: id, AttestationType: "join_token", Owner: "alice", Serial: serial,
		Selectors: []selector.Selector{{Type: "join_token", Value: "owner:alice"}}, AttestedAt: time.Now()}
}

func agentSVIDRecord(id, serial string) Issuance {
	return Issuance{ID: serial, Kind: KindX509SVID, SPIFFEID: id, Owner: "alice", Agent: id, NodeAttestation: "join_token", ExpiresAt: time.Now().Add(time.Hour)}
}

func TestJoinTokenIsSingleUseAndExpires(t *testing.T) {
	s, ctx := agentFixture(t)
	now := time.Now()
	if _, err := s.CreateJoinToken(ctx, JoinToken{ID: "t0", Owner: "nobody", ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, ErrOwnerNotFound) {
		t.Fatalf("token for unknown owner: %v", err)
	}
	newToken(t, s, "t1", now.Add(time.Hour))
	newToken(t, s, "t2", now.Add(time.Minute))
	a := testAgent("spiffe://example.org/signet/agent/join_token/t1", "s1")
	if _, err := s.AttestAgent(ctx, "t1", a, now, agentSVIDRecord(a.ID, "s1")); err != nil {
		t.Fatal(err)
	}
	if tok, _ := s.JoinToken("t1"); tok.UsedBy != a.ID || tok.UsedAt.IsZero() {
		t.Fatalf("token not marked used: %+v", tok)
	}
	if rec, err := s.LookupIssuance("s1"); err != nil || rec.Agent != a.ID {
		t.Fatalf("agent SVID not in the ledger: %+v %v", rec, err)
	}
	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{"reused", "t1", now, ErrTokenUsed},
		{"unknown", "nope", now, ErrTokenNotFound},
		{"expired", "t2", now.Add(2 * time.Minute), ErrTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testAgent("spiffe://example.org/signet/agent/x-"+tc.name, "s-"+tc.name)
			if _, err := s.AttestAgent(ctx, tc.token, b, tc.now, agentSVIDRecord(b.ID, "s-"+tc.name)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if _, err := s.Agent(b.ID); !errors.Is(err, ErrAgentNotFound) {
				t.Fatalf("refused attestation registered the agent: %v", err)
			}
			if _, err := s.LookupIssuance("s-" + tc.name); !errors.Is(err, ErrIssuanceNotFound) {
				t.Fatalf("refused attestation left a ledger record: %v", err)
			}
		})
	}
}

func TestAgentRenewEvictBan(t *testing.T) {
	s, ctx := agentFixture(t)
	now := time.Now()
	newToken(t, s, "t1", now.Add(time.Hour))
	id := "spiffe://example.org/signet/agent/join_token/t1"
	if _, err := s.AttestAgent(ctx, "t1", testAgent(id, "s1"), now, agentSVIDRecord(id, "s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewAgent(ctx, id, "bogus", "s2", now.Add(time.Hour), now, agentSVIDRecord(id, "s2")); !errors.Is(err, ErrAgentSVIDMismatch) {
		t.Fatalf("renew with a foreign serial: %v", err)
	}
	a, err := s.RenewAgent(ctx, id, "s1", "s2", now.Add(time.Hour), now, agentSVIDRecord(id, "s2"))
	if err != nil || a.Serial != "s2" || a.PrevSerial != "s1" {
		t.Fatalf("renew: %+v %v", a, err)
	}
	// The previous SVID still authenticates one more renewal (a connection opened before the renewal).
	if _, err := s.RenewAgent(ctx, id, "s1", "s3", now.Add(time.Hour), now, agentSVIDRecord(id, "s3")); err != nil {
		t.Fatalf("renew with the previous serial: %v", err)
	}
	if _, err := s.EvictAgent(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewAgent(ctx, id, "s3", "s4", now.Add(time.Hour), now, agentSVIDRecord(id, "s4")); !errors.Is(err, ErrAgentNotFound) {
		t.Fatalf("renew after evict: %v", err)
	}
	// Re-attest with a new token under the same ID (a token naming the ID), then ban.
	newToken(t, s, "t2", now.Add(time.Hour))
	if _, err := s.AttestAgent(ctx, "t2", testAgent(id, "s5"), now, agentSVIDRecord(id, "s5")); err != nil {
		t.Fatalf("re-attest after evict: %v", err)
	}
	if _, err := s.BanAgent(ctx, id, "uid:0", now); err != nil {
		t.Fatal(err)
	}
	newToken(t, s, "t3", now.Add(time.Hour))
	if _, err := s.AttestAgent(ctx, "t3", testAgent(id, "s6"), now, agentSVIDRecord(id, "s6")); !errors.Is(err, ErrAgentBanned) {
		t.Fatalf("attest a banned agent: %v", err)
	}
	if _, err := s.RenewAgent(ctx, id, "s5", "s7", now.Add(time.Hour), now, agentSVIDRecord(id, "s7")); !errors.Is(err, ErrAgentBanned) {
		t.Fatalf("renew a banned agent: %v", err)
	}
	if tok, _ := s.JoinToken("t3"); !tok.UsedAt.IsZero() {
		t.Fatal("a refused attestation consumed the token")
	}
}

// Registry watchers (agents' sync streams) wake for what changes the registry revision, and only for
// that: an SVID renewal changes nothing an agent may issue, while attestation, ban and eviction must
// reach every stream at once (each re-authenticates its agent when woken).
func TestAgentChangesWakeWatchersOnlyWithARevision(t *testing.T) {
	s, ctx := agentFixture(t)
	now := time.Now()
	id := "spiffe://example.org/signet/agent/join_token/t1"
	newToken(t, s, "t1", now.Add(time.Hour))
	newToken(t, s, "t2", now.Add(time.Hour))
	steps := []struct {
		name string
		op   func() error
		wake bool
	}{
		{"attest", func() error {
			_, err := s.AttestAgent(ctx, "t1", testAgent(id, "s1"), now, agentSVIDRecord(id, "s1"))
			return err
		}, true},
		{"renew", func() error {
			_, err := s.RenewAgent(ctx, id, "s1", "s2", now.Add(time.Hour), now, agentSVIDRecord(id, "s2"))
			return err
		}, false},
		{"renew again", func() error {
			_, err := s.RenewAgent(ctx, id, "s2", "s3", now.Add(time.Hour), now, agentSVIDRecord(id, "s3"))
			return err
		}, false},
		{"evict", func() error { _, err := s.EvictAgent(ctx, id); return err }, true},
		{"re-attest", func() error {
			_, err := s.AttestAgent(ctx, "t2", testAgent(id, "s4"), now, agentSVIDRecord(id, "s4"))
			return err
		}, true},
		{"ban", func() error { _, err := s.BanAgent(ctx, id, "uid:0", now); return err }, true},
	}
	for _, st := range steps {
		ch, rev := s.Changed(), s.Revision()
		if err := st.op(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// The write returned after the FSM published it: the channel is already closed or never will be
		// for this write.
		woke := false
		select {
		case <-ch:
			woke = true
		default:
		}
		if woke != st.wake || (s.Revision() != rev) != st.wake {
			t.Fatalf("%s: woke %v, revision %d -> %d; want wake %v with a new revision", st.name, woke, rev, s.Revision(), st.wake)
		}
	}
	if a, err := s.Agent(id); err != nil || !a.Banned {
		t.Fatalf("agent after the steps: %+v %v", a, err)
	}
}

// An attestation that consumes nothing (k8s_psat) registers the agent with its type and selectors,
// records its SVID in the same command, may repeat (re-attestation), and never registers a banned agent.
func TestAttestAgentNodeRegistersAndReattests(t *testing.T) {
	s, ctx := agentFixture(t)
	now := time.Now()
	id := "spiffe://example.org/signet/agent/k8s_psat/prod/9a4e"
	a := Agent{ID: id, AttestationType: "k8s_psat", Owner: "alice", Serial: "p1", AttestedAt: now,
		Selectors: []selector.Selector{{Type: "k8s_psat", Value: "cluster:prod"}, {Type: "k8s_psat", Value: "agent_ns:signet"}}}
	rec := agentSVIDRecord(id, "p1")
	rec.NodeAttestation = "k8s_psat"
	if _, err := s.AttestAgentNode(ctx, a, now, "k8s_psat cluster prod", rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Agent(id)
	if err != nil || got.AttestationType != "k8s_psat" || len(got.Selectors) != 2 || got.Serial != "p1" {
		t.Fatalf("agent = %+v, %v", got, err)
	}
	if r, err := s.LookupIssuance("p1"); err != nil || r.NodeAttestation != "k8s_psat" {
		t.Fatalf("agent SVID record = %+v, %v", r, err)
	}
	a.Serial = "p2"
	rec2 := agentSVIDRecord(id, "p2")
	if _, err := s.AttestAgentNode(ctx, a, now, "k8s_psat cluster prod", rec2); err != nil {
		t.Fatalf("re-attestation: %v", err)
	}
	if got, _ := s.Agent(id); got.Serial != "p2" {
		t.Fatalf("re-attestation did not replace the SVID: %+v", got)
	}
	if _, err := s.BanAgent(ctx, id, "alice", now); err != nil {
		t.Fatal(err)
	}
	a.Serial = "p3"
	if _, err := s.AttestAgentNode(ctx, a, now, "k8s_psat cluster prod", agentSVIDRecord(id, "p3")); !errors.Is(err, ErrAgentBanned) {
		t.Fatalf("banned agent attested again: %v", err)
	}
	if _, err := s.LookupIssuance("p3"); !errors.Is(err, ErrIssuanceNotFound) {
		t.Fatalf("refused attestation left a ledger record: %v", err)
	}
	if _, err := s.AttestAgentNode(ctx, Agent{ID: "spiffe://example.org/x"}, now, "", agentSVIDRecord("spiffe://example.org/x", "p4")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("agent without attestation type: %v", err)
	}
}

// writeNewestCommand writes commands up to the newest command version (CommandVersion): a node
// attestation on first use, its agent SVID owned by owner (version 7), a key revocation (8) and an
// authority-retain (9).
func writeNewestCommand(t *testing.T, s *Store, owner string) {
	t.Helper()
	id := "spiffe://example.org/signet/agent/k8s_psat/c/n"
	rec := agentSVIDRecord(id, "newest")
	rec.Owner, rec.SignedBy = owner, "aa01" // type 46's records may name their signer
	if _, err := s.AttestAgentNodeFirstUse(context.Background(), Agent{ID: id, AttestationType: "k8s_psat", Owner: owner, Serial: "newest"},
		time.Now(), "a command of the newest version", rec); err != nil {
		t.Fatal(err)
	}
	// Type 50 (command version 8): a key revocation.
	ctx := WithActor(context.Background(), owner)
	if err := s.PutAuthority(ctx, jwtAuthority(t, "newest-kid", "n1", time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, AuthorityJWT, "newest-kid", "a command of the newest version", nil); err != nil {
		t.Fatal(err)
	}
	// Type 47 (command version 9): an upstream root retained.
	if err := s.RetainAuthority(context.Background(), AuthorityX509, "newest", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Command version 10: federation.
	if _, err := s.CreateFederation(context.Background(), Federation{TrustDomain: "newest.org", BundleEndpointURL: "https://newest.org/", Profile: "https_web"}, ""); err != nil {
		t.Fatal(err)
	}
	// Type 60 (command version 11): an upstream intermediate revoked.
	if _, err := s.RevokeIntermediate(ctx, Intermediate{ID: "0e0e", Node: "n1"}, "a command of the newest version", nil, false); err != nil {
		t.Fatal(err)
	}
}

// A node that attests once (trust on first use, aws_iid): the first attestation registers it, a second
// is refused by the state with ErrAgentAttested and leaves no ledger record, also after a restart (the
// decision is in the replicated state, not in a server's memory); eviction lets the node attest again,
// a ban never does.
func TestAttestAgentNodeFirstUseRefusesASecondAttestation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateOwner(ctx, Owner{Name: "alice"}); err != nil {
		s.Close()
		t.Fatal(err)
	}
	now := time.Now()
	id := "spiffe://example.org/signet/agent/aws_iid/123456789012/us-east-1/i-0abc"
	attest := func(s *Store, serial string) error {
		a := Agent{ID: id, AttestationType: "aws_iid", Owner: "alice", Serial: serial, AttestedAt: now}
		_, err := s.AttestAgentNodeFirstUse(ctx, a, now, "aws_iid: account 123456789012", agentSVIDRecord(id, serial))
		return err
	}
	if err := attest(s, "f1"); err != nil {
		s.Close()
		t.Fatalf("first attestation: %v", err)
	}
	err := attest(s, "f2")
	if !errors.Is(err, ErrAgentAttested) || !strings.Contains(err.Error(), "evict it") {
		s.Close()
		t.Fatalf("second attestation: %v; want ErrAgentAttested naming eviction", err)
	}
	if _, err := s.LookupIssuance("f2"); !errors.Is(err, ErrIssuanceNotFound) {
		s.Close()
		t.Fatalf("refused attestation left a ledger record: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	defer s.Close()
	if err := attest(s, "f3"); !errors.Is(err, ErrAgentAttested) {
		t.Fatalf("second attestation after a restart: %v; want ErrAgentAttested", err)
	}
	if got, err := s.Agent(id); err != nil || got.Serial != "f1" {
		t.Fatalf("agent after the refusals = %+v, %v; want the first attestation's", got, err)
	}
	if _, err := s.EvictAgent(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := attest(s, "f4"); err != nil {
		t.Fatalf("attestation after eviction: %v", err)
	}
	if _, err := s.BanAgent(ctx, id, "alice", now); err != nil {
		t.Fatal(err)
	}
	if err := attest(s, "f5"); !errors.Is(err, ErrAgentBanned) {
		t.Fatalf("banned agent attested: %v; want ErrAgentBanned", err)
	}
}
