package interop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/testenv"
	locredis "github.com/sipfed/sipfed/location/redis"
)

// A phone behind NAT, made of network namespaces:
//
//	phone ns                 router ns                          host (this namespace)
//	alice 10.A.B.2 ── veth ── 10.A.B.1 | 10.A.B+1.2 ── veth ── 10.A.B+1.1 sipfed, bob
//	                          MASQUERADE out of the host side,
//	                          source ports → 61000-61999,
//	                          nothing unsolicited forwarded in
//
// The host has an unreachable route to 10.A.B.0/24: the phone's private
// address (its Contact, its Via sent-by) leads nowhere from the proxy;
// only the flow its REGISTER came from (10.A.B+1.2:61xxx) reaches it.

// natPortLo…natPortHi is the range the router maps source ports to: above
// Linux's ephemeral range, so a mapped port never equals the phone's own.
const natPortLo, natPortHi = 61000, 61999

// natLab is the topology above.
type natLab struct {
	ipBin    string
	iptables string // the iptables whose MASQUERADE worked in the router's namespace
	phoneNS  string // alice's namespace
	routerNS string // the NAT router's namespace
	phoneIP  string // alice's private address, unreachable from the host
	privNet  string // its /24
	routerIP string // the router's outside address: the phone as the host sees it
	hostIP   string // the host's address towards the router: sipfed and bob
	hostIf   string // the host's end of the link to the router
	outIf    string // the router's end of it (MASQUERADE out of it)
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

// startNATLab builds the topology with names and subnets of its own (tests
// may run side by side) and removes all of it when the test ends.
func startNATLab(t *testing.T) *natLab {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPING: network namespaces and iptables are Linux only")
	}
	if os.Geteuid() != 0 {
		needLab(t, "the NAT test makes network namespaces, veth pairs and iptables rules: run it as root")
	}
	l := &natLab{ipBin: testenv.Need(t, "ip")}
	testenv.Need(t, "iptables")

	sfx := fmt.Sprintf("%06x", rand.IntN(1<<24))
	l.phoneNS, l.routerNS = "sfed-phone-"+sfx, "sfed-nat-"+sfx
	phoneIf, routerIn := "sfp"+sfx, "sfr"+sfx
	l.outIf, l.hostIf = "sfo"+sfx, "sfh"+sfx
	var a, b int
	for i := 0; ; i++ {
		a, b = 16+rand.IntN(224), 2*rand.IntN(127)
		if !l.subnetsInUse(t, fmt.Sprintf("10.%d.%d.", a, b), fmt.Sprintf("10.%d.%d.", a, b+1)) {
			break
		}
		if i == 20 {
			t.Fatal("nat lab: no free pair of 10.x.y.0/24 subnets")
		}
	}
	priv, pub := fmt.Sprintf("10.%d.%d.", a, b), fmt.Sprintf("10.%d.%d.", a, b+1)
	l.phoneIP, l.privNet = priv+"2", priv+"0/24"
	l.routerIP, l.hostIP = pub+"2", pub+"1"

	// Teardown first, so that a setup failing halfway is undone too.
	t.Cleanup(func() {
		// Deleting a namespace deletes the veth ends in it, and so the pairs.
		for _, args := range [][]string{
			{"netns", "del", l.phoneNS}, {"netns", "del", l.routerNS},
			{"link", "del", l.hostIf}, {"route", "del", "unreachable", l.privNet},
		} {
			exec.Command(l.ipBin, args...).Run()
		}
	})
	steps := [][]string{
		{"netns", "add", l.phoneNS},
		{"netns", "add", l.routerNS},
		{"link", "add", phoneIf, "type", "veth", "peer", "name", routerIn},
		{"link", "set", phoneIf, "netns", l.phoneNS},
		{"link", "set", routerIn, "netns", l.routerNS},
		{"link", "add", l.hostIf, "type", "veth", "peer", "name", l.outIf},
		{"link", "set", l.outIf, "netns", l.routerNS},

		{"-n", l.phoneNS, "link", "set", "lo", "up"},
		{"-n", l.phoneNS, "addr", "add", l.phoneIP + "/24", "dev", phoneIf},
		{"-n", l.phoneNS, "link", "set", phoneIf, "up"},
		{"-n", l.phoneNS, "route", "add", "default", "via", priv + "1"},

		{"-n", l.routerNS, "link", "set", "lo", "up"},
		{"-n", l.routerNS, "addr", "add", priv + "1/24", "dev", routerIn},
		{"-n", l.routerNS, "addr", "add", l.routerIP + "/24", "dev", l.outIf},
		{"-n", l.routerNS, "link", "set", routerIn, "up"},
		{"-n", l.routerNS, "link", "set", l.outIf, "up"},
		{"netns", "exec", l.routerNS, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},

		{"addr", "add", l.hostIP + "/24", "dev", l.hostIf},
		{"link", "set", l.hostIf, "up"},
		// Without it, packets to the private side would leave by the
		// default route and be lost; with it, sending fails at once.
		{"route", "add", "unreachable", l.privNet},
	}
	for _, args := range steps {
		if out, err := exec.Command(l.ipBin, args...).CombinedOutput(); err != nil {
			needLab(t, "network namespaces (ip %s): %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}

	// iptables: the nf_tables one (Debian's default), else the legacy one.
	var errs []string
	for _, name := range []string{"iptables", "iptables-legacy"} {
		bin, err := exec.LookPath(name)
		if err != nil {
			errs = append(errs, name+": not found")
			continue
		}
		if err := l.masquerade(bin); err != nil {
			errs = append(errs, name+": "+err.Error())
			exec.Command(l.ipBin, "netns", "exec", l.routerNS, bin, "-t", "nat", "-F").Run()
			exec.Command(l.ipBin, "netns", "exec", l.routerNS, bin, "-F").Run()
			continue
		}
		l.iptables = bin
		break
	}
	if l.iptables == "" {
		needLab(t, "iptables MASQUERADE in a network namespace works with neither backend:\n%s", strings.Join(errs, "\n"))
	}
	if out, err := exec.Command(l.ipBin, "route", "get", l.phoneIP).CombinedOutput(); err == nil {
		t.Fatalf("nat lab: the host reaches the phone's private address %s: %s", l.phoneIP, out)
	}
	t.Logf("nat lab: alice %s in %s behind %s (%s, %s), host %s on %s", l.phoneIP, l.phoneNS, l.routerNS, l.routerIP, l.iptables, l.hostIP, l.hostIf)
	return l
}

// masquerade sets up the router: source NAT out of the host side (UDP and
// TCP ports remapped), and a stateful filter that forwards from the host
// side only what answers a flow opened from inside.
func (l *natLab) masquerade(bin string) error {
	ports := fmt.Sprintf("%d-%d", natPortLo, natPortHi)
	for _, rule := range [][]string{
		{"-t", "nat", "-A", "POSTROUTING", "-o", l.outIf, "-p", "udp", "-j", "MASQUERADE", "--to-ports", ports},
		{"-t", "nat", "-A", "POSTROUTING", "-o", l.outIf, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", ports},
		{"-t", "nat", "-A", "POSTROUTING", "-o", l.outIf, "-j", "MASQUERADE"},
		{"-A", "FORWARD", "-i", l.outIf, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-i", l.outIf, "-j", "DROP"},
	} {
		args := append([]string{"netns", "exec", l.routerNS, bin}, rule...)
		if out, err := exec.Command(l.ipBin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(rule, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// subnetsInUse reports whether the host has an address or route in any
// of the subnets (given as "10.a.b." prefixes).
func (l *natLab) subnetsInUse(t *testing.T, prefixes ...string) bool {
	t.Helper()
	var all strings.Builder
	for _, args := range [][]string{{"-4", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command(l.ipBin, args...).Output()
		if err != nil {
			needLab(t, "ip %s: %v", strings.Join(args, " "), err)
		}
		all.Write(out)
	}
	for _, p := range prefixes {
		if strings.Contains(all.String(), " "+p) {
			return true
		}
	}
	return false
}

// counters returns the router's rules with their packet counts.
func (l *natLab) counters() string {
	var s strings.Builder
	for _, table := range []string{"nat", "filter"} {
		out, _ := exec.Command(l.ipBin, "netns", "exec", l.routerNS, l.iptables, "-t", table, "-L", "-n", "-v").CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, l.outIf) {
				s.WriteString("  " + strings.Join(strings.Fields(line), " ") + "\n")
			}
		}
	}
	return s.String()
}

// sipCapture is tshark printing one line per SIP message seen on the
// host's link to the router and on lo (bob ↔ sipfed), as it sees them.
type sipCapture struct {
	cmd       *exec.Cmd
	out, errs *testenv.Buffer
	done      chan error
}

func startSIPCapture(t *testing.T, l *natLab, sipPort int) *sipCapture {
	t.Helper()
	bin := testenv.Need(t, "tshark")
	c := &sipCapture{out: &testenv.Buffer{}, errs: &testenv.Buffer{}, done: make(chan error, 1)}
	pub := strings.TrimSuffix(l.hostIP, "1") + "0/24"
	c.cmd = exec.Command(bin, "-l", "-n", "-i", "lo", "-i", l.hostIf, "-f", "net "+pub+" or net "+l.privNet,
		"-d", fmt.Sprintf("udp.port==%d,sip", sipPort), "-d", fmt.Sprintf("tcp.port==%d,sip", sipPort),
		"-Y", "sip", "-T", "fields", "-E", "separator=|", "-E", "aggregator=/",
		"-e", "frame.time_relative", "-e", "frame.interface_name",
		"-e", "ip.src", "-e", "udp.srcport", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "udp.dstport", "-e", "tcp.dstport",
		"-e", "sip.Request-Line", "-e", "sip.Status-Line", "-e", "sip.CSeq", "-e", "sip.Call-ID")
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.errs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(c.errs.String(), "Capturing on") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("tshark did not start capturing:\n%s", c.errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// ladder returns the captured SIP messages of the call callID in time
// order, one a line: seconds, interface, source → destination, request or
// status line, CSeq.
func (c *sipCapture) ladder(callID string) string {
	time.Sleep(300 * time.Millisecond) // what is on the wire reaches the output
	type msg struct {
		at   float64
		line string
	}
	var msgs []msg
	for _, line := range strings.Split(c.out.String(), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 12 || callID != "" && !strings.Contains(f[11], callID) {
			continue
		}
		at, _ := strconv.ParseFloat(f[0], 64)
		msgs = append(msgs, msg{at, fmt.Sprintf("  %8.3f %-10s %s:%s → %s:%s  %s  [%s]\n", at, f[1], f[2], f[3]+f[4], f[5], f[6]+f[7], f[8]+f[9], f[10])})
	}
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].at < msgs[j].at })
	var s strings.Builder
	for _, m := range msgs {
		s.WriteString(m.line)
	}
	return s.String()
}

// mark returns how many messages the phone's control connection has
// delivered: waitSince looks only at later ones (one call after another).
func (p *phone) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// waitSince waits for a message after mark that satisfies match.
func (p *phone) waitSince(mark int, timeout time.Duration, match func(map[string]any) bool) (map[string]any, bool) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, m := range p.msgs[min(mark, len(p.msgs)):] {
			if match(m) {
				p.mu.Unlock()
				return m, true
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// events returns the call events after mark, one a line.
func (p *phone) events(mark int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s strings.Builder
	for _, m := range p.msgs[min(mark, len(p.msgs)):] {
		if m["event"] == true && m["class"] == "call" {
			fmt.Fprintf(&s, "  %v %v %v\n", m["type"], m["direction"], m["param"])
		}
	}
	return s.String()
}

// callID returns the SIP Call-ID of the first call event after mark.
func (p *phone) callID(mark int) string {
	m, ok := p.waitSince(mark, 0, func(m map[string]any) bool {
		id, _ := m["id"].(string)
		return m["event"] == true && m["class"] == "call" && id != ""
	})
	if !ok {
		return ""
	}
	return m["id"].(string)
}

// traceStart is the line before each message of baresip's SIP trace
// (-s): "#", then "<transport> <source> -> <destination>".
var traceStart = regexp.MustCompile(`(?m)^(?:\x1b\[[0-9;]*m)?#\r?\n([a-zA-Z]+ \S+ -> \S+)\r?\n`)

// sipTrace returns the messages of baresip's SIP trace (-s) that mention
// callID.
func (p *phone) sipTrace(callID string) string {
	var s strings.Builder
	out := p.out.String()
	blocks := traceStart.Split(out, -1)
	heads := traceStart.FindAllStringSubmatch(out, -1)
	for i, h := range heads {
		body, _, _ := strings.Cut(blocks[i+1], "\x1b[")
		if callID != "" && !strings.Contains(body, callID) {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimLeft(body, "\r\n"), "\n")
		cseq := ""
		for _, line := range strings.Split(body, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "CSeq") {
				cseq = strings.TrimSpace(v)
				break
			}
		}
		fmt.Fprintf(&s, "  %s  %s  [%s]\n", h[1], strings.TrimSpace(first), cseq)
	}
	return s.String()
}

// TestBaresipBehindNAT: baresip alice@a.test runs in a network namespace
// behind a NAT router (iptables MASQUERADE, ports remapped, no unsolicited
// inbound); baresip bob@a.test and `sipfed serve` run on the host, which
// cannot reach alice's private address. Over UDP, then over TCP:
// alice registers, and her binding shows the NAT (received at the router's
// address, not her Contact's); alice calls bob and bob calls alice, and
// each call is hung up once by each side: the call is established at both
// ends and the BYE reaches the other end, through the NAT when it goes to
// alice. The proxy can reach alice only over the flow she registered
// from, for the INVITE and for the in-dialog requests (ACK, BYE) as well.
func TestBaresipBehindNAT(t *testing.T) {
	testenv.Need(t, "baresip")
	testenv.Need(t, "tshark")
	lab := startNATLab(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) { natCalls(t, lab, transport) })
	}
}

func natCalls(t *testing.T, lab *natLab, transport string) {
	// A proxy, a store and phones of its own for each transport: no
	// binding or NAT mapping of the other run is left to help.
	r := testenv.StartRedis(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	users := filepath.Join(t.TempDir(), "users.txt")
	addAORs(t, users, "alice@a.test", "pw-alice", "bob@a.test", "pw-bob")
	srv := &server{t: t, Port: testenv.FreePort(t), Domain: "a.test", Host: lab.hostIP,
		args: []string{"--users", users, "--store", r.URL(), "--log-level", "debug"}}
	srv.start()
	t.Cleanup(srv.kill)
	capt := startSIPCapture(t, lab, srv.Port)

	account := func(user string) string {
		aor := "sip:" + user + "@a.test"
		if transport != "udp" {
			aor += ";transport=" + transport
		}
		return fmt.Sprintf(`<%s>;auth_pass=pw-%s;outbound="sip:%s;transport=%s";regint=60;answermode=auto;audio_codecs=PCMU`,
			aor, user, srv.addr(), transport)
	}
	base := testenv.FreePorts(t, 4) // baresip also takes SIP port + 1
	aliceSIP, bobSIP := base, base+2
	const lifetime = 150 // s: longer than the four calls at their slowest
	alice := startPhoneAt(t, phoneHost{ip: lab.phoneIP, netns: lab.phoneNS, trace: true}, "alice", aliceSIP, 10000+aliceSIP%500*20, account("alice"), lifetime)
	bob := startPhoneAt(t, phoneHost{ip: lab.hostIP, trace: true}, "bob", bobSIP, 20000+bobSIP%500*20, account("bob"), lifetime)
	logs := func() string { return "--- sipfed:\n" + tail(srv.out.String(), 4000) }
	alice.waitRegistered(t, 10*time.Second, logs)
	bob.waitRegistered(t, 10*time.Second, logs)

	t.Run("alice registered through the NAT", func(t *testing.T) {
		// Read as every node reads it: through the Redis store.
		bs, err := locredis.New(rdb).Lookup(context.Background(), "alice@a.test")
		if err != nil || len(bs) != 1 {
			t.Fatalf("alice's bindings: %+v, %v", bs, err)
		}
		b := bs[0]
		t.Logf("binding: contact %s, received %s over %s, nat %v", b.Contact, b.Received, b.Transport, b.NAT)
		host, p, _ := net.SplitHostPort(b.Received)
		port, _ := strconv.Atoi(p)
		if host != lab.routerIP || port < natPortLo || port > natPortHi {
			t.Errorf("received %q; want the router's %s with a port in %d-%d", b.Received, lab.routerIP, natPortLo, natPortHi)
		}
		if !strings.Contains(b.Contact, lab.phoneIP) || !b.NAT || !strings.EqualFold(b.Transport, transport) {
			t.Errorf("binding %+v; want alice's private contact %s, nat, transport %s", b, lab.phoneIP, transport)
		}
	})

	call := func(name string, caller, callee, hanger *phone, uri string) {
		t.Run(name, func(t *testing.T) {
			natCall(t, lab, srv, capt, alice, bob, caller, callee, hanger, uri)
		})
	}
	call("alice calls bob, bob hangs up", alice, bob, bob, "sip:bob@a.test")
	call("alice calls bob, alice hangs up", alice, bob, alice, "sip:bob@a.test")
	call("bob calls alice, alice hangs up", bob, alice, alice, "sip:alice@a.test")
	call("bob calls alice, bob hangs up", bob, alice, bob, "sip:alice@a.test")
}

// natCall places one call from caller to uri (callee answers by itself),
// lets it run a second, has hanger hang up and requires the other side to
// see the call closed. Whatever happens, both phones are idle afterwards.
func natCall(t *testing.T, lab *natLab, srv *server, capt *sipCapture, alice, bob, caller, callee, hanger *phone, uri string) {
	other := caller
	if hanger == caller {
		other = callee
	}
	marks := map[*phone]int{alice: alice.mark(), bob: bob.mark()}
	closed := func(p *phone, timeout time.Duration) bool {
		_, ok := p.waitSince(marks[p], timeout, p.event("CALL_CLOSED"))
		return ok
	}
	evidence := func() string {
		id := caller.callID(marks[caller])
		if id == "" {
			return "(no call event: no Call-ID)\n--- alice:\n" + alice.dump() + "\n--- bob:\n" + bob.dump() + "\n--- sipfed:\n" + tail(srv.out.String(), 4000)
		}
		var log strings.Builder
		for _, line := range srv.out.Lines(id) {
			log.WriteString("  " + tail(line, 600) + "\n")
		}
		return fmt.Sprintf("Call-ID %s\n--- tshark on the host (lo: bob ↔ sipfed; %s: sipfed ↔ the NAT router %s):\n%s--- alice's SIP trace (baresip -s, behind the NAT at %s):\n%s--- bob's SIP trace:\n%s--- sipfed's log lines of the call:\n%s--- the router's rules (packets, bytes):\n%s--- alice's events:\n%s--- bob's events:\n%s",
			id, lab.hostIf, lab.routerIP, capt.ladder(id), lab.phoneIP, alice.sipTrace(id), bob.sipTrace(id), tail(log.String(), 6000), lab.counters(), alice.events(marks[alice]), bob.events(marks[bob]))
	}
	defer func() {
		// Leave both phones idle for the next call.
		for _, p := range []*phone{caller, callee} {
			if !closed(p, 0) {
				p.command(t, "hangup", "")
				if !closed(p, 3*time.Second) {
					t.Logf("%s: call still not closed after a local hangup", p.name)
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}()

	caller.command(t, "dial", uri)
	_, callerUp := caller.waitSince(marks[caller], 8*time.Second, caller.event("CALL_ESTABLISHED"))
	_, calleeUp := callee.waitSince(marks[callee], 3*time.Second, callee.event("CALL_ESTABLISHED"))
	if !callerUp || !calleeUp {
		t.Errorf("call not established: %s (caller) %v, %s (callee) %v\n%s", caller.name, callerUp, callee.name, calleeUp, evidence())
		return
	}
	time.Sleep(time.Second)
	if closed(alice, 0) || closed(bob, 0) {
		t.Errorf("the call closed by itself within a second of being established\n%s", evidence())
		return
	}
	hanger.command(t, "hangup", "")
	if !closed(other, 6*time.Second) {
		t.Errorf("%s hung up, but %s did not see the call closed: the BYE did not reach %s\n%s", hanger.name, other.name, other.name, evidence())
		return
	}
	t.Logf("Call-ID %s: established at both ends, %s's BYE reached %s", caller.callID(marks[caller]), hanger.name, other.name)
}
