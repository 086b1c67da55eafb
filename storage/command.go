package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// commandType is the first byte of every Raft log entry written by Signet. A type with the
// ignoreIfUnknown bit set may be skipped by an older node that does not know it (an optional command);
// any other unknown type stops the node, because a replica that skips a write diverges.
type commandType uint8

const ignoreIfUnknown commandType = 0x80

// Command types. Never renumber: they are in every replica's log. A changed payload is a new type.
//
// Types 1–19 (but 4) carry JSON of the storage package's Go structs. They are never proposed again: a
// field added to a Go struct silently changed what they apply. This build still decodes and applies
// them exactly as before, because existing logs and snapshots' trailing logs hold them.
const (
	cmdOwnerCreateJSON   commandType = 1
	cmdEntryCreateJSON   commandType = 2
	cmdEntryDeleteJSON   commandType = 3
	cmdAuthorityPutJSON  commandType = 5
	cmdTokenCreateJSON   commandType = 6
	cmdAgentAttestJSON   commandType = 7
	cmdAgentRenewJSON    commandType = 8
	cmdAgentEvictJSON    commandType = 9
	cmdAgentBanJSON      commandType = 10
	cmdEntryBatchJSON    commandType = 11
	cmdEntryUpdateJSON   commandType = 12
	cmdEntryStateJSON    commandType = 13
	cmdOwnerOffboardJSON commandType = 14
	cmdAuditAppendJSON   commandType = 15
	cmdLedgerPruneJSON   commandType = 16
	cmdReviewSignJSON    commandType = 17
	// cmdLedgerPruneBoundedJSON is cmdLedgerPruneJSON with a bound on the records removed (MaxRecords).
	cmdLedgerPruneBoundedJSON commandType = 18
	// cmdOwnerOffboardCheckedJSON is cmdOwnerOffboardJSON with the entries checked against the entry
	// policy (Checked): refused if the owner's entries changed since.
	cmdOwnerOffboardCheckedJSON commandType = 19
)

// Protobuf commands: one wire message of proto/raftv1 each, decoded strictly. Types 20–39 are this
// series; cmdLedgerAppend has been protobuf wire format from the start.
const (
	cmdLedgerAppend   commandType = 4                    // raftv1.LedgerBatch
	cmdOwnerCreate    commandType = 20                   // raftv1.OwnerCreate
	cmdEntryCreate    commandType = 21                   // raftv1.EntryCreate
	cmdEntryBatch     commandType = 22                   // raftv1.EntryBatchCreate
	cmdEntryDelete    commandType = 23                   // raftv1.EntryDelete
	cmdAuthorityPut   commandType = 24                   // raftv1.AuthorityPut
	cmdTokenCreate    commandType = 25                   // raftv1.TokenCreate
	cmdAgentAttest    commandType = 26                   // raftv1.AgentAttest
	cmdAgentRenew     commandType = 27                   // raftv1.AgentRenew
	cmdAgentEvict     commandType = 28                   // raftv1.AgentEvict
	cmdAgentBan       commandType = 29                   // raftv1.AgentBan
	cmdEntryUpdate    commandType = 30                   // raftv1.EntryUpdate
	cmdEntryState     commandType = 31                   // raftv1.EntryState
	cmdOwnerOffboard  commandType = 32                   // raftv1.OwnerOffboard (checked against the policy or not)
	cmdAuditAppend    commandType = 33                   // raftv1.AuditAppend
	cmdLedgerPrune    commandType = 34                   // raftv1.LedgerPrune (bounded by records)
	cmdReviewSign     commandType = 35                   // raftv1.ReviewSign
	cmdNodeVersion    commandType = ignoreIfUnknown | 36 // raftv1.NodeVersion: optional, older nodes skip it
	cmdDeliveryRecord commandType = 37                   // raftv1.DeliveryRecord (deliveries.go)
	cmdPolicySet      commandType = 38                   // raftv1.PolicySet (policy.go)
	cmdPolicyChecked  commandType = 39                   // raftv1.PolicyChecked: a governed command and the policy revision it was decided under
	// The commands carrying ledger records whose records may hold signed_by (the signing CA key): the
	// same messages as ledger-append, agent-attest and agent-renew. The leader proposes them once every
	// server understands command version 4, the older types until then (signedTypes).
	cmdLedgerAppendSigned commandType = 40 // raftv1.LedgerBatch
	cmdAgentAttestSigned  commandType = 41 // raftv1.AgentAttest
	cmdAgentRenewSigned   commandType = 42 // raftv1.AgentRenew
	// cmdAgentAttestNode: an attestation that consumes nothing (agents.go), command version 5. Its
	// ledger records may carry signed_by (version 5 implies 4).
	cmdAgentAttestNode commandType = 43 // raftv1.AgentAttestNode
	// CA key rotation (rotation.go), command version 6.
	cmdAuthorityRemove commandType = 44 // raftv1.AuthorityRemove: a node's pruned CA key out of the bundle
	cmdRotationRequest commandType = 45 // raftv1.RotationRequest: a node asked to rotate its CA keys
	// cmdAgentAttestNodeFirstUse: agent-attest-node for a node that attests once (trust on first use,
	// aws_iid): the same message, refused when the agent ID is already registered (agents.go), command
	// version 7.
	cmdAgentAttestNodeFirstUse commandType = 46 // raftv1.AgentAttestNode
	// cmdKeyRevoke: a CA key revoked after a compromise, or its revocation pending or approved
	// (revoke.go), command version 8.
	cmdKeyRevoke commandType = 50 // raftv1.KeyRevoke
	// cmdAuthorityRetain: an upstream authority's root kept in the bundle while a key chains to it
	// (upstream.go), command version 9.
	cmdAuthorityRetain commandType = 47 // raftv1.AuthorityRetain
	// Federation (federation.go), command version 10. Types 53–59 are reserved for federation.
	cmdFederationCreate   commandType = 53 // raftv1.FederationCreate
	cmdFederationDelete   commandType = 54 // raftv1.FederationDelete
	cmdFederatedBundleSet commandType = 55 // raftv1.FederatedBundleSet
	// The entry commands whose entries may carry federates_with: the same messages as entry-create,
	// entry-batch-create and entry-update, proposed when an entry has federates_with (federatedType).
	cmdEntryCreateFederated commandType = 56 // raftv1.EntryCreate
	cmdEntryBatchFederated  commandType = 57 // raftv1.EntryBatchCreate
	cmdEntryUpdateFederated commandType = 58 // raftv1.EntryUpdate
	// cmdKeyRevokeIntermediate: an upstream authority's intermediate revoked after a compromise, or its
	// revocation pending or approved (revoke.go), command version 11: the same message as key-revoke.
	cmdKeyRevokeIntermediate commandType = 60 // raftv1.KeyRevoke
)

// federatedType returns the type of command version 10 that carries t's entries with federates_with:
// proposed only for entries that have it, so a cluster that never federates proposes what it did.
func federatedType(t commandType, es ...Entry) commandType {
	if !slices.ContainsFunc(es, func(e Entry) bool { return len(e.FederatesWith) > 0 }) {
		return t
	}
	switch t {
	case cmdEntryCreate:
		return cmdEntryCreateFederated
	case cmdEntryBatch:
		return cmdEntryBatchFederated
	case cmdEntryUpdate:
		return cmdEntryUpdateFederated
	}
	return t
}

// refuseFederatesWith stops the node on an entry command of a type before version 10 whose entries carry
// federates_with: only the federated types may (a replica of an older build would drop the field).
func refuseFederatesWith(t commandType, es ...Entry) error {
	for _, e := range es {
		if len(e.FederatesWith) > 0 {
			return fmt.Errorf("%w: entry %q of %s has federates_with, which only command version 10's entry types carry", errBadCommand, e.ID, t)
		}
	}
	return nil
}

// signedType returns the type of command version 4 that carries the records of t (a command carrying
// ledger records) with signed_by, or t itself if it has none.
func signedType(t commandType) commandType {
	switch t {
	case cmdLedgerAppend:
		return cmdLedgerAppendSigned
	case cmdAgentAttest:
		return cmdAgentAttestSigned
	case cmdAgentRenew:
		return cmdAgentRenewSigned
	}
	return t
}

// unsignedType is the inverse of signedType: the type that predates signed_by.
func unsignedType(t commandType) commandType {
	switch t {
	case cmdLedgerAppendSigned:
		return cmdLedgerAppend
	case cmdAgentAttestSigned:
		return cmdAgentAttest
	case cmdAgentRenewSigned:
		return cmdAgentRenew
	}
	return t
}

// Command versions. A node understands every command type up to its version; the leader proposes a type
// only when every voter has reported a version that understands it (see version.go), and the state
// records the highest version it has applied (a build older than that refuses to open it).
const (
	// commandVersionJSON: the types of the JSON era, and ledger-append.
	commandVersionJSON uint32 = 1
	// commandVersionWire: the protobuf types 20–37.
	commandVersionWire uint32 = 2
	// commandVersionPolicy: the replicated entry policy, types 38 and 39.
	commandVersionPolicy uint32 = 3
	// commandVersionSignedBy: ledger records carry the signing key (signed_by), types 40–42.
	commandVersionSignedBy uint32 = 4
	// commandVersionNodeAttest: node attestors that consume nothing (k8s_psat), type 43.
	commandVersionNodeAttest uint32 = 5
	// commandVersionRotation: CA key rotation, types 44 (authority-remove) and 45 (rotation-request).
	commandVersionRotation uint32 = 6
	// commandVersionFirstUse: node attestation on first use only (aws_iid), type 46.
	commandVersionFirstUse uint32 = 7
	// commandVersionRevoke: CA key revocation (signet ca revoke-key), type 50.
	commandVersionRevoke uint32 = 8
	// commandVersionUpstream: upstream authority roots retained while a key chains to them, type 47.
	commandVersionUpstream uint32 = 9
	// commandVersionFederation: federation relationships and their bundles, types 53–55, and entries
	// that federate (federates_with), types 56–58.
	commandVersionFederation uint32 = 10
	// commandVersionRevokeIntermediate: revocation of an upstream authority's intermediate, type 60.
	commandVersionRevokeIntermediate uint32 = 11
	// CommandVersion is the newest command version this build understands and proposes.
	CommandVersion = commandVersionRevokeIntermediate
)

// since returns the command version that introduced t. A type missing here is taken to need this
// build's version: no older voter is assumed to understand it.
func (t commandType) since() uint32 {
	switch {
	case t >= cmdOwnerCreateJSON && t <= cmdOwnerOffboardCheckedJSON:
		return commandVersionJSON
	case t >= cmdOwnerCreate && t <= cmdReviewSign, t == cmdNodeVersion, t == cmdDeliveryRecord:
		return commandVersionWire
	case t == cmdPolicySet, t == cmdPolicyChecked:
		return commandVersionPolicy
	case t >= cmdLedgerAppendSigned && t <= cmdAgentRenewSigned:
		return commandVersionSignedBy
	case t == cmdAgentAttestNode:
		return commandVersionNodeAttest
	case t == cmdAuthorityRemove, t == cmdRotationRequest:
		return commandVersionRotation
	case t == cmdAgentAttestNodeFirstUse:
		return commandVersionFirstUse
	case t == cmdKeyRevoke:
		return commandVersionRevoke
	case t == cmdAuthorityRetain:
		return commandVersionUpstream
	case t >= cmdFederationCreate && t <= cmdEntryUpdateFederated:
		return commandVersionFederation
	case t == cmdKeyRevokeIntermediate:
		return commandVersionRevokeIntermediate
	default:
		return CommandVersion
	}
}

var commandNames = map[commandType]string{
	cmdOwnerCreateJSON:          "owner-create/json",
	cmdEntryCreateJSON:          "entry-create/json",
	cmdEntryDeleteJSON:          "entry-delete/json",
	cmdLedgerAppend:             "ledger-append",
	cmdAuthorityPutJSON:         "authority-put/json",
	cmdTokenCreateJSON:          "token-create/json",
	cmdAgentAttestJSON:          "agent-attest/json",
	cmdAgentRenewJSON:           "agent-renew/json",
	cmdAgentEvictJSON:           "agent-evict/json",
	cmdAgentBanJSON:             "agent-ban/json",
	cmdEntryBatchJSON:           "entry-batch-create/json",
	cmdEntryUpdateJSON:          "entry-update/json",
	cmdEntryStateJSON:           "entry-state/json",
	cmdOwnerOffboardJSON:        "owner-offboard/json",
	cmdAuditAppendJSON:          "audit-append/json",
	cmdLedgerPruneJSON:          "ledger-prune/json",
	cmdReviewSignJSON:           "review-sign/json",
	cmdLedgerPruneBoundedJSON:   "ledger-prune-bounded/json",
	cmdOwnerOffboardCheckedJSON: "owner-offboard-checked/json",
	cmdOwnerCreate:              "owner-create",
	cmdEntryCreate:              "entry-create",
	cmdEntryBatch:               "entry-batch-create",
	cmdEntryDelete:              "entry-delete",
	cmdAuthorityPut:             "authority-put",
	cmdTokenCreate:              "token-create",
	cmdAgentAttest:              "agent-attest",
	cmdAgentRenew:               "agent-renew",
	cmdAgentEvict:               "agent-evict",
	cmdAgentBan:                 "agent-ban",
	cmdEntryUpdate:              "entry-update",
	cmdEntryState:               "entry-state",
	cmdOwnerOffboard:            "owner-offboard",
	cmdAuditAppend:              "audit-append",
	cmdLedgerPrune:              "ledger-prune",
	cmdReviewSign:               "review-sign",
	cmdNodeVersion:              "node-version",
	cmdDeliveryRecord:           "delivery-record",
	cmdPolicySet:                "policy-set",
	cmdPolicyChecked:            "policy-checked",
	cmdLedgerAppendSigned:       "ledger-append-signed",
	cmdAgentAttestSigned:        "agent-attest-signed",
	cmdAgentRenewSigned:         "agent-renew-signed",
	cmdAgentAttestNode:          "agent-attest-node",
	cmdAuthorityRemove:          "authority-remove",
	cmdRotationRequest:          "rotation-request",
	cmdAgentAttestNodeFirstUse:  "agent-attest-node-first-use",
	cmdKeyRevoke:                "key-revoke",
	cmdKeyRevokeIntermediate:    "key-revoke-intermediate",
	cmdAuthorityRetain:          "authority-retain",
	cmdFederationCreate:         "federation-create",
	cmdFederationDelete:         "federation-delete",
	cmdFederatedBundleSet:       "federated-bundle-set",
	cmdEntryCreateFederated:     "entry-create-federated",
	cmdEntryBatchFederated:      "entry-batch-create-federated",
	cmdEntryUpdateFederated:     "entry-update-federated",
}

func (t commandType) String() string {
	if n, ok := commandNames[t]; ok {
		return n
	}
	return fmt.Sprintf("command-%d", uint8(t))
}

// The JSON payloads of the legacy types decode into these structs, and the protobuf messages convert to
// them (wire.go): the apply functions take them, so a legacy entry is applied exactly as it always was.
type ownerCreateCmd struct {
	Owner Owner     `json:"owner"`
	Meta  auditMeta `json:"meta"`
	// IfMissing makes creating an existing owner a no-op instead of ErrOwnerExists.
	IfMissing bool `json:"if_missing,omitempty"`
}

type entryCreateCmd struct {
	Entry Entry     `json:"entry"`
	Meta  auditMeta `json:"meta"`
}

type entryBatchCmd struct {
	Entries []Entry   `json:"entries"`
	Meta    auditMeta `json:"meta"`
}

type entryDeleteCmd struct {
	ID   string    `json:"id"`
	Meta auditMeta `json:"meta"`
}

type authorityPutCmd struct {
	Authority Authority `json:"authority"`
	Meta      auditMeta `json:"meta"`
}

type authorityRemoveCmd struct {
	Kind AuthorityKind
	ID   string
	Node string
	Meta auditMeta
}

// errBadCommand marks a log entry this node cannot decode; the FSM stops the node on it.
var errBadCommand = errors.New("command does not decode")

// wireOptions encode a command the same way every time (map fields sorted), so one command has one
// encoding, which the golden tests pin.
var wireOptions = proto.MarshalOptions{Deterministic: true}

// encodeCommand returns the log entry for a protobuf command: the type byte, then the message.
func encodeCommand(t commandType, m proto.Message) ([]byte, error) {
	b, err := wireOptions.MarshalAppend([]byte{byte(t)}, m)
	if err != nil {
		return nil, fmt.Errorf("storage: encode %s: %w", t, err)
	}
	return b, nil
}

// decodeWire decodes a protobuf payload strictly: a field this build does not know, anywhere in the
// message, is an error (a replica that ignored it might apply the command differently from one that
// did not).
func decodeWire(payload []byte, m proto.Message) error {
	if err := proto.Unmarshal(payload, m); err != nil {
		return fmt.Errorf("%w: %v", errBadCommand, err)
	}
	if path := unknownFieldAt(m.ProtoReflect(), ""); path != "" {
		return fmt.Errorf("%w: %s has a field this node does not know: the command is newer than this node, upgrade it", errBadCommand, path)
	}
	return nil
}

// unknownFieldAt returns the path of the first message (m itself, or one nested in it) that holds
// unknown fields, or "".
func unknownFieldAt(m protoreflect.Message, path string) string {
	if path == "" {
		path = string(m.Descriptor().Name())
	}
	if len(m.GetUnknown()) > 0 {
		return path
	}
	var found string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || (fd.IsMap() && fd.MapValue().Message() == nil) {
			return true
		}
		at := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				found = unknownFieldAt(mv.Message(), fmt.Sprintf("%s[%v]", at, k.Interface()))
				return found == ""
			})
			return found == ""
		case fd.IsList():
			for i := range v.List().Len() {
				if found = unknownFieldAt(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", at, i)); found != "" {
					return false
				}
			}
			return true
		default:
			found = unknownFieldAt(v.Message(), at)
			return found == ""
		}
	})
	return found
}

// decodeJSON decodes the payload of a legacy JSON command, as this build always did.
func decodeJSON(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %v", errBadCommand, err)
	}
	return nil
}
