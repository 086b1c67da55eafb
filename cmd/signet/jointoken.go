package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// joinTokenEnv is the environment variable the agent takes a join token from. The agent removes it from
// its environment once read, so the processes it starts do not inherit it.
const joinTokenEnv = "SIGNET_JOIN_TOKEN"

// maxJoinTokenInput bounds what is read from a join-token file or stdin. A token is far shorter (the
// server refuses one over 256 bytes); the bound only keeps a wrong file from being read whole.
const maxJoinTokenInput = 4096

// joinTokenSources are the three ways to hand the agent a join token; at most one may be used.
type joinTokenSources struct {
	flag    string // --join-token: deprecated, the token is in argv
	flagSet bool
	file    string // --join-token-file: a path, or "-" for stdin
}

// resolve returns the join token from the one source given ("" if none), reading the environment
// variable (and removing it) and the file or stdin. A token given with --join-token is moved out of the
// process's command line first (see scrubJoinTokenArg); warn receives the deprecation notice.
func (s joinTokenSources) resolve(stdin io.Reader, warn io.Writer) (string, error) {
	// An empty variable counts as unset (Environment=SIGNET_JOIN_TOKEN= in a unit, say).
	env := os.Getenv(joinTokenEnv)
	envSet := env != ""
	if err := os.Unsetenv(joinTokenEnv); err != nil {
		return "", fmt.Errorf("%s: remove from the environment: %w", joinTokenEnv, err)
	}
	var given []string
	if s.flagSet {
		given = append(given, "--join-token")
	}
	if s.file != "" {
		given = append(given, "--join-token-file")
	}
	if envSet {
		given = append(given, joinTokenEnv)
	}
	if len(given) > 1 {
		return "", usagef("join token given by %s: give it exactly one way (--join-token-file FILE, --join-token-file - for stdin, or %s)", strings.Join(given, " and "), joinTokenEnv)
	}
	switch {
	case s.flagSet:
		fmt.Fprintf(warn, "signet: warning: --join-token puts the token in the command line, which every local user can read in /proc/<pid>/cmdline; use --join-token-file FILE (mode 0600), --join-token-file - (stdin) or %s instead\n", joinTokenEnv)
		tok, err := checkJoinToken("--join-token", s.flag)
		if err != nil {
			return "", err
		}
		scrubJoinTokenArg(tok, warn)
		return tok, nil
	case envSet:
		return checkJoinToken(joinTokenEnv, env)
	case s.file == "-":
		tok, err := readJoinToken(stdin)
		if err != nil {
			return "", fmt.Errorf("--join-token-file -: read stdin: %w", err)
		}
		return checkJoinToken("--join-token-file - (stdin)", tok)
	case s.file != "":
		tok, err := readJoinTokenFile(s.file)
		if err != nil {
			return "", err
		}
		return checkJoinToken("--join-token-file "+s.file, tok)
	}
	return "", nil
}

// readJoinTokenFile reads a token from a regular file that only its owner may access: a token readable
// by others is as exposed as one in argv, so such a file is refused rather than warned about.
func readJoinTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--join-token-file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--join-token-file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("--join-token-file %s: not a regular file (use - to read the token from stdin)", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--join-token-file %s: mode %04o lets group or others access the token: chmod 600 %s", path, perm, path)
	}
	tok, err := readJoinToken(f)
	if err != nil {
		return "", fmt.Errorf("--join-token-file %s: %w", path, err)
	}
	return tok, nil
}

// readJoinToken reads the first line of r, at most maxJoinTokenInput bytes.
func readJoinToken(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxJoinTokenInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if len(line) >= maxJoinTokenInput && !strings.HasSuffix(line, "\n") {
		return "", fmt.Errorf("longer than %d bytes: not a join token", maxJoinTokenInput)
	}
	return strings.TrimSpace(line), nil
}

// checkJoinToken refuses an empty token or one with spaces or control characters; the server checks
// the rest of its format.
func checkJoinToken(source, tok string) (string, error) {
	if tok == "" {
		return "", usagef("%s: the join token is empty (create one with 'signet token create --owner NAME')", source)
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", usagef("%s: the join token contains spaces or control characters: give the token exactly as 'signet token create' printed it", source)
	}
	return tok, nil
}

// scrubJoinTokenArg takes the token given with --join-token out of the process's command line, which
// every local user can read in /proc/<pid>/cmdline: the process re-executes itself (same pid) without
// the flag, with the token in its environment instead, readable only by its own user and root. Go's
// os.Args cannot be rewritten in place, and prctl(PR_SET_MM_ARG_START) needs CAP_SYS_RESOURCE, so exec is
// the way that works for every user. It returns only if that is not possible; warn then says so.
func scrubJoinTokenArg(tok string, warn io.Writer) {
	args, ok := argsWithoutJoinToken(os.Args, tok)
	if !ok {
		fmt.Fprintln(warn, "signet: warning: could not take the join token out of the command line; it stays visible while the agent runs")
		return
	}
	env := append(os.Environ(), joinTokenEnv+"="+tok)
	err := syscall.Exec("/proc/self/exe", args, env)
	fmt.Fprintf(warn, "signet: warning: could not take the join token out of the command line (re-exec: %v); it stays visible while the agent runs\n", err)
}

// argsWithoutJoinToken returns args without --join-token and its value, and whether the token is then
// gone from every argument (it is not if, say, it was also given to another flag).
func argsWithoutJoinToken(args []string, tok string) ([]string, bool) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case i > 0 && a == "--":
			out = append(out, args[i:]...)
			i = len(args)
		case i > 0 && a == "--join-token" && i+1 < len(args):
			i++
		case i > 0 && strings.HasPrefix(a, "--join-token="):
		default:
			out = append(out, a)
		}
	}
	for _, a := range out {
		if strings.Contains(a, tok) {
			return nil, false
		}
	}
	return out, true
}
