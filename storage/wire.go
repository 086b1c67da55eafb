package storage

import (
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	"github.com/signet-id/signet/selector"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Conversions between the storage package's Go types and their wire messages in proto/raftv1, the form
// commands take in the Raft log. Every field is converted explicitly: a field added to a Go type is not
// replicated until its wire message has it (and the command carrying it has a new type number).
// Decoding is deterministic: every replica turns the same bytes into the same values (times in UTC,
// empty lists as nil).

func timeToWire(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromWire(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func metaToWire(m auditMeta) *raftv1.AuditMeta {
	return &raftv1.AuditMeta{Actor: m.Actor, Time: timeToWire(m.Time), Reason: m.Reason}
}

func metaFromWire(m *raftv1.AuditMeta) auditMeta {
	return auditMeta{Actor: m.GetActor(), Time: timeFromWire(m.GetTime()), Reason: m.GetReason()}
}

func selectorsToWire(ss []selector.Selector) []*raftv1.Selector {
	out := make([]*raftv1.Selector, len(ss))
	for i, s := range ss {
		out[i] = &raftv1.Selector{Type: s.Type, Value: s.Value}
	}
	return nilIfEmpty(out)
}

func selectorsFromWire(ss []*raftv1.Selector) []selector.Selector {
	out := make([]selector.Selector, len(ss))
	for i, s := range ss {
		out[i] = selector.Selector{Type: s.GetType(), Value: s.GetValue()}
	}
	return nilIfEmpty(out)
}

func ownerToWire(o Owner) *raftv1.Owner {
	return &raftv1.Owner{Name: o.Name, DisplayName: o.DisplayName, Kind: o.Kind, Team: o.Team,
		CreatedAt: timeToWire(o.CreatedAt), CreatedBy: o.CreatedBy, Offboarded: o.Offboarded,
		OffboardedAt: timeToWire(o.OffboardedAt), OffboardedBy: o.OffboardedBy, ReassignedTo: o.ReassignedTo}
}

func ownerFromWire(o *raftv1.Owner) Owner {
	return Owner{Name: o.GetName(), DisplayName: o.GetDisplayName(), Kind: o.GetKind(), Team: o.GetTeam(),
		CreatedAt: timeFromWire(o.GetCreatedAt()), CreatedBy: o.GetCreatedBy(), Offboarded: o.GetOffboarded(),
		OffboardedAt: timeFromWire(o.GetOffboardedAt()), OffboardedBy: o.GetOffboardedBy(), ReassignedTo: o.GetReassignedTo()}
}

func entryToWire(e Entry) *raftv1.Entry {
	return &raftv1.Entry{Id: e.ID, SpiffeId: e.SPIFFEID, ParentId: e.ParentID, Selectors: selectorsToWire(e.Selectors),
		Owner: e.Owner, Purpose: e.Purpose, X509TtlNs: int64(e.X509TTL), JwtTtlNs: int64(e.JWTTTL),
		DnsNames: nilIfEmpty(e.DNSNames), ExpiresAt: timeToWire(e.ExpiresAt), NeverExpires: e.NeverExpires,
		Ticket: e.Ticket, JwtUnique: e.JWTUnique, Prefetch: e.Prefetch, CreatedAt: timeToWire(e.CreatedAt), CreatedBy: e.CreatedBy,
		Disabled: e.Disabled, DisabledAt: timeToWire(e.DisabledAt), DisabledBy: e.DisabledBy, DisabledReason: e.DisabledReason,
		Pending: e.Pending, PendingRules: nilIfEmpty(e.PendingRules), ApprovedBy: e.ApprovedBy, ApprovedAt: timeToWire(e.ApprovedAt),
		UpdatedAt: timeToWire(e.UpdatedAt), UpdatedBy: e.UpdatedBy, UpdateReason: e.UpdateReason, Revision: e.Revision,
		FederatesWith: nilIfEmpty(e.FederatesWith)}
}

func entryFromWire(e *raftv1.Entry) Entry {
	return Entry{ID: e.GetId(), SPIFFEID: e.GetSpiffeId(), ParentID: e.GetParentId(), Selectors: selectorsFromWire(e.GetSelectors()),
		Owner: e.GetOwner(), Purpose: e.GetPurpose(), X509TTL: time.Duration(e.GetX509TtlNs()), JWTTTL: time.Duration(e.GetJwtTtlNs()),
		DNSNames: nilIfEmpty(e.GetDnsNames()), ExpiresAt: timeFromWire(e.GetExpiresAt()), NeverExpires: e.GetNeverExpires(),
		Ticket: e.GetTicket(), JWTUnique: e.GetJwtUnique(), Prefetch: e.GetPrefetch(), CreatedAt: timeFromWire(e.GetCreatedAt()), CreatedBy: e.GetCreatedBy(),
		Disabled: e.GetDisabled(), DisabledAt: timeFromWire(e.GetDisabledAt()), DisabledBy: e.GetDisabledBy(), DisabledReason: e.GetDisabledReason(),
		Pending: e.GetPending(), PendingRules: nilIfEmpty(e.GetPendingRules()), ApprovedBy: e.GetApprovedBy(), ApprovedAt: timeFromWire(e.GetApprovedAt()),
		UpdatedAt: timeFromWire(e.GetUpdatedAt()), UpdatedBy: e.GetUpdatedBy(), UpdateReason: e.GetUpdateReason(), Revision: e.GetRevision(),
		FederatesWith: nilIfEmpty(e.GetFederatesWith())}
}

func entriesToWire(es []Entry) []*raftv1.Entry {
	out := make([]*raftv1.Entry, len(es))
	for i := range es {
		out[i] = entryToWire(es[i])
	}
	return nilIfEmpty(out)
}

func entriesFromWire(es []*raftv1.Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = entryFromWire(e)
	}
	return nilIfEmpty(out)
}

func authorityToWire(a Authority) *raftv1.Authority {
	return &raftv1.Authority{Kind: string(a.Kind), Id: a.ID, Der: nilIfEmpty(a.DER), NotAfter: timeToWire(a.NotAfter),
		Node: a.Node, AddedAt: timeToWire(a.AddedAt)}
}

func authorityFromWire(a *raftv1.Authority) Authority {
	return Authority{Kind: AuthorityKind(a.GetKind()), ID: a.GetId(), DER: nilIfEmpty(a.GetDer()), NotAfter: timeFromWire(a.GetNotAfter()),
		Node: a.GetNode(), AddedAt: timeFromWire(a.GetAddedAt())}
}

func tokenToWire(t JoinToken) *raftv1.JoinToken {
	return &raftv1.JoinToken{Id: t.ID, SecretHash: nilIfEmpty(t.SecretHash), Owner: t.Owner, SpiffeId: t.SPIFFEID,
		ExpiresAt: timeToWire(t.ExpiresAt), CreatedAt: timeToWire(t.CreatedAt), CreatedBy: t.CreatedBy,
		UsedAt: timeToWire(t.UsedAt), UsedBy: t.UsedBy, Revoked: t.Revoked}
}

func tokenFromWire(t *raftv1.JoinToken) JoinToken {
	return JoinToken{ID: t.GetId(), SecretHash: nilIfEmpty(t.GetSecretHash()), Owner: t.GetOwner(), SPIFFEID: t.GetSpiffeId(),
		ExpiresAt: timeFromWire(t.GetExpiresAt()), CreatedAt: timeFromWire(t.GetCreatedAt()), CreatedBy: t.GetCreatedBy(),
		UsedAt: timeFromWire(t.GetUsedAt()), UsedBy: t.GetUsedBy(), Revoked: t.GetRevoked()}
}

func agentToWire(a Agent) *raftv1.Agent {
	return &raftv1.Agent{Id: a.ID, AttestationType: a.AttestationType, Selectors: selectorsToWire(a.Selectors), Owner: a.Owner,
		TokenId: a.TokenID, Serial: a.Serial, PrevSerial: a.PrevSerial, SvidExpiresAt: timeToWire(a.SVIDExpiresAt),
		AttestedAt: timeToWire(a.AttestedAt), RenewedAt: timeToWire(a.RenewedAt), Banned: a.Banned,
		BannedAt: timeToWire(a.BannedAt), BannedBy: a.BannedBy}
}

func agentFromWire(a *raftv1.Agent) Agent {
	return Agent{ID: a.GetId(), AttestationType: a.GetAttestationType(), Selectors: selectorsFromWire(a.GetSelectors()), Owner: a.GetOwner(),
		TokenID: a.GetTokenId(), Serial: a.GetSerial(), PrevSerial: a.GetPrevSerial(), SVIDExpiresAt: timeFromWire(a.GetSvidExpiresAt()),
		AttestedAt: timeFromWire(a.GetAttestedAt()), RenewedAt: timeFromWire(a.GetRenewedAt()), Banned: a.GetBanned(),
		BannedAt: timeFromWire(a.GetBannedAt()), BannedBy: a.GetBannedBy()}
}

func auditRecordToWire(r AuditRecord) *raftv1.AuditRecord {
	return &raftv1.AuditRecord{Seq: r.Seq, Time: timeToWire(r.Time), Actor: r.Actor, Action: r.Action, Object: r.Object,
		Outcome: r.Outcome, Reason: r.Reason, Before: nilIfEmpty(r.Before), After: nilIfEmpty(r.After), PrevHash: r.PrevHash, Hash: r.Hash}
}

func auditRecordFromWire(r *raftv1.AuditRecord) AuditRecord {
	return AuditRecord{Seq: r.GetSeq(), Time: timeFromWire(r.GetTime()), Actor: r.GetActor(), Action: r.GetAction(), Object: r.GetObject(),
		Outcome: r.GetOutcome(), Reason: r.GetReason(), Before: nilIfEmpty(r.GetBefore()), After: nilIfEmpty(r.GetAfter()),
		PrevHash: r.GetPrevHash(), Hash: r.GetHash()}
}

func reviewToWire(r Review) *raftv1.Review {
	ds := make([]*raftv1.ReviewDecision, len(r.Decisions))
	for i, d := range r.Decisions {
		ds[i] = &raftv1.ReviewDecision{EntryId: d.EntryID, Decision: d.Decision, Note: d.Note}
	}
	return &raftv1.Review{Id: r.ID, Reviewer: r.Reviewer, SignedBy: r.SignedBy, SignedAt: timeToWire(r.SignedAt), Decisions: nilIfEmpty(ds)}
}

func reviewFromWire(r *raftv1.Review) Review {
	ds := make([]ReviewDecision, len(r.GetDecisions()))
	for i, d := range r.GetDecisions() {
		ds[i] = ReviewDecision{EntryID: d.GetEntryId(), Decision: d.GetDecision(), Note: d.GetNote()}
	}
	return Review{ID: r.GetId(), Reviewer: r.GetReviewer(), SignedBy: r.GetSignedBy(), SignedAt: timeFromWire(r.GetSignedAt()), Decisions: nilIfEmpty(ds)}
}

// Commands.

func (c ownerCreateCmd) wire() *raftv1.OwnerCreate {
	return &raftv1.OwnerCreate{Owner: ownerToWire(c.Owner), Meta: metaToWire(c.Meta), IfMissing: c.IfMissing}
}

func ownerCreateFromWire(m *raftv1.OwnerCreate) ownerCreateCmd {
	return ownerCreateCmd{Owner: ownerFromWire(m.GetOwner()), Meta: metaFromWire(m.GetMeta()), IfMissing: m.GetIfMissing()}
}

func (c entryCreateCmd) wire() *raftv1.EntryCreate {
	return &raftv1.EntryCreate{Entry: entryToWire(c.Entry), Meta: metaToWire(c.Meta)}
}

func entryCreateFromWire(m *raftv1.EntryCreate) entryCreateCmd {
	return entryCreateCmd{Entry: entryFromWire(m.GetEntry()), Meta: metaFromWire(m.GetMeta())}
}

func (c entryBatchCmd) wire() *raftv1.EntryBatchCreate {
	return &raftv1.EntryBatchCreate{Entries: entriesToWire(c.Entries), Meta: metaToWire(c.Meta)}
}

func entryBatchFromWire(m *raftv1.EntryBatchCreate) entryBatchCmd {
	return entryBatchCmd{Entries: entriesFromWire(m.GetEntries()), Meta: metaFromWire(m.GetMeta())}
}

func (c entryDeleteCmd) wire() *raftv1.EntryDelete {
	return &raftv1.EntryDelete{Id: c.ID, Meta: metaToWire(c.Meta)}
}

func entryDeleteFromWire(m *raftv1.EntryDelete) entryDeleteCmd {
	return entryDeleteCmd{ID: m.GetId(), Meta: metaFromWire(m.GetMeta())}
}

func (c authorityPutCmd) wire() *raftv1.AuthorityPut {
	return &raftv1.AuthorityPut{Authority: authorityToWire(c.Authority), Meta: metaToWire(c.Meta)}
}

func authorityPutFromWire(m *raftv1.AuthorityPut) authorityPutCmd {
	return authorityPutCmd{Authority: authorityFromWire(m.GetAuthority()), Meta: metaFromWire(m.GetMeta())}
}

func (c authorityRemoveCmd) wire() *raftv1.AuthorityRemove {
	return &raftv1.AuthorityRemove{Kind: string(c.Kind), Id: c.ID, Node: c.Node, Meta: metaToWire(c.Meta)}
}

func authorityRemoveFromWire(m *raftv1.AuthorityRemove) authorityRemoveCmd {
	return authorityRemoveCmd{Kind: AuthorityKind(m.GetKind()), ID: m.GetId(), Node: m.GetNode(), Meta: metaFromWire(m.GetMeta())}
}

func (c tokenCreateCmd) wire() *raftv1.TokenCreate {
	return &raftv1.TokenCreate{Token: tokenToWire(c.Token), Meta: metaToWire(c.Meta)}
}

func tokenCreateFromWire(m *raftv1.TokenCreate) tokenCreateCmd {
	return tokenCreateCmd{Token: tokenFromWire(m.GetToken()), Meta: metaFromWire(m.GetMeta())}
}

func (c agentAttestCmd) wire() *raftv1.AgentAttest {
	return &raftv1.AgentAttest{TokenId: c.TokenID, Now: timeToWire(c.Now), Agent: agentToWire(c.Agent), LedgerBatch: nilIfEmpty(c.Ledger)}
}

func agentAttestFromWire(m *raftv1.AgentAttest) agentAttestCmd {
	return agentAttestCmd{TokenID: m.GetTokenId(), Now: timeFromWire(m.GetNow()), Agent: agentFromWire(m.GetAgent()), Ledger: nilIfEmpty(m.GetLedgerBatch())}
}

func (c agentAttestNodeCmd) wire() *raftv1.AgentAttestNode {
	return &raftv1.AgentAttestNode{Now: timeToWire(c.Now), Agent: agentToWire(c.Agent), LedgerBatch: nilIfEmpty(c.Ledger), Reason: c.Reason}
}

func agentAttestNodeFromWire(m *raftv1.AgentAttestNode) agentAttestNodeCmd {
	return agentAttestNodeCmd{Now: timeFromWire(m.GetNow()), Agent: agentFromWire(m.GetAgent()), Ledger: nilIfEmpty(m.GetLedgerBatch()),
		Reason: m.GetReason()}
}

func (c agentRenewCmd) wire() *raftv1.AgentRenew {
	return &raftv1.AgentRenew{Id: c.ID, PresentedSerial: c.PresentedSerial, Serial: c.Serial,
		SvidExpiresAt: timeToWire(c.SVIDExpiresAt), Now: timeToWire(c.Now), LedgerBatch: nilIfEmpty(c.Ledger)}
}

func agentRenewFromWire(m *raftv1.AgentRenew) agentRenewCmd {
	return agentRenewCmd{ID: m.GetId(), PresentedSerial: m.GetPresentedSerial(), Serial: m.GetSerial(),
		SVIDExpiresAt: timeFromWire(m.GetSvidExpiresAt()), Now: timeFromWire(m.GetNow()), Ledger: nilIfEmpty(m.GetLedgerBatch())}
}

func (c agentEvictCmd) wire() *raftv1.AgentEvict {
	return &raftv1.AgentEvict{Id: c.ID, Meta: metaToWire(c.Meta)}
}

func agentEvictFromWire(m *raftv1.AgentEvict) agentEvictCmd {
	return agentEvictCmd{ID: m.GetId(), Meta: metaFromWire(m.GetMeta())}
}

func (c agentBanCmd) wire() *raftv1.AgentBan {
	return &raftv1.AgentBan{Id: c.ID, By: c.By, Now: timeToWire(c.Now)}
}

func agentBanFromWire(m *raftv1.AgentBan) agentBanCmd {
	return agentBanCmd{ID: m.GetId(), By: m.GetBy(), Now: timeFromWire(m.GetNow())}
}

func (c entryUpdateCmd) wire() *raftv1.EntryUpdate {
	return &raftv1.EntryUpdate{Entry: entryToWire(c.Entry), PrevRevision: c.PrevRevision, Meta: metaToWire(c.Meta)}
}

func entryUpdateFromWire(m *raftv1.EntryUpdate) entryUpdateCmd {
	return entryUpdateCmd{Entry: entryFromWire(m.GetEntry()), PrevRevision: m.GetPrevRevision(), Meta: metaFromWire(m.GetMeta())}
}

func (c entryStateCmd) wire() *raftv1.EntryState {
	return &raftv1.EntryState{Id: c.ID, Action: c.Action, Meta: metaToWire(c.Meta)}
}

func entryStateFromWire(m *raftv1.EntryState) entryStateCmd {
	return entryStateCmd{ID: m.GetId(), Action: m.GetAction(), Meta: metaFromWire(m.GetMeta())}
}

// An offboarding's Checked is nil when the proposer did not check the entries against the policy, and a
// (possibly empty) map when it did: policy_checked carries the difference.
func (c ownerOffboardCmd) wire() *raftv1.OwnerOffboard {
	return &raftv1.OwnerOffboard{Owner: c.Owner, Mode: c.Mode, To: c.To, Meta: metaToWire(c.Meta),
		PolicyChecked: c.Checked != nil, Checked: nilIfEmptyMap(c.Checked)}
}

func ownerOffboardFromWire(m *raftv1.OwnerOffboard) ownerOffboardCmd {
	c := ownerOffboardCmd{Owner: m.GetOwner(), Mode: m.GetMode(), To: m.GetTo(), Meta: metaFromWire(m.GetMeta())}
	if m.GetPolicyChecked() {
		c.Checked = make(map[string]uint64, len(m.GetChecked()))
		for id, rev := range m.GetChecked() {
			c.Checked[id] = rev
		}
	}
	return c
}

func nilIfEmptyMap(m map[string]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	return m
}

func (c auditAppendCmd) wire() *raftv1.AuditAppend {
	return &raftv1.AuditAppend{Record: auditRecordToWire(c.Record)}
}

func auditAppendFromWire(m *raftv1.AuditAppend) auditAppendCmd {
	return auditAppendCmd{Record: auditRecordFromWire(m.GetRecord())}
}

func (c ledgerPruneCmd) wire() *raftv1.LedgerPrune {
	return &raftv1.LedgerPrune{Before: timeToWire(c.Before), MaxBatches: int64(c.MaxBatches), MaxRecords: int64(c.MaxRecords)}
}

func ledgerPruneFromWire(m *raftv1.LedgerPrune) ledgerPruneCmd {
	return ledgerPruneCmd{Before: timeFromWire(m.GetBefore()), MaxBatches: int(m.GetMaxBatches()), MaxRecords: int(m.GetMaxRecords())}
}

func (c reviewSignCmd) wire() *raftv1.ReviewSign {
	return &raftv1.ReviewSign{Review: reviewToWire(c.Review), Meta: metaToWire(c.Meta)}
}

func reviewSignFromWire(m *raftv1.ReviewSign) reviewSignCmd {
	return reviewSignCmd{Review: reviewFromWire(m.GetReview()), Meta: metaFromWire(m.GetMeta())}
}

// unixNanoToWire and unixNanoFromWire carry a time as unix nanoseconds, the zero time as 0.
func unixNanoToWire(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func unixNanoFromWire(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func callerToWire(c Caller) *raftv1.Caller {
	return &raftv1.Caller{Uid: c.UID, Gid: c.GID, Pid: c.PID, StartTime: c.StartTime, Path: c.Path, Sha256Prefix: c.SHA256}
}

func callerFromWire(c *raftv1.Caller) Caller {
	return Caller{UID: c.GetUid(), GID: c.GetGid(), PID: c.GetPid(), StartTime: c.GetStartTime(), Path: c.GetPath(), SHA256: c.GetSha256Prefix()}
}

func deliveryToWire(d Delivery) *raftv1.Delivery {
	return &raftv1.Delivery{CredentialId: d.CredentialID, Agent: d.Agent, Caller: callerToWire(d.Caller),
		FirstAtUnixNs: unixNanoToWire(d.FirstAt), LastAtUnixNs: unixNanoToWire(d.LastAt), Count: d.Count, EntryId: d.EntryID}
}

func deliveryFromWire(d *raftv1.Delivery) Delivery {
	return Delivery{CredentialID: d.GetCredentialId(), Agent: d.GetAgent(), Caller: callerFromWire(d.GetCaller()),
		FirstAt: unixNanoFromWire(d.GetFirstAtUnixNs()), LastAt: unixNanoFromWire(d.GetLastAtUnixNs()), Count: d.GetCount(), EntryID: d.GetEntryId()}
}

func (c deliveryRecordCmd) wire() *raftv1.DeliveryRecord {
	out := make([]*raftv1.Delivery, len(c.Deliveries))
	for i := range c.Deliveries {
		out[i] = deliveryToWire(c.Deliveries[i])
	}
	return &raftv1.DeliveryRecord{Deliveries: nilIfEmpty(out)}
}

func deliveryRecordFromWire(m *raftv1.DeliveryRecord) deliveryRecordCmd {
	out := make([]Delivery, len(m.GetDeliveries()))
	for i, d := range m.GetDeliveries() {
		out[i] = deliveryFromWire(d)
	}
	return deliveryRecordCmd{Deliveries: nilIfEmpty(out)}
}
