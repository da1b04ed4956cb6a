package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sipfed/sipfed/internal/testenv"
)

// runningNode is a sipfed started by a smoke run.
type runningNode struct {
	name    string
	cmd     *exec.Cmd
	health  string // its /healthz URL
	out     *testenv.Buffer
	drain   time.Duration
	exited  chan struct{} // closed when the process has exited
	waitErr error         // its exit, once exited is closed
}

// smokeEnv is what the smoke runs put in place of a deployment's
// surroundings: Redis, certificates, files.
type smokeEnv struct {
	dir      string // readable by the image's uid
	redis    *testenv.Redis
	cert     string
	key      string
	mu       sync.Mutex
	newPorts map[string]int
}

func newSmokeEnv(t *testing.T, withRedis bool) *smokeEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "sipfed-smoke-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	se := &smokeEnv{dir: dir, newPorts: map[string]int{}}
	if withRedis {
		se.redis = testenv.StartRedis(t)
	}
	cert, key := testenv.NewCA(t).Issue(t, "a.example", "127.0.0.1")
	se.cert, se.key = se.copy(t, cert), se.copy(t, key)
	return se
}

// copy puts file where the image's uid can read it.
func (se *smokeEnv) copy(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return se.write(t, filepath.Base(file), b)
}

func (se *smokeEnv) write(t *testing.T, name string, b []byte) string {
	f, err := os.CreateTemp(se.dir, "*-"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o644); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// nodeDir is a node's working directory.
func (se *smokeEnv) nodeDir(node string) string {
	return filepath.Join(se.dir, regexp.MustCompile(`[^A-Za-z0-9.-]+`).ReplaceAllString(node, "_"))
}

// port gives each address a deployment listens on a free loopback port,
// the same for every transport on that address (udp and tcp share 5060).
func (se *smokeEnv) port(t *testing.T, node, hostport string) int {
	se.mu.Lock()
	defer se.mu.Unlock()
	k := node + " " + hostport
	if _, ok := se.newPorts[k]; !ok {
		se.newPorts[k] = testenv.FreePort(t)
	}
	return se.newPorts[k]
}

// rewrite changes the values that name this deployment's machines, files
// and ports into this test's, and nothing else.
func (se *smokeEnv) rewrite(t *testing.T, node string, s setting) string {
	loop := func(hostport string) string {
		return "127.0.0.1:" + strconv.Itoa(se.port(t, node, hostport))
	}
	switch s.flag {
	case "listen":
		var out []string
		for _, v := range strings.Split(s.value, ",") {
			tr, hp, _ := strings.Cut(strings.TrimSpace(v), ":")
			out = append(out, tr+":"+loop(hp))
		}
		return strings.Join(out, ",")
	case "http", "web":
		return loop(s.flag)
	case "advertise", "media-address", "media-public-address":
		return "127.0.0.1"
	case "store":
		u, err := url.Parse(s.value)
		if err != nil || !strings.HasPrefix(u.Scheme, "redis") {
			return s.value
		}
		if se.redis == nil {
			t.Fatalf("%s: --store %s but no Redis in this smoke run", node, s.value)
		}
		u.Scheme, u.Host, u.User = "redis", se.redis.Addr, nil
		return u.String()
	case "users":
		if s.value == "redis" {
			return s.value
		}
		return filepath.Join(se.nodeDir(node), "users.txt")
	case "tls-cert":
		return se.cert
	case "tls-key":
		return se.key
	case "tls-ca":
		return se.cert
	case "dns":
		return "127.0.0.1:1" // no DNS traffic leaves the machine
	}
	return s.value
}

// start runs a node configuration: the settings, rewritten, at the level
// each was given (flags, SIPFED_*, a --config file), so that the binary
// itself merges them; as the image's uid in a folder of its own.
func (se *smokeEnv) start(t *testing.T, n nodeConfig) *runningNode {
	t.Helper()
	var rs []setting
	for _, s := range n.settings {
		s.value = se.rewrite(t, n.name, s)
		rs = append(rs, s)
	}
	if effOne(rs, "http") == "" {
		rs = append(rs, setting{flag: "http", value: se.rewrite(t, n.name, setting{flag: "http"}), level: argLevel})
	}
	args := []string{"serve"}
	var env []string
	file := map[string]any{}
	for _, s := range rs {
		switch {
		case s.flag == "config":
		case s.level == argLevel:
			args = append(args, "--"+s.flag+"="+s.value)
		case s.level == envLevel:
			env = append(env, envName(s.flag)+"="+s.value)
		case serveFlags[s.flag].repeatable:
			l, _ := file[s.flag].([]string)
			file[s.flag] = append(l, s.value)
		default:
			file[s.flag] = s.value
		}
	}
	if len(file) > 0 {
		b, err := yaml.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config="+se.write(t, "sipfed.yaml", b))
	}
	cwd := se.nodeDir(n.name)
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	switch {
	case n.readOnlyCwd:
		err = os.Chmod(cwd, 0o555)
	case os.Geteuid() == 0:
		err = os.Chown(cwd, imageUID, imageUID)
	}
	if err != nil {
		t.Fatal(err)
	}
	rn := &runningNode{name: n.name, out: &testenv.Buffer{}, exited: make(chan struct{}),
		health: "http://" + effOne(rs, "http") + "/healthz"}
	rn.drain, _ = effDuration(rs, "drain")
	rn.cmd = exec.Command(sipfedBin, args...)
	rn.cmd.Env = env
	rn.cmd.Dir = cwd
	rn.cmd.Stdout, rn.cmd.Stderr = rn.out, rn.out
	asImageUser(rn.cmd)
	if err := rn.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		rn.waitErr = rn.cmd.Wait()
		close(rn.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-rn.exited:
		default:
			rn.cmd.Process.Kill()
			<-rn.exited
		}
	})
	return rn
}

// healthy waits for /healthz to answer 200.
func (rn *runningNode) healthy() error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-rn.exited:
			return fmt.Errorf("%s: sipfed exited: %v\n%s", rn.name, rn.waitErr, rn.out)
		default:
		}
		if resp, err := http.Get(rn.health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s did not answer 200 within 10 s\n%s", rn.name, rn.health, rn.out)
}

// stop sends SIGTERM, as systemd, Docker and the kubelet do, and wants a
// clean exit within the drain.
func (rn *runningNode) stop(t *testing.T) {
	t.Helper()
	if err := rn.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rn.exited:
		if rn.waitErr != nil {
			t.Errorf("%s: exit after SIGTERM: %v (want status 0)\n%s", rn.name, rn.waitErr, rn.out)
		}
	case <-time.After(rn.drain + 5*time.Second):
		t.Errorf("%s: still running %v after SIGTERM\n%s", rn.name, rn.drain+5*time.Second, rn.out)
	}
}

// smoke starts every node of one deployment together (they share one
// Redis, as deployed), waits for each to be healthy, and stops them.
func smoke(t *testing.T, kind string, withRedis bool) {
	nodes, errs := checkAll(loadTree(t))
	if len(errs) > 0 {
		t.Skipf("TestDeployFiles fails; smoke runs wait for it (%d errors)", len(errs))
	}
	se := newSmokeEnv(t, withRedis)
	var running []*runningNode
	for _, n := range nodes[kind] {
		running = append(running, se.start(t, n))
	}
	for _, rn := range running {
		if err := rn.healthy(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: healthy at %s", rn.name, rn.health)
	}
	for _, rn := range running {
		rn.stop(t)
	}
}

func TestSystemdConfigRuns(t *testing.T) { smoke(t, "systemd", true) }
func TestComposeNodesRun(t *testing.T)   { smoke(t, "compose", true) }
func TestK8sNodesRun(t *testing.T)       { smoke(t, "k8s", true) }

// TestImageDefaultsRun runs the image's CMD as `docker run` does with the
// two variables the Dockerfile says to give, and asks /healthz with the
// image's health probe, as its HEALTHCHECK does.
func TestImageDefaultsRun(t *testing.T) {
	nodes, errs := checkAll(loadTree(t))
	if len(errs) > 0 {
		t.Skipf("TestDeployFiles fails; smoke runs wait for it (%d errors)", len(errs))
	}
	n := nodes["docker"][0]
	n.settings = append(n.settings, setting{flag: "domain", value: "a.example", level: envLevel}, setting{flag: "advertise", value: "203.0.113.10", level: envLevel})
	se := newSmokeEnv(t, false)
	rn := se.start(t, n)
	if err := rn.healthy(); err != nil {
		t.Fatal(err)
	}
	probe := func(u string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, healthzBin, u)
		asImageUser(cmd)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := probe(rn.health); err != nil {
		t.Errorf("healthz %s: %v", rn.health, err)
	}
	if probe(strings.TrimSuffix(rn.health, "/healthz")+"/nosuch") == nil {
		t.Error("healthz passes a 404")
	}
	rn.stop(t)
	if probe(rn.health) == nil {
		t.Error("healthz passes a stopped server")
	}
	// The users file is relative to the image's WORKDIR, where sipfed
	// writes its nonce secret beside it.
	if _, err := os.Stat(filepath.Join(rn.cmd.Dir, "users.txt.secret")); err != nil {
		t.Errorf("no nonce secret beside the users file in the working directory: %v", err)
	}
}

// TestSmokeRunCatchesBadConfig: a value the flag parser takes but sipfed
// refuses when it starts (a log level, a network) fails the smoke run.
func TestSmokeRunCatchesBadConfig(t *testing.T) {
	base := loadTree(t)
	for _, tc := range []struct{ name, old, new string }{
		{"log level", "log-level: info", "log-level: loud"},
		{"trusted network", "  - 192.0.2.0/28", "  - 192.0.2.0/33"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sd, errs := checkSystemd(base.with(t, "systemd/sipfed.yaml", tc.old, tc.new))
			if len(errs) > 0 {
				t.Fatalf("the static checks already catch it (%v): pick a mistake only a start can find", errs)
			}
			rn := newSmokeEnv(t, true).start(t, sd)
			if err := rn.healthy(); err == nil {
				t.Errorf("sipfed started with %s", tc.new)
			} else {
				t.Logf("caught: %s", firstLine([]byte(err.Error())))
			}
		})
	}
}
