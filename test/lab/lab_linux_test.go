package labtest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/deploy/lab"
	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/location"
	locredis "github.com/sipfed/sipfed/location/redis"
)

// The lab's nodes run with its default --failover-timeout.
const failoverTimeout = lab.DefaultFailoverTimeout

var pw = lab.DefaultUsers

// TestLab runs one lab (deploy/lab) through three stages, each a subtest:
//
//   - calls: phones registered over TCP on a1 (alice) and over UDP on a3
//     (bob) are called from a phone registered on a2 (carol) and from one
//     of b.test (dave), and answer; the RTP goes straight between the
//     phones' hosts (each phone's own counts, and the nodes' namespaces
//     received almost no UDP meanwhile);
//   - kamailio: erin@kam.test, registered with Kamailio, and alice@a.test
//     call each other both ways, each domain's proxy finding the other
//     through NAPTR and SRV in the lab DNS (captured there with tshark),
//     with the RTP straight between the phones;
//   - a node dies: the a.test node holding a call's dialog is killed
//     mid-call (SIGKILL): the call's media goes on, new calls from
//     b.test complete through the SRV alternatives within the failover
//     timeout, new registrations land on the survivors and are reached;
//     then the dead node's host goes silent too (a machine gone, not a
//     process) and the calls that tried it first wait the failover
//     timeout, then complete through a survivor.
func TestLab(t *testing.T) {
	l := startLab(t, true)
	ip := func(h string) string { return l.Host(h).IP }

	// Phones that stay registered, each on a host of its own. Those that
	// answer have a short media timeout, so that a dialog whose BYE
	// cannot pass (its node is dead) still ends soon.
	alice := startPhone(t, l, "p1", "alice", "alice@a.test", pw["alice@a.test"],
		"--listen", ip("p1")+":5060", "--transport", "tcp", "--proxy", l.SIPAddr("a1"), "--media-timeout", "2s", "answer")
	bob := startPhone(t, l, "p2", "bob", "bob@a.test", pw["bob@a.test"],
		"--listen", ip("p2")+":5060", "--proxy", l.SIPAddr("a3"), "--media-timeout", "2s", "answer")
	carol := startPhone(t, l, "p3", "carol", "carol@a.test", pw["carol@a.test"],
		"--listen", ip("p3")+":5060", "--proxy", l.SIPAddr("a2"), "register")
	// dave finds b.test's proxy himself, through the system resolver
	// (/etc/netns/…/resolv.conf names the lab DNS).
	dave := startPhone(t, l, "p4", "dave", "dave@b.test", pw["dave@b.test"], "--listen", ip("p4")+":5060", "register")
	for _, p := range []*phone{alice, bob, carol, dave} {
		p.mustWait(t, "registered", "", 10*time.Second)
	}

	rdb := goredis.NewClient(&goredis.Options{Addr: lab.RedisIP + ":6379", DialTimeout: 2 * time.Second,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.Dial(ctx, "redis", network, addr)
		}})
	t.Cleanup(func() { rdb.Close() })
	store := locredis.New(rdb)
	// binding returns aor's binding with a contact at contactHost, made
	// through node ("": any).
	binding := func(t *testing.T, aor, contactHost, node string) location.Binding {
		t.Helper()
		bs, err := store.Lookup(context.Background(), aor)
		if err != nil {
			t.Fatalf("%s: %v", aor, err)
		}
		for _, b := range bs {
			if strings.Contains(b.Contact, contactHost) && (node == "" || b.NodeID == node) {
				return b
			}
		}
		t.Fatalf("%s: no binding with a contact at %s made through %q in %+v", aor, contactHost, node, bs)
		return location.Binding{}
	}

	t.Run("calls", func(t *testing.T) {
		a, b, c := binding(t, "alice@a.test", ip("p1"), ""), binding(t, "bob@a.test", ip("p2"), ""), binding(t, "carol@a.test", ip("p3"), "")
		t.Logf("alice: node %s, %s from %s, nat %v, path %v", a.NodeID, a.Transport, a.Received, a.NAT, a.Path)
		t.Logf("bob:   node %s, %s from %s, nat %v, path %v", b.NodeID, b.Transport, b.Received, b.NAT, b.Path)
		if a.NodeID != "a1" || a.Transport != "tcp" || !a.NAT || len(a.Path) == 0 || !strings.Contains(a.Path[0], ip("a1")) {
			t.Errorf("alice's binding %+v: want node a1, tcp, on its flow, a1 as its Path", a)
		}
		if b.NodeID != "a3" || b.Transport != "udp" || b.NAT {
			t.Errorf("bob's binding %+v: want node a3, udp, reached at its contact", b)
		}
		if c.NodeID != "a2" {
			t.Errorf("carol's binding %+v: want node a2", c)
		}

		nodes := []string{"a1", "a2", "a3", "b1"}
		before := map[string]int{}
		for _, n := range nodes {
			before[n] = udpIn(t, l, n)
		}
		type plan struct {
			name, host, aor, uri string
			args                 []string
			callee               *phone
		}
		plans := []plan{
			{"carol→alice", "p3", "carol@a.test", "alice@a.test", []string{"--proxy", l.SIPAddr("a2")}, alice},
			{"carol→bob", "p3", "carol@a.test", "bob@a.test", []string{"--proxy", l.SIPAddr("a2")}, bob},
			{"dave→alice", "p4", "dave@b.test", "alice@a.test", nil, alice},
			{"dave→bob", "p4", "dave@b.test", "bob@a.test", nil, bob},
		}
		// All four at once: 3 s each, about 150 RTP packets each way.
		callers := make([]*phone, len(plans))
		for i, p := range plans {
			args := append([]string{"--listen", ip(p.host) + ":0", "--duration", "3s"}, p.args...)
			callers[i] = startPhone(t, l, p.host, "call-"+strings.ReplaceAll(p.name, "→", "-"), p.aor, pw[p.aor], append(args, "call", p.uri)...)
		}
		for i, p := range plans {
			r := checkCall(t, callers[i], p.callee, 100, 10*time.Second)
			var path []string
			for _, cl := range callLogs(l, r.id, nodes...) {
				path = append(path, fmt.Sprintf("%s (%d, %v)", cl.node, cl.status, cl.setup))
			}
			t.Logf("%s: %s; nodes: %s", p.name, r, strings.Join(path, ", "))
			// alice is reachable only over her connection to a1.
			if p.callee == alice && !strings.Contains(strings.Join(path, " "), "a1 (200") {
				t.Errorf("%s: a1, which holds alice's connection, did not relay the call (nodes: %v)", p.name, path)
			}
		}
		// Signalling only reached the nodes: 1,200 RTP packets went
		// between the phones, a node's namespace got a few dozen
		// datagrams (SIP over UDP) at most.
		for _, n := range nodes {
			d := udpIn(t, l, n) - before[n]
			t.Logf("UDP datagrams received by %s during the calls: %d", n, d)
			if d > 100 {
				t.Errorf("%s received %d UDP datagrams during the calls: media went through it", n, d)
			}
		}
	})

	t.Run("kamailio", func(t *testing.T) {
		if l.Host("kam") == nil {
			needLab(t, "kamailio not found: the kam.test peer domain needs it (apt-get install kamailio)")
		}
		tshark := testenv.Need(t, "tshark")
		dns := startDNSCapture(t, l, tshark)
		erin := startPhone(t, l, "p5", "erin", "erin@kam.test", pw["erin@kam.test"], "--listen", ip("p5")+":5060", "--media-timeout", "2s", "answer")
		erin.mustWait(t, "registered", "", 10*time.Second)

		// Both directions at once, between the same two users.
		toKam := startPhone(t, l, "p1", "call-alice-erin", "alice@a.test", pw["alice@a.test"],
			"--listen", ip("p1")+":0", "--transport", "tcp", "--proxy", l.SIPAddr("a1"), "--duration", "3s", "call", "erin@kam.test")
		fromKam := startPhone(t, l, "p5", "call-erin-alice", "erin@kam.test", pw["erin@kam.test"],
			"--listen", ip("p5")+":0", "--duration", "3s", "call", "alice@a.test")
		r1 := checkCall(t, toKam, erin, 100, 10*time.Second)
		r2 := checkCall(t, fromKam, alice, 100, 10*time.Second)
		t.Logf("alice@a.test → erin@kam.test: %s; a.test: %v", r1, callLogs(l, r1.id, lab.ANodes...))
		t.Logf("erin@kam.test → alice@a.test: %s; a.test: %v", r2, callLogs(l, r2.id, lab.ANodes...))
		if cl := callLogs(l, r1.id, "a1"); len(cl) != 1 || cl[0].status != 200 || cl[0].to != "sip:erin@kam.test" {
			t.Errorf("a1's record of alice's call to kam.test: %+v", cl)
		}
		if cl := callLogs(l, r2.id, lab.ANodes...); len(cl) == 0 {
			t.Errorf("erin's call reached no a.test node")
		}

		// Who asked the lab DNS what.
		qs := dns.queries()
		t.Logf("DNS queries:\n%s", strings.Join(qs, "\n"))
		for _, want := range []string{
			ip("kam") + " a.test NAPTR",         // Kamailio finds a.test
			ip("kam") + " _sip._tcp.a.test SRV", // and follows its NAPTR's first (TCP) service
			ip("a1") + " kam.test NAPTR",        // a1 finds kam.test
			ip("p5") + " kam.test NAPTR",        // erin's phone finds its proxy through the system resolver
		} {
			found := false
			for _, q := range qs {
				found = found || q == want
			}
			if !found {
				t.Errorf("no DNS query %q", want)
			}
		}
		if t.Failed() {
			t.Logf("--- Kamailio:\n%s", tail(l.Log("kam"), 3000))
		}
	})

	t.Run("a node dies", func(t *testing.T) {
		nodeOf := func(id string) []string {
			var ns []string
			for _, cl := range callLogs(l, id, lab.ANodes...) {
				ns = append(ns, cl.node)
			}
			return ns
		}
		// A call from b.test: the a.test node b1 chose record-routed it
		// and holds its dialog.
		long := startPhone(t, l, "p4", "call-long", "dave@b.test", pw["dave@b.test"], "--listen", ip("p4")+":0", "--duration", "10s", "call", "bob@a.test")
		ans := long.mustWait(t, "answered", "", 10*time.Second)
		holders := nodeOf(ans.CallID)
		if len(holders) != 1 {
			t.Fatalf("the call went through a.test nodes %v; want one", holders)
		}
		dead := holders[0]
		var survivors []string
		for _, n := range lab.ANodes {
			if n != dead {
				survivors = append(survivors, n)
			}
		}
		time.Sleep(time.Second)
		if err := l.Kill(dead, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		t.Logf("call %s: dialog held by %s, killed (SIGKILL) %.1f s into the call; survivors %v", ans.CallID, dead, killed.Sub(ans.at).Seconds(), survivors)

		// New calls at once, while that call goes on.
		burst(t, l, "after-kill", dead, 12)

		// alice's connection was to a1: if a1 died, she is unreachable
		// (480 within the failover timeout) until she registers again,
		// through a survivor.
		aliceNode := "a1"
		if dead == "a1" {
			p := startPhone(t, l, "p4", "call-dave-alice-480", "dave@b.test", pw["dave@b.test"], "--listen", ip("p4")+":0", "--duration", "2s", "call", "alice@a.test")
			err := p.exit(t, 20*time.Second)
			took := time.Since(p.started)
			if err == nil || !strings.Contains(p.proc.Log(), "480") || took > failoverTimeout+3*time.Second {
				t.Errorf("a call to alice, whose connection was to the dead a1: %v after %v; want a 480 within the failover timeout\n%s", err, took, p.dump())
			}
			t.Logf("a call to alice (her connection was to a1): 480 in %v", took.Round(time.Millisecond))
			alice.proc.Signal(syscall.SIGKILL)
			alice.proc.Wait(5 * time.Second) // its port is free again
			aliceNode = survivors[0]
			alice = startPhone(t, l, "p1", "alice-again", "alice@a.test", pw["alice@a.test"],
				"--listen", ip("p1")+":5060", "--transport", "tcp", "--proxy", l.SIPAddr(aliceNode), "--media-timeout", "2s", "answer")
		}

		// New registrations, over TCP through each survivor (and alice's
		// again if a1 died): each lands on its node, and b.test reaches
		// it through whichever survivor b1 picks.
		type reg struct {
			node, aor string
			p         *phone
		}
		regs := []reg{{aliceNode, "alice@a.test", alice}}
		for i, n := range survivors {
			aor := fmt.Sprintf("new%d@a.test", i+1)
			if err := l.AddUser(context.Background(), aor, "pw-"+aor); err != nil {
				t.Fatal(err)
			}
			host := fmt.Sprintf("p%d", 5+i)
			regs = append(regs, reg{n, aor, startPhone(t, l, host, "new-"+n, aor, "pw-"+aor, "--listen", ip(host)+":5070",
				"--transport", "tcp", "--proxy", l.SIPAddr(n), "--media-timeout", "2s", "answer")})
		}
		callers := make([]*phone, len(regs))
		for i, g := range regs {
			g.p.mustWait(t, "registered", "", 10*time.Second)
			b := binding(t, g.aor, g.p.host.IP, g.node)
			if len(b.Path) == 0 || !strings.Contains(b.Path[0], ip(g.node)) {
				t.Errorf("%s registered through %s: binding %+v", g.aor, g.node, b)
			}
			callers[i] = startPhone(t, l, "p4", "call-dave-"+strings.Split(g.aor, "@")[0], "dave@b.test", pw["dave@b.test"],
				"--listen", ip("p4")+":0", "--duration", "2s", "call", g.aor)
		}
		for i, g := range regs {
			r := checkCall(t, callers[i], g.p, 60, 10*time.Second)
			t.Logf("%s, registered through %s after the kill, called from b.test: %s; nodes %v", g.aor, g.node, r, nodeOf(r.id))
		}

		// The call whose node died: its media never went through a node,
		// and went on; its BYE cannot pass the dead node (the dialog's
		// route set names it), so bob's end closes by media timeout.
		r := checkCall(t, long, bob, 400, 20*time.Second)
		end, _ := bob.find(func(e event) bool { return e.Event == "hangup" && e.CallID == r.id })
		t.Logf("the call through %s: %s; dave's BYE: %s; bob's end of it: %s after %.1f s", dead, r, byeFate(l, r.id), end.Reason, end.Duration)

		// The dead node's machine goes silent (link down: no RST, no ICMP
		// any more), and b1 starts again with no memory of failed
		// targets: a call that tries it first waits the failover timeout.
		if err := l.Unplug(dead); err != nil {
			t.Fatal(err)
		}
		for round := 1; ; round++ {
			if err := l.Kill("b1", syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := l.StartNode("b1"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := l.WaitNode(ctx, "b1")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			// Each call's targets are in random order (RFC 2782): the
			// chance that none of 12 tries the silent node first is
			// (2/3)^12, under 1 %; another round then.
			if burst(t, l, fmt.Sprintf("silent-%d", round), dead, 12) > 0 {
				break
			}
			if round == 3 {
				t.Errorf("in 3 rounds of 12 calls, none tried the silent %s first: b1's failover timeout was not exercised", dead)
				break
			}
		}

		// Kamailio fails over the same way (use_dns_failover, fr_timer 2 s).
		if l.Host("kam") == nil {
			return
		}
		for round := 1; ; round++ {
			if kamBurst(t, l, fmt.Sprintf("kamailio-silent-%d", round), 10) > 0 {
				break
			}
			if round == 3 {
				t.Errorf("in 3 rounds of 10 calls through Kamailio, none waited for the silent %s: its DNS failover was not exercised", dead)
				break
			}
		}
	})
}

// kamBurst places n calls at once from erin@kam.test (through Kamailio)
// to bob@a.test and requires every one to be answered within the failover
// timeout and a second and a half (measured by the phone, from its start);
// it returns how many waited the failover timeout, that is, were first
// sent to the silent node.
func kamBurst(t *testing.T, l *lab.Lab, name string, n int) int {
	t.Helper()
	p := startPhone(t, l, "p5", "burst-"+name, "erin@kam.test", pw["erin@kam.test"], "--listen", l.Host("p5").IP+":0",
		"--calls", fmt.Sprint(n), "--rate", "100", "--duration", "2s", "call", "bob@a.test")
	if err := p.exit(t, 40*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s\n--- kamailio:\n%s", p.name, err, p.dump(), tail(l.Log("kam"), 3000))
	}
	var setups []time.Duration
	waited := 0
	for _, ev := range p.all() {
		if ev.Event == "answered" {
			d := ev.at.Sub(p.started)
			setups = append(setups, d)
			if d >= failoverTimeout*3/4 {
				waited++
			}
		}
	}
	t.Logf("%s: %d calls from kam.test, %d answered, in (from the phone's start) %s; %d waited for the silent node", name, n, len(setups), durations(setups), waited)
	if len(setups) != n {
		t.Fatalf("%s: %d of %d calls answered\n%s", name, len(setups), n, p.dump())
	}
	if slowest := slices.Max(setups); slowest > failoverTimeout+1500*time.Millisecond {
		t.Errorf("%s: the slowest call was answered %v after the phone started; want at most the failover timeout (%v) and 1.5 s", name, slowest, failoverTimeout)
	}
	return waited
}

// burst places n calls at once from dave@b.test to bob@a.test and
// requires every one to be answered, the slowest within the failover
// timeout (and a second for the rest of the setup); it logs the setup
// times b1 measured and returns how many calls first tried the dead node.
func burst(t *testing.T, l *lab.Lab, name, dead string, n int) int {
	t.Helper()
	p := startPhone(t, l, "p4", "burst-"+name, "dave@b.test", pw["dave@b.test"], "--listen", l.Host("p4").IP+":0",
		"--calls", fmt.Sprint(n), "--rate", "100", "--duration", "2s", "call", "bob@a.test")
	if err := p.exit(t, 40*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s\n--- b1:\n%s", p.name, err, p.dump(), tail(l.Log("b1"), 3000))
	}
	var setups []time.Duration
	var failedOver []string
	var slowest time.Duration
	tried := 0
	deadIP := l.Host(dead).IP
	b1 := l.Log("b1")
	for _, ev := range p.all() {
		if ev.Event != "answered" {
			continue
		}
		var setup time.Duration
		for _, cl := range callLogs(l, ev.CallID, "b1") {
			if cl.status == 200 {
				setup = cl.setup
			}
		}
		slowest = max(slowest, setup)
		setups = append(setups, setup)
		for _, line := range strings.Split(b1, "\n") {
			if strings.Contains(line, ev.CallID) && strings.Contains(line, "tcp "+deadIP+":") &&
				(strings.Contains(line, "target unreachable") || strings.Contains(line, "no answer from target")) {
				tried++
				failedOver = append(failedOver, fmt.Sprintf("%v (%s)", setup.Round(time.Millisecond), cutAfter(line, "error=")))
				break
			}
		}
	}
	if len(setups) != n {
		t.Fatalf("%s: %d of %d calls answered\n%s", p.name, len(setups), n, p.dump())
	}
	t.Logf("%s: %d calls from b.test, all answered; b1's setup times: %s; %d first sent to the dead %s and failed over: %s",
		name, n, durations(setups), tried, dead, strings.Join(failedOver, ", "))
	if slowest > failoverTimeout+time.Second {
		t.Errorf("%s: the slowest call took %v to set up; want at most the failover timeout (%v) and a second", name, slowest, failoverTimeout)
	}
	return tried
}

// durations lists ds in increasing order, rounded to milliseconds.
func durations(ds []time.Duration) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(time.Millisecond).String())
	}
	return strings.Join(s, " ")
}

// byeFate says what b1 logged of the call id's in-dialog requests.
func byeFate(l *lab.Lab, id string) string {
	for _, line := range strings.Split(l.Log("b1"), "\n") {
		if strings.Contains(line, id) && strings.Contains(line, "target unreachable") {
			return "b1 could not reach the dead node (" + cutAfter(line, "error=") + ")"
		}
	}
	return "nothing logged by b1"
}

func cutAfter(s, sep string) string {
	if _, after, ok := strings.Cut(s, sep); ok {
		return tail(after, 120)
	}
	return tail(s, 120)
}

// dnsCapture is tshark on the lab DNS's host, listing the queries it gets.
type dnsCapture struct {
	out *testenv.Buffer
}

func startDNSCapture(t *testing.T, l *lab.Lab, tshark string) *dnsCapture {
	t.Helper()
	c := &dnsCapture{out: &testenv.Buffer{}}
	p, err := l.Start(lab.Spec{Host: "dns", Name: "tshark-dns", Stdout: c.out, Args: []string{tshark, "-l", "-n", "-i", "eth0",
		"-f", "udp dst port 53", "-T", "fields", "-E", "separator=/t", "-e", "ip.src", "-e", "dns.qry.name", "-e", "dns.qry.type"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Signal(syscall.SIGKILL); p.Wait(5 * time.Second) })
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(p.Log(), "Capturing on"); {
		if time.Now().After(deadline) {
			t.Fatalf("tshark did not start capturing:\n%s", p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// queries returns "SOURCE NAME TYPE" per query, each once, in order.
func (c *dnsCapture) queries() []string {
	time.Sleep(300 * time.Millisecond) // what is on the wire reaches the output
	types := map[string]string{"1": "A", "28": "AAAA", "33": "SRV", "35": "NAPTR"}
	var qs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(c.out.String(), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		typ := types[f[2]]
		if typ == "" {
			typ = f[2]
		}
		q := f[0] + " " + f[1] + " " + typ
		if !seen[q] {
			seen[q] = true
			qs = append(qs, q)
		}
	}
	return qs
}

// TestLabPhoneFindsASurvivingNode: phones that find their proxy through
// DNS, as hardware phones do, keep a registration while a.test's nodes
// die around them. With a1 dead (SIGKILL: its host answers with RST at
// once), six phones over TCP all register through a2 or a3 (RFC 3263
// §4.3: on a transport error, the next target); then the one of a2 and
// a3 with more phones dies too, and every phone registered through it
// notices its connection close and registers through the last node
// within seconds (RFC 5626 §4.4), not at its next refresh an hour later.
func TestLabPhoneFindsASurvivingNode(t *testing.T) {
	l := startLab(t, false)
	if err := l.Kill("a1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var phones []*phone
	for i := 1; i <= phoneHosts; i++ {
		h := fmt.Sprintf("p%d", i)
		phones = append(phones, startPhone(t, l, h, "carol-"+h, "carol@a.test", pw["carol@a.test"],
			"--listen", l.Host(h).IP+":5060", "--transport", "tcp", "--expires", "1h", "register"))
	}
	through := func(p *phone, node string) int {
		n := 0
		for _, ev := range p.all() {
			if ev.Event == "registered" && strings.HasPrefix(ev.Proxy, l.Host(node).IP+":") {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	var failed []string
	on := map[string][]*phone{}
	for _, p := range phones {
		ev, ok := p.wait("registered", "", time.Until(deadline))
		if !ok {
			ev, _ := p.find(func(e event) bool { return e.Event == "error" })
			failed = append(failed, fmt.Sprintf("%s: %s", p.name, ev.Error))
			continue
		}
		if strings.HasPrefix(ev.Proxy, l.Host("a1").IP+":") {
			failed = append(failed, fmt.Sprintf("%s: registered through a1 (%s), which is dead", p.name, ev.Proxy))
		}
		for _, n := range []string{"a2", "a3"} {
			if through(p, n) > 0 {
				on[n] = append(on[n], p)
			}
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d phones did not register within 10 s, with a1 dead:\n%s", len(failed), len(phones), strings.Join(failed, "\n"))
	}
	// The node with more phones dies; they move to the other.
	victim, survivor := "a2", "a3"
	if len(on["a3"]) > len(on["a2"]) {
		victim, survivor = "a3", "a2"
	}
	t.Logf("phones registered: %d through a2, %d through a3; killing %s", len(on["a2"]), len(on["a3"]), victim)
	if err := l.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for _, p := range on[victim] {
		for through(p, survivor) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if through(p, survivor) == 0 {
			failed = append(failed, fmt.Sprintf("%s: %+v", p.name, p.all()))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d phones registered through %s did not move to %s within 10 s of its death:\n%s",
			len(failed), len(on[victim]), victim, survivor, strings.Join(failed, "\n"))
	}
}
