package server

import (
	"context"
	"fmt"
	"os/user"
	"slices"
	"strconv"

	"github.com/signet-id/signet/internal/peercred"
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
