package lab

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The lab's address plan: one /24 that exists only inside the lab's
// namespaces (the host's own namespace has no route to it), so every lab
// uses the same addresses and the zone files in netns/ can name them.
const (
	Subnet   = "10.77.0.0/24"
	DNSIP    = "10.77.0.2"
	RedisIP  = "10.77.0.3"
	SIPPort  = 5060
	HTTPPort = 8080
	// DefaultFailoverTimeout is every node's --failover-timeout unless
	// Config says otherwise: short, so that a dead node costs a caller
	// little.
	DefaultFailoverTimeout = 2 * time.Second
	// StateDir holds one marker per lab (who made it, whether it
	// outlives its maker) and the files of labs brought up by the CLI.
	StateDir = "/run/sipfed-lab"
)

// Server hosts in the order they are made, with their addresses.
var serverHosts = []struct{ name, ip string }{
	{"dns", DNSIP}, {"redis", RedisIP},
	{"a1", "10.77.0.11"}, {"a2", "10.77.0.12"}, {"a3", "10.77.0.13"},
	{"b1", "10.77.0.21"}, {"kam", "10.77.0.31"},
}

// Phone hosts p1, p2, … get 10.77.0.101, .102, …
const phoneBase, maxPhones = 100, 150

// Domains and their hosts.
var (
	ANodes = []string{"a1", "a2", "a3"}
	Zones  = []string{"a.test", "b.test", "kam.test", "e164.lab"}
)

// DefaultUsers are made at Up when Config.Users is nil.
var DefaultUsers = map[string]string{
	"alice@a.test": "alice-pw", "bob@a.test": "bob-pw", "carol@a.test": "carol-pw",
	"dave@b.test": "dave-pw", "erin@kam.test": "erin-pw", "frank@kam.test": "frank-pw",
}

// Host is one namespace of the lab, with one address on the switch.
type Host struct {
	Name string // dns, redis, a1, a2, a3, b1, kam, p1, …
	NS   string // the network namespace: PREFIX-NAME
	IP   string
}

// Config says what to run.
type Config struct {
	Sipfed          string            // the sipfed binary (required)
	Kamailio        string            // the kamailio binary; "": no kam host
	Redis           string            // redis-server; "": found in PATH
	Root            string            // the repository (zone files, Kamailio's config); "": this source's
	Dir             string            // logs, users, configs; "": StateDir/PREFIX, removed by Down
	Prefix          string            // "": "sfl" and 4 random hex digits
	Phones          int               // phone hosts made by Up (more with AddPhoneHost)
	Users           map[string]string // AOR → password; nil: DefaultUsers
	FailoverTimeout time.Duration     // every node's --failover-timeout; 0: DefaultFailoverTimeout
	LogLevel        string            // the nodes' --log-level; "": info
	NodeArgs        []string          // more flags for every sipfed serve
	// Detach lets the processes outlive this process (the CLI's up);
	// otherwise they are killed when it dies, even by SIGKILL.
	Detach bool
	Logf   func(format string, args ...any) // progress; nil: none
}

// Lab is a running lab.
type Lab struct {
	Prefix string
	Dir    string
	cfg    Config
	ipBin  string
	ownDir bool

	mu        sync.Mutex
	hosts     map[string]*Host
	procs     map[string]*Proc
	nextPhone int
	closed    bool
	kamUsers  map[string]string

	thread chan func() // runs every process start on one locked OS thread
}

// marker is the file StateDir/PREFIX.json.
type marker struct {
	Prefix   string    `json:"prefix"`
	PID      int       `json:"pid"`
	Detached bool      `json:"detached"`
	Dir      string    `json:"dir"`
	OwnDir   bool      `json:"own_dir"`
	Created  time.Time `json:"created"`
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// ErrNotRoot is returned by Up when not run as root.
var ErrNotRoot = errors.New("lab: network namespaces, veth pairs and bridges need root")

// Up builds the lab and starts its servers; whatever fails halfway is
// torn down again. Close (or Down with the prefix) removes it all.
func Up(ctx context.Context, cfg Config) (l *Lab, err error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if cfg.Sipfed == "" {
		return nil, errors.New("lab: Config.Sipfed: the sipfed binary is required")
	}
	if cfg.Redis == "" {
		if cfg.Redis, err = exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	if cfg.Root == "" {
		if cfg.Root, err = SourceRoot(); err != nil {
			return nil, err
		}
	}
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = DefaultFailoverTimeout
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Users == nil {
		cfg.Users = DefaultUsers
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	Sweep()
	if cfg.Prefix == "" {
		cfg.Prefix = NewPrefix()
	}
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("lab: prefix %q: want a lower-case letter and at most 7 more letters or digits", cfg.Prefix)
	}
	if nss, _ := namespaces(cfg.Prefix); len(nss) > 0 {
		return nil, fmt.Errorf("lab: a lab %s exists already (%s); remove it with Down", cfg.Prefix, strings.Join(nss, ", "))
	}
	l = &Lab{Prefix: cfg.Prefix, Dir: cfg.Dir, cfg: cfg, ipBin: ipBin, hosts: map[string]*Host{}, procs: map[string]*Proc{}, kamUsers: map[string]string{}}
	if l.Dir == "" {
		l.Dir = filepath.Join(StateDir, l.Prefix)
	}
	l.ownDir = l.Dir == filepath.Join(StateDir, l.Prefix)
	for _, d := range []string{l.Dir, filepath.Join(l.Dir, "logs"), StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	// The marker first: a lab that fails (or whose maker dies) halfway
	// is found and removed from it.
	m := marker{Prefix: l.Prefix, PID: os.Getpid(), Detached: cfg.Detach, Dir: l.Dir, OwnDir: l.ownDir, Created: time.Now()}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(markerPath(l.Prefix), mb, 0o644); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l.startThread()
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if err := l.build(); err != nil {
		return l, err
	}
	if err := l.startServers(ctx); err != nil {
		return l, err
	}
	for i := 0; i < cfg.Phones; i++ {
		if _, err := l.AddPhoneHost(); err != nil {
			return l, err
		}
	}
	return l, nil
}

// NewPrefix returns a random lab prefix: sfl and 4 hex digits.
func NewPrefix() string {
	b := make([]byte, 2)
	rand.Read(b)
	return "sfl" + hex.EncodeToString(b)
}

// SourceRoot returns the repository this file is in (else the one
// holding the current folder).
func SourceRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
		if _, err := os.Stat(filepath.Join(root, "deploy", "lab", "netns", "a.test.zone")); err == nil {
			return root, nil
		}
	}
	dir, err := os.Getwd()
	for err == nil {
		if _, e := os.Stat(filepath.Join(dir, "deploy", "lab", "netns", "a.test.zone")); e == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("lab: deploy/lab/netns not found: set Config.Root to the repository")
}

func markerPath(prefix string) string { return filepath.Join(StateDir, prefix+".json") }

// startThread starts the goroutine that starts processes. It stays locked
// to its OS thread, because Pdeathsig follows the thread that forked, not
// the process: any other thread may be ended by the runtime under a
// running child.
func (l *Lab) startThread() {
	l.thread = make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the lab
		for f := range l.thread {
			f()
		}
	}()
}

func (l *Lab) ip(args ...string) error {
	out, err := exec.Command(l.ipBin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// switchNS is the namespace of the lab's bridge.
func (l *Lab) switchNS() string { return l.Prefix + "-sw" }

// build makes the switch and the server hosts.
func (l *Lab) build() error {
	sw := l.switchNS()
	for _, args := range [][]string{
		{"netns", "add", sw},
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
	} {
		if err := l.ip(args...); err != nil {
			return err
		}
	}
	for _, s := range serverHosts {
		if s.name == "kam" && l.cfg.Kamailio == "" {
			continue
		}
		if _, err := l.addHost(s.name, s.ip); err != nil {
			return err
		}
	}
	l.cfg.Logf("lab %s: switch and %d hosts on %s", l.Prefix, len(l.hosts), Subnet)
	return nil
}

// addHost makes a namespace with lo, and eth0 on the switch at ip. Its
// resolv.conf names the lab DNS, so programs that use the system resolver
// (Kamailio, getaddrinfo) find the lab's zones.
func (l *Lab) addHost(name, ip string) (*Host, error) {
	h := &Host{Name: name, NS: l.Prefix + "-" + name, IP: ip}
	etc := filepath.Join("/etc/netns", h.NS)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+DNSIP+"\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	port := "v" + name // inside the switch's namespace: no clash with other labs
	for _, args := range [][]string{
		{"netns", "add", h.NS},
		// Both ends made straight in their namespaces: no name is ever
		// taken in the host's own.
		{"link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.switchNS()},
		{"-n", l.switchNS(), "link", "set", port, "master", "br0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := l.ip(args...); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	l.hosts[name] = h
	l.mu.Unlock()
	return h, nil
}

// AddPhoneHost adds the next phone host (p1 at 10.77.0.101, p2, …).
func (l *Lab) AddPhoneHost() (*Host, error) {
	l.mu.Lock()
	if l.nextPhone >= maxPhones {
		l.mu.Unlock()
		return nil, errors.New("lab: no more phone addresses")
	}
	l.nextPhone++
	n := l.nextPhone
	l.mu.Unlock()
	return l.addHost(fmt.Sprintf("p%d", n), fmt.Sprintf("10.77.0.%d", phoneBase+n))
}

// Host returns the host named name (nil if there is none).
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts[name]
}

// Hosts returns every host, servers first.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	hs := make([]*Host, 0, len(l.hosts))
	for _, h := range l.hosts {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hostOrder(hs[i].Name) < hostOrder(hs[j].Name) })
	return hs
}

// hostOrder sorts servers in their order, then phones by number.
func hostOrder(name string) int {
	for i, s := range serverHosts {
		if s.name == name {
			return i
		}
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "p")); err == nil && strings.HasPrefix(name, "p") {
		return 100 + n
	}
	return 1000
}

// SIPAddr returns host's SIP address, IP:5060.
func (l *Lab) SIPAddr(host string) string {
	if h := l.Host(host); h != nil {
		return h.IP + ":" + strconv.Itoa(SIPPort)
	}
	return ""
}

// RedisURL is a.test's store, as the nodes reach it.
func (l *Lab) RedisURL() string { return "redis://" + RedisIP + ":6379/0" }

// usersFile is b1's users file.
func (l *Lab) usersFile() string { return filepath.Join(l.Dir, "b1", "users.txt") }

// startServers writes the configuration files and starts the DNS, Redis,
// the nodes and Kamailio, waiting for each to answer.
func (l *Lab) startServers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var zones []string
	for _, z := range Zones {
		zones = append(zones, "--zone", filepath.Join(l.cfg.Root, "deploy", "lab", "netns", z+".zone"))
	}
	if _, err := l.Start(Spec{Host: "dns", Name: "dns", Args: append([]string{l.cfg.Sipfed, "dns", "--listen", DNSIP + ":53"}, zones...)}); err != nil {
		return err
	}
	redisDir := filepath.Join(l.Dir, "redis")
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		return err
	}
	if _, err := l.Start(Spec{Host: "redis", Name: "redis", Args: []string{l.cfg.Redis, "--bind", RedisIP, "--port", "6379",
		"--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", redisDir, "--daemonize", "no"}}); err != nil {
		return err
	}
	if err := l.waitTCP(ctx, "dns", DNSIP+":53"); err != nil {
		return fmt.Errorf("%w\n%s", err, l.Log("dns"))
	}
	for {
		err := l.redisPing(ctx, "redis", RedisIP+":6379")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("lab: redis: %v\n%s", err, l.Log("redis"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Users before the nodes, so that the first REGISTER finds them.
	if err := os.MkdirAll(filepath.Dir(l.usersFile()), 0o755); err != nil {
		return err
	}
	byDomain := map[string][]string{}
	for aor := range l.cfg.Users {
		_, d, _ := strings.Cut(aor, "@")
		byDomain[d] = append(byDomain[d], aor)
	}
	for d, aors := range byDomain {
		sort.Strings(aors)
		var pws []string
		for _, a := range aors {
			pws = append(pws, l.cfg.Users[a])
		}
		if err := l.addUsers(ctx, d, aors, pws); err != nil {
			return err
		}
	}

	for _, n := range ANodes {
		if err := l.StartNode(n); err != nil {
			return err
		}
	}
	if err := l.StartNode("b1"); err != nil {
		return err
	}
	if l.cfg.Kamailio != "" {
		if err := l.startKamailio(); err != nil {
			return err
		}
	}
	for _, n := range []string{"a1", "a2", "a3", "b1", "kam"} {
		if l.Host(n) == nil {
			continue
		}
		domain := map[byte]string{'a': "a.test", 'b': "b.test", 'k': "kam.test"}[n[0]]
		if err := l.waitSIP(ctx, n, l.SIPAddr(n), domain); err != nil {
			return fmt.Errorf("%s: %w\n%s", n, err, l.Log(n))
		}
	}
	l.cfg.Logf("lab %s: DNS, Redis, a1 a2 a3 (a.test), b1 (b.test)%s answering", l.Prefix,
		map[bool]string{true: ", kam (kam.test, Kamailio)"}[l.cfg.Kamailio != ""])
	return nil
}

// AddUser adds (or changes) a user of a.test (in Redis) or b.test (in
// b1's users file, reread within a second). kam.test's users are made at
// Up only: Kamailio reads its db_text tables once.
func (l *Lab) AddUser(ctx context.Context, aor, password string) error {
	_, d, _ := strings.Cut(aor, "@")
	if d == "kam.test" {
		return errors.New("lab: kam.test users are made at Up (Config.Users)")
	}
	return l.addUsers(ctx, d, []string{aor}, []string{password})
}

// AddAlias makes alias (e.g. 1001@a.test) stand for the user aor of the
// same domain (sipfed user alias add), in a.test's Redis or b.test's
// users file.
func (l *Lab) AddAlias(ctx context.Context, alias, aor string) error {
	_, d, _ := strings.Cut(alias, "@")
	switch d {
	case "a.test":
		if out, err := l.Run(ctx, "redis", "", l.cfg.Sipfed, "user", "alias", "add", "--store", l.RedisURL(), alias, aor); err != nil {
			return fmt.Errorf("lab: alias %s: %v: %s", alias, err, out)
		}
	case "b.test":
		out, err := exec.CommandContext(ctx, l.cfg.Sipfed, "user", "alias", "add", "--users", l.usersFile(), alias, aor).CombinedOutput()
		if err != nil {
			return fmt.Errorf("lab: alias %s: %v: %s", alias, err, out)
		}
	default:
		return fmt.Errorf("lab: aliases of %s are not made here", d)
	}
	return nil
}

func (l *Lab) addUsers(ctx context.Context, domain string, aors, passwords []string) error {
	stdin := strings.Join(passwords, "\n") + "\n"
	switch domain {
	case "a.test":
		// From the redis host: Redis is reachable only inside the lab.
		args := append([]string{l.cfg.Sipfed, "user", "add", "--store", l.RedisURL(), "--password-stdin"}, aors...)
		if out, err := l.Run(ctx, "redis", stdin, args...); err != nil {
			return fmt.Errorf("lab: users of a.test: %v: %s", err, out)
		}
	case "b.test":
		cmd := exec.CommandContext(ctx, l.cfg.Sipfed, append([]string{"user", "add", "--users", l.usersFile(), "--password-stdin"}, aors...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: users of b.test: %v: %s", err, out)
		}
	case "kam.test":
		l.mu.Lock()
		for i, a := range aors {
			l.kamUsers[a] = passwords[i]
		}
		l.mu.Unlock()
	default:
		return fmt.Errorf("lab: %s is no domain of the lab", domain)
	}
	return nil
}

// nodeArgs is the command line of a sipfed node on host.
func (l *Lab) nodeArgs(host string) []string {
	h := l.Host(host)
	a := []string{l.cfg.Sipfed, "serve",
		"--listen", "udp:" + h.IP + ":5060", "--listen", "tcp:" + h.IP + ":5060", "--advertise", h.IP,
		"--node-id", host, "--dns", DNSIP + ":53", "--http", h.IP + ":" + strconv.Itoa(HTTPPort),
		"--failover-timeout", l.cfg.FailoverTimeout.String(), "--log-level", l.cfg.LogLevel,
		"--enum-suffix", "e164.lab"}
	// The other servers send for many phones from one address: never
	// rate-limited or banned (README: What an operator must still do).
	for _, s := range serverHosts {
		if strings.HasPrefix(s.name, "a") || s.name == "b1" || s.name == "kam" {
			a = append(a, "--trusted", s.ip)
		}
	}
	if strings.HasPrefix(host, "a") {
		a = append(a, "--domain", "a.test", "--store", l.RedisURL(), "--users", "redis")
	} else {
		a = append(a, "--domain", "b.test", "--users", l.usersFile())
	}
	return append(a, l.cfg.NodeArgs...)
}

// StartNode starts (or starts again) the sipfed node on host: a1, a2, a3
// or b1. Its log is appended to.
func (l *Lab) StartNode(host string) error {
	if l.Host(host) == nil || !(host == "b1" || strings.HasPrefix(host, "a")) {
		return fmt.Errorf("lab: %s is not a node", host)
	}
	_, err := l.Start(Spec{Host: host, Name: host, Args: l.nodeArgs(host)})
	return err
}

// WaitNode waits until the node on host answers OPTIONS.
func (l *Lab) WaitNode(ctx context.Context, host string) error {
	domain := "a.test"
	if host == "b1" {
		domain = "b.test"
	}
	return l.waitSIP(ctx, host, l.SIPAddr(host), domain)
}

// startKamailio writes Kamailio's configuration and users and starts it.
func (l *Lab) startKamailio() error {
	dir := filepath.Join(l.Dir, "kamailio")
	db := filepath.Join(dir, "db")
	run := filepath.Join(dir, "run")
	for _, d := range []string{db, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// db_text: the subscriber table's version (7 in 5.6) and the users'
	// HA1 only, as sipfed stores them.
	if err := os.WriteFile(filepath.Join(db, "version"), []byte("table_name(string) table_version(int)\nsubscriber:7\n"), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("id(int,auto) username(string) domain(string) password(string,null) ha1(string) ha1b(string)\n")
	l.mu.Lock()
	aors := make([]string, 0, len(l.kamUsers))
	for a := range l.kamUsers {
		aors = append(aors, a)
	}
	sort.Strings(aors)
	for i, aor := range aors {
		u, d, _ := strings.Cut(aor, "@")
		pw := l.kamUsers[aor]
		ha1 := md5.Sum([]byte(u + ":" + d + ":" + pw))
		ha1b := md5.Sum([]byte(aor + ":" + d + ":" + pw))
		fmt.Fprintf(&b, "%d:%s:%s::%s:%s\n", i+1, u, d, hex.EncodeToString(ha1[:]), hex.EncodeToString(ha1b[:]))
	}
	l.mu.Unlock()
	if err := os.WriteFile(filepath.Join(db, "subscriber"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	tmpl, err := os.ReadFile(filepath.Join(l.cfg.Root, "deploy", "kamailio", "peer.cfg.tmpl"))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	cfg := strings.NewReplacer("@IP@", l.Host("kam").IP, "@DBURL@", "text://"+db, "@SECRET@", hex.EncodeToString(secret)).Replace(string(tmpl))
	cfgFile := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return err
	}
	// -DD: stay in the foreground (its workers are still forked), -E: log
	// to stderr (the log file).
	args := []string{l.cfg.Kamailio, "-f", cfgFile, "-DD", "-E", "-Y", run, "-m", "64", "-M", "8"}
	if out, err := l.Run(context.Background(), "kam", "", append([]string{l.cfg.Kamailio, "-c"}, args[1:]...)...); err != nil {
		return fmt.Errorf("lab: kamailio -c: %v\n%s", err, out)
	}
	_, err = l.Start(Spec{Host: "kam", Name: "kam", Args: args})
	return err
}

// Spec is a process to start in the lab.
type Spec struct {
	Host   string    // the host it runs in
	Name   string    // its log is DIR/logs/NAME.log (appended to); a later process of the same name replaces it in Proc
	Args   []string  // the command and its arguments
	Stdin  string    // "": none
	Stdout io.Writer // nil: the log file
	Env    []string  // added to the environment
}

// Proc is a process the lab started.
type Proc struct {
	Name    string
	Host    *Host
	LogPath string
	Started time.Time
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start starts a process in a host's namespace (through ip netns exec,
// which also gives it the host's resolv.conf).
func (l *Lab) Start(s Spec) (*Proc, error) {
	h := l.Host(s.Host)
	if h == nil {
		return nil, fmt.Errorf("lab: no host %q", s.Host)
	}
	if s.Name == "" || strings.ContainsAny(s.Name, "/ ") || len(s.Args) == 0 {
		return nil, fmt.Errorf("lab: process %q: want a name without / or spaces, and a command", s.Name)
	}
	p := &Proc{Name: s.Name, Host: h, LogPath: filepath.Join(l.Dir, "logs", s.Name+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer logf.Close() // the child has its own copy
	p.cmd = exec.Command(l.ipBin, append([]string{"netns", "exec", h.NS}, s.Args...)...)
	p.cmd.Stderr, p.cmd.Stdout = logf, logf
	if s.Stdout != nil {
		p.cmd.Stdout = s.Stdout
	}
	if s.Stdin != "" {
		p.cmd.Stdin = strings.NewReader(s.Stdin)
	}
	if len(s.Env) > 0 {
		p.cmd.Env = append(os.Environ(), s.Env...)
	}
	// A group of its own, so that Signal reaches its children (Kamailio's
	// workers); killed with its maker unless detached.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if l.cfg.Detach {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	errc := make(chan error, 1)
	l.thread <- func() { errc <- p.cmd.Start() }
	err = <-errc
	if err == nil {
		p.Started = time.Now()
		l.procs[s.Name] = p
	}
	l.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", s.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Run runs a command in host's namespace to its end (at most a minute)
// and returns its combined output.
func (l *Lab) Run(ctx context.Context, host, stdin string, args ...string) ([]byte, error) {
	h := l.Host(host)
	if h == nil {
		return nil, fmt.Errorf("lab: no host %q", host)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.ipBin, append([]string{"netns", "exec", h.NS}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}

// Proc returns the latest process started under name (nil if none).
func (l *Lab) Proc(name string) *Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[name]
}

// Log returns the log of the process name.
func (l *Lab) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.Dir, "logs", name+".log"))
	return string(b)
}

// Kill sends sig to the process name and its group, and waits up to 10 s
// for it to end when sig is SIGKILL.
func (l *Lab) Kill(name string, sig syscall.Signal) error {
	p := l.Proc(name)
	if p == nil {
		return fmt.Errorf("lab: no process %q", name)
	}
	if err := p.Signal(sig); err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		if ok, _ := p.Wait(10 * time.Second); !ok {
			return fmt.Errorf("lab: %s still running 10 s after SIGKILL", name)
		}
	}
	return nil
}

// Unplug takes host's link down: to everyone else the host is silent, as
// a machine that lost power (its processes run on and notice nothing).
func (l *Lab) Unplug(host string) error {
	h := l.Host(host)
	if h == nil {
		return fmt.Errorf("lab: no host %q", host)
	}
	return l.ip("-n", h.NS, "link", "set", "eth0", "down")
}

// Plug takes host's link up again.
func (l *Lab) Plug(host string) error {
	h := l.Host(host)
	if h == nil {
		return fmt.Errorf("lab: no host %q", host)
	}
	return l.ip("-n", h.NS, "link", "set", "eth0", "up")
}

// Close kills every process of the lab and removes its namespaces, bridge,
// /etc/netns folders, marker and (when it made it) its folder.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := make([]*Proc, 0, len(l.procs))
	for _, p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()
	for _, p := range procs {
		p.Signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		p.Wait(5 * time.Second)
	}
	err := Down(l.Prefix)
	close(l.thread)
	return err
}

// Signal sends sig to the process's group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.cmd.Process == nil {
		return errors.New("lab: not started")
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("lab: kill %s: %w", p.Name, err)
	}
	return nil
}

// Wait waits up to timeout for the process to end and returns its exit
// error; ended is false when it still runs.
func (p *Proc) Wait(timeout time.Duration) (ended bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Log returns what the process wrote to its log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}
