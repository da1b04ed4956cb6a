// Command sipfed is a federated SIP system: each domain runs its own
// registrar and proxy (sipfed serve); calls between domains are routed
// through DNS (RFC 3263), and media flows between the endpoints directly.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of sipfed.
type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands lists the subcommands; wired here, not from init().
func commands() map[string]command {
	return map[string]command{
		"resolve": {"print the RFC 3263 targets for a SIP URI", runResolve},
		"dns":     {"serve lab DNS zones (NAPTR, SRV, A) for tests", runDNS},
		"serve":   {"run a domain's registrar and proxy", runServe},
		"user":    {"add, delete and list users (add|del|list)", runUser},
	}
}

func usage(e *env) {
	fmt.Fprintln(e.stdout, "Usage: sipfed <command> [flags] [args]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(e.stdout, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(e.stdout, "\nRun 'sipfed <command> --help' for a command's flags.")
}

func main() {
	e := osEnv()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run executes one sipfed command line and returns the exit status.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(e)
		return 0
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(e.stderr, "sipfed: unknown command %q\n", strings.TrimLeft(name, "-"))
		usage(e)
		return 2
	}
	if err := cmd.run(ctx, e, args[1:]); err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(e.stderr, "sipfed %s: %v\n", name, err)
			return 2
		}
		fmt.Fprintf(e.stderr, "sipfed %s: %v\n", name, err)
		return 1
	}
	return 0
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }
