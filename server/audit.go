package server

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/signet-id/signet/internal/peercred"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc"
)

// auditor appends refused requests to the audit log. Appending is itself a Raft write; a failure to
// record is logged but does not change the answer the caller gets.
type auditor struct {
	store *storage.Store
	log   *slog.Logger
}

func (a auditor) denied(ctx context.Context, actor, action, object string, err error) {
	if actor == "" {
		actor = "unknown"
	}
	rec := storage.AuditRecord{Time: time.Now(), Actor: actor, Action: action, Object: object, Outcome: storage.AuditDenied, Reason: err.Error()}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if aerr := a.store.AppendAudit(actx, rec); aerr != nil {
		a.log.Error("could not record a refused request in the audit log", "action", action, "actor", actor, "error", aerr)
	}
}

// callerName names the peer of a Unix-socket call for the audit log when it could not be authenticated.
func callerName(ctx context.Context) string {
	if p, ok := peercred.FromContext(ctx); ok {
		return "uid:" + itoa(int(p.UID))
	}
	return "unknown"
}

func itoa(i int) string { return strconv.Itoa(i) }

// method names the RPC being served (for the audit log), e.g. "admin.CreateEntry".
func method(ctx context.Context) string {
	m, ok := grpc.Method(ctx)
	if !ok {
		return "admin"
	}
	for i := len(m) - 1; i >= 0; i-- {
		if m[i] == '/' {
			return "admin." + m[i+1:]
		}
	}
	return m
}

// authenticate identifies the admin; a refusal is recorded in the audit log.
func (s *AdminService) authenticate(ctx context.Context) (string, error) {
	admin, err := s.cfg.Authenticate(ctx)
	if err != nil {
		s.audit.denied(ctx, callerName(ctx), method(ctx), "", err)
	}
	return admin, err
}
