// Command stepca runs a step-ca authority (github.com/smallstep/certificates) from a ca.json, for the
// upstream authority tests (internal/testkit.StartStepCA). It is a module of its own: step-ca v0.30.2
// needs older versions of go.step.sm/crypto and go-jose than Signet uses.
package main

import (
	"fmt"
	"os"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/ca"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stepca <ca.json>")
		os.Exit(2)
	}
	cfg, err := config.LoadConfiguration(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepca:", err)
		os.Exit(1)
	}
	authority, err := ca.New(cfg, ca.WithQuiet(true))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepca:", err)
		os.Exit(1)
	}
	if err := authority.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "stepca:", err)
		os.Exit(1)
	}
}
