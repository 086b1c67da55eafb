package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/signet-id/signet/internal/uds"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// adminFlag adds --admin-socket to an admin command.
func adminFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "admin-socket", defaultAdminSocket(), "admin API socket of the server (env SIGNET_ADMIN_SOCKET)")
}

// openAdmin checks the -o value and connects to the admin API: the start of every admin command.
func openAdmin(socket, output string) (adminv1.AdminClient, func(), error) {
	if err := checkOutput(output); err != nil {
		return nil, nil, err
	}
	return dialAdmin(socket)
}

// adminSocketOwnerEnv names one more user (name or uid) whose admin socket the admin commands trust,
// besides root and the user running them: the user the server runs as, when an admin runs as root.
const adminSocketOwnerEnv = "SIGNET_ADMIN_SOCKET_OWNER"

// adminSocketHint is what to do when there is no admin socket to talk to.
const adminSocketHint = "is 'signet dev' or 'signet server' running? (set --admin-socket or SIGNET_ADMIN_SOCKET)"

// adminProbeTimeout bounds the connection dialAdmin makes to check the socket before the RPCs.
const adminProbeTimeout = 5 * time.Second

// dialAdmin connects to the admin API on a Unix socket, once checkAdminSocket trusts it.
func dialAdmin(path string) (adminv1.AdminClient, func(), error) {
	conn, err := dialAdminConn(path)
	if err != nil {
		return nil, nil, err
	}
	return adminv1.NewAdminClient(conn), func() { conn.Close() }, nil
}

// dialAdminConn is dialAdmin's connection, for the other services on the admin socket.
func dialAdminConn(path string) (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminProbeTimeout)
	defer cancel()
	if err := checkAdminSocket(ctx, path); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return conn, nil
}

// checkAdminSocket refuses an admin socket that may not be the server's (see trustAdminSocket), then
// connects once so that a permission error or a socket nothing serves is reported as such.
func checkAdminSocket(ctx context.Context, path string) error {
	fi, err := statSocket(path, "admin socket", adminSocketHint)
	if err != nil {
		return err
	}
	if err := trustAdminSocket(path, fi); err != nil {
		return err
	}
	return probeSocket(ctx, path, fi, "admin socket", adminSocketHint)
}

// trustAdminSocket refuses an admin socket owned by anyone but root, the user running the command, or
// $SIGNET_ADMIN_SOCKET_OWNER. Admin commands send entries, approvals and reasons, and print what the
// server returns (bundles, tokens), so talking to a socket another local user planted would hand them
// both.
func trustAdminSocket(path string, fi fs.FileInfo) error {
	owner := uds.Owner(fi)
	if owner == 0 || owner == uint32(os.Geteuid()) {
		return nil
	}
	if name := os.Getenv(adminSocketOwnerEnv); name != "" {
		uid, err := lookupUID(name)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", adminSocketOwnerEnv, name, err)
		}
		if uid == owner {
			return nil
		}
	}
	return fmt.Errorf("admin socket %s is owned by %s, not by root or you (%s): it may not be your server's, so signet will not talk to it; if the server runs as that user, set %s=%s",
		path, uds.DescribeUser(owner), uds.DescribeUser(uint32(os.Geteuid())), adminSocketOwnerEnv, userOrUID(owner))
}

// lookupUID resolves a user name or a numeric uid.
func lookupUID(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("no such user: give a user name or a uid")
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %s has uid %q: %w", name, u.Uid, err)
	}
	return uint32(n), nil
}

// userOrUID is the user name of uid, or the number if it has none.
func userOrUID(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// rpcError turns a gRPC error into a message that says what failed and what to do.
func rpcError(op string, err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch s.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%s: server unavailable: %s (is it running?)", op, s.Message())
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("%s: not allowed: %s", op, s.Message())
	default:
		return fmt.Errorf("%s: %s", op, s.Message())
	}
}

// adminCall is what an admin command does once connected: call the API and print (or fail with an
// error that rpcError already shaped).
type adminCall func(cmd *cobra.Command, c adminv1.AdminClient, args []string, output string) error

// newAdminCmd builds an admin command with --admin-socket and -o, connecting before run.
func newAdminCmd(use, short, example string, args cobra.PositionalArgs, run adminCall) *cobra.Command {
	var admin, output string
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    args,
		RunE: func(cmd *cobra.Command, a []string) error {
			client, closeFn, err := openAdmin(admin, output)
			if err != nil {
				return err
			}
			defer closeFn()
			return run(cmd, client, a, output)
		},
	}
	adminFlag(cmd, &admin)
	outputFlag(cmd, &output)
	return cmd
}
