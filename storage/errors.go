package storage

import "errors"

// Sentinel errors returned (wrapped, naming the object) by Store methods. Callers branch on them with
// errors.Is; the server maps them to gRPC codes in one place.
var (
	// ErrNotLeader is returned by writes on a node that is not the Raft leader.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrDiskFull is returned by writes that failed, or were refused, because the file system holding
	// the data dir is out of space; the message names the directory.
	ErrDiskFull = errors.New("disk full")
	// ErrClosed is returned by any call after Close.
	ErrClosed = errors.New("store is closed")
	// ErrOwnerNotFound is returned when a named owner does not exist.
	ErrOwnerNotFound = errors.New("owner not found")
	// ErrOwnerExists is returned when creating an owner whose name is taken.
	ErrOwnerExists = errors.New("owner already exists")
	// ErrEntryNotFound is returned when an entry ID does not exist.
	ErrEntryNotFound = errors.New("entry not found")
	// ErrEntryExists is returned when an entry with the same SPIFFE ID, parent and selectors exists.
	ErrEntryExists = errors.New("an identical entry already exists")
	// ErrInvalid is returned for a command whose content is unusable (a caller bug, not a state conflict).
	ErrInvalid = errors.New("invalid command")
	// ErrIssuanceNotFound is returned by ledger lookups of an unknown serial or JWT ID.
	ErrIssuanceNotFound = errors.New("issuance not found")
	// ErrAuditBroken is returned when the audit chain fails verification where it must hold (for example
	// before its head is signed).
	ErrAuditBroken = errors.New("audit chain is broken")
	// ErrAuditEmpty is returned when the audit log has no record to act on.
	ErrAuditEmpty = errors.New("audit log is empty")
	// ErrUpgradeInProgress is returned by a write whose command a server of the cluster does not
	// understand yet (it runs an older signet): the message names the server. Retry once every server
	// is upgraded.
	ErrUpgradeInProgress = errors.New("cluster upgrade in progress")
	// ErrFederationNotFound is returned for a trust domain this cluster has no federation relationship with.
	ErrFederationNotFound = errors.New("federation relationship not found")
	// ErrFederationExists is returned when creating a relationship with a trust domain that has one.
	ErrFederationExists = errors.New("federation relationship already exists")
	// ErrStateTooNew is returned by Open for a state written by a newer signet.
	ErrStateTooNew = errors.New("state was written by a newer signet")
)
