package adminapi

import (
	"github.com/signet-id/signet/credential"
	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/storage"
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
	// maxKeyIDLen bounds signing key IDs (a JWT kid is at most 128 characters; an X.509 key ID is the
	// hex of a Subject Key Identifier).
	maxKeyIDLen = 128
	// maxUpdateMask bounds the paths of one update; maxPendingRules the policy rules an entry names.
	maxUpdateMask   = 32
	maxPendingRules = 64
)

// fieldBound bounds one field of a request: n is the most bytes of a string or bytes field, or the
// most values of a repeated field; each is the most bytes of one value of a repeated string field.
type fieldBound struct{ n, each int }

// requestBounds is the table of bounds of the admin API (agentapi has the agent API's): every string,
// bytes and repeated field of every request message (nested messages included), by its full protobuf
// name. A field missing here is refused (TestRequestBoundsCoverEveryField keeps the table complete).
var requestBounds = map[protoreflect.FullName]fieldBound{
	// Admin API: audit (a SHA-256 in hex).
	"signet.admin.v1.VerifyAuditRequest.checkpoint_hash": {n: 64},
	// Admin API: the entry policy.
	"signet.admin.v1.SetPolicyRequest.rules":   {n: policy.MaxRules},
	"signet.admin.v1.SetPolicyRequest.reason":  {n: maxReasonLen},
	"signet.admin.v1.PolicyRule.name":          {n: maxNameLen},
	"signet.admin.v1.PolicyRule.description":   {n: policy.MaxDescriptionBytes},
	"signet.admin.v1.PolicyRule.deny_unless":   {n: policy.MaxExpressionBytes},
	"signet.admin.v1.PolicyRule.approval_when": {n: policy.MaxExpressionBytes},
	// Admin API: CA keys.
	"signet.admin.v1.RotateCARequest.reason":  {n: maxReasonLen},
	"signet.admin.v1.RotateCARequest.node":    {n: maxNameLen},
	"signet.admin.v1.RevokeKeyRequest.key_id": {n: maxKeyIDLen},
	"signet.admin.v1.RevokeKeyRequest.reason": {n: maxReasonLen},
	// Admin API: federation.
	"signet.admin.v1.CreateFederationRequest.trust_domain":        {n: 255},
	"signet.admin.v1.CreateFederationRequest.bundle_endpoint_url": {n: 2048},
	"signet.admin.v1.CreateFederationRequest.profile":             {n: maxKeywordLen},
	"signet.admin.v1.CreateFederationRequest.endpoint_spiffe_id":  {n: maxIDLen},
	"signet.admin.v1.CreateFederationRequest.bundle":              {n: storage.MaxFederatedBundleBytes},
	"signet.admin.v1.CreateFederationRequest.reason":              {n: maxReasonLen},
	"signet.admin.v1.GetFederationRequest.trust_domain":           {n: 255},
	"signet.admin.v1.DeleteFederationRequest.trust_domain":        {n: 255},
	"signet.admin.v1.DeleteFederationRequest.reason":              {n: maxReasonLen},
	"signet.admin.v1.RefreshFederationRequest.trust_domain":       {n: 255},
	// Admin API: snapshots.
	"signet.admin.v1.RestoreSnapshotRequest.chunk": {n: SnapshotChunkSize},
	"signet.admin.v1.SnapshotHeader.trust_domain":  {n: 255},
	"signet.admin.v1.SnapshotHeader.sha256":        {n: 32},
	"signet.admin.v1.SnapshotHeader.node":          {n: maxNameLen},
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
	"signet.admin.v1.Entry.federates_with":              {n: MaxFederatesWith, each: 255},
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
	"signet.admin.v1.QueryLedgerRequest.signed_by":     {n: maxKeyIDLen},
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
func checkRequest(m proto.Message) error { return apierr.CheckRequest(m, RequestBound) }

// RequestBound is the bound of the admin API's request field name: the most bytes of a string or bytes
// field (n) or values of a repeated one, and the most bytes of each value of a repeated string field.
func RequestBound(name protoreflect.FullName) (n, each int, ok bool) {
	b, ok := requestBounds[name]
	return b.n, b.each, ok
}
