package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// Two domains on one machine: `sipfed dns` serves a.test and b.test, two
// `sipfed serve` processes resolve each other through it (RFC 3263), and
// SIPp or baresip place calls from alice@a.test to bob@b.test.

// addAORs adds users to a users file through `sipfed user add`, in the
// order given: pairs of AOR and password.
func addAORs(t *testing.T, usersFile string, aorPassword ...string) {
	t.Helper()
	args := []string{"user", "add", "--users", usersFile, "--password-stdin"}
	var stdin strings.Builder
	for i := 0; i+1 < len(aorPassword); i += 2 {
		args = append(args, aorPassword[i])
		stdin.WriteString(aorPassword[i+1] + "\n")
	}
	cmd := exec.Command(sipfedBin, args...)
	cmd.Stdin = strings.NewReader(stdin.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sipfed user add: %v\n%s", err, out)
	}
}

// srvTarget is one SRV record of a lab zone: a host name under the domain
// (its A record is 127.0.0.1) and a port.
type srvTarget struct {
	host string
	port int
}

// labZone writes the RFC 3263 records of domain, same shape as
// deploy/lab/*.zone: NAPTR SIP+D2T (if tcp) and SIP+D2U (if udp) → SRV
// (every target with priority 10 and weight 10) → A 127.0.0.1.
func labZone(domain string, udp, tcp bool, targets ...srvTarget) string {
	var z strings.Builder
	fmt.Fprintf(&z, "$ORIGIN %s.\n$TTL 300\n", domain)
	fmt.Fprintf(&z, "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 60\n", domain, domain)
	fmt.Fprintf(&z, "@ IN NS ns.%s.\nns IN A 127.0.0.1\n", domain)
	if tcp {
		fmt.Fprintf(&z, "@ IN NAPTR 10 10 \"S\" \"SIP+D2T\" \"\" _sip._tcp.%s.\n", domain)
	}
	if udp {
		fmt.Fprintf(&z, "@ IN NAPTR 20 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.%s.\n", domain)
	}
	hosts := map[string]bool{}
	for _, tg := range targets {
		if tcp {
			fmt.Fprintf(&z, "_sip._tcp IN SRV 10 10 %d %s.%s.\n", tg.port, tg.host, domain)
		}
		if udp {
			fmt.Fprintf(&z, "_sip._udp IN SRV 10 10 %d %s.%s.\n", tg.port, tg.host, domain)
		}
		if !hosts[tg.host] {
			hosts[tg.host] = true
			fmt.Fprintf(&z, "%s IN A 127.0.0.1\n", tg.host)
		}
	}
	return z.String()
}

// startDNS runs `sipfed dns` on a free port with the zones (origin → text)
// and returns its address.
func startDNS(t *testing.T, zones map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"dns", "--listen", addr}
	for origin, text := range zones {
		f := filepath.Join(dir, origin+".zone")
		writeFile(t, f, text)
		args = append(args, "--zone", f)
	}
	cmd := exec.Command(sipfedBin, args...)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sipfed dns: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
		t.Fatalf("sipfed dns did not start: %v\n%s", err, out)
	}
	return addr
}

// federation is the two-domain lab: DNS, the a.test and b.test proxies,
// alice@a.test (pw-alice) and bob@b.test (pw-bob), and bob@a.test
// (pw-bob) for calls through one proxy.
type federation struct {
	dns        string
	a, b       *server
	dir        string
	ca         *testenv.CA // with tls: the CA of both proxies' certificates
	aTLS, bTLS int         // with tls: the proxies' TLS ports
}

type fedOptions struct {
	bZone    func(bPort int) string // b.test's zone; default: UDP and TCP to the b proxy
	aArgs    []string               // more flags for the a.test proxy
	aUsers   []string               // more users of a.test: AOR, password pairs
	aAliases []string               // aliases of a.test's users: alias, AOR pairs
	zones    map[string]string      // more zones the lab DNS serves (an ENUM tree): origin → text
	logLevel string
	// tls gives each proxy a TLS listener with a certificate from a
	// private CA (naming its domain and 127.0.0.1), publishes it first
	// (NAPTR SIPS+D2T, SRV _sips._tcp) and makes the proxies federate
	// over TLS only (--federation-tls).
	tls bool
}

// withTLS adds to a lab zone a NAPTR SIPS+D2T record, preferred to the
// others, and its SRV _sips._tcp to the host sip at port.
func withTLS(zone, domain string, port int) string {
	return zone + fmt.Sprintf("@ IN NAPTR 5 10 \"S\" \"SIPS+D2T\" \"\" _sips._tcp.%[1]s.\n_sips._tcp IN SRV 10 10 %[2]d sip.%[1]s.\n", domain, port)
}

func startFederation(t *testing.T, o fedOptions) *federation {
	t.Helper()
	f := &federation{dir: t.TempDir()}
	pa, pb := testenv.FreePort(t), testenv.FreePort(t)
	bZone := labZone("b.test", true, true, srvTarget{"sip", pb})
	if o.bZone != nil {
		bZone = o.bZone(pb)
	}
	aZone := labZone("a.test", true, true, srvTarget{"sip", pa})
	var aTLSArgs, bTLSArgs []string
	if o.tls {
		f.ca = testenv.NewCA(t)
		f.aTLS, f.bTLS = testenv.FreePort(t), testenv.FreePort(t)
		aZone, bZone = withTLS(aZone, "a.test", f.aTLS), withTLS(bZone, "b.test", f.bTLS)
		tlsArgs := func(domain string, port int) []string {
			cert, key := f.ca.Issue(t, domain, "127.0.0.1")
			return []string{"--listen", fmt.Sprintf("tls:127.0.0.1:%d", port), "--tls-cert", cert, "--tls-key", key, "--tls-ca", f.ca.File, "--federation-tls"}
		}
		aTLSArgs, bTLSArgs = tlsArgs("a.test", f.aTLS), tlsArgs("b.test", f.bTLS)
	}
	zones := map[string]string{"a.test": aZone, "b.test": bZone}
	for origin, text := range o.zones {
		zones[origin] = text
	}
	f.dns = startDNS(t, zones)
	ua, ub := filepath.Join(f.dir, "a-users.txt"), filepath.Join(f.dir, "b-users.txt")
	addAORs(t, ua, append([]string{"alice@a.test", "pw-alice", "bob@a.test", "pw-bob"}, o.aUsers...)...)
	addAliases(t, ua, o.aAliases...)
	addAORs(t, ub, "bob@b.test", "pw-bob")
	level := o.logLevel
	if level == "" {
		level = "warn"
	}
	f.a = startDomain(t, "a.test", pa, append(append([]string{"--dns", f.dns, "--users", ua, "--log-level", level}, aTLSArgs...), o.aArgs...)...)
	f.b = startDomain(t, "b.test", pb, append([]string{"--dns", f.dns, "--users", ub, "--log-level", level}, bTLSArgs...)...)
	return f
}

func (f *federation) proxy(domain string) *server {
	if domain == "a.test" {
		return f.a
	}
	return f.b
}

func (f *federation) logs() string {
	return "--- sipfed a.test:\n" + tail(f.a.out.String(), 3000) + "\n--- sipfed b.test:\n" + tail(f.b.out.String(), 3000)
}

// registerSIPpUAS registers user@domain at its proxy with the Contact
// sip:user@127.0.0.1:uasPort, from a separate SIPp instance.
func (f *federation) registerSIPpUAS(t *testing.T, user, domain, password string, uasPort int) {
	t.Helper()
	inf := filepath.Join(t.TempDir(), "reg.csv")
	writeFile(t, inf, fmt.Sprintf("SEQUENTIAL\n%s;%s;%s;%d\n", user, password, domain, uasPort))
	if out, err := sipp(t, f.proxy(domain).addr(), "register_contact.xml", inf, "-m", "1"); err != nil {
		t.Fatalf("register %s@%s with contact port %d: %v\n%s\n%s", user, domain, uasPort, err, tail(out, 3000), f.logs())
	}
}

// sippServer is a SIPp UAS running in the background.
type sippServer struct {
	cmd    *exec.Cmd
	out    *testenv.Buffer
	dir    string
	done   chan error
	cancel context.CancelFunc
}

// startSIPpUAS runs a SIPp server scenario on 127.0.0.1:port for calls
// calls, tracing messages and errors into its own folder.
func startSIPpUAS(t *testing.T, scenario string, port, calls int) *sippServer {
	t.Helper()
	bin := testenv.Need(t, "sipp")
	s := &sippServer{out: &testenv.Buffer{}, dir: t.TempDir(), done: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	s.cancel = cancel
	s.cmd = exec.CommandContext(ctx, bin, "-sf", filepath.Join(mustGetwd(t), "testdata", scenario),
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(calls),
		"-timeout", "120s", "-nostdin", "-buff_size", "4194304",
		"-trace_err", "-error_file", filepath.Join(s.dir, "err.log"),
		"-trace_msg", "-message_file", filepath.Join(s.dir, "msg.log"))
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sipp uas: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
	})
	// SIPp binds its port at once; give it a moment to read the scenario.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			break // bound by SIPp
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// wait waits for the UAS to finish its calls (or for timeout) and returns
// its final screen and exit error.
func (s *sippServer) wait(timeout time.Duration) (string, error) {
	select {
	case err := <-s.done:
		s.done <- err
		return s.out.String(), err
	case <-time.After(timeout):
		s.cancel()
		err := <-s.done
		s.done <- err
		return s.out.String(), fmt.Errorf("sipp uas still running after %v (killed): %v", timeout, err)
	}
}

func (s *sippServer) errors() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "err.log"))
	return string(b)
}

var callIDRe = regexp.MustCompile(`Call-I[dD]:? '?([^\s',]+@[^\s',]+)`)

// callTrace returns, from SIPp message logs, every message of the first
// call named in errLog: the exchange to quote when a call fails.
func callTrace(errLog string, msgLogs ...string) string {
	m := callIDRe.FindStringSubmatch(errLog)
	if m == nil {
		return "(no Call-ID in the SIPp error log)"
	}
	id := m[1]
	var b strings.Builder
	fmt.Fprintf(&b, "first failed call %s:\n", id)
	for _, f := range msgLogs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "=== %s\n", filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f))
		for _, block := range strings.Split(string(data), "\n----------------------------------------------- ") {
			if strings.Contains(block, "Call-ID: "+id) || strings.Contains(block, "Call-ID:"+id) {
				b.WriteString(strings.TrimSpace(block))
				b.WriteString("\n\n")
			}
		}
	}
	return tail(b.String(), 12000)
}

// callResult is what one SIPp UAC run against one UAS proved.
type callResult struct {
	ok, failed       int
	uasOK, uasFailed int
}

// runCalls registers bob@calleeDomain (password pw-bob) for a fresh SIPp
// UAS, then has alice@a.test call him calls times at rate per second
// through the a.test proxy; it fails the test with both sides' traces of
// the first failed call unless every call completed on both sides.
func (f *federation) runCalls(t *testing.T, calleeDomain string, calls, rate int) callResult {
	t.Helper()
	return f.runScenario(t, "uac_call.xml", calleeDomain, calls, rate)
}

// runScenario is runCalls with another caller scenario.
func (f *federation) runScenario(t *testing.T, scenario, calleeDomain string, calls, rate int) callResult {
	t.Helper()
	testenv.Need(t, "sipp")
	uasPort := testenv.FreePort(t)
	uas := startSIPpUAS(t, "uas_answer.xml", uasPort, calls)
	f.registerSIPpUAS(t, "bob", calleeDomain, "pw-bob", uasPort)

	dir := t.TempDir()
	inf := filepath.Join(dir, "alice.csv")
	writeFile(t, inf, "SEQUENTIAL\nalice;pw-alice;a.test;bob;"+calleeDomain+"\n")
	uacMsgs := filepath.Join(dir, "msg.log")
	out, err := sipp(t, f.a.addr(), scenario, inf, "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate),
		"-l", strconv.Itoa(rate*3), "-buff_size", "4194304", "-trace_msg", "-message_file", uacMsgs)
	var r callResult
	r.ok, r.failed = testenv.SIPpCounts(out)
	uasOut, uasErr := uas.wait(30 * time.Second)
	r.uasOK, r.uasFailed = testenv.SIPpCounts(uasOut)
	if err != nil || r.ok != calls || r.failed != 0 || uasErr != nil || r.uasOK != calls || r.uasFailed != 0 {
		uacErrs := out[strings.LastIndex(out, "--- errors:"):]
		trace := callTrace(uacErrs+uas.errors(), uacMsgs, filepath.Join(uas.dir, "msg.log"))
		t.Fatalf("alice@a.test → bob@%s, %d calls: UAC %v, %d ok, %d failed; UAS %v, %d ok, %d failed\n--- UAC:\n%s\n--- UAS errors:\n%s\n--- trace:\n%s\n%s",
			calleeDomain, calls, err, r.ok, r.failed, uasErr, r.uasOK, r.uasFailed,
			tail(out, 4000), tail(uas.errors(), 3000), trace, f.logs())
	}
	return r
}

// TestFederatedSIPpCalls: alice@a.test (digest, 407) calls bob@b.test, a
// SIPp UAS registered at b.test: INVITE/180/200/ACK/BYE through both
// proxies, 500 calls, 0 failures. The one-proxy case (bob@a.test) runs the
// same scenario through a.test alone.
func TestFederatedSIPpCalls(t *testing.T) {
	f := startFederation(t, fedOptions{})
	for _, tc := range []struct {
		name, domain string
		calls, rate  int
	}{
		{"one-proxy", "a.test", 100, 50},
		{"two-proxies", "b.test", 500, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.runCalls(t, tc.domain, tc.calls, tc.rate)
			t.Logf("alice@a.test → bob@%s: %d calls completed, %d failed (UAS: %d completed)", tc.domain, r.ok, r.failed, r.uasOK)
		})
	}
	f.a.stop()
	f.b.stop()
}

// TestLargeINVITEToUDPOnlySIPpCallee: a 3 kB INVITE (an offer the size of
// a video call's) from alice@a.test reaches bob, a SIPp UAS that listens
// on UDP only: the proxy tries TCP for the size, is refused, and falls
// back to UDP; the call completes both ways.
func TestLargeINVITEToUDPOnlySIPpCallee(t *testing.T) {
	f := startFederation(t, fedOptions{})
	r := f.runScenario(t, "uac_big.xml", "a.test", 3, 3)
	t.Logf("3 kB INVITEs: %d calls completed (UAS %d)", r.ok, r.uasOK)
}

// blackhole is a UDP socket that reads and counts datagrams and never
// answers: a federation target that is down without telling anyone.
type blackhole struct {
	conn net.PacketConn
	n    atomic.Int64

	mu          sync.Mutex
	lines       map[string]int // request line or status line → datagrams
	calls       map[string]bool
	first, last time.Time
}

// report says what reached the blackhole: datagrams per first line and
// how many calls (Call-IDs) they belonged to.
func (b *blackhole) report() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for l, n := range b.lines {
		parts = append(parts, fmt.Sprintf("%d× %q", n, l))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d datagrams from %d calls within %v: %s", b.n.Load(), len(b.calls), b.last.Sub(b.first).Round(time.Millisecond), strings.Join(parts, ", "))
}

func startBlackhole(t *testing.T, port int) *blackhole {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{conn: c, lines: map[string]int{}, calls: map[string]bool{}}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			b.n.Add(1)
			msg := string(buf[:n])
			first, _, _ := strings.Cut(msg, "\r\n")
			b.mu.Lock()
			if b.first.IsZero() {
				b.first = time.Now()
			}
			b.last = time.Now()
			b.lines[first]++
			for _, line := range strings.Split(msg, "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(k, "Call-ID") || k == "i") {
					b.calls[strings.TrimSpace(v)] = true
				}
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return b
}

// TestFederationFailover: b.test publishes two SRV targets of equal
// priority and weight, one of them down. Every call still completes.
//   - udp: UDP only (NAPTR SIP+D2U); the dead target swallows datagrams
//     (no ICMP), so the proxy relies on --failover-timeout 1s. The test
//     counts what reached it, to show it was tried.
//   - tcp: TCP only (NAPTR SIP+D2T); nothing listens on the dead target,
//     so connecting is refused and failover is immediate.
func TestFederationFailover(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			dead := testenv.FreePort(t)
			var hole *blackhole
			if transport == "udp" {
				hole = startBlackhole(t, dead)
			}
			f := startFederation(t, fedOptions{
				bZone: func(pb int) string {
					return labZone("b.test", transport == "udp", transport == "tcp",
						srvTarget{"sip1", pb}, srvTarget{"sip2", dead})
				},
				aArgs: []string{"--failover-timeout", "1s"},
			})
			r := f.runCalls(t, "b.test", 100, 20)
			msg := fmt.Sprintf("%s failover: %d calls completed, %d failed", transport, r.ok, r.failed)
			if hole != nil {
				n := hole.n.Load()
				msg += "; at the dead target: " + hole.report()
				if n == 0 {
					t.Errorf("the dead UDP target was never tried: the test proved nothing about failover (SRV selection not random?)\n%s", f.logs())
				}
			}
			t.Log(msg)
		})
	}
}
