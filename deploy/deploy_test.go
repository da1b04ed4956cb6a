package deploy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The binaries under test, built once by TestMain with CGO_ENABLED=0 as
// the Dockerfile builds them, in a folder any user may read (the smoke
// runs and --version run as the image's non-root uid).
var (
	sipfedBin  string
	healthzBin string
	binDir     string
)

// What `sipfed serve --help` and `sipfed user --help` say the binary
// accepts; filled by TestMain.
var (
	serveFlags cliFlags
	userHelp   string
	// configFromEnv: whether SIPFED_CONFIG names a config file. It does
	// not (cli.go skips "config" for the environment); asked of the
	// binary rather than assumed.
	configFromEnv bool
)

// imageUID is the uid the image runs as (the Dockerfile's USER), which
// the smoke runs use when the test runs as root.
const imageUID = 65532

func TestMain(m *testing.M) {
	code := 1
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "deploy test setup:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

func setup() error {
	var err error
	binDir, err = os.MkdirTemp("", "sipfed-deploy-")
	if err != nil {
		return err
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		return err
	}
	sipfedBin = filepath.Join(binDir, "sipfed")
	healthzBin = filepath.Join(binDir, "healthz")
	for out, pkg := range map[string]string{sipfedBin: "github.com/sipfed/sipfed/cmd/sipfed", healthzBin: "github.com/sipfed/sipfed/deploy/docker/healthz"} {
		build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", out, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	help, err := exec.Command(sipfedBin, "serve", "--help").Output()
	if err != nil {
		return fmt.Errorf("sipfed serve --help: %v", err)
	}
	serveFlags = parseHelp(string(help))
	for _, f := range []string{"domain", "listen", "config", "drain", "node-id", "advertise", "http", "store", "users", "tcp-max-connections"} {
		if _, ok := serveFlags[f]; !ok {
			return fmt.Errorf("sipfed serve --help lists no --%s: has its format changed? (found %d flags)\n%s", f, len(serveFlags), help)
		}
	}
	b, err := exec.Command(sipfedBin, "user", "--help").Output()
	if err != nil {
		return fmt.Errorf("sipfed user --help: %v", err)
	}
	userHelp = string(b)
	// Without --domain, serve stops at "--domain is required" (status 2)
	// unless it first tries to read a config file named by the variable.
	probe := exec.Command(sipfedBin, "serve")
	probe.Env = []string{"SIPFED_CONFIG=/nonexistent/sipfed-probe.yaml"}
	out, _ := probe.CombinedOutput()
	configFromEnv = strings.Contains(string(out), "sipfed-probe.yaml")
	return nil
}

// cliFlags is what --help says of each flag: its type word ("" for a
// boolean), whether it is repeatable, and its default.
type cliFlags map[string]flagInfo

type flagInfo struct {
	typ        string
	repeatable bool
	def        string
}

var (
	helpFlagLine = regexp.MustCompile(`^  --([a-z0-9][a-z0-9-]*)(?: (\S+))?$`)
	helpDefault  = regexp.MustCompile(`\(default (.*)\)$`)
)

// parseHelp reads the flags of a `sipfed CMD --help` text: "  --name TYPE"
// lines, each followed by its usage, which may end in "(default X)".
func parseHelp(help string) cliFlags {
	fl := cliFlags{}
	lines := strings.Split(help, "\n")
	for i, l := range lines {
		m := helpFlagLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		fi := flagInfo{typ: m[2]}
		if i+1 < len(lines) {
			usage := lines[i+1]
			fi.repeatable = strings.Contains(usage, "repeatable")
			if d := helpDefault.FindStringSubmatch(usage); d != nil {
				fi.def = d[1]
				if u, err := strconv.Unquote(d[1]); err == nil {
					fi.def = u
				}
			}
		}
		fl[m[1]] = fi
	}
	return fl
}

// envName is the variable of a flag: SIPFED_, upper case, "-" → "_".
func envName(flag string) string {
	return "SIPFED_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// level is where a setting comes from; a higher level wins in sipfed
// (flag over SIPFED_* over the --config file).
type level int

const (
	fileLevel level = iota
	envLevel
	argLevel
)

func (l level) String() string {
	return [...]string{"the --config file", "the environment", "the command line"}[l]
}

// setting is one value a deployment file gives a flag of sipfed serve.
type setting struct {
	flag  string // without dashes
	value string // as sipfed's flag parser gets it
	level level
	src   string // the file and place, for messages
}

// kv is one environment variable.
type kv struct{ k, v string }

// parseArgv reads a sipfed serve command line (without the program):
// the subcommand, then flags in any form the flag package takes.
func parseArgv(argv []string, src string) ([]setting, []error) {
	if len(argv) == 0 || argv[0] != "serve" {
		return nil, []error{fmt.Errorf("%s: command %q: want sipfed serve", src, argv)}
	}
	var ss []setting
	var errs []error
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			errs = append(errs, fmt.Errorf("%s: argument %q: sipfed serve takes flags only", src, a))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		fi, ok := serveFlags[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: --%s: sipfed serve --help lists no such flag", src, name))
			continue
		}
		if !hasVal {
			if fi.typ == "" {
				val = "true"
			} else if i+1 < len(argv) {
				i++
				val = argv[i]
			} else {
				errs = append(errs, fmt.Errorf("%s: --%s needs a value", src, name))
				continue
			}
		}
		ss = append(ss, setting{flag: name, value: val, level: argLevel, src: src})
	}
	return ss, errs
}

// parseEnv returns the settings of the SIPFED_* variables of env; other
// variables are no business of sipfed's.
func parseEnv(env []kv, src string) ([]setting, []error) {
	byEnv := map[string]string{}
	for f := range serveFlags {
		if f != "config" || configFromEnv {
			byEnv[envName(f)] = f
		}
	}
	var ss []setting
	var errs []error
	for _, e := range env {
		if !strings.HasPrefix(e.k, "SIPFED_") {
			continue
		}
		f, ok := byEnv[e.k]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: %s: sipfed serve reads no such variable (flags: sipfed serve --help; SIPFED_CONFIG is not read)", src, e.k))
		case e.v == "":
			errs = append(errs, fmt.Errorf("%s: %s is empty, and sipfed ignores empty variables", src, e.k))
		default:
			ss = append(ss, setting{flag: f, value: e.v, level: envLevel, src: src + ": " + e.k})
		}
	}
	return ss, errs
}

// parseConfig reads a --config YAML file as sipfed's loader does: keys
// are flag names, a list only for a repeatable flag.
func parseConfig(data []byte, src string) ([]setting, []error) {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, []error{fmt.Errorf("%s: %v", src, err)}
	}
	var ss []setting
	var errs []error
	for _, k := range sortedKeys(m) {
		fi, ok := serveFlags[k]
		if !ok || k == "config" {
			errs = append(errs, fmt.Errorf("%s: key %q: sipfed serve has no such flag", src, k))
			continue
		}
		at := src + ": " + k
		switch v := m[k].(type) {
		case nil:
		case []any:
			if !fi.repeatable {
				errs = append(errs, fmt.Errorf("%s: a list, but --%s takes one value", at, k))
				continue
			}
			for _, x := range v {
				if !isScalar(x) {
					errs = append(errs, fmt.Errorf("%s: list items must be single values", at))
					continue
				}
				ss = append(ss, setting{flag: k, value: fmt.Sprint(x), level: fileLevel, src: at})
			}
		default:
			if !isScalar(v) {
				errs = append(errs, fmt.Errorf("%s: want a value or a list", at))
				continue
			}
			ss = append(ss, setting{flag: k, value: fmt.Sprint(v), level: fileLevel, src: at})
		}
	}
	return ss, errs
}

func isScalar(v any) bool {
	switch v.(type) {
	case []any, map[string]any:
		return false
	}
	return true
}

// checkValues hands every value to the binary's own flag parser: `sipfed
// serve --x=v … --help` exits 0 only when each value parses (durations,
// numbers, booleans, lists).
func checkValues(ss []setting, src string) error {
	args := []string{"serve"}
	for _, s := range ss {
		args = append(args, "--"+s.flag+"="+s.value)
	}
	out, err := exec.Command(sipfedBin, append(args, "--help")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: sipfed refuses a value: %s", src, firstLine(out))
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// checkShadowed reports a flag given at two levels: the lower one is
// silently ignored, which is how a deployment drifts from what it says.
func checkShadowed(ss []setting) []error {
	at := map[string]map[level]string{}
	for _, s := range ss {
		if at[s.flag] == nil {
			at[s.flag] = map[level]string{}
		}
		if _, ok := at[s.flag][s.level]; !ok {
			at[s.flag][s.level] = s.src
		}
	}
	var errs []error
	for _, f := range sortedKeys(at) {
		if len(at[f]) < 2 {
			continue
		}
		lv := sortedKeys(at[f])
		hi, lo := lv[len(lv)-1], lv[0]
		errs = append(errs, fmt.Errorf("--%s is set in %s (%s) and in %s (%s): the value of %s is ignored", f, hi, at[f][hi], lo, at[f][lo], lo))
	}
	return errs
}

func sortedKeys[K interface{ ~int | ~string }, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// effective returns the values sipfed ends up with for flag: those of the
// highest level that sets it (a repeatable flag's variable split at
// commas, as its flag type does), else the default.
func effective(ss []setting, flag string) []string {
	top := level(-1)
	for _, s := range ss {
		if s.flag == flag && s.level > top {
			top = s.level
		}
	}
	fi := serveFlags[flag]
	var vals []string
	for _, s := range ss {
		if s.flag != flag || s.level != top {
			continue
		}
		if fi.repeatable {
			vals = append(vals, strings.Split(s.value, ",")...)
		} else {
			vals = []string{s.value}
		}
	}
	if top < 0 && fi.def != "" {
		if fi.repeatable {
			return strings.Split(fi.def, ",")
		}
		return []string{fi.def}
	}
	return vals
}

func effOne(ss []setting, flag string) string {
	v := effective(ss, flag)
	if len(v) == 0 {
		return ""
	}
	return strings.TrimSpace(v[len(v)-1])
}

func effDuration(ss []setting, flag string) (time.Duration, error) {
	return time.ParseDuration(effOne(ss, flag))
}

// listener is one --listen value.
type listener struct {
	transport, host string
	port            int
}

// proto is the IP protocol the listener's transport runs on.
func (l listener) proto() string {
	if l.transport == "udp" {
		return "udp"
	}
	return "tcp"
}

func listeners(ss []setting) ([]listener, error) {
	var ls []listener
	for _, v := range effective(ss, "listen") {
		t, hp, _ := strings.Cut(strings.TrimSpace(v), ":")
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %v", v, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: bad port", v)
		}
		ls = append(ls, listener{strings.ToLower(t), h, n})
	}
	return ls, nil
}

// httpPort is the port of --http, 0 when it is off.
func httpPort(ss []setting) (int, error) {
	v := effOne(ss, "http")
	if v == "" {
		return 0, nil
	}
	_, p, err := net.SplitHostPort(v)
	if err != nil {
		return 0, fmt.Errorf("--http %q: %v", v, err)
	}
	return strconv.Atoi(p)
}

// nodeConfig is how one deployment file runs one sipfed node: where (the
// file and place), its settings at every level, and what the smoke run
// needs to know of its surroundings.
type nodeConfig struct {
	name     string
	settings []setting
	// readOnlyCwd: the node's working directory is not writable (a
	// read-only root file system).
	readOnlyCwd bool
}

// checkNode runs the checks every node configuration gets, whatever
// file it comes from.
func checkNode(n nodeConfig) []error {
	errs := checkShadowed(n.settings)
	if err := checkValues(n.settings, n.name); err != nil {
		errs = append(errs, err)
	}
	if effOne(n.settings, "users") == "redis" && !strings.HasPrefix(effOne(n.settings, "store"), "redis") {
		errs = append(errs, fmt.Errorf("%s: --users redis needs a Redis --store", n.name))
	}
	if _, err := listeners(n.settings); err != nil {
		errs = append(errs, fmt.Errorf("%s: %v", n.name, err))
	}
	if _, err := httpPort(n.settings); err != nil {
		errs = append(errs, fmt.Errorf("%s: %v", n.name, err))
	}
	return errs
}

// tree is the deployment files by their path under deploy/, so that a
// check can be run on a copy with one file altered.
type tree map[string]string

func loadTree(t *testing.T) tree {
	t.Helper()
	tr := tree{}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		b, err := os.ReadFile(p)
		tr[filepath.ToSlash(p)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"README.md", "systemd/sipfed.service", "systemd/sipfed.yaml", "systemd/sipfed.env",
		"docker/Dockerfile", "compose/compose.yaml", "k8s/sipfed.yaml", "k8s/redis.yaml"} {
		if _, ok := tr[f]; !ok {
			t.Fatalf("deploy/%s is missing", f)
		}
	}
	return tr
}

// with returns a copy of tr with file changed by replacing old with new,
// failing the test when old is not there (the mutation would test nothing).
func (tr tree) with(t *testing.T, file, old, new string) tree {
	t.Helper()
	if !strings.Contains(tr[file], old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	c := tree{}
	for k, v := range tr {
		c[k] = v
	}
	c[file] = strings.Replace(tr[file], old, new, 1)
	return c
}

// TestDeployFiles runs every check on the files as they are.
func TestDeployFiles(t *testing.T) {
	nodes, errs := checkAll(loadTree(t))
	for _, err := range errs {
		t.Error(err)
	}
	for kind, ns := range nodes {
		for _, n := range ns {
			t.Logf("%s: %s: %d settings", kind, n.name, len(n.settings))
		}
	}
}

// TestChecksCatchMistakes makes one mistake at a time in the real files
// and wants the check meant for it to report it: a check that cannot
// fail checks nothing.
func TestChecksCatchMistakes(t *testing.T) {
	base := loadTree(t)
	for _, tc := range []struct {
		name, file, old, new string
		want                 string // in one of the errors
	}{
		{"compose unknown flag", "compose/compose.yaml", "--node-id, sip2", "--nodeid, sip2", "--nodeid: sipfed serve --help lists no such flag"},
		{"compose unknown variable", "compose/compose.yaml", "SIPFED_DRAIN:", "SIPFED_DRAINS:", "SIPFED_DRAINS: sipfed serve reads no such variable"},
		{"compose duration without unit", "compose/compose.yaml", "SIPFED_DRAIN: 10s", "SIPFED_DRAIN: 10", "invalid value \"10\" for flag --drain"},
		{"compose empty variable", "compose/compose.yaml", "SIPFED_DRAIN: 10s", "SIPFED_DRAIN: \"\"", "SIPFED_DRAIN is empty"},
		{"compose port published elsewhere", "compose/compose.yaml", `"5070:5070/udp"`, `"5071:5070/udp"`, "--listen port 5070 is published on another host port"},
		{"compose port not published", "compose/compose.yaml", `- "5080:5080/tcp"`, ``, "--listen tcp:0.0.0.0:5080 is not published"},
		{"compose grace below drain", "compose/compose.yaml", "stop_grace_period: 30s", "stop_grace_period: 5s", "stop_grace_period 5s must be above --drain 10s"},
		{"compose node id twice", "compose/compose.yaml", "--node-id, sip3", "--node-id, sip1", `--node-id "sip1" is not its own`},
		{"compose healthcheck port", "compose/compose.yaml", `"http://127.0.0.1:8080/healthz"]`, `"http://127.0.0.1:8090/healthz"]`, `healthcheck ["CMD" "/healthz" "http://127.0.0.1:8090/healthz"]: want`},
		{"compose descriptors", "compose/compose.yaml", "nofile: 65536", "nofile: 1024", "ulimits nofile 1024 must exceed --tcp-max-connections (2048)"},
		{"compose store host", "compose/compose.yaml", "redis://redis:6379/0", "redis://cache:6379/0", "no service of that name"},
		{"compose users redis without redis", "compose/compose.yaml", "SIPFED_STORE: redis://redis:6379/0", "SIPFED_STORE: memory", "--users redis needs a Redis --store"},
		{"k8s config not mounted", "k8s/sipfed.yaml", "--config, /etc/sipfed/config/sipfed.yaml", "--config, /etc/sipfed/sipfed.yaml", "is no file of a ConfigMap mounted"},
		{"k8s config duration", "k8s/sipfed.yaml", "    drain: 10s", "    drain: 10", "invalid value \"10\" for flag --drain"},
		{"k8s config unknown key", "k8s/sipfed.yaml", "    listen:\n", "    listens:\n", `key "listens": sipfed serve has no such flag`},
		{"k8s config list for a value", "k8s/sipfed.yaml", "log-level: info", "log-level: [info]", "a list, but --log-level takes one value"},
		{"k8s SIPFED_CONFIG", "k8s/sipfed.yaml", "name: SIPFED_SECRET", "name: SIPFED_CONFIG", "SIPFED_CONFIG: sipfed serve reads no such variable"},
		{"k8s env shadows config", "k8s/sipfed.yaml", "- name: SIPFED_SECRET", "- name: SIPFED_DRAIN\n              value: 20s\n            - name: SIPFED_SECRET", "--drain is set in the environment"},
		{"k8s constant node id", "k8s/sipfed.yaml", "- name: SIPFED_NODE_ID\n              valueFrom:\n                fieldRef: {fieldPath: metadata.name}", "- name: SIPFED_NODE_ID\n              value: sip1", "SIPFED_NODE_ID: with 3 replicas it must come from the downward API"},
		{"k8s grace below drain", "k8s/sipfed.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 5", "terminationGracePeriodSeconds 5 must be above --drain 10s"},
		{"k8s probe path", "k8s/sipfed.yaml", "httpGet: {path: /healthz, port: http}\n            periodSeconds: 5", "httpGet: {path: /health, port: http}\n            periodSeconds: 5", "readinessProbe: want httpGet /healthz"},
		{"k8s service port", "k8s/sipfed.yaml", "- {name: sips, port: 5061, targetPort: sips, protocol: TCP}\n---\n# At most", "- {name: sips, port: 5061, targetPort: sipz, protocol: TCP}\n---\n# At most", "targetPort sipz/tcp is no port"},
		{"k8s root", "k8s/sipfed.yaml", "runAsUser: 65532", "runAsUser: 0", "runAsUser 0: want the image's USER 65532"},
		{"k8s port below 1024", "k8s/sipfed.yaml", "- tls:0.0.0.0:5061", "- tls:0.0.0.0:443", "needs the sysctl net.ipv4.ip_unprivileged_port_start <= 443"},
		{"k8s missing container port", "k8s/sipfed.yaml", "            - {name: sips, containerPort: 5061, protocol: TCP}\n", "", "--listen tls:0.0.0.0:5061 has no containerPort 5061/tcp"},
		{"k8s redis service", "k8s/redis.yaml", "  name: redis\n  labels", "  name: cache\n  labels", "--store redis://redis:6379/0: no Service of that name"},
		{"systemd unknown flag", "systemd/sipfed.service", "serve --config", "serve --conf", "--conf: sipfed serve --help lists no such flag"},
		{"systemd unknown variable", "systemd/sipfed.env", "SIPFED_NODE_ID=", "SIPFED_NODEID=", "SIPFED_NODEID: sipfed serve reads no such variable"},
		{"systemd env shadows yaml", "systemd/sipfed.env", "SIPFED_NODE_ID=sip1", "SIPFED_NODE_ID=sip1\nSIPFED_LOG_LEVEL=debug", "--log-level is set in the environment"},
		{"systemd yaml bad value", "systemd/sipfed.yaml", "tcp-max-connections: 20000", "tcp-max-connections: many", "invalid value \"many\" for flag --tcp-max-connections"},
		{"systemd descriptors", "systemd/sipfed.yaml", "tcp-max-connections: 20000", "tcp-max-connections: 40000", "LimitNOFILE=\"65536\" must exceed --tcp-max-connections (40000)"},
		{"systemd stop timeout", "systemd/sipfed.yaml", "drain: 10s", "drain: 40s", "TimeoutStopSec=\"30s\" must be a span above --drain (40s)"},
		{"systemd root", "systemd/sipfed.service", "User=sipfed", "User=root", "must not run as root"},
		{"systemd no capability", "systemd/sipfed.service", "AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "", "AmbientCapabilities=CAP_NET_BIND_SERVICE is missing"},
		{"systemd more capabilities", "systemd/sipfed.service", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW", "want CAP_NET_BIND_SERVICE alone"},
		{"systemd new privileges", "systemd/sipfed.service", "NoNewPrivileges=yes", "NoNewPrivileges=no", "NoNewPrivileges=yes is missing"},
		{"systemd users file outside state", "systemd/sipfed.yaml", "users: redis", "users: /etc/sipfed/users.txt", "its folder is not the unit's StateDirectory"},
		{"systemd env file missing", "systemd/sipfed.service", "EnvironmentFile=-/etc/sipfed/sipfed.env", "EnvironmentFile=-/etc/sipfed/node.env", "no example deploy/systemd/node.env"},
		{"docker final stage", "docker/Dockerfile", "FROM scratch", "FROM debian:bookworm-slim", "final stage FROM debian:bookworm-slim"},
		{"docker root", "docker/Dockerfile", "USER 65532:65532", "USER root", "numeric non-root USER"},
		{"docker cgo", "docker/Dockerfile", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1", "without CGO_ENABLED=0"},
		{"docker CMD flag", "docker/Dockerfile", `"--http", "0.0.0.0:8080"`, `"--htp", "0.0.0.0:8080"`, "--htp: sipfed serve --help lists no such flag"},
		{"docker ENV", "docker/Dockerfile", "EXPOSE 5060/udp", "ENV SIPFED_LISTEN=udp:0.0.0.0:5060\nEXPOSE 5060/udp", "would silently win over every --config file"},
		{"docker expose", "docker/Dockerfile", "EXPOSE 5060/udp 5060/tcp", "EXPOSE 5060/tcp", "EXPOSE lacks 5060/udp"},
		{"docker shell form", "docker/Dockerfile", `ENTRYPOINT ["/sipfed"]`, `ENTRYPOINT /sipfed`, "want the exec form"},
		{"docker healthcheck port", "docker/Dockerfile", `CMD ["/healthz", "http://127.0.0.1:8080/healthz"]`, `CMD ["/healthz", "http://127.0.0.1:9090/healthz"]`, "HEALTHCHECK asks"},
		{"readme variable", "README.md", "SIPFED_ADVERTISE", "SIPFED_ADVERTISED", "SIPFED_ADVERTISED is no variable"},
		{"readme serve flag", "README.md", "--node-id sip1", "--node-name sip1", "sipfed serve --node-name: no such flag"},
		{"readme user flag", "README.md", "user add --password-stdin", "user add --pasword-stdin", "sipfed user --pasword-stdin: no such flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := checkAll(base.with(t, tc.file, tc.old, tc.new))
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error contains %q; got %d:", tc.want, len(errs))
			for _, err := range errs {
				t.Log(err)
			}
		})
	}
}

// TestHelpParsing checks the reading of --help the other checks rest on.
func TestHelpParsing(t *testing.T) {
	if fi := serveFlags["listen"]; !fi.repeatable || fi.def != "udp:127.0.0.1:5060,tcp:127.0.0.1:5060" {
		t.Errorf("--listen: %+v", fi)
	}
	if fi := serveFlags["drain"]; fi.repeatable || fi.typ != "duration" || fi.def != "5s" {
		t.Errorf("--drain: %+v", fi)
	}
	if fi := serveFlags["federation-tls"]; fi.typ != "" {
		t.Errorf("--federation-tls is a boolean, read as %+v", fi)
	}
	if configFromEnv {
		t.Error("sipfed reads SIPFED_CONFIG now: README and cli.go say it does not; update the checks")
	}
	if err := checkValues([]setting{{flag: "drain", value: "10s"}, {flag: "listen", value: "udp:0.0.0.0:5060,tcp:0.0.0.0:5060"}}, "good"); err != nil {
		t.Errorf("checkValues refuses good values: %v", err)
	}
	if checkValues([]setting{{flag: "drain", value: "ten"}}, "bad") == nil {
		t.Error("checkValues accepts --drain=ten")
	}
}
