package storage

import (
	"encoding/json"
	"fmt"
)

// commandType is the first byte of every Raft log entry written by Signet. A type with the
// ignoreIfUnknown bit set may be skipped by an older node that does not know it (an optional command);
// any other unknown type stops the node, because a replica that skips a write diverges.
type commandType uint8

const ignoreIfUnknown commandType = 0x80

// Command types. Never renumber: they are in every replica's log. A changed payload is a new type.
const (
	cmdOwnerCreate   commandType = 1
	cmdEntryCreate   commandType = 2
	cmdEntryDelete   commandType = 3
	cmdLedgerAppend  commandType = 4
	cmdAuthorityPut  commandType = 5
	cmdTokenCreate   commandType = 6
	cmdAgentAttest   commandType = 7
	cmdAgentRenew    commandType = 8
	cmdAgentEvict    commandType = 9
	cmdAgentBan      commandType = 10
	cmdEntryBatch    commandType = 11
	cmdEntryUpdate   commandType = 12
	cmdEntryState    commandType = 13
	cmdOwnerOffboard commandType = 14
	cmdAuditAppend   commandType = 15
	cmdLedgerPrune   commandType = 16
	cmdReviewSign    commandType = 17
	// cmdLedgerPruneBounded is cmdLedgerPrune with a bound on the records removed (MaxRecords).
	cmdLedgerPruneBounded commandType = 18
	// cmdOwnerOffboardChecked is cmdOwnerOffboard with the entries checked against the entry policy
	// (Checked): refused if the owner's entries changed since.
	cmdOwnerOffboardChecked commandType = 19
	// cmdDeliveryRecord carries agents' reports of credentials handed to workloads (deliveries.go).
	cmdDeliveryRecord commandType = 40
)

func (t commandType) String() string {
	switch t {
	case cmdOwnerCreate:
		return "owner-create"
	case cmdEntryCreate:
		return "entry-create"
	case cmdEntryDelete:
		return "entry-delete"
	case cmdLedgerAppend:
		return "ledger-append"
	case cmdAuthorityPut:
		return "authority-put"
	case cmdTokenCreate:
		return "token-create"
	case cmdAgentAttest:
		return "agent-attest"
	case cmdAgentRenew:
		return "agent-renew"
	case cmdAgentEvict:
		return "agent-evict"
	case cmdAgentBan:
		return "agent-ban"
	case cmdEntryBatch:
		return "entry-batch-create"
	case cmdEntryUpdate:
		return "entry-update"
	case cmdEntryState:
		return "entry-state"
	case cmdOwnerOffboard:
		return "owner-offboard"
	case cmdAuditAppend:
		return "audit-append"
	case cmdLedgerPrune:
		return "ledger-prune"
	case cmdReviewSign:
		return "review-sign"
	case cmdLedgerPruneBounded:
		return "ledger-prune-bounded"
	case cmdOwnerOffboardChecked:
		return "owner-offboard-checked"
	case cmdDeliveryRecord:
		return "delivery-record"
	default:
		return fmt.Sprintf("command-%d", uint8(t))
	}
}

// Registry command payloads are JSON: they are rare, small, and readable in a log dump. The ledger batch,
// the hot path, uses the compact protobuf wire encoding in ledger_codec.go.
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

func encodeJSONCommand(t commandType, v any) ([]byte, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("storage: encode %s: %w", t, err)
	}
	return append([]byte{byte(t)}, payload...), nil
}
