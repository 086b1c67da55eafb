package agentapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/groupcommit"
	"github.com/signet-id/signet/storage"
)

// Bounds of one delivery report (agentv1.ReportDeliveries); a report past them is refused whole with
// InvalidArgument naming the field. Agents send at most these.
const (
	MaxDeliveriesPerReport     = 1000
	MaxDeliveryCredentialIDLen = 128  // an X.509 serial is at most 40 hex digits; a JWT ID 32
	MaxDeliveryPathLen         = 1024 // agents truncate longer executable paths
	MaxDeliverySHA256PrefixLen = 64   // a whole SHA-256 digest in hex
)

// DeliveryRecorder group-commits agents' delivery reports (see groupcommit): reports arriving while a
// batch commits go into the next Raft command together, up to two full reports' rows (about 300 KB of
// protobuf for typical rows) per command.
type DeliveryRecorder struct {
	g *groupcommit.Committer[storage.Delivery]
}

// NewDeliveryRecorder returns a recorder writing to store; call Run to start it.
func NewDeliveryRecorder(store *storage.Store) *DeliveryRecorder {
	propose := func(ds []storage.Delivery) groupcommit.Proposal { return store.ProposeDeliveries(ds) }
	return &DeliveryRecorder{g: groupcommit.New("record deliveries", 2*MaxDeliveriesPerReport, 2, propose)}
}

// Record commits ds and returns once they are durable.
func (r *DeliveryRecorder) Record(ctx context.Context, ds []storage.Delivery) error {
	return r.g.Submit(ctx, ds)
}

// Run gathers and commits reports until ctx ends.
func (r *DeliveryRecorder) Run(ctx context.Context) { r.g.Run(ctx) }

// ReportDeliveries records which workloads the calling agent handed its credentials to. Deliveries
// naming a credential not issued through this agent (unknown, pruned, another agent's) are dropped;
// the response says how many were recorded.
func (s *AgentService) ReportDeliveries(ctx context.Context, req *agentv1.ReportDeliveriesRequest) (*agentv1.ReportDeliveriesResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, apierr.ToStatus(err)
	}
	caller, err := s.cfg.Authenticate(ctx)
	if err != nil {
		return nil, apierr.ToStatus(err)
	}
	agent := caller.AgentID.String()
	ds, err := deliveriesFromAgent(agent, req.GetDeliveries())
	if err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("report deliveries: %w", err))
	}
	kept, err := s.issuedThrough(ctx, agent, ds)
	if err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("report deliveries: %w", err))
	}
	if dropped := len(ds) - len(kept); dropped > 0 {
		s.log.Info("dropped deliveries naming no credential issued through the agent", "agent", agent, "dropped", dropped)
	}
	if s.cfg.Deliveries != nil {
		err = s.cfg.Deliveries.Record(ctx, kept)
	} else {
		_, err = s.cfg.Store.RecordDeliveries(ctx, kept)
	}
	if err != nil {
		return nil, apierr.ToStatus(fmt.Errorf("report deliveries: %w", err))
	}
	return &agentv1.ReportDeliveriesResponse{Recorded: uint32(len(kept))}, nil
}

// issuedThrough returns the deliveries of ds naming a credential issued through agent. Checked here to
// answer the agent; the state machine checks again when it applies them. A follower answers an
// issuance once the leader has committed its record, before it has applied the record itself (see
// storage's route), and the credential may have been issued through another server: if any is not
// found here, one read barrier brings this server up to every acknowledged issuance and the missing
// ones are looked up again (at most one barrier per report). A failed barrier fails the report (the
// agent sends it again), as the write after it would.
func (s *AgentService) issuedThrough(ctx context.Context, agent string, ds []storage.Delivery) ([]storage.Delivery, error) {
	kept := ds[:0]
	var missing []storage.Delivery
	for _, d := range ds {
		rec, err := s.cfg.Store.LookupIssuance(d.CredentialID)
		switch {
		case err == nil && rec.Agent == agent:
			kept = append(kept, d)
		case errors.Is(err, storage.ErrIssuanceNotFound):
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return kept, nil
	}
	if err := s.cfg.Store.ReadBarrier(ctx); err != nil {
		return nil, fmt.Errorf("%d credentials not known to this server yet: %w", len(missing), err)
	}
	for _, d := range missing {
		if rec, err := s.cfg.Store.LookupIssuance(d.CredentialID); err == nil && rec.Agent == agent {
			kept = append(kept, d)
		}
	}
	return kept, nil
}

// deliveriesFromAgent validates a report against the bounds above.
func deliveriesFromAgent(agent string, in []*agentv1.Delivery) ([]storage.Delivery, error) {
	if len(in) > MaxDeliveriesPerReport {
		return nil, fmt.Errorf("deliveries: %d in one report, at most %d: %w", len(in), MaxDeliveriesPerReport, apierr.ErrInvalidArgument)
	}
	out := make([]storage.Delivery, 0, len(in))
	for i, d := range in {
		field := func(name string) string { return fmt.Sprintf("deliveries[%d].%s", i, name) }
		c := d.GetCaller()
		switch {
		case d.GetCredentialId() == "" || len(d.GetCredentialId()) > MaxDeliveryCredentialIDLen:
			return nil, fmt.Errorf("%s: %d bytes, want 1 to %d: %w", field("credential_id"), len(d.GetCredentialId()), MaxDeliveryCredentialIDLen, apierr.ErrInvalidArgument)
		case c == nil:
			return nil, fmt.Errorf("%s is required: %w", field("caller"), apierr.ErrInvalidArgument)
		case len(c.GetPath()) > MaxDeliveryPathLen:
			return nil, fmt.Errorf("%s: %d bytes, at most %d: %w", field("caller.path"), len(c.GetPath()), MaxDeliveryPathLen, apierr.ErrInvalidArgument)
		case len(c.GetSha256Prefix()) > MaxDeliverySHA256PrefixLen:
			return nil, fmt.Errorf("%s: %d bytes, at most %d: %w", field("caller.sha256_prefix"), len(c.GetSha256Prefix()), MaxDeliverySHA256PrefixLen, apierr.ErrInvalidArgument)
		case d.GetCount() == 0:
			return nil, fmt.Errorf("%s: must be at least 1: %w", field("count"), apierr.ErrInvalidArgument)
		case d.GetFirstDelivered() <= 0 || d.GetLastDelivered() < d.GetFirstDelivered():
			return nil, fmt.Errorf("%s and last_delivered: want 0 < first_delivered <= last_delivered (unix nanoseconds): %w", field("first_delivered"), apierr.ErrInvalidArgument)
		}
		out = append(out, storage.Delivery{CredentialID: d.GetCredentialId(), Agent: agent, Count: d.GetCount(),
			FirstAt: time.Unix(0, d.GetFirstDelivered()).UTC(), LastAt: time.Unix(0, d.GetLastDelivered()).UTC(),
			Caller: storage.Caller{UID: c.GetUid(), GID: c.GetGid(), PID: c.GetPid(), StartTime: c.GetStartTime(),
				Path: c.GetPath(), SHA256: c.GetSha256Prefix()}})
	}
	return out, nil
}
