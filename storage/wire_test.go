package storage

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	"github.com/signet-id/signet/selector"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite the golden command encodings in testdata/commands")

// wireCase is one protobuf command type with a fixed command of it.
type wireCase struct {
	name   string
	t      commandType
	cmd    any
	encode func() proto.Message
	// decode decodes a payload strictly and converts it back to the command struct.
	decode func([]byte) (any, error)
}

func wcase[C any, M proto.Message](name string, t commandType, c C, to func(C) M, from func(M) C) wireCase {
	return wireCase{name: name, t: t, cmd: c,
		encode: func() proto.Message { return to(c) },
		decode: func(b []byte) (any, error) {
			m := to(c).ProtoReflect().New().Interface().(M)
			if err := decodeWire(b, m); err != nil {
				return nil, err
			}
			return from(m), nil
		}}
}

var (
	t1 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	t2 = time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)
)

func sampleMeta() auditMeta {
	return auditMeta{Actor: "uid:1000(alice)", Time: t1, Reason: "ticket CHG-1"}
}

func sampleOwner() Owner {
	return Owner{Name: "payments", DisplayName: "Payments", Kind: "team", Team: "fin", CreatedAt: t1, CreatedBy: "alice",
		Offboarded: true, OffboardedAt: t2, OffboardedBy: "bob", ReassignedTo: "platform"}
}

func sampleEntry(id string) Entry {
	return Entry{ID: id, SPIFFEID: "spiffe://example.org/api", ParentID: "spiffe://example.org/agent",
		Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:50"}},
		Owner:     "payments", Purpose: "serves the API", X509TTL: time.Hour, JWTTTL: 5 * time.Minute,
		DNSNames: []string{"api.example.org"}, ExpiresAt: t2, NeverExpires: true, Ticket: "CHG-2", JWTUnique: true, Prefetch: true,
		CreatedAt: t1, CreatedBy: "alice", Disabled: true, DisabledAt: t2, DisabledBy: "bob", DisabledReason: "review",
		Pending: true, PendingRules: []string{"prod"}, ApprovedBy: "carol", ApprovedAt: t2,
		UpdatedAt: t2, UpdatedBy: "dave", UpdateReason: "rotate", Revision: 42}
}

// sampleFederatedEntry is sampleEntry with federates_with, which only the entry types of command
// version 10 carry (the older types' samples, pinned before it existed, have none).
func sampleFederatedEntry(id string) Entry {
	e := sampleEntry(id)
	e.FederatesWith = []string{"other.org", "partner.com"}
	return e
}

func sampleAgent() Agent {
	return Agent{ID: "spiffe://example.org/agent/n1", AttestationType: "join_token",
		Selectors: []selector.Selector{{Type: "join_token", Value: "t1"}}, Owner: "payments", TokenID: "t1",
		Serial: "0a", PrevSerial: "09", SVIDExpiresAt: t2, AttestedAt: t1, RenewedAt: t2,
		Banned: true, BannedAt: t2, BannedBy: "bob"}
}

func sampleLedger() []byte {
	u := encodeUnstampedBatch([]Issuance{{ID: "ab", Kind: KindX509SVID, SPIFFEID: "spiffe://example.org/agent/n1",
		Owner: "payments", ExpiresAt: t2, Node: "node-1", Agent: "spiffe://example.org/agent/n1", NodeAttestation: "join_token"}})
	return u.appendStamped(nil, t1)
}

// sampleSignedLedger is sampleLedger with the signing key, as the types of command version 4 carry it.
func sampleSignedLedger() []byte {
	u := encodeUnstampedBatch([]Issuance{{ID: "ab", Kind: KindX509SVID, SPIFFEID: "spiffe://example.org/agent/n1",
		Owner: "payments", ExpiresAt: t2, Node: "node-1", Agent: "spiffe://example.org/agent/n1", NodeAttestation: "join_token",
		SignedBy: "5f1c0a"}})
	return u.appendStamped(nil, t1)
}

func sampleDelivery(pid int32) Delivery {
	caller := Caller{UID: 1000, GID: 50, PID: pid, StartTime: 123456, Path: "/usr/bin/web", SHA256: "abcdef0123456789"}
	return Delivery{CredentialID: "0a1b", Agent: "spiffe://example.org/agent/n1", Caller: caller, FirstAt: t1, LastAt: t2, Count: 3, EntryID: "e1"}
}

// wireCases holds one fixed command per protobuf command type, every field set (checked by
// TestWireSamplesSetEveryField), so a field a conversion drops fails the round trip.
func wireCases() []wireCase {
	return []wireCase{
		wcase("owner-create", cmdOwnerCreate, ownerCreateCmd{Owner: sampleOwner(), Meta: sampleMeta(), IfMissing: true}, ownerCreateCmd.wire, ownerCreateFromWire),
		wcase("entry-create", cmdEntryCreate, entryCreateCmd{Entry: sampleEntry("e1"), Meta: sampleMeta()}, entryCreateCmd.wire, entryCreateFromWire),
		wcase("entry-batch-create", cmdEntryBatch, entryBatchCmd{Entries: []Entry{sampleEntry("e1"), sampleEntry("e2")}, Meta: sampleMeta()}, entryBatchCmd.wire, entryBatchFromWire),
		wcase("entry-delete", cmdEntryDelete, entryDeleteCmd{ID: "e1", Meta: sampleMeta()}, entryDeleteCmd.wire, entryDeleteFromWire),
		wcase("authority-put", cmdAuthorityPut, authorityPutCmd{Authority: Authority{Kind: AuthorityJWT, ID: "kid-1", DER: []byte{0x30, 0x01, 0x02},
			NotAfter: t2, Node: "node-1", AddedAt: t1}, Meta: sampleMeta()}, authorityPutCmd.wire, authorityPutFromWire),
		wcase("token-create", cmdTokenCreate, tokenCreateCmd{Token: JoinToken{ID: "t1", SecretHash: []byte{1, 2, 3}, Owner: "payments",
			SPIFFEID: "spiffe://example.org/agent/n1", ExpiresAt: t2, CreatedAt: t1, CreatedBy: "alice", UsedAt: t2,
			UsedBy: "spiffe://example.org/agent/n1", Revoked: true}, Meta: sampleMeta()}, tokenCreateCmd.wire, tokenCreateFromWire),
		wcase("agent-attest", cmdAgentAttest, agentAttestCmd{TokenID: "t1", Now: t1, Agent: sampleAgent(), Ledger: sampleLedger()}, agentAttestCmd.wire, agentAttestFromWire),
		wcase("agent-attest-node", cmdAgentAttestNode, agentAttestNodeCmd{Now: t1, Agent: sampleAgent(), Ledger: sampleLedger(),
			Reason: "k8s_psat cluster prod: service account signet:agent"}, agentAttestNodeCmd.wire, agentAttestNodeFromWire),
		wcase("agent-attest-node-first-use", cmdAgentAttestNodeFirstUse, agentAttestNodeCmd{Now: t1, Agent: sampleAgent(), Ledger: sampleLedger(),
			Reason: "aws_iid: account 123456789012, region us-east-1, instance i-0abc"}, agentAttestNodeCmd.wire, agentAttestNodeFromWire),
		wcase("agent-renew", cmdAgentRenew, agentRenewCmd{ID: "spiffe://example.org/agent/n1", PresentedSerial: "09", Serial: "0a",
			SVIDExpiresAt: t2, Now: t1, Ledger: sampleLedger()}, agentRenewCmd.wire, agentRenewFromWire),
		wcase("agent-attest-signed", cmdAgentAttestSigned, agentAttestCmd{TokenID: "t1", Now: t1, Agent: sampleAgent(), Ledger: sampleSignedLedger()}, agentAttestCmd.wire, agentAttestFromWire),
		wcase("agent-renew-signed", cmdAgentRenewSigned, agentRenewCmd{ID: "spiffe://example.org/agent/n1", PresentedSerial: "09", Serial: "0a",
			SVIDExpiresAt: t2, Now: t1, Ledger: sampleSignedLedger()}, agentRenewCmd.wire, agentRenewFromWire),
		wcase("agent-evict", cmdAgentEvict, agentEvictCmd{ID: "spiffe://example.org/agent/n1", Meta: sampleMeta()}, agentEvictCmd.wire, agentEvictFromWire),
		wcase("agent-ban", cmdAgentBan, agentBanCmd{ID: "spiffe://example.org/agent/n1", By: "bob", Now: t1}, agentBanCmd.wire, agentBanFromWire),
		wcase("entry-update", cmdEntryUpdate, entryUpdateCmd{Entry: sampleEntry("e1"), PrevRevision: 41, Meta: sampleMeta()}, entryUpdateCmd.wire, entryUpdateFromWire),
		wcase("entry-state", cmdEntryState, entryStateCmd{ID: "e1", Action: EntryApprove, Meta: sampleMeta()}, entryStateCmd.wire, entryStateFromWire),
		wcase("owner-offboard", cmdOwnerOffboard, ownerOffboardCmd{Owner: "payments", Mode: OffboardReassign, To: "platform", Meta: sampleMeta(),
			Checked: map[string]uint64{"e1": 7, "e2": 9}}, ownerOffboardCmd.wire, ownerOffboardFromWire),
		wcase("audit-append", cmdAuditAppend, auditAppendCmd{Record: AuditRecord{Seq: 3, Time: t1, Actor: "alice", Action: "entry.create",
			Object: "e1", Outcome: AuditDenied, Reason: "policy", Before: []byte(`{"a":1}`), After: []byte(`{"a":2}`),
			PrevHash: "00ff", Hash: "ff00"}}, auditAppendCmd.wire, auditAppendFromWire),
		wcase("ledger-prune", cmdLedgerPrune, ledgerPruneCmd{Before: t2, MaxBatches: 100, MaxRecords: 50000}, ledgerPruneCmd.wire, ledgerPruneFromWire),
		wcase("review-sign", cmdReviewSign, reviewSignCmd{Review: Review{ID: "r1", Reviewer: "carol", SignedBy: "uid:1000(alice)", SignedAt: t1,
			Decisions: []ReviewDecision{{EntryID: "e1", Decision: ReviewKeep, Note: "used daily"}, {EntryID: "e2", Decision: ReviewDisable, Note: "idle"}}},
			Meta: sampleMeta()}, reviewSignCmd.wire, reviewSignFromWire),
		wcase("node-version", cmdNodeVersion, nodeVersionCmd{NodeID: "node-1", Version: 2}, nodeVersionCmd.wire, nodeVersionFromWire),
		wcase("delivery-record", cmdDeliveryRecord, deliveryRecordCmd{Deliveries: []Delivery{sampleDelivery(42), sampleDelivery(43)}},
			deliveryRecordCmd.wire, deliveryRecordFromWire),
		wcase("policy-set", cmdPolicySet, policySetCmd{Rules: []PolicyRule{
			{Name: "max-ttl", Description: "X.509-SVIDs live at most a day", DenyUnless: `entry.x509_ttl <= duration("24h")`, ApprovalWhen: "false"},
			{Name: "prod", Description: "production needs a second admin", DenyUnless: "true", ApprovalWhen: `entry.path.startsWith("/prod/")`}},
			Limits:       PolicyLimits{MinX509SVIDTTL: 5 * time.Minute, MinJWTSVIDTTL: time.Minute, DefaultEntryTTL: 720 * time.Hour},
			PrevRevision: 3, Meta: sampleMeta()}, policySetCmd.wire, policySetFromWire),
		wcase("policy-checked", cmdPolicyChecked, policyCheckedCmd{PolicyRevision: 4, Command: []byte{byte(cmdEntryDelete), 0x0a, 0x02, 'e', '1'}},
			policyCheckedCmd.wire, policyCheckedFromWire),
		wcase("authority-remove", cmdAuthorityRemove, authorityRemoveCmd{Kind: AuthorityX509, ID: "ab12", Node: "node-1", Meta: sampleMeta()},
			authorityRemoveCmd.wire, authorityRemoveFromWire),
		wcase("entry-create-federated", cmdEntryCreateFederated, entryCreateCmd{Entry: sampleFederatedEntry("e1"), Meta: sampleMeta()}, entryCreateCmd.wire, entryCreateFromWire),
		wcase("entry-batch-create-federated", cmdEntryBatchFederated, entryBatchCmd{Entries: []Entry{sampleFederatedEntry("e1"), sampleFederatedEntry("e2")}, Meta: sampleMeta()},
			entryBatchCmd.wire, entryBatchFromWire),
		wcase("entry-update-federated", cmdEntryUpdateFederated, entryUpdateCmd{Entry: sampleFederatedEntry("e1"), PrevRevision: 41, Meta: sampleMeta()}, entryUpdateCmd.wire, entryUpdateFromWire),
		wcase("rotation-request", cmdRotationRequest, rotationRequestCmd{Node: "node-2", Meta: sampleMeta()}, rotationRequestCmd.wire, rotationRequestFromWire),
		wcase("key-revoke", cmdKeyRevoke, keyRevokeCmd{Kind: AuthorityJWT, ID: "kid-1", Meta: sampleMeta(), PendingRules: []string{"two-person"}, Approve: true},
			keyRevokeCmd.wire, keyRevokeFromWire),
		wcase("key-revoke-intermediate", cmdKeyRevokeIntermediate, keyRevokeCmd{Kind: AuthorityX509Intermediate, ID: "ab12", Meta: sampleMeta(),
			PendingRules: []string{"two-person"}, Approve: true, Node: "node-1", NotAfter: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)},
			keyRevokeCmd.wire, keyRevokeFromWire),
		wcase("authority-retain", cmdAuthorityRetain, authorityRetainCmd{Kind: AuthorityX509, ID: "ab12", NotAfter: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC),
			Meta: sampleMeta()}, authorityRetainCmd.wire, authorityRetainFromWire),
		wcase("federation-create", cmdFederationCreate, federationCreateCmd{TrustDomain: "other.org",
			BundleEndpointURL: "https://bundle.other.org/", Profile: "https_spiffe", EndpointSPIFFEID: "spiffe://other.org/signet/server/n1",
			Bundle: []byte(`{"keys":[]}`), Meta: sampleMeta()}, federationCreateCmd.wire, federationCreateFromWire),
		wcase("federation-delete", cmdFederationDelete, federationDeleteCmd{TrustDomain: "other.org", Meta: sampleMeta()}, federationDeleteCmd.wire, federationDeleteFromWire),
		wcase("federated-bundle-set", cmdFederatedBundleSet, federatedBundleSetCmd{TrustDomain: "other.org", Bundle: []byte(`{"keys":[]}`), Meta: sampleMeta()},
			federatedBundleSetCmd.wire, federatedBundleSetFromWire),
	}
}

// Every field of every sample is set, recursively: a field added to a storage type (or a command)
// must be added to its sample, and then the round trip fails until the conversion carries it.
//
// The entry commands of before federates_with never carry it (their samples leave it out: their pinned
// encodings predate it); their federated types' samples set it.
var preFederation = map[string]bool{"entry-create": true, "entry-batch-create": true, "entry-update": true}

// key-revoke names a bundle key: only key-revoke-intermediate carries node and not_after.
var bundleKeyOnly = map[string]bool{"key-revoke.Node": true, "key-revoke.NotAfter": true}

func TestWireSamplesSetEveryField(t *testing.T) {
	var check func(path string, v reflect.Value)
	check = func(path string, v reflect.Value) {
		if strings.HasSuffix(path, ".FederatesWith") && preFederation[strings.Split(path, ".")[0]] || bundleKeyOnly[path] {
			return
		}
		if v.IsZero() {
			t.Errorf("%s is not set in the sample", path)
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range v.NumField() {
				check(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case reflect.Slice:
			for i := range v.Len() {
				check(path+"[]", v.Index(i))
			}
		}
	}
	for _, c := range wireCases() {
		check(c.name, reflect.ValueOf(c.cmd))
	}
}

func TestWireRoundTrip(t *testing.T) {
	for _, c := range wireCases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := wireOptions.Marshal(c.encode())
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.cmd) {
				t.Fatalf("round trip changed the command:\n got %+v\nwant %+v", got, c.cmd)
			}
		})
	}
}

// The encoding of every command type is pinned: a change to the wire messages that changes the bytes
// of an existing command (a renumbered field, a changed type) fails here, and the committed bytes of an
// older build must still decode to the same command. Regenerate with: go test ./storage -run Golden -update
func TestCommandGolden(t *testing.T) {
	for _, c := range wireCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := encodeCommand(c.t, c.encode())
			if err != nil {
				t.Fatal(err)
			}
			want := golden(t, c.name, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding changed:\n got %x\nwant %x\n(a changed payload is a new command type; -update only for a new type)", got, want)
			}
			if commandType(want[0]) != c.t {
				t.Fatalf("type byte %d, want %d", want[0], c.t)
			}
			back, err := c.decode(want[1:])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, c.cmd) {
				t.Fatalf("committed bytes decode to\n %+v\nwant %+v", back, c.cmd)
			}
		})
	}
}

// The hand-written ledger-append encoding is pinned too, and is exactly raftv1.LedgerBatch of
// raftv1.Issuance records (decoded strictly).
func TestLedgerAppendGolden(t *testing.T) {
	rec := Issuance{ID: "0a1b", Kind: KindJWTSVID, SPIFFEID: "spiffe://example.org/api", EntryID: "e1", Owner: "payments",
		Selectors: []string{"unix:uid:1000", "unix:gid:50"}, Audience: []string{"aud-1", "aud-2"}, PublicKeySHA256: "beef",
		ExpiresAt: t2, Node: "node-1", Agent: "spiffe://example.org/agent/n1", NodeAttestation: "join_token"}
	u := encodeUnstampedBatch([]Issuance{rec, rec})
	got := u.appendStamped([]byte{byte(cmdLedgerAppend)}, t1)
	if want := golden(t, "ledger-append", got); !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
	}
	var batch raftv1.LedgerBatch
	if err := decodeWire(got[1:], &batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.GetRecords()) != 2 {
		t.Fatalf("%d records, want 2", len(batch.GetRecords()))
	}
	var m raftv1.Issuance
	if err := decodeWire(batch.GetRecords()[0], &m); err != nil {
		t.Fatal(err)
	}
	want := &raftv1.Issuance{Id: rec.ID, Kind: uint32(rec.Kind), SpiffeId: rec.SPIFFEID, EntryId: rec.EntryID, Owner: rec.Owner,
		Selectors: rec.Selectors, Audience: rec.Audience, PublicKeySha256: rec.PublicKeySHA256, IssuedAtUnixNs: t1.UnixNano(),
		ExpiresAtUnixNs: t2.UnixNano(), Node: rec.Node, Agent: rec.Agent, NodeAttestation: rec.NodeAttestation}
	if !proto.Equal(&m, want) {
		t.Fatalf("record decodes as\n %v\nwant %v", &m, want)
	}
	if err := checkRecordFields(batch.GetRecords()[0], false); err != nil {
		t.Fatal(err)
	}
}

// golden returns the committed bytes of testdata/commands/name.hex, rewriting them with got under -update.
func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", "commands", name+".hex")
	if *update {
		if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	want, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return want
}

func TestDecodeWireRefusesUnknownFields(t *testing.T) {
	cmd := entryCreateCmd{Entry: sampleEntry("e1"), Meta: sampleMeta()}
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)

	top, _ := wireOptions.Marshal(cmd.wire())
	nestedMsg := cmd.wire()
	nestedMsg.GetEntry().GetSelectors()[1].ProtoReflect().SetUnknown(unknown)
	nested, _ := wireOptions.Marshal(nestedMsg)
	// Field 2 of Selector (value) as a varint instead of a string.
	wrongType := protowire.AppendTag(nil, 1, protowire.BytesType)
	sel := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 5)
	entry := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), sel)
	wrongType = protowire.AppendBytes(wrongType, entry)

	tests := []struct {
		name, payload, where string
	}{
		{"unknown field at the top", string(append(top, unknown...)), "EntryCreate has a field"},
		{"unknown field in a nested list element", string(nested), "EntryCreate.entry.selectors[1] has a field"},
		{"known field of the wrong wire type", string(wrongType), "EntryCreate.entry.selectors[0] has a field"},
		{"truncated", string(top[:len(top)-3]), "does not decode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m raftv1.EntryCreate
			err := decodeWire([]byte(tc.payload), &m)
			if !errors.Is(err, errBadCommand) || !strings.Contains(err.Error(), tc.where) {
				t.Fatalf("decode: %v; want errBadCommand naming %q", err, tc.where)
			}
		})
	}
	var m raftv1.EntryCreate
	if err := decodeWire(top, &m); err != nil {
		t.Fatalf("the command itself: %v", err)
	}
}

func TestLedgerRecordsAreCheckedStrictly(t *testing.T) {
	ok := encodeUnstamped(nil, &Issuance{ID: "a", Kind: KindX509SVID, ExpiresAt: t2})
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"unknown field", protowire.AppendString(protowire.AppendTag(bytes.Clone(ok), 15, protowire.BytesType), "x"), "field 15 is unknown"},
		{"signed_by in a type that predates it", protowire.AppendString(protowire.AppendTag(bytes.Clone(ok), fSignedBy, protowire.BytesType), "k"), "field 14 (signed_by) in a command type that predates it"},
		{"known field, wrong wire type", protowire.AppendVarint(protowire.AppendTag(bytes.Clone(ok), fOwner, protowire.VarintType), 1), "field 5 has wire type"},
		{"truncated", ok[:len(ok)-1], "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkRecordFields(tc.raw, false); !errors.Is(err, errBadRecord) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check: %v; want %q", err, tc.want)
			}
		})
	}
	if err := checkRecordFields(ok, false); err != nil {
		t.Fatal(err)
	}
	batch := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), ok)
	if _, err := splitLedgerBatch(batch); !errors.Is(err, errBadRecord) {
		t.Fatalf("a batch with field 2: %v, want errBadRecord", err)
	}
}
