package storage

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrorCode is a storage error as it crosses from the leader to the follower a write came through. Each
// code names one sentinel error, so errors.Is works on the follower as it does on the leader. Never
// renumber: nodes of different versions exchange them.
type ErrorCode uint32

const (
	codeOK ErrorCode = iota
	codeOther
	codeNotAppended // not the leader; the proposal was not appended, so it may be sent again
	codeNotLeader
	codeDiskFull
	codeClosed
	codeOwnerNotFound
	codeOwnerExists
	codeEntryNotFound
	codeEntryExists
	codeInvalid
	codeIssuanceNotFound
	codeAuditBroken
	codeAuditEmpty
	codeTokenNotFound
	codeTokenUsed
	codeTokenExpired
	codeAgentNotFound
	codeAgentBanned
	codeAgentSVIDMismatch
	codeConflict
	codeOwnerOffboarded
	codeSameApprover
	codeNotPending
	codeMemberNotFound
	codeLastVoter
	codeMemberConflict
	codeUpgradeInProgress
	codeStateTooNew
	codeAgentAttested
	codeFederationNotFound
	codeFederationExists
)

// errorCodes maps each code to its sentinel. errNotAppended comes first: it wraps ErrNotLeader.
var errorCodes = []struct {
	code ErrorCode
	err  error
}{
	{codeNotAppended, errNotAppended}, {codeNotLeader, ErrNotLeader}, {codeDiskFull, ErrDiskFull},
	{codeClosed, ErrClosed}, {codeOwnerNotFound, ErrOwnerNotFound}, {codeOwnerExists, ErrOwnerExists},
	{codeEntryNotFound, ErrEntryNotFound}, {codeEntryExists, ErrEntryExists}, {codeInvalid, ErrInvalid},
	{codeIssuanceNotFound, ErrIssuanceNotFound}, {codeAuditBroken, ErrAuditBroken}, {codeAuditEmpty, ErrAuditEmpty},
	{codeTokenNotFound, ErrTokenNotFound}, {codeTokenUsed, ErrTokenUsed}, {codeTokenExpired, ErrTokenExpired},
	{codeAgentNotFound, ErrAgentNotFound}, {codeAgentBanned, ErrAgentBanned}, {codeAgentSVIDMismatch, ErrAgentSVIDMismatch},
	{codeConflict, ErrConflict}, {codeOwnerOffboarded, ErrOwnerOffboarded}, {codeSameApprover, ErrSameApprover},
	{codeNotPending, ErrNotPending}, {codeMemberNotFound, ErrMemberNotFound}, {codeLastVoter, ErrLastVoter},
	{codeMemberConflict, ErrMemberConflict}, {codeUpgradeInProgress, ErrUpgradeInProgress},
	{codeStateTooNew, ErrStateTooNew}, {codeAgentAttested, ErrAgentAttested},
	{codeFederationNotFound, ErrFederationNotFound}, {codeFederationExists, ErrFederationExists},
}

func errorCodeOf(err error) ErrorCode {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return codeOther
}

// ErrorFromCode returns the error a code and message stand for: the message as the text, the code's
// sentinel for errors.Is. A nil error for code 0.
func ErrorFromCode(code ErrorCode, msg string) error {
	if code == codeOK {
		return nil
	}
	for _, c := range errorCodes {
		if c.code == code {
			return &remoteError{msg: msg, sentinel: c.err}
		}
	}
	return &remoteError{msg: msg}
}

// ErrorCodeOf returns the code that carries err across to another node (see ErrorFromCode).
func ErrorCodeOf(err error) ErrorCode {
	if err == nil {
		return codeOK
	}
	return errorCodeOf(err)
}

func (o Outcome) err() error { return ErrorFromCode(o.Code, o.Message) }

// remoteError is an error returned by the leader for a forwarded write.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// batchResultWire is a BatchResult with its error as a code.
type batchResultWire struct {
	Entry   Entry     `json:"entry"`
	Code    ErrorCode `json:"code,omitempty"`
	Message string    `json:"message,omitempty"`
}

// encodeResult encodes the FSM's result of a command of type t for the follower the command came
// through. The results are this package's exported types, encoded as JSON; decodeResult knows which
// type each command returns.
func encodeResult(t commandType, resp any) ([]byte, error) {
	switch r := resp.(type) {
	case nil:
		return nil, nil
	case []BatchResult:
		w := make([]batchResultWire, len(r))
		for i, br := range r {
			w[i] = batchResultWire{Entry: br.Entry, Code: ErrorCodeOf(br.Err)}
			if br.Err != nil {
				w[i].Message = br.Err.Error()
			}
		}
		resp = w
	case pruneResult:
		resp = pruneResultWire(r)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("storage: encode the result of %s: %w", t, err)
	}
	return b, nil
}

type pruneResultWire struct {
	Batches, Records int
	Bounded          bool
}

// decodeResult decodes the result encodeResult made for a command of type t.
func decodeResult(t commandType, b []byte) (any, error) {
	var err error
	var out any
	switch unsignedType(t) { // a type carrying signed_by answers as the type it extends
	case cmdOwnerCreate:
		out, err = decodeAs[Owner](b)
	case cmdEntryCreate, cmdEntryDelete, cmdEntryUpdate, cmdEntryState, cmdEntryCreateFederated, cmdEntryUpdateFederated:
		out, err = decodeAs[Entry](b)
	case cmdEntryBatch, cmdEntryBatchFederated:
		var w []batchResultWire
		if err = json.Unmarshal(b, &w); err == nil {
			rs := make([]BatchResult, len(w))
			for i, r := range w {
				rs[i] = BatchResult{Entry: r.Entry, Err: ErrorFromCode(r.Code, r.Message)}
			}
			out = rs
		}
	case cmdTokenCreate:
		out, err = decodeAs[JoinToken](b)
	case cmdAgentAttest, cmdAgentAttestNode, cmdAgentAttestNodeFirstUse, cmdAgentRenew, cmdAgentEvict, cmdAgentBan:
		out, err = decodeAs[Agent](b)
	case cmdOwnerOffboard:
		out, err = decodeAs[OffboardResult](b)
	case cmdReviewSign:
		out, err = decodeAs[Review](b)
	case cmdPolicySet:
		out, err = decodeAs[Policy](b)
	case cmdRotationRequest:
		out, err = decodeAs[RotationRequest](b)
	case cmdKeyRevoke, cmdKeyRevokeIntermediate:
		out, err = decodeAs[KeyRevokeResult](b)
	case cmdFederationCreate, cmdFederationDelete, cmdFederatedBundleSet:
		out, err = decodeAs[Federation](b)
	case cmdLedgerAppend, cmdDeliveryRecord:
		out, err = decodeAs[int](b)
	case cmdLedgerPrune:
		var w pruneResultWire
		w, err = decodeAs[pruneResultWire](b)
		out = pruneResult(w)
	case cmdAuthorityPut, cmdAuthorityRemove, cmdAuthorityRetain, cmdAuditAppend, cmdNodeVersion:
		return nil, nil
	default:
		return nil, fmt.Errorf("storage: the result of forwarded %s: unknown command type", t)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: decode the result of forwarded %s: %w", t, err)
	}
	return out, nil
}

func decodeAs[T any](b []byte) (T, error) {
	var v T
	if len(b) == 0 {
		return v, nil
	}
	err := json.Unmarshal(b, &v)
	return v, err
}

// NoLeaderOutcome is the outcome of a proposal that could not be sent because the cluster has no leader
// now: nothing was applied, and the proposal is sent again once there is one.
func NoLeaderOutcome() Outcome {
	return Outcome{Code: codeNotAppended, Message: "the cluster has no leader now"}
}
