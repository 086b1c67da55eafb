package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// exampleLines returns the signet command lines of a command's --help examples, each split into
// arguments (double quotes group words; a trailing backslash continues the line). Pipelines are split
// at '|' and redirections dropped; runnable reports whether a line is a plain command with no shell
// syntax and no "…" placeholder, so it can be run as it is.
func exampleLines(cmd *cobra.Command) (lines [][]string, runnable []bool) {
	text := strings.ReplaceAll(cmd.Example, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.Trim(strings.TrimSpace(line), "()"))
		plain := !strings.ContainsAny(line, "|<>;$`…")
		for _, seg := range strings.Split(line, "|") {
			seg = strings.TrimSpace(seg)
			if strings.HasPrefix(seg, "umask ") {
				_, seg, _ = strings.Cut(seg, "; ")
			}
			if !strings.HasPrefix(seg, "signet ") {
				continue
			}
			if i := strings.IndexAny(seg, "<>"); i >= 0 {
				seg = seg[:i]
			}
			lines = append(lines, splitWords(strings.TrimPrefix(seg, "signet ")))
			runnable = append(runnable, plain)
		}
	}
	return lines, runnable
}

// splitWords splits s at spaces outside double quotes.
func splitWords(s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestHelpExamplesParse: every signet command line in every command's --help examples names a real
// command and only flags it has, with valid values.
func TestHelpExamplesParse(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		lines, _ := exampleLines(c)
		for _, args := range lines {
			n++
			root := newRootCmd()
			found, rest, err := root.Find(args)
			if err != nil || found == root {
				t.Errorf("%s --help example %q: no such command (%v)", c.CommandPath(), args, err)
				continue
			}
			if err := found.ParseFlags(rest); err != nil {
				t.Errorf("%s --help example %q: %v", c.CommandPath(), args, err)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	if n < 20 {
		t.Fatalf("only %d example lines found: the example parser is broken", n)
	}
}

// TestHelpExamplesRun: the runnable examples of these commands succeed against a dev instance in which
// the owner they name exists.
func TestHelpExamplesRun(t *testing.T) {
	p := startDev(t, newDevDirs(t))
	p.mustCLI("owner", "add", "alice")
	root := newRootCmd()
	for _, path := range [][]string{{"token", "create"}, {"entry", "create"}, {"entry", "list"}, {"token", "list"}} {
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		lines, runnable := exampleLines(cmd)
		ran := 0
		for i, args := range lines {
			if runnable[i] {
				p.mustCLI(args...)
				ran++
			}
		}
		if ran == 0 && cmd.Example != "" {
			t.Fatalf("%s: no runnable example in %q", cmd.CommandPath(), cmd.Example)
		}
	}
}
