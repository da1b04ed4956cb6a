package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// runCLI runs one sipfed command line with the given environment
// variables and returns the exit status and the two streams.
func runCLI(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
	code = run(context.Background(), e, args)
	return code, out.String(), errOut.String()
}

// TestEnvValuesKeptWhole checks that a SIPFED_* variable fills a single
// value flag whole, commas included (a Sentinel URL, a secret), while list
// flags still take comma-separated lists.
func TestEnvValuesKeptWhole(t *testing.T) {
	const sentinel = "redis+sentinel://h1:26379,h2:26379/mymaster"
	vars := map[string]string{
		"SIPFED_STORE":  sentinel,
		"SIPFED_SECRET": "a,b",
		"SIPFED_DOMAIN": "a.test, b.test",
		"SIPFED_LISTEN": "udp:127.0.0.1:5060",
	}
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(k string) string { return vars[k] }}
	fs := newFlagSet(e, "x", "")
	store := fs.String("store", "memory", "")
	secret := fs.String("secret", "", "")
	domains, listen := newListFlag(), newListFlag("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060")
	fs.Var(domains, "domain", "")
	fs.Var(listen, "listen", "")
	if _, err := fs.parse(e, nil); err != nil {
		t.Fatal(err)
	}
	if *store != sentinel || *secret != "a,b" {
		t.Errorf("store %q, secret %q: want them whole", *store, *secret)
	}
	if strings.Join(domains.vals, " ") != "a.test b.test" || strings.Join(listen.vals, " ") != "udp:127.0.0.1:5060" {
		t.Errorf("domains %q, listen %q: list flags should split on commas and replace their default", domains.vals, listen.vals)
	}
}

// TestConfigListOnlyForListFlags checks the --config rule that matches the
// environment's: a YAML list fills a list flag, a scalar with commas fills
// a single value flag whole, and a list for a single value flag is an
// error naming the key.
func TestConfigListOnlyForListFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, good, "store: redis+sentinel://h1,h2/m\ndomain: [a.test, b.test]\n")
	writeFile(t, bad, "store: [redis://h1, redis://h2]\n")
	newFS := func() (*flagSet, *string, *listFlag, *env) {
		e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
		fs := newFlagSet(e, "x", "")
		fs.withConfig()
		store := fs.String("store", "memory", "")
		domains := newListFlag()
		fs.Var(domains, "domain", "")
		return fs, store, domains, e
	}
	fs, store, domains, e := newFS()
	if _, err := fs.parse(e, []string{"--config", good}); err != nil {
		t.Fatal(err)
	}
	if *store != "redis+sentinel://h1,h2/m" || strings.Join(domains.vals, " ") != "a.test b.test" {
		t.Errorf("store %q, domains %q", *store, domains.vals)
	}
	fs, _, _, e = newFS()
	_, err := fs.parse(e, []string{"--config", bad})
	if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), "store: a list, but --store takes one value") {
		t.Errorf("list for --store: %v (%T), want a usage error naming the key", err, err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// prefixRE matches "sipfed:" and "sipfed <command>...:" as messages begin.
var prefixRE = regexp.MustCompile(`sipfed(?: [a-z-]+)*:`)

// singleDashRE matches a flag written with one dash.
var singleDashRE = regexp.MustCompile(`(?:^|[\s'"(])-[a-zA-Z]`)

// TestUsageErrorsExit2 drives every command-line mistake of every command
// through run: each exits 2, writes nothing on stdout, and names the
// command exactly once on stderr, with flags written with two dashes.
// None of them gets as far as listening or connecting.
func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	cfg := func(name, text string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, text)
		return p
	}
	badKey := cfg("badkey.yaml", "bogus: 1\n")
	configKey := cfg("configkey.yaml", "config: other.yaml\n")
	listForOne := cfg("list.yaml", "family: [ipv4, ipv6]\n")
	mapValue := cfg("map.yaml", "family: {a: b}\n")
	badValue := cfg("badvalue.yaml", "timeout: soon\n")
	badYAML := cfg("bad.yaml", "dns: [a\n")
	users := filepath.Join(dir, "users.txt")
	const uri = "sip:bob@b.test"
	for _, c := range []struct {
		cmd  string // the command the message names: "sipfed <cmd>:", or "sipfed:" for ""
		args []string
		vars map[string]string
		want string
	}{
		// main.go
		{"", nil, nil, "missing command"},
		{"", []string{"frob"}, nil, `unknown command "frob"`},
		{"", []string{"--bogus"}, nil, "flag provided but not defined: --bogus"},
		{"", []string{"-bogus"}, nil, "flag provided but not defined: --bogus"},
		{"version", []string{"version", "extra"}, nil, `unexpected arguments ["extra"]`},
		{"version", []string{"--version", "--bogus"}, nil, "flag provided but not defined: --bogus (see --help)"},

		// cli.go: flags, variables and config files (through resolve)
		{"resolve", []string{"resolve", "--bogus", uri}, nil, "flag provided but not defined: --bogus (see --help)"},
		{"resolve", []string{"resolve", uri, "-bogus"}, nil, "flag provided but not defined: --bogus"},
		{"resolve", []string{"resolve", "--timeout", "soon", uri}, nil, `invalid value "soon" for flag --timeout`},
		{"resolve", []string{"resolve", "--json=maybe", uri}, nil, `invalid boolean value "maybe" for --json`},
		{"resolve", []string{"resolve", uri, "--timeout"}, nil, "flag needs an argument: --timeout"},
		{"resolve", []string{"resolve", "---timeout", "1s", uri}, nil, "bad flag syntax: ---timeout"},
		{"resolve", []string{"resolve", "--transport", "udp,,tcp", uri}, nil, `invalid value "udp,,tcp" for flag --transport: empty value`},
		{"resolve", []string{"resolve", uri}, map[string]string{"SIPFED_TIMEOUT": "soon"}, `SIPFED_TIMEOUT="soon" (--timeout)`},
		{"resolve", []string{"resolve", uri}, map[string]string{"SIPFED_TRANSPORT": "udp,,tcp"}, `SIPFED_TRANSPORT="udp,,tcp" (--transport): empty value`},
		{"resolve", []string{"resolve", uri, "--config", badKey}, nil, `unknown key "bogus"`},
		{"resolve", []string{"resolve", uri, "--config", configKey}, nil, `unknown key "config"`},
		{"resolve", []string{"resolve", uri, "--config", listForOne}, nil, "family: a list, but --family takes one value"},
		{"resolve", []string{"resolve", uri, "--config", mapValue}, nil, "family: want a single value"},
		{"resolve", []string{"resolve", uri, "--config", badValue}, nil, `timeout: "soon"`},
		{"resolve", []string{"resolve", uri, "--config", badYAML}, nil, "yaml"},

		// resolve.go
		{"resolve", []string{"resolve"}, nil, "want one SIP URI"},
		{"resolve", []string{"resolve", "a@a.test", "b@b.test"}, nil, "want one SIP URI"},
		{"resolve", []string{"resolve", "--family", "ipv5", uri}, nil, `--family "ipv5"`},
		{"resolve", []string{"resolve", "--timeout", "0s", uri}, nil, "--timeout 0s"},
		{"resolve", []string{"resolve", "sip:bob@b.test:port"}, nil, "is not a SIP URI"},
		{"resolve", []string{"resolve", "bob@"}, nil, "has no host"},
		{"resolve", []string{"resolve", "--transport", "carrier-pigeon", uri}, nil, `"carrier-pigeon"`},

		// dns.go
		{"dns", []string{"dns"}, nil, "--zone FILE is required"},
		{"dns", []string{"dns", "--zone", "a.zone", "extra"}, nil, `unexpected arguments ["extra"]`},
		{"dns", []string{"dns", "--bogus"}, nil, "--bogus"},

		// user.go
		{"user", []string{"user"}, nil, "missing subcommand"},
		{"user", []string{"user", "frob"}, nil, `unknown subcommand "frob"`},
		{"user", []string{"user", "list", "a.test", "b.test", "--users", users}, nil, "too many arguments"},
		{"user", []string{"user", "add", "--users", users, "--password-stdin"}, nil, "missing the user's AOR"},
		{"user", []string{"user", "del", "alice", "--users", users}, nil, "invalid address of record"},
		{"user", []string{"user", "add", "a@a.test", "b@a.test", "--users", users}, nil, "several AORs need --password-stdin"},
		{"user", []string{"user", "add", "a@a.test", "--users", users}, nil, "stdin is not a terminal: use --password-stdin"},
		{"user", []string{"user", "list", "--users", "redis"}, nil, "--users redis needs --store"},
		{"user", []string{"user", "list"}, map[string]string{"SIPFED_STORE": "h2:26379/mymaster"}, "--store: "},
		{"user", []string{"user", "list", "--password-stdin"}, nil, "flag provided but not defined: --password-stdin"},

		// serve.go (messages are serve's own; flag parsing is cli.go's)
		{"serve", []string{"serve", "--bogus"}, nil, "flag provided but not defined: --bogus (see --help)"},
		{"serve", []string{"serve", "--domain", "a.test"}, map[string]string{"SIPFED_MAX_CONTACTS": "many"}, "SIPFED_MAX_CONTACTS"},
		{"serve", []string{"serve"}, nil, "--domain"},
		{"serve", []string{"serve", "--timer-c", "1ms", "--domain", "a.test"}, nil, "--timer-c"},
		{"serve", []string{"serve", "--log-level", "loud", "--domain", "a.test"}, nil, "--log-level"},
		{"serve", []string{"serve", "--domain", "a.test", "extra-arg"}, nil, "extra-arg"},
		{"serve", []string{"serve", "--listen", "sctp:1.2.3.4:5", "--domain", "a.test"}, nil, "sctp"},
		{"serve", []string{"serve", "--store", "bogus", "--domain", "a.test"}, nil, "store"},
	} {
		code, stdout, stderr := runCLI(t, c.vars, c.args...)
		prefix := "sipfed " + c.cmd + ":"
		if c.cmd == "" {
			prefix = "sipfed:"
		}
		prefixes := prefixRE.FindAllString(stderr, -1)
		switch {
		case code != 2:
			t.Errorf("%q: exit %d, want 2\n%s", c.args, code, stderr)
		case stdout != "":
			t.Errorf("%q: wrote on stdout: %s", c.args, stdout)
		case len(prefixes) != 1 || prefixes[0] != prefix || !strings.HasPrefix(stderr, prefix+" "):
			t.Errorf("%q: stderr names the command as %q, want %q once, first:\n%s", c.args, prefixes, prefix, stderr)
		case !strings.Contains(stderr, c.want):
			t.Errorf("%q: stderr lacks %q:\n%s", c.args, c.want, stderr)
		case singleDashRE.MatchString(stderr):
			t.Errorf("%q: a flag with one dash:\n%s", c.args, stderr)
		}
	}
}

// TestHelpFlagsHaveTwoDashes checks the flags printer: two dashes, the
// type, the usage on the next line and the default unless it is zero; and
// that every command's --help uses it.
func TestHelpFlagsHaveTwoDashes(t *testing.T) {
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	fs := newFlagSet(e, "x", "Usage: sipfed x")
	fs.withConfig()
	fs.String("store", "memory", "location `store`")
	fs.String("secret", "", "nonce secret")
	fs.Int("max-contacts", 10, "most bindings")
	fs.Int("zero", 0, "an int")
	fs.Bool("json", false, "print JSON")
	fs.Duration("timeout", 2*time.Second, "how long")
	fs.Var(newListFlag("udp", "tcp"), "transport", "transports (repeatable)")
	fs.Var(newListFlag(), "zone", "zone `file`")
	fs.help(&out)
	want := `Usage: sipfed x

Flags (each also SIPFED_<NAME> in the environment and a key of the --config file):
  --config file
    YAML file whose keys are flag names (flags and SIPFED_* win over it)
  --json
    print JSON
  --max-contacts int
    most bindings (default 10)
  --secret string
    nonce secret
  --store store
    location store (default "memory")
  --timeout duration
    how long (default 2s)
  --transport value
    transports (repeatable) (default udp,tcp)
  --zero int
    an int
  --zone file
    zone file
`
	if out.String() != want {
		t.Errorf("help:\n%s\nwant:\n%s", out.String(), want)
	}

	for _, args := range [][]string{{"serve", "--help"}, {"resolve", "--help"}, {"dns", "-h"}, {"user", "add", "--help"}, {"user", "list", "--help"}, {"version", "--help"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage: sipfed "+args[0]) {
			t.Errorf("%q: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
		for _, l := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") {
				t.Errorf("%q: flag with one dash: %q", args, l)
			}
		}
	}
}

// TestVersionLine checks the version line for builds with and without VCS
// information.
func TestVersionLine(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, c := range []struct {
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}, Settings: vcs("0123456789abcdef0123", "false")}, true, "sipfed v1.2.0 0123456789ab go1.26.8"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef0123", "true")}, true, "sipfed (devel) 0123456789ab+dirty go1.26.8"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, "sipfed (devel) unknown go1.26.8"},
		{&debug.BuildInfo{}, true, "sipfed (devel) unknown " + runtime.Version()},
		{nil, false, "sipfed (devel) unknown " + runtime.Version()},
	} {
		if got := versionLine(c.bi, c.ok); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || strings.Count(stdout, "\n") != 1 || len(strings.Fields(stdout)) != 4 || !strings.HasPrefix(stdout, "sipfed ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	if _, stdout, _ := runCLI(t, nil, "--help"); !strings.Contains(stdout, "  version ") {
		t.Errorf("usage does not list version:\n%s", stdout)
	}
}
