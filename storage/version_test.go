package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/signet-id/signet/internal/waitfor"
	bolt "go.etcd.io/bbolt"
)

// openBareState opens a state database with no Store, Raft or registry around it.
func openBareState(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := openStateDB(filepath.Join(t.TempDir(), stateFile), MinStateMmapSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func applyOn(t *testing.T, db *bolt.DB, index uint64, data []byte) (applied, error) {
	t.Helper()
	var a applied
	var applyErr error
	if err := db.Update(func(tx *bolt.Tx) error {
		a, applyErr = applyCommand(tx, index, data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return a, applyErr
}

func schemaVersion(t *testing.T, db *bolt.DB) uint64 {
	t.Helper()
	var v uint64
	if err := db.View(func(tx *bolt.Tx) error { v = getUint64(tx.Bucket(bucketMeta), keySchemaVersion); return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

// The command processor applies a command to a bare state database: no Store is needed.
func TestApplyCommandWithoutAStore(t *testing.T) {
	db := openBareState(t)
	cmd, err := encodeCommand(cmdOwnerCreate, ownerCreateCmd{Owner: Owner{Name: "payments", CreatedAt: t1}, Meta: sampleMeta()}.wire())
	if err != nil {
		t.Fatal(err)
	}
	a, err := applyOn(t, db, 1, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := a.resp.(Owner); !ok || o.Name != "payments" || a.publish == nil {
		t.Fatalf("applied %+v", a)
	}
	reg := newRegistry()
	a.publish(reg)
	if _, ok := reg.owners["payments"]; !ok {
		t.Fatal("publish did not show the owner to the registry")
	}
	if v := schemaVersion(t, db); v != uint64(commandVersionWire) {
		t.Fatalf("schema version %d after a protobuf command, want %d", v, commandVersionWire)
	}
	// A refusal is a response, not an error.
	a, err = applyOn(t, db, 2, cmd)
	if err != nil || !errors.Is(a.resp.(error), ErrOwnerExists) {
		t.Fatalf("second create: %+v, %v; want the ErrOwnerExists response", a, err)
	}
}

// A legacy JSON command is still applied, and marks the state with the JSON era's version only.
func TestLegacyJSONCommandIsStillApplied(t *testing.T) {
	db := openBareState(t)
	payload, err := json.Marshal(ownerCreateCmd{Owner: Owner{Name: "legacy"}, Meta: sampleMeta()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := applyOn(t, db, 1, append([]byte{byte(cmdOwnerCreateJSON)}, payload...))
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := a.resp.(Owner); !ok || o.Name != "legacy" {
		t.Fatalf("applied %+v", a)
	}
	if v := schemaVersion(t, db); v != uint64(commandVersionJSON) {
		t.Fatalf("schema version %d, want %d", v, commandVersionJSON)
	}
}

func TestUnknownAndUndecodableCommands(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		want    string
	}{
		{"unknown type", []byte{0x7f, 1, 2}, errUnknownCommand, "unknown command type 127: this node is older than the cluster's log"},
		{"known type, payload does not decode", []byte{byte(cmdEntryCreate), 0xff, 0xff}, errBadCommand, "entry-create"},
		{"known type, unknown field", []byte{byte(cmdEntryDelete), 0xf8, 0x06, 0x01}, errBadCommand, "EntryDelete has a field this node does not know"},
		{"legacy JSON that does not decode", []byte{byte(cmdOwnerCreateJSON), '{'}, errBadCommand, "owner-create/json"},
		{"ledger batch with a foreign field", []byte{byte(cmdLedgerAppend), 0x10, 0x01}, errBadCommand, "ledger batch"},
		{"empty", nil, errBadCommand, "empty command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openBareState(t)
			_, err := applyOn(t, db, 7, tc.data)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "raft entry 7") {
				t.Fatalf("apply: %v; want %v naming the entry and %q", err, tc.wantErr, tc.want)
			}
		})
	}
	t.Run("unknown type with the ignore bit is skipped", func(t *testing.T) {
		db := openBareState(t)
		a, err := applyOn(t, db, 7, []byte{byte(ignoreIfUnknown | 0x7f), 1, 2})
		if err != nil || !a.skipped || a.resp != nil {
			t.Fatalf("apply: %+v, %v; want skipped", a, err)
		}
		if v := schemaVersion(t, db); v != 0 {
			t.Fatalf("a skipped command set schema version %d", v)
		}
	})
}

// Through the FSM: a skipped optional command still advances the applied index; an entry the node
// cannot apply stops it with a message naming the entry.
func TestFSMSkipsOptionalAndStopsOnUnknown(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	f := &fsm{s: s}
	applied, err := readAppliedIndex(s.stateDB())
	if err != nil {
		t.Fatal(err)
	}
	resp := f.ApplyBatch([]*raft.Log{{Index: applied + 1, Type: raft.LogCommand, Data: []byte{byte(ignoreIfUnknown | 0x7e)}}})
	if resp[0] != nil {
		t.Fatalf("optional unknown command answered %v", resp[0])
	}
	if now, _ := readAppliedIndex(s.stateDB()); now != applied+1 {
		t.Fatalf("applied index %d after a skipped entry, want %d", now, applied+1)
	}
	msg := func() (msg string) {
		defer func() { msg = fmt.Sprint(recover()) }()
		f.ApplyBatch([]*raft.Log{{Index: applied + 2, Type: raft.LogCommand, Data: []byte{0x7e}}})
		return ""
	}()
	if !strings.Contains(msg, "cannot apply the replicated log, stopping this node: raft entry "+fmt.Sprint(applied+2)+": unknown command type 126") {
		t.Fatalf("FSM on an unknown command: %q", msg)
	}
}

func TestOpenRefusesStateOfANewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateOwner(context.Background(), Owner{Name: "payments"}); err != nil {
		t.Fatal(err)
	}
	writeNewestCommand(t, s, "payments")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := openStateDB(filepath.Join(dir, stateFile), MinStateMmapSize)
	if err != nil {
		t.Fatal(err)
	}
	if v := schemaVersion(t, db); v != uint64(CommandVersion) {
		t.Fatalf("schema version %d after writes, want %d", v, CommandVersion)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return putUint64(tx.Bucket(bucketMeta), keySchemaVersion, uint64(CommandVersion)+1)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = Open(Config{Dir: dir, Logger: testLogger(t)})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a state of a newer schema")
	}
	want := fmt.Sprintf("it has applied command version %d, this signet understands up to %d", CommandVersion+1, CommandVersion)
	if !errors.Is(err, ErrStateTooNew) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open: %v; want ErrStateTooNew saying %q", err, want)
	}
}

func recordedVersion(t testing.TB, s *Store, node string) uint32 {
	t.Helper()
	var v uint32
	if err := s.view(func(tx *bolt.Tx) error { v = nodeVersions(tx)[node]; return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Condition(t, 10*time.Second, what, cond)
}

func TestNodeRecordsItsCommandVersion(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir(), Bootstrap: true, Logger: testLogger(t),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitFor(t, "the node's command version in the state", func() bool { return recordedVersion(t, s, s.NodeID()) == CommandVersion })
}

// nullFSM is the state machine of a node of an older build: it replicates the log and never records a
// command version.
type nullFSM struct{}

func (nullFSM) Apply(*raft.Log) any                 { return nil }
func (nullFSM) Snapshot() (raft.FSMSnapshot, error) { return nullSnapshot{}, nil }
func (nullFSM) Restore(rc io.ReadCloser) error {
	_, err := io.Copy(io.Discard, rc)
	rc.Close()
	return err
}

type nullSnapshot struct{}

func (nullSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nullSnapshot) Release()                             {}

// startOldNode starts a Raft node on 127.0.0.1 that knows no command version, as a server of the JSON
// era would.
func startOldNode(t *testing.T, id string) raft.ServerAddress {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.Logger = newHCLog(testLogger(t), "old-node")
	trans, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 2*time.Second, newHCLog(testLogger(t), "old-node-net"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(conf, nullFSM{}, raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Shutdown().Error()
		trans.Close()
	})
	return trans.LocalAddr()
}

// storeWithOldNode opens a single-node store and adds a voter "old-node" of an older build
// (startOldNode), which has recorded no command version; it returns the store and the old node's address.
func storeWithOldNode(t *testing.T) (*Store, raft.ServerAddress) {
	t.Helper()
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	addr := startOldNode(t, "old-node")
	if err := s.raft.AddVoter("old-node", addr, 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	return s, addr
}

func TestLeaderProposesOnlyWhatEveryServerUnderstands(t *testing.T) {
	ctx := context.Background()
	s, addr := storeWithOldNode(t)
	refused := func(want string) {
		t.Helper()
		_, err := s.CreateOwner(ctx, Owner{Name: "payments"})
		if !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), "server old-node ("+string(addr)+") "+want) ||
			!strings.Contains(err.Error(), "needs version 2") {
			t.Fatalf("CreateOwner: %v; want ErrUpgradeInProgress naming old-node, %q", err, want)
		}
		_, err = s.AttestAgent(ctx, "t1", Agent{ID: "spiffe://example.org/agent/n1"}, t1, Issuance{ID: "01", ExpiresAt: t2})
		if !errors.Is(err, ErrUpgradeInProgress) {
			t.Fatalf("AttestAgent: %v; want ErrUpgradeInProgress", err)
		}
		if _, err := s.RecordDeliveries(ctx, []Delivery{sampleDelivery(42)}); !errors.Is(err, ErrUpgradeInProgress) {
			t.Fatalf("RecordDeliveries: %v; want ErrUpgradeInProgress", err)
		}
		if err := s.ProposeDeliveries([]Delivery{sampleDelivery(42)}).Wait(ctx); !errors.Is(err, ErrUpgradeInProgress) {
			t.Fatalf("ProposeDeliveries: %v; want ErrUpgradeInProgress", err)
		}
		// Ledger records are of the oldest version: issuance goes on.
		if err := s.AppendLedger(ctx, []Issuance{{ID: fmt.Sprintf("%x", time.Now().UnixNano()), ExpiresAt: t2}}); err != nil {
			t.Fatalf("AppendLedger during the upgrade: %v", err)
		}
	}
	refused("has not reported a command version")

	// The old node is upgraded part way: it reports version 1.
	if _, err := s.propose(ctx, cmdNodeVersion, nodeVersionCmd{NodeID: "old-node", Version: 1}.wire()); err != nil {
		t.Fatal(err)
	}
	refused("reported command version 1")

	// It understands the protobuf commands now.
	if _, err := s.propose(ctx, cmdNodeVersion, nodeVersionCmd{NodeID: "old-node", Version: CommandVersion}.wire()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOwner(ctx, Owner{Name: "payments"}); err != nil {
		t.Fatalf("CreateOwner once every server understands it: %v", err)
	}
}

// storeWithOldVoter is a store whose cluster has a second voter, "old-node", that reported version.
func storeWithOldVoter(t *testing.T, version uint32) *Store {
	t.Helper()
	s := openTestStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	addr := startOldNode(t, "old-node")
	if err := s.raft.AddVoter("old-node", addr, 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.propose(context.Background(), cmdNodeVersion, nodeVersionCmd{NodeID: "old-node", Version: version}.wire()); err != nil {
		t.Fatal(err)
	}
	return s
}

// upgradeOldVoter has storeWithOldVoter's old node report this build's version.
func upgradeOldVoter(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.propose(context.Background(), cmdNodeVersion, nodeVersionCmd{NodeID: "old-node", Version: CommandVersion}.wire()); err != nil {
		t.Fatal(err)
	}
}

// A node attestation that consumes nothing (agent-attest-node, version 5) is proposed only once every
// server understands it; join-token attestation (agent-attest, version 2) goes on meanwhile.
func TestAgentAttestNodeWaitsForItsVersion(t *testing.T) {
	ctx := context.Background()
	s := storeWithOldVoter(t, commandVersionPolicy)
	a := Agent{ID: "spiffe://example.org/signet/agent/k8s_psat/c/n", AttestationType: "k8s_psat", Owner: "signet", Serial: "01"}
	_, err := s.AttestAgentNode(ctx, a, t1, "k8s_psat cluster c", Issuance{ID: "01", ExpiresAt: t2})
	if !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), fmt.Sprintf("needs version %d", commandVersionNodeAttest)) {
		t.Fatalf("AttestAgentNode with a server of version 3: %v; want ErrUpgradeInProgress, needs version %d", err, commandVersionNodeAttest)
	}
	// The join-token command passes the gate (and is refused by the state: no such token).
	if _, err := s.AttestAgent(ctx, "t1", Agent{ID: "spiffe://example.org/agent/n1"}, t1, Issuance{ID: "02", ExpiresAt: t2}); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("AttestAgent with a server of version 3: %v; want the state's ErrTokenNotFound", err)
	}
	upgradeOldVoter(t, s)
	if _, err := s.AttestAgentNode(ctx, a, t1, "k8s_psat cluster c", Issuance{ID: "03", ExpiresAt: t2}); err != nil {
		t.Fatalf("AttestAgentNode once every server understands it: %v", err)
	}
}

// A first-use node attestation (agent-attest-node-first-use, version 7) is proposed only once every
// server understands it: an older server would apply it without the first-use check.
func TestAgentAttestNodeFirstUseWaitsForItsVersion(t *testing.T) {
	ctx := context.Background()
	s := storeWithOldVoter(t, commandVersionRotation)
	a := Agent{ID: "spiffe://example.org/signet/agent/aws_iid/123456789012/us-east-1/i-1", AttestationType: "aws_iid", Owner: "signet", Serial: "01"}
	_, err := s.AttestAgentNodeFirstUse(ctx, a, t1, "aws_iid", Issuance{ID: "01", ExpiresAt: t2})
	if !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), fmt.Sprintf("needs version %d", commandVersionFirstUse)) {
		t.Fatalf("AttestAgentNodeFirstUse with a server of version 6: %v; want ErrUpgradeInProgress, needs version %d", err, commandVersionFirstUse)
	}
	upgradeOldVoter(t, s)
	if _, err := s.AttestAgentNodeFirstUse(ctx, a, t1, "aws_iid", Issuance{ID: "02", ExpiresAt: t2}); err != nil {
		t.Fatalf("AttestAgentNodeFirstUse once every server understands it: %v", err)
	}
}

// A key revocation (key-revoke, version 8) is proposed only once every server understands it, also when
// it is decided under a policy: the policy-checked wrapper (version 3) is gated by the command it wraps,
// which an older server could not apply.
func TestKeyRevokeWaitsForItsVersion(t *testing.T) {
	ctx := WithActor(context.Background(), "alice")
	s := storeWithOldVoter(t, commandVersionFirstUse)
	if err := s.PutAuthority(ctx, jwtAuthority(t, "k1", s.NodeID(), t1)); err != nil {
		t.Fatal(err)
	}
	pol, err := s.SetPolicy(ctx, []PolicyRule{{Name: "two", ApprovalWhen: "true"}}, PolicyLimits{}, 0, "drill")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []context.Context{ctx, WithPolicyRevision(ctx, pol.Revision)} {
		if _, err := s.RevokeKey(c, AuthorityJWT, "k1", "leak", []string{"two"}); !errors.Is(err, ErrUpgradeInProgress) || !strings.Contains(err.Error(), fmt.Sprintf("needs version %d", commandVersionRevoke)) {
			t.Fatalf("RevokeKey with a server of version 7: %v; want ErrUpgradeInProgress, needs version %d", err, commandVersionRevoke)
		}
	}
	upgradeOldVoter(t, s)
	if _, err := s.RevokeKey(ctx, AuthorityJWT, "k1", "leak", []string{"two"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("RevokeKey not decided under the policy: %v; want the state's ErrConflict", err)
	}
	if res, err := s.RevokeKey(WithPolicyRevision(ctx, pol.Revision), AuthorityJWT, "k1", "leak", []string{"two"}); err != nil || res.Pending == nil {
		t.Fatalf("RevokeKey decided under the policy, once every server understands it: %+v, %v", res, err)
	}
}

// Every JSON-era type is still decoded and applied (a refusal by the empty state is fine: it was
// dispatched and decoded), and marks the state with version 1 only.
func TestEveryLegacyTypeIsStillApplied(t *testing.T) {
	samples := map[commandType]any{}
	for _, c := range wireCases() {
		samples[c.t] = c.cmd
	}
	legacy := map[commandType]commandType{
		cmdOwnerCreateJSON: cmdOwnerCreate, cmdEntryCreateJSON: cmdEntryCreate, cmdEntryDeleteJSON: cmdEntryDelete,
		cmdAuthorityPutJSON: cmdAuthorityPut, cmdTokenCreateJSON: cmdTokenCreate, cmdAgentAttestJSON: cmdAgentAttest,
		cmdAgentRenewJSON: cmdAgentRenew, cmdAgentEvictJSON: cmdAgentEvict, cmdAgentBanJSON: cmdAgentBan,
		cmdEntryBatchJSON: cmdEntryBatch, cmdEntryUpdateJSON: cmdEntryUpdate, cmdEntryStateJSON: cmdEntryState,
		cmdOwnerOffboardJSON: cmdOwnerOffboard, cmdAuditAppendJSON: cmdAuditAppend, cmdLedgerPruneJSON: cmdLedgerPrune,
		cmdReviewSignJSON: cmdReviewSign, cmdLedgerPruneBoundedJSON: cmdLedgerPrune, cmdOwnerOffboardCheckedJSON: cmdOwnerOffboard,
	}
	if len(legacy) != 18 {
		t.Fatalf("%d legacy types listed, want 18", len(legacy))
	}
	for old, successor := range legacy {
		t.Run(old.String(), func(t *testing.T) {
			payload, err := json.Marshal(samples[successor]) // as the JSON era's encoder wrote it
			if err != nil {
				t.Fatal(err)
			}
			db := openBareState(t)
			a, err := applyOn(t, db, 1, append([]byte{byte(old)}, payload...))
			if err != nil || a.skipped {
				t.Fatalf("apply: %+v, %v", a, err)
			}
			if v := schemaVersion(t, db); v != uint64(commandVersionJSON) {
				t.Fatalf("schema version %d, want %d", v, commandVersionJSON)
			}
			switch old {
			case cmdLedgerPruneJSON:
				if _, ok := a.resp.(int); !ok {
					t.Fatalf("the JSON-era ledger-prune answers a batch count, got %T", a.resp)
				}
			case cmdLedgerPruneBoundedJSON:
				if _, ok := a.resp.(pruneResult); !ok {
					t.Fatalf("ledger-prune-bounded answers a pruneResult, got %T", a.resp)
				}
			}
		})
	}
}

// The JSON-era and the protobuf form of one command leave the same state: the same stored owner and
// the same audit chain head.
func TestLegacyAndWireFormsApplyAlike(t *testing.T) {
	c := ownerCreateCmd{Owner: Owner{Name: "payments", DisplayName: "Payments", CreatedAt: t1, CreatedBy: "alice"}, Meta: sampleMeta()}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := encodeCommand(cmdOwnerCreate, c.wire())
	if err != nil {
		t.Fatal(err)
	}
	state := func(data []byte) (owner, head string) {
		db := openBareState(t)
		if _, err := applyOn(t, db, 1, data); err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(tx *bolt.Tx) error {
			owner = string(tx.Bucket(bucketOwners).Get([]byte("payments")))
			head = string(tx.Bucket(bucketMeta).Get(keyAuditHead))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return owner, head
	}
	o1, h1 := state(append([]byte{byte(cmdOwnerCreateJSON)}, payload...))
	o2, h2 := state(wire)
	if o1 != o2 || h1 != h2 || h1 == "" {
		t.Fatalf("JSON form: %s (audit head %s)\nwire form: %s (audit head %s)", o1, h1, o2, h2)
	}
}
