package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
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

// newFlagSet returns the flags of `sipfed <name>`; usage is the text that
// --help prints above the flags. The flag package's own messages are
// silenced: parse returns every mistake as a usageError, which run prints
// once, and prints the help itself.
func newFlagSet(e *env, name, usage string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("sipfed "+name, flag.ContinueOnError), usage: usage}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// withConfig adds --config FILE.
func (fs *flagSet) withConfig() {
	fs.config = fs.String("config", "", "YAML `file` whose keys are flag names (flags and SIPFED_* win over it)")
}

// help writes the usage text and the flags, as --help shows them.
func (fs *flagSet) help(w io.Writer) {
	fmt.Fprintln(w, strings.TrimSpace(fs.usage))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nFlags (each also SIPFED_<NAME> in the environment")
	if fs.config != nil {
		fmt.Fprint(w, " and a key of the --config file")
	}
	fmt.Fprint(w, "):\n")
	fs.printDefaults(w)
}

// printDefaults is flag.PrintDefaults with two dashes, as the README and
// the error messages write flags: each flag as "  --name TYPE", then its
// usage on the next line, with the default when it is not the zero value.
func (fs *flagSet) printDefaults(w io.Writer) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		usage = strings.ReplaceAll(usage, "\n", "\n    ")
		if !isZeroValue(f) {
			def := f.DefValue
			if g, ok := f.Value.(flag.Getter); ok {
				if _, ok := g.Get().(string); ok {
					def = strconv.Quote(def)
				}
			}
			usage += " (default " + def + ")"
		}
		fmt.Fprintf(w, "%s\n    %s\n", line, usage)
	})
}

// isZeroValue reports whether f's default is its type's zero value, as
// the flag package decides it for PrintDefaults.
func isZeroValue(f *flag.Flag) (zero bool) {
	t := reflect.TypeOf(f.Value)
	if t.Kind() != reflect.Pointer {
		return f.DefValue == ""
	}
	defer func() {
		if recover() != nil {
			zero = false
		}
	}()
	return f.DefValue == reflect.New(t.Elem()).Interface().(flag.Value).String()
}

// errHelp is returned by parse after printing help on --help.
var errHelp = errors.New("help shown")

// parse parses args, interleaved flags and positionals, then fills unset
// flags from the environment and the config file. It returns the
// positional arguments. Every mistake in the flags, the variables or the
// config file's contents is a usageError, without the command's name (run
// adds it); a config file that cannot be read is a plain error.
//
// Only list flags (*listFlag) take comma-separated lists; every other flag
// gets a variable's value whole, so that URLs with host lists and secrets
// with commas survive.
func (fs *flagSet) parse(e *env, args []string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.help(e.stdout)
			return nil, errHelp
		}
		if err != nil {
			return nil, usageError{errors.New(twoDashes(err.Error()))}
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
		key := envName(f.Name)
		if v := e.getenv(key); v != "" {
			if err := f.Value.Set(v); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q (--%s): %v", key, v, f.Name, err))
			}
			set[f.Name] = true
		}
	})
	if len(bad) > 0 {
		return nil, usagef("%s", strings.Join(bad, "; "))
	}
	if fs.config != nil && *fs.config != "" {
		if err := fs.loadConfig(*fs.config, set); err != nil {
			return nil, err
		}
	}
	return pos, nil
}

// envName is the environment variable of flag name: SIPFED_NAME, upper
// case, with "-" turned into "_".
func envName(name string) string {
	return "SIPFED_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagDash matches the single dash the flag package puts before a flag's
// name in its error messages.
var flagDash = regexp.MustCompile(`^(flag provided but not defined: |flag needs an argument: |invalid value "(?:[^"\\]|\\.)*" for flag |invalid boolean value "(?:[^"\\]|\\.)*" for )-`)

// twoDashes rewrites a flag package error message to name the flag with
// two dashes.
func twoDashes(msg string) string {
	return flagDash.ReplaceAllString(msg, "${1}--")
}

// loadConfig sets the flags not in set from the YAML file at path. A YAML
// list is for list flags only; any other flag takes one scalar.
func (fs *flagSet) loadConfig(path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return usagef("--config %s: %v", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return usagef("--config %s: unknown key %q (the keys are the flag names, without dashes)", path, k)
		}
		if set[k] {
			continue
		}
		_, isList := f.Value.(*listFlag)
		var vals []string
		switch v := m[k].(type) {
		case nil:
			continue
		case []any:
			if !isList {
				return usagef("--config %s: %s: a list, but --%s takes one value", path, k, k)
			}
			for _, x := range v {
				if !isScalar(x) {
					return usagef("--config %s: %s: list items must be single values", path, k)
				}
				vals = append(vals, fmt.Sprint(x))
			}
		default:
			if !isScalar(v) {
				return usagef("--config %s: %s: want a single value or a list", path, k)
			}
			vals = []string{fmt.Sprint(v)}
		}
		for _, v := range vals {
			if err := f.Value.Set(v); err != nil {
				return usagef("--config %s: %s: %q: %v", path, k, v, err)
			}
		}
	}
	return nil
}

// isScalar reports whether a decoded YAML value is a single value, not a
// list or a map.
func isScalar(v any) bool {
	switch v.(type) {
	case []any, map[string]any, map[any]any:
		return false
	}
	return true
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

// Set adds the comma-separated values in v, replacing the default on the
// first call.
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
