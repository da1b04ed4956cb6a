package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// env is what a command sees of the process: its streams and environment.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func osEnv() *env {
	return &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
}

// flagSet is a flag.FlagSet that also takes flags after positional
// arguments (as kubectl and docker do), and fills every flag not given on
// the command line from SIPFED_<NAME> in the environment, then from the
// --config file (a YAML map whose keys are the flag names).
type flagSet struct {
	*flag.FlagSet
	usage  string
	config *string
}

func newFlagSet(e *env, name, usage string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("sipfed "+name, flag.ContinueOnError), usage: usage}
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\nFlags (each also SIPFED_<NAME> in the environment", strings.TrimSpace(fs.usage))
		if fs.config != nil {
			fmt.Fprint(out, " and a key of the --config file")
		}
		fmt.Fprint(out, "):\n")
		fs.PrintDefaults()
	}
	return fs
}

// withConfig adds --config FILE.
func (fs *flagSet) withConfig() {
	fs.config = fs.String("config", "", "YAML `file` whose keys are flag names (flags and SIPFED_* win over it)")
}

// errHelp is returned by parse after printing help on --help.
var errHelp = errors.New("help shown")

// parse parses args, interleaved flags and positionals, then fills unset
// flags from the environment and the config file. It returns the
// positional arguments.
func (fs *flagSet) parse(e *env, args []string) ([]string, error) {
	var pos []string
	for {
		fs.SetOutput(io.Discard)
		err := fs.Parse(args)
		fs.SetOutput(e.stderr)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return nil, errHelp
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w (see --help)", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var bad []string
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		key := "SIPFED_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := e.getenv(key); v != "" {
			if err := setAll(f, strings.Split(v, ",")); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q: %v", key, v, err))
			}
			set[f.Name] = true
		}
	})
	if fs.config != nil && *fs.config != "" {
		if err := fs.loadConfig(*fs.config, set); err != nil {
			return nil, err
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s: %s", fs.Name(), strings.Join(bad, "; "))
	}
	return pos, nil
}

func setAll(f *flag.Flag, vals []string) error {
	for _, v := range vals {
		if err := f.Value.Set(strings.TrimSpace(v)); err != nil {
			return err
		}
	}
	return nil
}

func (fs *flagSet) loadConfig(path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return fmt.Errorf("config %s: unknown key %q (keys are the flag names of %s)", path, k, fs.Name())
		}
		if set[k] {
			continue
		}
		var vals []string
		switch v := m[k].(type) {
		case []any:
			for _, x := range v {
				vals = append(vals, fmt.Sprint(x))
			}
		case nil:
			continue
		default:
			vals = []string{fmt.Sprint(v)}
		}
		if err := setAll(f, vals); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// listFlag is a repeatable string flag that also takes comma-separated
// lists (as the environment and the config file do). Values given replace
// the default rather than adding to it.
type listFlag struct {
	vals []string
	set  bool
}

func newListFlag(defaults ...string) *listFlag { return &listFlag{vals: defaults} }

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.vals, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return errors.New("empty value")
		}
		l.vals = append(l.vals, part)
	}
	return nil
}
