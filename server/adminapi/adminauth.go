package adminapi

import (
	"context"
	"fmt"
	"os/user"
	"slices"
	"strconv"

	"github.com/signet-id/signet/internal/peercred"
	"google.golang.org/grpc"
)

// UnixAdminAuth authorizes admin calls arriving on a Unix socket by the caller's uid: only the listed
// uids (typically root and the uid the server runs as) may administer. The admin is named
// "uid:1000(alice)" in entries and logs. The socket's own 0600 mode is the first line of defence; this
// check is the second.
func UnixAdminAuth(allowed ...uint32) AdminAuthenticator {
	return func(ctx context.Context) (string, error) {
		p, ok := peercred.FromContext(ctx)
		if !ok {
			return "", fmt.Errorf("admin API: %w: caller credentials unavailable", ErrUnauthenticated)
		}
		if !slices.Contains(allowed, p.UID) {
			return "", fmt.Errorf("admin API: %w: uid %d is not an admin of this server", ErrPermissionDenied, p.UID)
		}
		name := "uid:" + strconv.FormatUint(uint64(p.UID), 10)
		if u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10)); err == nil {
			name += "(" + u.Username + ")"
		}
		return name, nil
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
		s.audit.Denied(ctx, callerName(ctx), method(ctx), "", err)
	}
	return admin, err
}
