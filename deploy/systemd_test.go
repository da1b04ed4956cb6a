package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// unitFile is a systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

// parseUnit reads a unit file; a line ending in \ goes on on the next.
func parseUnit(text string) unitFile {
	u := unitFile{}
	sec := ""
	var cont string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if cont != "" {
			l, cont = cont+" "+l, ""
		}
		if strings.HasSuffix(l, "\\") {
			cont = strings.TrimSuffix(l, "\\")
			continue
		}
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			sec = strings.Trim(l, "[]")
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if ok && u[sec] != nil {
				k = strings.TrimSpace(k)
				u[sec][k] = append(u[sec][k], strings.TrimSpace(v))
			}
		}
	}
	return u
}

func (u unitFile) last(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// words splits a command line at blanks, with '…' and "…" quoting.
func words(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// parseEnvFile reads a systemd EnvironmentFile: KEY=VALUE lines, # and ;
// comments, values optionally quoted.
func parseEnvFile(text, src string) ([]kv, []error) {
	var env []kv
	var errs []error
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%s:%d: not KEY=VALUE", src, i+1))
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env = append(env, kv{strings.TrimSpace(k), v})
	}
	return env, errs
}

// systemdSpan parses a systemd time span ("30s", "1min 30s", "90").
func systemdSpan(s string) (time.Duration, error) {
	units := map[string]time.Duration{"": time.Second, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "sec": time.Second,
		"m": time.Minute, "min": time.Minute, "h": time.Hour, "hr": time.Hour, "d": 24 * time.Hour}
	re := regexp.MustCompile(`^(\d+)\s*([a-z]*)\s*`)
	var d time.Duration
	rest := strings.TrimSpace(s)
	if rest == "" || rest == "infinity" {
		return 0, fmt.Errorf("time span %q: want a finite span", s)
	}
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("time span %q", s)
		}
		u, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("time span %q: unit %q", s, m[2])
		}
		n, _ := strconv.Atoi(m[1])
		d += time.Duration(n) * u
		rest = rest[len(m[0]):]
	}
	return d, nil
}

// unitPath maps a path the unit names under /etc/sipfed to the example
// file shipped beside it.
func unitPath(p string) string { return "systemd/" + path.Base(p) }

// checkSystemd checks the unit and the example files it reads.
func checkSystemd(tr tree) (nodeConfig, []error) {
	const file = "systemd/sipfed.service"
	u := parseUnit(tr[file])
	svc := u["Service"]
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(file+": "+format, args...)) }
	if svc == nil {
		fail("no [Service] section")
		return nodeConfig{}, errs
	}
	if user := u.last("Service", "User"); (user == "" || user == "root" || user == "0") && u.last("Service", "DynamicUser") != "yes" {
		fail("User=%q: the service must not run as root (User= or DynamicUser=yes)", user)
	}
	if u.last("Service", "NoNewPrivileges") != "yes" {
		fail("NoNewPrivileges=yes is missing")
	}
	if !slices.Contains(strings.Fields(strings.Join(svc["AmbientCapabilities"], " ")), "CAP_NET_BIND_SERVICE") {
		fail("AmbientCapabilities=CAP_NET_BIND_SERVICE is missing: a non-root sipfed cannot bind a port below 1024 (wss: or --web on 443)")
	}
	if caps := strings.Fields(u.last("Service", "CapabilityBoundingSet")); !slices.Equal(caps, []string{"CAP_NET_BIND_SERVICE"}) {
		fail("CapabilityBoundingSet=%q: want CAP_NET_BIND_SERVICE alone", caps)
	}
	for k, want := range map[string]string{"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"RestrictNamespaces": "yes", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
		"Restart": "on-failure"} {
		if got := u.last("Service", k); got != want {
			fail("%s=%q, want %s", k, got, want)
		}
	}
	if fams := strings.Fields(u.last("Service", "RestrictAddressFamilies")); !slices.Contains(fams, "AF_INET") || !slices.Contains(fams, "AF_INET6") || slices.Contains(fams, "AF_PACKET") {
		fail("RestrictAddressFamilies=%q: want AF_INET and AF_INET6, not AF_PACKET", fams)
	}
	if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
		fail("SystemCallFilter=@system-service is missing")
	}

	// The command line and the files it reads, as sipfed merges them.
	argv := words(u.last("Service", "ExecStart"))
	if len(argv) == 0 || !path.IsAbs(argv[0]) || path.Base(argv[0]) != "sipfed" {
		fail("ExecStart=%q: want an absolute path to sipfed", argv)
		return nodeConfig{}, errs
	}
	n := nodeConfig{name: file}
	ss, e := parseArgv(argv[1:], file+": ExecStart")
	errs = append(errs, e...)
	for _, ef := range svc["EnvironmentFile"] {
		p := unitPath(strings.TrimPrefix(ef, "-"))
		text, ok := tr[p]
		if !ok {
			fail("EnvironmentFile=%s: no example deploy/%s beside the unit", ef, p)
			continue
		}
		env, e := parseEnvFile(text, p)
		errs = append(errs, e...)
		es, e := parseEnv(env, p)
		errs = append(errs, e...)
		ss = append(ss, es...)
	}
	if cfg := effOne(ss, "config"); cfg != "" {
		p := unitPath(cfg)
		if text, ok := tr[p]; !ok {
			fail("--config %s: no example deploy/%s beside the unit", cfg, p)
		} else {
			cs, e := parseConfig([]byte(text), p)
			errs = append(errs, e...)
			ss = append(ss, cs...)
		}
	}
	n.settings = ss
	errs = append(errs, checkNode(n)...)

	// SIGTERM drains for --drain; systemd must wait longer before SIGKILL.
	if drain, err := effDuration(ss, "drain"); err == nil {
		stop, err := systemdSpan(u.last("Service", "TimeoutStopSec"))
		if err != nil || stop <= drain {
			fail("TimeoutStopSec=%q must be a span above --drain (%v): systemd would kill a draining node", u.last("Service", "TimeoutStopSec"), drain)
		}
	}
	// Every TCP connection is a descriptor; leave room for the rest.
	ls, _ := listeners(ss)
	streams := 0
	for _, l := range ls {
		if l.proto() == "tcp" {
			streams++
		}
	}
	maxConns, _ := strconv.Atoi(effOne(ss, "tcp-max-connections"))
	soft, _, _ := strings.Cut(u.last("Service", "LimitNOFILE"), ":")
	if nofile, err := strconv.Atoi(soft); err != nil || maxConns <= 0 || nofile < maxConns*streams+1024 {
		fail("LimitNOFILE=%q must exceed --tcp-max-connections (%d) times %d TCP listeners by 1024 (and the limit must be set)", u.last("Service", "LimitNOFILE"), maxConns, streams)
	}
	// ProtectSystem=strict leaves only the state directory writable, and a
	// users file gets its nonce secret written beside it.
	if users := effOne(ss, "users"); users != "redis" {
		if !path.IsAbs(users) {
			users = path.Join(u.last("Service", "WorkingDirectory"), users)
		}
		dir := path.Dir(users)
		ok := false
		for _, sd := range strings.Fields(u.last("Service", "StateDirectory")) {
			ok = ok || dir == "/var/lib/"+sd || strings.HasPrefix(dir, "/var/lib/"+sd+"/")
		}
		if !ok {
			fail("--users %s: its folder is not the unit's StateDirectory (under ProtectSystem=strict sipfed cannot write %s.secret there)", users, users)
		}
	}
	return n, errs
}

// TestSystemdAnalyze has systemd check the unit: verify must print
// nothing about it, and the sandbox's exposure must stay low.
func TestSystemdAnalyze(t *testing.T) {
	sa := testenv.Need(t, "systemd-analyze")
	text := loadTree(t)["systemd/sipfed.service"]
	if problems := analyzeUnit(t, sa, text); len(problems) > 0 {
		t.Errorf("systemd-analyze on the unit:\n%s", strings.Join(problems, "\n"))
	}
	// The check itself: a misspelt value and a missing sandbox are caught.
	if len(analyzeUnit(t, sa, strings.Replace(text, "ProtectSystem=strict", "ProtectSystem=strictly", 1))) == 0 {
		t.Error("systemd-analyze did not complain about ProtectSystem=strictly")
	}
	var bare []string
	for _, l := range strings.Split(text, "\n") {
		if !regexp.MustCompile(`^(Protect|Private|Restrict|SystemCall|MemoryDeny|Capability|Ambient)`).MatchString(l) {
			bare = append(bare, l)
		}
	}
	if len(analyzeUnit(t, sa, strings.Join(bare, "\n"))) == 0 {
		t.Error("a unit without its sandbox passes the exposure check")
	}
}

// maxExposure is the highest `systemd-analyze security` exposure accepted
// (0 to 10; the unit scores 1.7, "OK").
const maxExposure = 2.5

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// analyzeUnit writes the unit with ExecStart pointing at the freshly built
// binary (verify wants it to exist) and returns what systemd-analyze
// finds wrong with it.
func analyzeUnit(t *testing.T, sa, text string) []string {
	t.Helper()
	dir := t.TempDir()
	unit := filepath.Join(dir, "sipfed.service")
	text = regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAllString(text, "ExecStart="+sipfedBin)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var problems []string
	out, err := exec.Command(sa, "verify", "--man=no", unit).CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "sipfed") {
			problems = append(problems, "verify: "+l)
		} else if l != "" {
			t.Logf("systemd-analyze verify (not about the unit): %s", l)
		}
	}
	if err != nil && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("verify: %v: %s", err, out))
	}
	out, _ = exec.Command(sa, "security", "--offline=true", unit).CombinedOutput()
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		return append(problems, "security: no exposure level in its output: "+string(out))
	}
	if x, _ := strconv.ParseFloat(string(m[1]), 64); x > maxExposure {
		problems = append(problems, fmt.Sprintf("security: exposure %.1f, above %.1f", x, maxExposure))
	}
	return problems
}
