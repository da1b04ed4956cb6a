// Command sipfed is a federated SIP system: each domain runs its own
// registrar and proxy (sipfed serve); calls between domains are routed
// through DNS (RFC 3263), and media flows between the endpoints directly.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
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
		"phone":   {"a softphone: register, call URI, or answer", runPhone},
		"demo":    {"two domains, DNS, phones and a call on this machine (make run)", runDemo},
		"user":    {"manage users and their aliases (add|del|list|import|alias)", runUser},
		"version": {"print the version, VCS revision and Go version (also --version)", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: sipfed <command> [flags] [args]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'sipfed <command> --help' for a command's flags.")
}

func main() {
	e := osEnv()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run executes one sipfed command line and returns the exit status: 0, 1
// for a failure, 2 for a command-line mistake (a usageError). Commands
// return their errors without their name; run prints each one once,
// prefixed with "sipfed <command>: ".
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, "sipfed: missing command\n\n")
		usage(e.stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return 0
	case "-version", "--version":
		name = "version"
	}
	cmd, ok := commands()[name]
	if !ok {
		if strings.HasPrefix(name, "-") {
			fmt.Fprintf(e.stderr, "sipfed: flag provided but not defined: --%s\n\n", strings.TrimLeft(name, "-"))
		} else {
			fmt.Fprintf(e.stderr, "sipfed: unknown command %q\n\n", name)
		}
		usage(e.stderr)
		return 2
	}
	err := cmd.run(ctx, e, args[1:])
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		msg := err.Error()
		if !strings.HasSuffix(msg, "(see --help)") {
			msg += " (see --help)"
		}
		fmt.Fprintf(e.stderr, "sipfed %s: %s\n", name, msg)
		return 2
	}
	fmt.Fprintf(e.stderr, "sipfed %s: %v\n", name, err)
	return 1
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const versionUsage = `Usage: sipfed version (or sipfed --version)

Prints one line: sipfed, the module version, the VCS revision (12 hex
digits, +dirty for uncommitted changes) and the Go version it was built
with.`

// runVersion is `sipfed version`.
func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", versionUsage)
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprintln(e.stdout, versionLine(bi, ok))
	return nil
}

// versionLine formats the build information as
// "sipfed VERSION REVISION[+dirty] GOVERSION", with "(devel)" and
// "unknown" for what the binary does not record (a build without VCS
// stamping, or a test binary).
func versionLine(bi *debug.BuildInfo, ok bool) string {
	b := readBuild(bi, ok)
	return fmt.Sprintf("sipfed %s %s%s %s", b.version, b.revision, b.dirty, b.goVersion)
}

// serverHeader is the Server header sipfed serve sends: "sipfed/VERSION",
// the revision standing in for a version a build does not record.
func serverHeader(bi *debug.BuildInfo, ok bool) string {
	b := readBuild(bi, ok)
	switch {
	case b.version != "(devel)":
		return "sipfed/" + b.version
	case b.revision != "unknown":
		return "sipfed/" + b.revision + b.dirty
	}
	return "sipfed"
}

type build struct{ version, revision, dirty, goVersion string }

func readBuild(bi *debug.BuildInfo, ok bool) build {
	b := build{version: "(devel)", revision: "unknown", goVersion: runtime.Version()}
	if ok && bi != nil {
		if bi.Main.Version != "" {
			b.version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			b.goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
				if len(b.revision) > 12 {
					b.revision = b.revision[:12]
				}
			case "vcs.modified":
				if s.Value == "true" {
					b.dirty = "+dirty"
				}
			}
		}
	}
	return b
}
