package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

	"github.com/sipfed/sipfed/internal/testenv"
)

// phone is a running baresip, driven through its ctrl_tcp module
// (netstring JSON commands; responses and events come back the same way).
type phone struct {
	name    string
	cmd     *exec.Cmd
	out     *testenv.Buffer
	done    chan error
	rtpBase int

	conn net.Conn
	mu   sync.Mutex
	msgs []map[string]any // responses and events, in arrival order
	raw  strings.Builder
	tok  int
}

// startPhone runs baresip for account (an accounts line) with SIP on
// sipPort, RTP in rtpBase…rtpBase+19, ctrl_tcp and rtcpsummary, for at
// most seconds, and connects to its control port.
// Extra lines go to its config file.
func startPhone(t *testing.T, name string, sipPort, rtpBase int, account string, seconds int, extra ...string) *phone {
	t.Helper()
	return startPhoneAt(t, phoneHost{}, name, sipPort, rtpBase, account, seconds, extra...)
}

// phoneHost is where a phone runs: the zero value is 127.0.0.1 in this
// network namespace.
type phoneHost struct {
	ip    string // SIP and RTP address; "" is 127.0.0.1
	netns string // a named network namespace (ip netns) to run baresip in
	trace bool   // baresip -s: every SIP message it sends and receives, in its output
}

// startPhoneAt is startPhone at h: with a namespace, baresip runs under
// `ip netns exec` and the control connection is dialled from inside it.
func startPhoneAt(t *testing.T, h phoneHost, name string, sipPort, rtpBase int, account string, seconds int, extra ...string) *phone {
	t.Helper()
	bin := testenv.Need(t, "baresip")
	ctrlPort := testenv.FreePort(t)
	ip := h.ip
	if ip == "" {
		ip = "127.0.0.1"
	}
	cfg := baresipConfigAt(t, ip, sipPort, rtpBase, account, append([]string{
		"module_app menu.so", "module_app ctrl_tcp.so", "module_app rtcpsummary.so",
		fmt.Sprintf("ctrl_tcp_listen 127.0.0.1:%d", ctrlPort)}, extra...)...)
	p := &phone{name: name, out: &testenv.Buffer{}, done: make(chan error, 1), rtpBase: rtpBase}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+10)*time.Second)
	args := []string{bin, "-f", cfg, "-t", strconv.Itoa(seconds)}
	if h.trace {
		args = append(args, "-s")
	}
	if h.netns != "" {
		// ip netns exec execs baresip itself: the PID stays baresip's.
		args = append([]string{testenv.Need(t, "ip"), "netns", "exec", h.netns}, args...)
	}
	p.cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "HOME="+cfg)
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); cancel() }()
	t.Cleanup(func() {
		if p.conn != nil {
			p.conn.Close()
		}
		p.cmd.Process.Kill()
		<-p.done
	})
	addr := "127.0.0.1:" + strconv.Itoa(ctrlPort)
	var c net.Conn
	var err error
	if h.netns != "" {
		// 127.0.0.1 inside the namespace.
		c, err = dialInNetns(h.netns, addr, 10*time.Second)
	} else if err = testenv.WaitTCP(addr, 10*time.Second); err == nil {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("baresip %s: ctrl_tcp: %v\n%s", name, err, tail(p.out.String(), 3000))
	}
	p.conn = c
	go p.read()
	return p
}

// read parses netstrings ("LEN:JSON,") from the control connection.
func (p *phone) read() {
	r := bufio.NewReader(p.conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		buf := make([]byte, n+1)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		var m map[string]any
		json.Unmarshal(buf[:n], &m)
		p.mu.Lock()
		p.msgs = append(p.msgs, m)
		p.raw.Write(buf[:n])
		p.raw.WriteByte('\n')
		p.mu.Unlock()
	}
}

// command sends a ctrl_tcp command and waits for its response.
func (p *phone) command(t *testing.T, command, params string) map[string]any {
	t.Helper()
	p.mu.Lock()
	p.tok++
	token := strconv.Itoa(p.tok)
	p.mu.Unlock()
	b, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": token})
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(b), b); err != nil {
		t.Fatalf("baresip %s: %s: %v", p.name, command, err)
	}
	m, ok := p.waitFor(5*time.Second, func(m map[string]any) bool { return m["response"] == true && m["token"] == token })
	if !ok {
		t.Fatalf("baresip %s: no response to %s\n%s", p.name, command, p.dump())
	}
	return m
}

// waitFor waits until a message satisfying match has arrived.
func (p *phone) waitFor(timeout time.Duration, match func(map[string]any) bool) (map[string]any, bool) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, m := range p.msgs {
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

func (p *phone) event(typ string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["event"] == true && m["type"] == typ }
}

// waitRegistered polls reginfo until the account shows OK.
func (p *phone) waitRegistered(t *testing.T, timeout time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := p.command(t, "reginfo", "")
		data, _ := m["data"].(string)
		if strings.Contains(data, "OK") {
			return
		}
		if _, ok := p.waitFor(0, p.event("REGISTER_OK")); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s did not register: reginfo %q\n--- baresip:\n%s\n%s", p.name, data, p.dump(), logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *phone) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "--- ctrl_tcp:\n" + tail(p.raw.String(), 3000) + "\n--- output:\n" + tail(p.out.String(), 4000)
}

// rtpSummary is baresip's rtcpsummary line for a call's audio stream.
type rtpSummary struct {
	received, sent int
	local, remote  string // RTP addresses: ours (0.0.0.0:port) and the peer's
}

var summaryRe = regexp.MustCompile(`EX=BareSip;[^\n]*?PR=(\d+);PS=(\d+);[^\n]*?IP=([^,;]+),([^;\s]+);`)

func (p *phone) rtpSummary() (rtpSummary, bool) {
	m := summaryRe.FindStringSubmatch(p.out.String())
	if m == nil {
		return rtpSummary{}, false
	}
	r, _ := strconv.Atoi(m[1])
	s, _ := strconv.Atoi(m[2])
	return rtpSummary{received: r, sent: s, local: m[3], remote: m[4]}, true
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// capture is tshark writing every UDP datagram on lo to a file.
type capture struct {
	cmd  *exec.Cmd
	file string
	out  *testenv.Buffer
	done chan error
}

func startCapture(t *testing.T, seconds int) *capture {
	t.Helper()
	bin := testenv.Need(t, "tshark")
	c := &capture{file: filepath.Join(t.TempDir(), "call.pcapng"), out: &testenv.Buffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(bin, "-i", "lo", "-f", "udp", "-w", c.file, "-a", "duration:"+strconv.Itoa(seconds), "-q")
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done; c.done <- nil })
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(c.out.String(), "Capturing on") {
		if time.Now().After(deadline) {
			t.Fatalf("tshark did not start capturing:\n%s", c.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// stop ends the capture (SIGINT, so the file is complete).
func (c *capture) stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(10 * time.Second):
		t.Fatalf("tshark did not stop:\n%s", c.out)
	}
}

// count returns how many packets of the capture match the display filter,
// with SIP decoded on sipPorts, DNS on dnsPort and heuristic RTP on.
func (c *capture) count(t *testing.T, sipPorts []int, dnsPort int, filter string) int {
	t.Helper()
	args := []string{"-r", c.file, "-o", "rtp.heuristic_rtp:TRUE", "-d", fmt.Sprintf("udp.port==%d,dns", dnsPort)}
	for _, p := range sipPorts {
		args = append(args, "-d", fmt.Sprintf("udp.port==%d,sip", p))
	}
	args = append(args, "-Y", filter, "-T", "fields", "-e", "frame.number")
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr)
	}
	return len(strings.Fields(string(out)))
}

// TestBaresipFederatedCallMediaDirect: baresip alice@a.test (registered at
// the a.test proxy) calls baresip bob@b.test (registered at the b.test
// proxy); the call goes through both proxies, found through the lab DNS.
// The call connects, and the audio flows directly between the two baresip
// processes: each one's own RTP statistics show packets to and from the
// other's RTP port, tshark sees them on the wire between those ports, and
// no datagram to or from either proxy's port is anything but SIP.
func TestBaresipFederatedCallMediaDirect(t *testing.T) {
	federatedBaresipCall(t, false)
}

// TestBaresipFederatedCallOverTLS: the same call with SIP over TLS all
// the way: each phone registers over TLS to its proxy (certificates from a
// private CA), the proxies reach each other only through NAPTR SIPS+D2T
// and SRV _sips._tcp (--federation-tls), and the audio still flows
// directly between the phones; not one datagram reaches a proxy's UDP
// port.
func TestBaresipFederatedCallOverTLS(t *testing.T) {
	federatedBaresipCall(t, true)
}

func federatedBaresipCall(t *testing.T, overTLS bool) {
	testenv.Need(t, "baresip")
	testenv.Need(t, "tshark")
	f := startFederation(t, fedOptions{tls: overTLS})
	capt := startCapture(t, 60)

	// baresip also takes its SIP port + 1 (TLS): four ports, two each.
	base := testenv.FreePorts(t, 4)
	bobSIP, aliceSIP := base, base+2
	account := func(aor, password string, proxy *server, tlsPort int) string {
		if overTLS {
			return fmt.Sprintf(`<sip:%s;transport=tls>;auth_pass=%s;outbound="sip:127.0.0.1:%d;transport=tls";regint=300;answermode=auto;audio_codecs=PCMU`, aor, password, tlsPort)
		}
		return fmt.Sprintf(`<sip:%s>;auth_pass=%s;outbound="sip:%s;transport=udp";regint=300;answermode=auto;audio_codecs=PCMU`, aor, password, proxy.addr())
	}
	var extra []string
	if overTLS {
		extra = append(extra, "sip_cafile "+f.ca.File)
	}
	// RTP ranges below the ephemeral ports, distinct for the two phones.
	bob := startPhone(t, "bob", bobSIP, 20000+bobSIP%500*20, account("bob@b.test", "pw-bob", f.b, f.bTLS), 40, extra...)
	alice := startPhone(t, "alice", aliceSIP, 10000+aliceSIP%500*20, account("alice@a.test", "pw-alice", f.a, f.aTLS), 40, extra...)
	logs := func() string { return f.logs() }
	bob.waitRegistered(t, 10*time.Second, logs)
	alice.waitRegistered(t, 10*time.Second, logs)

	alice.command(t, "dial", "sip:bob@b.test")
	if _, ok := alice.waitFor(15*time.Second, alice.event("CALL_ESTABLISHED")); !ok {
		t.Fatalf("the call did not connect\n--- alice:\n%s\n--- bob:\n%s\n%s", alice.dump(), bob.dump(), f.logs())
	}
	if _, ok := bob.waitFor(5*time.Second, bob.event("CALL_ESTABLISHED")); !ok {
		t.Fatalf("bob's side did not connect\n--- bob:\n%s\n%s", bob.dump(), f.logs())
	}
	time.Sleep(5 * time.Second) // 5 s of 20 ms PCMU: ~250 packets each way
	alice.command(t, "hangup", "")
	if _, ok := bob.waitFor(10*time.Second, bob.event("CALL_CLOSED")); !ok {
		t.Fatalf("the BYE did not reach bob\n--- alice:\n%s\n--- bob:\n%s\n%s", alice.dump(), bob.dump(), f.logs())
	}
	var as, bs rtpSummary
	deadline := time.Now().Add(5 * time.Second)
	for {
		var aok, bok bool
		as, aok = alice.rtpSummary()
		bs, bok = bob.rtpSummary()
		if aok && bok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rtcpsummary line (alice %v, bob %v)\n--- alice:\n%s\n--- bob:\n%s", aok, bok, alice.dump(), bob.dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	capt.stop(t)

	aRTP, bRTP := port(as.local), port(bs.local)
	t.Logf("alice: RTP port %d, sent %d, received %d, peer %s", aRTP, as.sent, as.received, as.remote)
	t.Logf("bob:   RTP port %d, sent %d, received %d, peer %s", bRTP, bs.sent, bs.received, bs.remote)
	// Each phone's peer is the other phone's RTP port, not a proxy.
	if port(as.remote) != bRTP || port(bs.remote) != aRTP {
		t.Errorf("media peers: alice sends to %s, bob to %s; want each other's RTP ports %d and %d (proxies %d, %d)",
			as.remote, bs.remote, bRTP, aRTP, f.a.Port, f.b.Port)
	}
	const least = 150
	if as.received < least || bs.received < least || as.sent < least || bs.sent < least {
		t.Errorf("too little audio: alice sent %d received %d, bob sent %d received %d; want ≥ %d each", as.sent, as.received, bs.sent, bs.received, least)
	}

	sipPorts := []int{f.a.Port, f.b.Port, aliceSIP, bobSIP}
	dnsPort := port(f.dns)
	atoB := capt.count(t, sipPorts, dnsPort, fmt.Sprintf("rtp && udp.srcport==%d && udp.dstport==%d", aRTP, bRTP))
	btoA := capt.count(t, sipPorts, dnsPort, fmt.Sprintf("rtp && udp.srcport==%d && udp.dstport==%d", bRTP, aRTP))
	proxies := fmt.Sprintf("(udp.port==%d || udp.port==%d)", f.a.Port, f.b.Port)
	atProxies := capt.count(t, sipPorts, dnsPort, proxies)
	sipAtProxies := capt.count(t, sipPorts, dnsPort, proxies+" && sip")
	rtpAtProxies := capt.count(t, sipPorts, dnsPort, proxies+" && (rtp || rtcp)")
	rtpElsewhere := capt.count(t, sipPorts, dnsPort, fmt.Sprintf("rtp && !(udp.port==%d && udp.port==%d)", aRTP, bRTP))
	t.Logf("tshark on lo: RTP alice:%d → bob:%d %d packets, bob → alice %d; at the proxies' ports (%d, %d): %d datagrams, %d of them SIP, %d RTP/RTCP; RTP between other ports: %d",
		aRTP, bRTP, atoB, btoA, f.a.Port, f.b.Port, atProxies, sipAtProxies, rtpAtProxies, rtpElsewhere)
	if atoB < least || btoA < least {
		t.Errorf("tshark saw %d RTP packets alice → bob and %d bob → alice; want ≥ %d each way", atoB, btoA, least)
	}
	switch {
	case overTLS && atProxies != 0:
		t.Errorf("%d datagrams at the proxies' UDP ports; with TLS all the way there should be none", atProxies)
	case !overTLS && sipAtProxies == 0:
		t.Errorf("tshark saw no SIP at the proxies: the capture is not showing the call")
	}
	if atProxies != sipAtProxies || rtpAtProxies != 0 {
		t.Errorf("media reached a proxy: %d datagrams at the proxies' ports, only %d SIP, %d RTP/RTCP", atProxies, sipAtProxies, rtpAtProxies)
	}
	if rtpElsewhere != 0 {
		t.Logf("note: %d packets between other ports look like RTP to tshark's heuristic", rtpElsewhere)
	}
}
