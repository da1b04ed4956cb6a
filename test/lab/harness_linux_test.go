package labtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/deploy/lab"
	"github.com/sipfed/sipfed/internal/testenv"
)

var (
	built     testenv.LazySipfed
	sipfedBin string
)

func TestMain(m *testing.M) {
	code := m.Run()
	built.Remove()
	os.Exit(code)
}

// needLab is testenv.Need for what is not an executable: a loud skip on a
// laptop, a failure when CI or SIPFED_INTEROP is set.
func needLab(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if testenv.Required() {
		t.Fatalf("%s; CI requires it", msg)
	}
	t.Skipf("SKIPPING: %s", msg)
}

// phoneHosts is how many phone hosts (p1…) each lab gets.
const phoneHosts = 6

// startLab builds sipfed (once per package) and brings a lab up with
// files in the test's temporary folder, removed when the test ends; with
// Kamailio (kam.test) when withKam and it is installed (l.Host("kam")
// says).
func startLab(t *testing.T, withKam bool) *lab.Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		needLab(t, "the lab makes network namespaces, veth pairs and a bridge: run the tests as root")
	}
	testenv.Need(t, "ip")
	testenv.Need(t, "redis-server")
	sipfedBin = built.Path(t)
	kam, _ := exec.LookPath("kamailio")
	if !withKam {
		kam = ""
	} else if kam == "" {
		if _, err := os.Stat("/usr/sbin/kamailio"); err == nil {
			kam = "/usr/sbin/kamailio"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	// LAB_KEEP=1 keeps the lab's files (every process's log) after the
	// test, in a folder it names.
	dir := t.TempDir()
	if os.Getenv("LAB_KEEP") != "" {
		var err error
		if dir, err = os.MkdirTemp("", "sipfed-lab-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("lab files kept in %s", dir)
	}
	l, err := lab.Up(ctx, lab.Config{Sipfed: sipfedBin, Kamailio: kam, Dir: dir, Phones: phoneHosts, Logf: t.Logf})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"a1", "a2", "a3", "b1", "kam"} {
				if l.Proc(n) != nil {
					t.Logf("--- log of %s (tail):\n%s", n, tail(l.Log(n), 3000))
				}
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if nss, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(nss, []byte(l.Prefix+"-")) {
			t.Errorf("lab down left namespaces:\n%s", nss)
		}
	})
	t.Logf("lab %s up in %v", l.Prefix, time.Since(start).Round(time.Millisecond))
	return l
}

// event is one line of `sipfed phone --json`, with when it was read.
type event struct {
	at        time.Time
	Event     string   `json:"event"`
	CallID    string   `json:"call_id"`
	Peer      string   `json:"peer"`
	Direction string   `json:"direction"`
	Reason    string   `json:"reason"`
	Status    int      `json:"status"`
	Duration  float64  `json:"duration_s"`
	Error     string   `json:"error"`
	Proxy     string   `json:"proxy"`
	To        string   `json:"to"`
	Streams   []stream `json:"streams"`
}

type stream struct {
	Kind            string `json:"kind"`
	Codec           string `json:"codec"`
	Local           string `json:"local"`
	Remote          string `json:"remote"`
	PacketsSent     int    `json:"packets_sent"`
	PacketsReceived int    `json:"packets_received"`
	Lost            int    `json:"lost"`
}

// phone is a `sipfed phone --json` running in a lab host.
type phone struct {
	name    string
	host    *lab.Host
	proc    *lab.Proc
	started time.Time

	mu      sync.Mutex
	events  []event
	raw     strings.Builder
	partial []byte
}

// Write takes the phone's standard output, one JSON event a line.
func (p *phone) Write(b []byte) (int, error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := p.partial[:i]
		p.raw.Write(line)
		p.raw.WriteByte('\n')
		ev := event{at: now}
		if json.Unmarshal(line, &ev) == nil {
			p.events = append(p.events, ev)
		}
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

// startPhone runs `sipfed phone --json --aor AOR --password-stdin ARGS…`
// in host, killed when the test ends.
func startPhone(t *testing.T, l *lab.Lab, host, name, aor, password string, args ...string) *phone {
	t.Helper()
	p := &phone{name: name, host: l.Host(host)}
	if p.host == nil {
		t.Fatalf("no host %s in the lab", host)
	}
	all := append([]string{sipfedBin, "phone", "--json", "--aor", aor, "--password-stdin"}, args...)
	proc, err := l.Start(lab.Spec{Host: host, Name: name, Args: all, Stdin: password + "\n", Stdout: p})
	if err != nil {
		t.Fatal(err)
	}
	p.proc, p.started = proc, proc.Started
	t.Cleanup(func() {
		proc.Signal(syscall.SIGKILL)
		proc.Wait(5 * time.Second)
	})
	return p
}

// all returns the events so far.
func (p *phone) all() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.events...)
}

// find returns the first event that satisfies match.
func (p *phone) find(match func(event) bool) (event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if match(ev) {
			return ev, true
		}
	}
	return event{}, false
}

// wait waits for an event named name (of callID, when not "").
func (p *phone) wait(name, callID string, timeout time.Duration) (event, bool) {
	deadline := time.Now().Add(timeout)
	for {
		ev, ok := p.find(func(e event) bool { return e.Event == name && (callID == "" || e.CallID == callID) })
		if ok || time.Now().After(deadline) {
			return ev, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustWait is wait, failing the test with the phone's output.
func (p *phone) mustWait(t *testing.T, name, callID string, timeout time.Duration) event {
	t.Helper()
	ev, ok := p.wait(name, callID, timeout)
	if !ok {
		t.Fatalf("%s: no %q event (call %q) within %v\n%s", p.name, name, callID, timeout, p.dump())
	}
	return ev
}

// exit waits for the process to end and returns its exit error.
func (p *phone) exit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	ended, err := p.proc.Wait(timeout)
	if !ended {
		t.Fatalf("%s still running after %v\n%s", p.name, timeout, p.dump())
	}
	return err
}

func (p *phone) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("--- %s (%s, %s) events:\n%s--- its stderr:\n%s", p.name, p.host.Name, p.host.IP, tail(p.raw.String(), 3000), tail(p.proc.Log(), 2000))
}

// callResult is a finished call as both phones saw it.
type callResult struct {
	id             string
	setup          time.Duration // the caller's start to its answered event
	caller, callee stream
}

// checkCall requires the caller's `call` to have ended well and the call
// to have had media straight between the two phones' hosts, at least
// minPackets received each way, as each phone counted it; the callee's
// end of the call is waited for up to calleeEnd.
func checkCall(t *testing.T, caller, callee *phone, minPackets int, calleeEnd time.Duration) callResult {
	t.Helper()
	if err := caller.exit(t, 30*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s\n%s", caller.name, err, caller.dump(), callee.dump())
	}
	ans := caller.mustWait(t, "answered", "", 0)
	up := caller.mustWait(t, "hangup", ans.CallID, 0)
	down := callee.mustWait(t, "hangup", ans.CallID, calleeEnd)
	r := callResult{id: ans.CallID, setup: ans.at.Sub(caller.started)}
	if len(up.Streams) == 0 || len(down.Streams) == 0 {
		t.Fatalf("call %s without streams: %+v / %+v", r.id, up, down)
	}
	r.caller, r.callee = up.Streams[0], down.Streams[0]
	ip := func(a string) string { h, _, _ := net.SplitHostPort(a); return h }
	if ip(r.caller.Local) != caller.host.IP || ip(r.caller.Remote) != callee.host.IP ||
		r.caller.Remote != r.callee.Local || r.callee.Remote != r.caller.Local {
		t.Errorf("call %s: media %s → %s (%s), %s → %s (%s): want straight between %s and %s",
			r.id, r.caller.Local, r.caller.Remote, caller.name, r.callee.Local, r.callee.Remote, callee.name, caller.host.IP, callee.host.IP)
	}
	if r.caller.PacketsReceived < minPackets || r.callee.PacketsReceived < minPackets {
		t.Errorf("call %s: %s received %d RTP packets, %s %d; want ≥ %d each", r.id, caller.name, r.caller.PacketsReceived, callee.name, r.callee.PacketsReceived, minPackets)
	}
	return r
}

func (r callResult) String() string {
	return fmt.Sprintf("setup %v, RTP %s ⇄ %s, packets received %d / %d, lost %d / %d",
		r.setup.Round(time.Millisecond), r.caller.Local, r.caller.Remote, r.caller.PacketsReceived, r.callee.PacketsReceived, r.caller.Lost, r.callee.Lost)
}

func (c callLog) String() string {
	return fmt.Sprintf("%s: %d in %v, to %s", c.node, c.status, c.setup, c.to)
}

var callLine = regexp.MustCompile(`msg=call call_id=(\S+) from=(\S+) to=(\S+) branches=\d+ status=(\d+) setup=(\S+)`)

// callLog is a node's log line of one INVITE.
type callLog struct {
	node, to string
	status   int
	setup    time.Duration
}

// callLogs returns the log lines of the call id on the nodes given.
func callLogs(l *lab.Lab, id string, nodes ...string) []callLog {
	var out []callLog
	for _, n := range nodes {
		for _, line := range strings.Split(l.Log(n), "\n") {
			m := callLine.FindStringSubmatch(line)
			if m == nil || m[1] != id {
				continue
			}
			st, _ := strconv.Atoi(m[4])
			d, _ := time.ParseDuration(m[5])
			out = append(out, callLog{node: n, to: m[3], status: st, setup: d})
		}
	}
	return out
}

// udpIn counts the UDP datagrams host's namespace received (delivered,
// and to ports nobody listens on): its own /proc/net/snmp.
func udpIn(t *testing.T, l *lab.Lab, host string) int {
	t.Helper()
	out, err := l.Run(context.Background(), host, "", "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("snmp of %s: %v", host, err)
	}
	var names, vals []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == "Udp:" {
			if names == nil {
				names = f
			} else {
				vals = f
			}
		}
	}
	n := 0
	for i := range names {
		if i < len(vals) && (names[i] == "InDatagrams" || names[i] == "NoPorts" || names[i] == "InErrors") {
			v, _ := strconv.Atoi(vals[i])
			n += v
		}
	}
	return n
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
