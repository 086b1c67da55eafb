package main

import (
	"errors"
	"fmt"
	"os"

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

// dialAdmin connects to the admin API on a Unix socket.
func dialAdmin(path string) (adminv1.AdminClient, func(), error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("admin socket %s does not exist: is 'signet dev' or 'signet server' running? (set --admin-socket or SIGNET_ADMIN_SOCKET)", path)
		}
		return nil, nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return adminv1.NewAdminClient(conn), func() { conn.Close() }, nil
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
