package server

import (
	"fmt"

	"github.com/signet-id/signet/credential"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/issuer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Bounds of request fields that have no validation of their own elsewhere.
const (
	// maxEntryIDLen bounds entry IDs in requests (the server assigns 32 hex digits).
	maxEntryIDLen = 64
	// maxKeywordLen bounds one-word fields: actions, decisions, kinds, update mask paths.
	maxKeywordLen = 64
	// maxActorLen bounds audit actors ("agent:<SPIFFE ID>", "uid:1000").
	maxActorLen = maxIDLen + 64
	// maxCursorLen bounds ledger page cursors; maxSerialLen serials (hex) and JWT IDs.
	maxCursorLen = 1024
	maxSerialLen = 256
	// maxUpdateMask bounds the paths of one update; maxPendingRules the policy rules an entry names.
	maxUpdateMask   = 32
	maxPendingRules = 64
)

// fieldBound bounds one field of a request: n is the most bytes of a string or bytes field, or the
// most values of a repeated field; each is the most bytes of one value of a repeated string field.
type fieldBound struct{ n, each int }

// requestBounds is the one table of bounds of the agent and admin APIs: every string, bytes and
// repeated field of every request message (nested messages included), by its full protobuf name. A
// field missing here is refused (TestRequestBoundsCoverEveryField keeps the table complete).
var requestBounds = map[protoreflect.FullName]fieldBound{
	// Admin API: audit (a SHA-256 in hex).
	"signet.admin.v1.VerifyAuditRequest.checkpoint_hash": {n: 64},
	// Admin API: snapshots.
	"signet.admin.v1.RestoreSnapshotRequest.chunk": {n: SnapshotChunkSize},
	"signet.admin.v1.SnapshotHeader.trust_domain":  {n: 255},
	"signet.admin.v1.SnapshotHeader.sha256":        {n: 32},
	"signet.admin.v1.SnapshotHeader.node":          {n: maxNameLen},
	// Agent API.
	"signet.agent.v1.AttestAgentRequest.join_token":      {n: maxJoinTokenLen},
	"signet.agent.v1.AttestAgentRequest.csr":             {n: issuer.MaxCSRSize},
	"signet.agent.v1.RenewAgentRequest.csr":              {n: issuer.MaxCSRSize},
	"signet.agent.v1.SignX509SVIDsRequest.requests":      {n: issuer.MaxCSRBatch},
	"signet.agent.v1.X509SVIDRequest.entry_id":           {n: maxEntryIDLen},
	"signet.agent.v1.X509SVIDRequest.csr":                {n: issuer.MaxCSRSize},
	"signet.agent.v1.SignJWTSVIDRequest.entry_id":        {n: maxEntryIDLen},
	"signet.agent.v1.SignJWTSVIDRequest.audience":        {n: issuer.MaxAudiences, each: issuer.MaxAudienceLen},
	"signet.agent.v1.ReportDeliveriesRequest.deliveries": {n: MaxDeliveriesPerReport},
	"signet.agent.v1.Delivery.credential_id":             {n: MaxDeliveryCredentialIDLen},
	"signet.agent.v1.Caller.path":                        {n: MaxDeliveryPathLen},
	"signet.agent.v1.Caller.sha256_prefix":               {n: MaxDeliverySHA256PrefixLen},
	// Admin API: entries.
	"signet.admin.v1.Entry.id":                          {n: maxEntryIDLen},
	"signet.admin.v1.Entry.spiffe_id":                   {n: maxIDLen},
	"signet.admin.v1.Entry.parent_id":                   {n: maxIDLen},
	"signet.admin.v1.Entry.selectors":                   {n: maxSelectors},
	"signet.admin.v1.Selector.type":                     {n: selector.MaxLength},
	"signet.admin.v1.Selector.value":                    {n: selector.MaxLength},
	"signet.admin.v1.Entry.owner":                       {n: maxNameLen},
	"signet.admin.v1.Entry.purpose":                     {n: maxPurposeLen},
	"signet.admin.v1.Entry.dns_names":                   {n: maxDNSNames, each: 253},
	"signet.admin.v1.Entry.created_by":                  {n: maxActorLen},
	"signet.admin.v1.Entry.ticket":                      {n: maxNameLen},
	"signet.admin.v1.Entry.disabled_by":                 {n: maxActorLen},
	"signet.admin.v1.Entry.disabled_reason":             {n: maxReasonLen},
	"signet.admin.v1.Entry.pending_rules":               {n: maxPendingRules, each: maxNameLen},
	"signet.admin.v1.Entry.approved_by":                 {n: maxActorLen},
	"signet.admin.v1.Entry.updated_by":                  {n: maxActorLen},
	"signet.admin.v1.Entry.update_reason":               {n: maxReasonLen},
	"signet.admin.v1.GetEntryRequest.id":                {n: maxEntryIDLen},
	"signet.admin.v1.DeleteEntryRequest.id":             {n: maxEntryIDLen},
	"signet.admin.v1.ListEntriesRequest.owner":          {n: maxNameLen},
	"signet.admin.v1.ListEntriesRequest.spiffe_id":      {n: maxIDLen},
	"signet.admin.v1.ListEntriesRequest.parent_id":      {n: maxIDLen},
	"signet.admin.v1.UpdateEntryRequest.update_mask":    {n: maxUpdateMask, each: maxKeywordLen},
	"signet.admin.v1.UpdateEntryRequest.reason":         {n: maxReasonLen},
	"signet.admin.v1.SetEntryStateRequest.id":           {n: maxEntryIDLen},
	"signet.admin.v1.SetEntryStateRequest.action":       {n: maxKeywordLen},
	"signet.admin.v1.SetEntryStateRequest.reason":       {n: maxReasonLen},
	"signet.admin.v1.BatchCreateEntriesRequest.entries": {n: MaxBatchEntries},
	// Admin API: owners.
	"signet.admin.v1.Owner.name":                       {n: maxNameLen},
	"signet.admin.v1.Owner.display_name":               {n: maxNameLen},
	"signet.admin.v1.Owner.kind":                       {n: maxKeywordLen},
	"signet.admin.v1.Owner.team":                       {n: maxNameLen},
	"signet.admin.v1.Owner.created_by":                 {n: maxActorLen},
	"signet.admin.v1.Owner.offboarded_by":              {n: maxActorLen},
	"signet.admin.v1.Owner.reassigned_to":              {n: maxNameLen},
	"signet.admin.v1.GetOwnerRequest.name":             {n: maxNameLen},
	"signet.admin.v1.OffboardOwnerRequest.owner":       {n: maxNameLen},
	"signet.admin.v1.OffboardOwnerRequest.reassign_to": {n: maxNameLen},
	"signet.admin.v1.OffboardOwnerRequest.reason":      {n: maxReasonLen},
	// Admin API: ledger, audit, reviews.
	"signet.admin.v1.QueryLedgerRequest.owner":         {n: maxNameLen},
	"signet.admin.v1.QueryLedgerRequest.spiffe_id":     {n: maxIDLen},
	"signet.admin.v1.QueryLedgerRequest.entry_id":      {n: maxEntryIDLen},
	"signet.admin.v1.QueryLedgerRequest.agent":         {n: maxIDLen},
	"signet.admin.v1.QueryLedgerRequest.cursor":        {n: maxCursorLen},
	"signet.admin.v1.QueryLedgerRequest.serial":        {n: maxSerialLen},
	"signet.admin.v1.LookupCredentialRequest.data":     {n: credential.MaxInput},
	"signet.admin.v1.ListAuditRequest.actor":           {n: maxActorLen},
	"signet.admin.v1.ListAuditRequest.object":          {n: maxIDLen},
	"signet.admin.v1.ListAuditRequest.action":          {n: maxKeywordLen},
	"signet.admin.v1.SignReviewRequest.reviewer":       {n: maxNameLen},
	"signet.admin.v1.SignReviewRequest.entry_ids":      {n: MaxBatchEntries, each: maxEntryIDLen},
	"signet.admin.v1.SignReviewRequest.decision":       {n: maxKeywordLen},
	"signet.admin.v1.SignReviewRequest.note":           {n: maxReasonLen},
	"signet.admin.v1.CreateJoinTokenRequest.owner":     {n: maxNameLen},
	"signet.admin.v1.CreateJoinTokenRequest.spiffe_id": {n: maxIDLen},
	// Admin API: agents.
	"signet.admin.v1.GetAgentRequest.id":   {n: maxIDLen},
	"signet.admin.v1.EvictAgentRequest.id": {n: maxIDLen},
	"signet.admin.v1.BanAgentRequest.id":   {n: maxIDLen},
}

// checkRequest refuses a request with a field beyond its bound in requestBounds, naming the field (with
// its path, e.g. "requests[3].entry_id"). Every handler calls it first, before anything is logged.
func checkRequest(m proto.Message) error {
	return checkMessage(m.ProtoReflect(), "")
}

func checkMessage(m protoreflect.Message, path string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := path + string(fd.Name())
		isMsg := fd.Kind() == protoreflect.MessageKind
		b, ok := requestBounds[fd.FullName()]
		if !ok && needsBound(fd) {
			err = fmt.Errorf("%s: %w: a field this server does not accept", name, ErrInvalidArgument)
			return false
		}
		switch {
		case fd.IsList():
			l := v.List()
			if l.Len() > b.n {
				err = fmt.Errorf("%s: %w: %d values, at most %d", name, ErrInvalidArgument, l.Len(), b.n)
				return false
			}
			for i := 0; i < l.Len() && err == nil; i++ {
				el := fmt.Sprintf("%s[%d]", name, i)
				if isMsg {
					err = checkMessage(l.Get(i).Message(), el+".")
				} else {
					err = checkLen(el, fd, l.Get(i), b.each)
				}
			}
		case isMsg:
			err = checkMessage(v.Message(), name+".")
		default:
			err = checkLen(name, fd, v, b.n)
		}
		return err == nil
	})
	return err
}

// needsBound reports whether fd must have an entry in requestBounds: strings, bytes and lists.
func needsBound(fd protoreflect.FieldDescriptor) bool {
	return fd.IsList() || fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind
}

// checkLen bounds a string or bytes value (other scalars need no bound).
func checkLen(name string, fd protoreflect.FieldDescriptor, v protoreflect.Value, n int) error {
	var l int
	switch fd.Kind() {
	case protoreflect.StringKind:
		l = len(v.String())
	case protoreflect.BytesKind:
		l = len(v.Bytes())
	default:
		return nil
	}
	if l > n {
		return fmt.Errorf("%s: %w: %d bytes, at most %d", name, ErrInvalidArgument, l, n)
	}
	return nil
}
