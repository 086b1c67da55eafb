// Command signet is the Signet workload identity issuer: one binary for the server, the node agent,
// dev mode, and the admin and Workload API client commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (refused by the server, I/O error, …)
	exitUsage   = 2 // the command line is wrong
)

// usageError marks an error in the command line itself (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// version is the release version, set at build time: go build -ldflags "-X main.version=v1.2.3" (the
// Makefile sets it from git describe). Empty means: take it from the build information.
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], buildVersion(version))
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, version string) int {
	root := newRootCmd()
	root.Version = version
	root.SetVersionTemplate("signet {{.Version}}\n")
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "signet: "+err.Error())
	var ue usageError
	// cobra reports an unknown top-level command with an untyped error.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "signet",
		Short: "Signet: short-lived, attested, owned workload identities (SPIFFE)",
		Long: `Signet issues SPIFFE X.509-SVIDs and JWT-SVIDs to workloads through the standard Workload API,
and records every issuance against the owner of the registration entry that allowed it.

Start a one-process dev instance with 'signet dev', then fetch an identity with 'signet svid fetch'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(
		newDevCmd(),
		newServerCmd(),
		newAgentCmd(),
		newTokenCmd(),
		newHealthcheckCmd(),
		newSVIDCmd(),
		newJWTCmd(),
		newEntryCmd(),
		newOwnerCmd(),
		newBundleCmd(),
		newLedgerCmd(),
		newReviewCmd(),
		newAuditCmd(),
		newClusterCmd(),
		newSnapshotCmd(),
		newPolicyCmd(),
		newCACmd(),
		newFederationCmd(),
	)
	root.SetHelpCommand(newHelpCmd())
	// cobra adds 'completion' lazily; add it now so that an unknown shell is a usage error too.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Args, c.RunE = cobra.ArbitraryArgs, runGroup
		}
	}
	return root
}

// newHelpCmd is 'signet help [command]'; an unknown topic is a usage error (exit 2), not a help page.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				return usagef("unknown help topic %q (see 'signet --help' for the commands)", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (see '%s --help')", cmd.CommandPath(), what, cmd.CommandPath())
		}
		return nil
	}
}

// noArgs accepts no arguments. On a command that also has subcommands (agent, review), an argument is
// most likely a mistyped subcommand and is reported as such.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 0 && cmd.HasAvailableSubCommands() {
		return unknownCommand(cmd, args[0])
	}
	if len(args) != 0 {
		return usagef("%s takes no arguments, got %q (see '%s --help')", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}

// newGroupCmd is a command that only holds subcommands: without one it prints its help; with an unknown
// one it is a usage error (exit 2), not a silent help page.
func newGroupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE:  runGroup,
	}
}

// runGroup runs a command that only holds subcommands.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(cmd, args[0])
	}
	return cmd.Help()
}

func unknownCommand(cmd *cobra.Command, name string) error {
	return usagef("unknown command %q for %q (see '%s --help')", name, cmd.CommandPath(), cmd.CommandPath())
}

// buildVersion is the version to print: the one set at build time, else the module version and VCS
// revision Go recorded in the binary ("(devel)" for a build from a source tree).
func buildVersion(set string) string {
	if set != "" {
		return set
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev != "" {
		v += " (" + rev[:min(12, len(rev))] + modified + ")"
	}
	return v + " " + info.GoVersion
}
