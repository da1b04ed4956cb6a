package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/proxy"
	"github.com/sipfed/sipfed/sipcore"
)

// Conformance tests with raw SIP: each endpoint is a socket the test
// writes messages to and reads messages from, so that it can say what a
// real phone says (a private address in Via and Contact, a Reason, a
// phone that dies after 180) and see exactly what the proxy sends.

// endpoint is a raw SIP phone on one UDP socket or one TCP connection.
type endpoint struct {
	t    testing.TB
	udp  net.PacketConn
	tcp  net.Conn
	rd   *bufio.Reader
	msgs chan sip.Message
}

func udpEndpoint(t testing.TB, host string) *endpoint {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{t: t, udp: pc, msgs: make(chan sip.Message, 64)}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...)); err == nil {
				e.msgs <- m
			}
		}
	}()
	return e
}

// tcpEndpoint connects to the proxy at addr; everything goes over that
// connection.
func tcpEndpoint(t testing.TB, addr string) *endpoint {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{t: t, tcp: c, rd: bufio.NewReader(c), msgs: make(chan sip.Message, 64)}
	t.Cleanup(func() { c.Close() })
	go func() {
		for {
			m, err := readStream(e.rd)
			if err != nil {
				return
			}
			e.msgs <- m
		}
	}()
	return e
}

// readStream reads one message from a stream: the header up to the
// blank line, then Content-Length bytes of body.
func readStream(rd *bufio.Reader) (sip.Message, error) {
	var head strings.Builder
	length := 0
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == "\r\n" {
			if head.Len() == 0 {
				continue // keep-alive
			}
			break
		}
		head.WriteString(line)
		name, value, ok := strings.Cut(line, ":")
		if ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.EqualFold(strings.TrimSpace(name), "l")) {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(rd, body); err != nil {
		return nil, err
	}
	return sip.ParseMessage([]byte(head.String() + "\r\n" + string(body)))
}

// addr is the endpoint's own address (host:port, the UDP socket's or the
// TCP connection's local end).
func (e *endpoint) addr() string {
	if e.udp != nil {
		return e.udp.LocalAddr().String()
	}
	return e.tcp.LocalAddr().String()
}

func (e *endpoint) port() int {
	_, p, _ := net.SplitHostPort(e.addr())
	n, _ := strconv.Atoi(p)
	return n
}

// send writes msg (LF line ends are made CRLF; Content-Length is added)
// to the proxy at to.
func (e *endpoint) send(to, msg string) {
	e.t.Helper()
	head, body, _ := strings.Cut(strings.ReplaceAll(strings.TrimLeft(msg, "\n"), "\n", "\r\n"), "\r\n\r\n")
	raw := head + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	e.write(to, []byte(raw))
}

func (e *endpoint) write(to string, b []byte) {
	e.t.Helper()
	var err error
	if e.udp != nil {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", to); err == nil {
			_, err = e.udp.WriteTo(b, ua)
		}
	} else {
		_, err = e.tcp.Write(b)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// reply sends a response to req (its Via, From, To, Call-ID, CSeq and
// Record-Route copied) with a To tag and extra headers, back to where
// req came from.
func (e *endpoint) reply(proxyAddr string, req *sip.Request, code int, toTag string, extra ...string) {
	e.t.Helper()
	res := sip.NewResponseFromRequest(req, code, "Reason", nil)
	if toTag != "" {
		res.To().Params.Add("tag", toTag)
	}
	for _, h := range extra {
		name, value, _ := strings.Cut(h, ": ")
		res.AppendHeader(sip.NewHeader(name, value))
	}
	res.AppendHeader(sip.NewHeader("Content-Length", "0"))
	e.write(proxyAddr, []byte(res.String()))
}

// request waits for a request of method, answering nothing and skipping
// other messages (retransmissions, 100 Trying).
func (e *endpoint) request(method sip.RequestMethod, timeout time.Duration) *sip.Request {
	e.t.Helper()
	m := e.wait(timeout, func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}, string(method))
	return m.(*sip.Request)
}

// response waits for a response to method with a status ≥ min.
func (e *endpoint) response(method sip.RequestMethod, min int, timeout time.Duration) *sip.Response {
	e.t.Helper()
	m := e.wait(timeout, func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CSeq() != nil && r.CSeq().MethodName == method && r.StatusCode >= min
	}, fmt.Sprintf("response ≥ %d to %s", min, method))
	return m.(*sip.Response)
}

func (e *endpoint) wait(timeout time.Duration, match func(sip.Message) bool, what string) sip.Message {
	e.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-e.msgs:
			if match(m) {
				return m
			}
		case <-deadline:
			e.t.Fatalf("endpoint %s: no %s within %v", e.addr(), what, timeout)
		}
	}
}

// quietResponse returns a response that arrives within d, or nil.
func (e *endpoint) quietResponse(d time.Duration) *sip.Response {
	deadline := time.After(d)
	for {
		select {
		case m := <-e.msgs:
			if r, ok := m.(*sip.Response); ok {
				return r
			}
		case <-deadline:
			return nil
		}
	}
}

// quiet reports whether no request of method arrives within d.
func (e *endpoint) quiet(method sip.RequestMethod, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case m := <-e.msgs:
			if r, ok := m.(*sip.Request); ok && r.Method == method {
				return false
			}
		case <-deadline:
			return true
		}
	}
}

// call is one dialog between a caller and a callee endpoint through the
// proxy at proxy, built message by message.
type call struct {
	t              testing.TB
	proxy          string
	caller, callee *endpoint
	transport      string // the caller's: "UDP" or "TCP"
	callerVia      string // sent-by in the caller's Via
	callerContact  string
	calleeContact  string
	callID         string
	invite         *sip.Request  // as the callee got it
	ok             *sip.Response // the 200 as the caller got it
	cseq           int
}

// inviteAndAnswer sends the INVITE, answers it 200 at the callee, sends
// the ACK and checks that it reaches the callee.
func (c *call) inviteAndAnswer() {
	c.t.Helper()
	c.caller.send(c.proxy, fmt.Sprintf(`
INVITE sip:bob@a.test SIP/2.0
Via: SIP/2.0/%s %s;branch=z9hG4bK-inv%s;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: %s
CSeq: 1 INVITE
Contact: <%s>
Content-Type: application/sdp

v=0
`, c.transport, c.callerVia, c.callID, c.callID, c.callerContact))
	c.invite = c.callee.request(sip.INVITE, 5*time.Second)
	c.callee.reply(c.proxy, c.invite, 200, "bob1", "Contact: <"+c.calleeContact+">")
	c.ok = c.caller.response(sip.INVITE, 200, 5*time.Second)
	c.cseq = 1
	c.ack()
}

// ack sends the caller's ACK for the 2xx of CSeq c.cseq and checks that
// it reaches the callee.
func (c *call) ack() {
	c.t.Helper()
	c.caller.send(c.proxy, c.fromCaller(sip.ACK, c.cseq, "ack"+strconv.Itoa(c.cseq), ""))
	c.callee.request(sip.ACK, 5*time.Second)
}

// fromCaller is an in-dialog request of the caller: to the callee's
// Contact, along the route set of the 200 (Record-Route reversed).
func (c *call) fromCaller(method sip.RequestMethod, cseq int, branch, body string) string {
	rrs := c.ok.GetHeaders("Record-Route")
	var routes strings.Builder
	for i := len(rrs) - 1; i >= 0; i-- {
		routes.WriteString("Route: " + rrs[i].Value() + "\n")
	}
	ct := ""
	if body != "" {
		ct = "Contact: <" + c.callerContact + ">\nContent-Type: application/sdp\n"
	}
	return fmt.Sprintf(`
%s %s SIP/2.0
Via: SIP/2.0/%s %s;branch=z9hG4bK-%s%s;rport
%sMax-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>;tag=bob1
Call-ID: %s
CSeq: %d %s
%s
%s`, method, c.calleeContact, c.transport, c.callerVia, branch, c.callID, routes.String(), c.callID, cseq, method, ct, body)
}

// fromCallee is an in-dialog request of the callee: to the caller's
// Contact, along the route set of the INVITE (Record-Route in order).
func (c *call) fromCallee(method sip.RequestMethod, cseq int) string {
	var routes strings.Builder
	for _, h := range c.invite.GetHeaders("Record-Route") {
		routes.WriteString("Route: " + h.Value() + "\n")
	}
	return fmt.Sprintf(`
%s %s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-callee%d;rport
%sMax-Forwards: 70
From: <sip:bob@a.test>;tag=bob1
To: <sip:carol@c.test>;tag=carol1
Call-ID: %s
CSeq: %d %s

`, method, c.callerContact, c.callee.addr(), cseq, routes.String(), c.callID, cseq, method)
}

// TestNATCallerReachedInItsDialog: a caller behind NAT (its Via and
// Contact name 10.0.0.5:5060, a private address; its packets come from
// elsewhere) calls; the callee's BYE reaches the caller where its packets
// came from, and over TCP on the caller's own connection, not at the
// private Contact. Its 200 goes back to the callee.
func TestNATCallerReachedInItsDialog(t *testing.T) {
	for _, transport := range []string{"UDP", "TCP"} {
		t.Run(transport, func(t *testing.T) {
			d := startProxy(t)
			callee := udpEndpoint(t, "127.0.0.1")
			d.bind(t, "bob@a.test", fmt.Sprintf("sip:bob@127.0.0.1:%d", callee.port()), 1000)
			var caller *endpoint
			if transport == "TCP" {
				caller = tcpEndpoint(t, d.addr)
			} else {
				caller = udpEndpoint(t, "127.0.0.1")
			}
			c := &call{t: t, proxy: d.addr, caller: caller, callee: callee, transport: transport,
				callerVia: "10.0.0.5:5060", callerContact: "sip:carol@10.0.0.5:5060;transport=" + strings.ToLower(transport),
				calleeContact: fmt.Sprintf("sip:bob@127.0.0.1:%d", callee.port()), callID: "nat-" + transport + "@10.0.0.5"}
			c.inviteAndAnswer()

			callee.send(d.addr, c.fromCallee(sip.BYE, 1))
			bye := caller.request(sip.BYE, 5*time.Second)
			if bye.Recipient.Host != "10.0.0.5" {
				t.Errorf("BYE Request-URI %s: want the caller's Contact, untouched", bye.Recipient.String())
			}
			caller.reply(d.addr, bye, 200, "")
			callee.response(sip.BYE, 200, 5*time.Second)
		})
	}
}

// TestNATCalleeReachedInItsDialog: a callee registered from behind NAT
// (reached over its flow) answers with its private Contact; the caller's
// ACK and BYE, sent to that Contact, reach it over its flow.
func TestNATCalleeReachedInItsDialog(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	private := "sip:bob@10.0.0.9:5060"
	d.bindNAT(t, "bob@a.test", private, callee.addr())
	caller := udpEndpoint(t, "127.0.0.1")
	c := &call{t: t, proxy: d.addr, caller: caller, callee: callee, transport: "UDP",
		callerVia: caller.addr(), callerContact: "sip:carol@" + caller.addr(),
		calleeContact: private, callID: "nat-callee@test"}
	c.inviteAndAnswer()
	caller.send(d.addr, c.fromCaller(sip.BYE, 2, "bye", ""))
	bye := callee.request(sip.BYE, 5*time.Second)
	callee.reply(d.addr, bye, 200, "")
	caller.response(sip.BYE, 200, 5*time.Second)
}

// TestForgedFlowNotFollowed: a flow in our Record-Route is signed with the
// dialog: a BYE whose Route carries another flow is not sent there.
func TestForgedFlowNotFollowed(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", fmt.Sprintf("sip:bob@127.0.0.1:%d", callee.port()), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	victim := udpEndpoint(t, "127.0.0.1")
	c := &call{t: t, proxy: d.addr, caller: caller, callee: callee, transport: "UDP",
		callerVia: "10.0.0.5:5060", callerContact: "sip:carol@10.0.0.5:5060",
		calleeContact: fmt.Sprintf("sip:bob@127.0.0.1:%d", callee.port()), callID: "forged-flow@test"}
	c.inviteAndAnswer()
	rr := c.invite.GetHeaders("Record-Route")[0].(*sip.RecordRouteHeader)
	fl, ok := rr.Address.UriParams.Get("fl")
	if !ok {
		t.Fatalf("no flow in the Record-Route the callee got: %s", rr.Value())
	}
	// The same flow encoding, pointing at the victim.
	forged := proxy.EncodeFlowForTest("udp", victim.addr())
	if forged == fl {
		t.Fatal("test broken: the forged flow is the real one")
	}
	bye := strings.Replace(c.fromCallee(sip.BYE, 1), "fl="+fl, "fl="+forged, 1)
	callee.send(d.addr, bye)
	if !victim.quiet(sip.BYE, 500*time.Millisecond) {
		t.Fatal("a BYE with a forged flow was sent to the address in it")
	}
}

// TestIPv6DialogAfterSetup: over [::1], the whole dialog works: ACK,
// re-INVITE (with its ACK) and BYE from the caller all reach the callee,
// and the BYE's 200 comes back.
func TestIPv6DialogAfterSetup(t *testing.T) {
	d := startProxyAt(t, "::1", "")
	callee := udpEndpoint(t, "::1")
	caller := udpEndpoint(t, "::1")
	calleeContact := fmt.Sprintf("sip:bob@[::1]:%d", callee.port())
	d.bind(t, "bob@a.test", calleeContact, 1000)
	c := &call{t: t, proxy: d.addr, caller: caller, callee: callee, transport: "UDP",
		callerVia: caller.addr(), callerContact: fmt.Sprintf("sip:carol@[::1]:%d", caller.port()),
		calleeContact: calleeContact, callID: "v6@test"}
	c.inviteAndAnswer()
	if rr := c.ok.GetHeaders("Record-Route"); len(rr) != 1 || !strings.Contains(rr[0].Value(), "[::1]") {
		t.Fatalf("Record-Route %v: want one, with the proxy's bracketed address", rr)
	}

	caller.send(d.addr, c.fromCaller(sip.INVITE, 2, "reinv", "v=0\r\n"))
	reinv := callee.request(sip.INVITE, 5*time.Second)
	callee.reply(d.addr, reinv, 200, "", "Contact: <"+calleeContact+">")
	caller.response(sip.INVITE, 200, 5*time.Second)
	c.cseq = 2
	c.ack()

	caller.send(d.addr, c.fromCaller(sip.BYE, 3, "bye", ""))
	bye := callee.request(sip.BYE, 5*time.Second)
	callee.reply(d.addr, bye, 200, "")
	if res := caller.response(sip.BYE, 200, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
}

// ringing sends carol's INVITE to bob@a.test from caller and waits for it
// at every callee, each of which answers 180 with its own tag. It
// returns the INVITEs as the callees got them.
func ringing(t *testing.T, proxyAddr string, caller *endpoint, callID string, callees ...*endpoint) []*sip.Request {
	t.Helper()
	invite := strings.TrimSuffix(carolInvite(caller, "z9hG4bK-"+callID, callID), "\n")
	caller.send(proxyAddr, invite+"Content-Type: application/sdp\n\nv=0\n")
	var invites []*sip.Request
	for i, e := range callees {
		inv := e.request(sip.INVITE, 5*time.Second)
		e.reply(proxyAddr, inv, 180, fmt.Sprintf("bob%d", i), "Contact: <sip:bob@"+e.addr()+">")
		invites = append(invites, inv)
	}
	caller.response(sip.INVITE, 180, 5*time.Second)
	return invites
}

// TestRFC3326_ReasonOnForkCANCELs: when one device of a fork answers, the
// others get CANCEL with Reason "Call completed elsewhere" (no missed
// call shown); a caller's CANCEL passes its own Reason on to every
// device.
func TestRFC3326_ReasonOnForkCANCELs(t *testing.T) {
	t.Run("answered elsewhere", func(t *testing.T) {
		d := startProxy(t)
		one, two := udpEndpoint(t, "127.0.0.1"), udpEndpoint(t, "127.0.0.1")
		d.bind(t, "bob@a.test", "sip:bob@"+one.addr(), 1000)
		d.bind(t, "bob@a.test", "sip:bob@"+two.addr(), 1000)
		caller := udpEndpoint(t, "127.0.0.1")
		invites := ringing(t, d.addr, caller, "reason-1", one, two)
		one.reply(d.addr, invites[0], 200, "bob0", "Contact: <sip:bob@"+one.addr()+">")
		cancel := two.request(sip.CANCEL, 5*time.Second)
		if got := cancel.GetHeader("Reason"); got == nil || got.Value() != `SIP;cause=200;text="Call completed elsewhere"` {
			t.Fatalf("CANCEL to the other device: Reason %v", got)
		}
	})
	t.Run("caller's reason", func(t *testing.T) {
		d := startProxy(t)
		one, two := udpEndpoint(t, "127.0.0.1"), udpEndpoint(t, "127.0.0.1")
		d.bind(t, "bob@a.test", "sip:bob@"+one.addr(), 1000)
		d.bind(t, "bob@a.test", "sip:bob@"+two.addr(), 1000)
		caller := udpEndpoint(t, "127.0.0.1")
		ringing(t, d.addr, caller, "reason-2", one, two)
		const reason = `Q.850;cause=16;text="Terminated"`
		caller.send(d.addr, fmt.Sprintf(`
CANCEL sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-reason-2;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: reason-2
CSeq: 1 CANCEL
Reason: %s

`, caller.addr(), reason))
		for _, e := range []*endpoint{one, two} {
			cancel := e.request(sip.CANCEL, 5*time.Second)
			if got := cancel.GetHeader("Reason"); got == nil || got.Value() != reason {
				t.Errorf("CANCEL at %s: Reason %v, want the caller's %s", e.addr(), got, reason)
			}
		}
	})
}

// TestRFC3261_16_6_TimerCAnswersCallerAtOnce: a device that rings and
// then dies (it never answers the CANCEL) costs the caller Timer C, not
// Timer C plus the CANCEL's 32 s: 408 comes when Timer C fires.
func TestRFC3261_16_6_TimerCAnswersCallerAtOnce(t *testing.T) {
	d := startProxy(t, proxy.WithTimerC(time.Second))
	dead := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+dead.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	ringing(t, d.addr, caller, "timer-c", dead)
	start := time.Now()
	res := caller.response(sip.INVITE, 200, 4*time.Second)
	if res.StatusCode != 408 {
		t.Fatalf("caller got %d %s, want 408", res.StatusCode, res.Reason)
	}
	dead.request(sip.CANCEL, time.Second)
	t.Logf("408 %v after the 180", time.Since(start).Round(10*time.Millisecond))
}

// TestRFC3261_22_3_ConsumedCredentialsRemoved: alice's
// Proxy-Authorization for our realm is not forwarded to the callee;
// credentials for another realm are.
func TestRFC3261_22_3_ConsumedCredentialsRemoved(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	other := `Digest username="alice", realm="elsewhere.test", nonce="n", uri="sip:bob@a.test", response="00000000000000000000000000000000"`
	message := func(cseq int, credentials ...string) string {
		var creds strings.Builder
		for _, c := range credentials {
			creds.WriteString("Proxy-Authorization: " + c + "\n")
		}
		return fmt.Sprintf(`
MESSAGE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-cred%d;rport
Max-Forwards: 70
From: <sip:alice@a.test>;tag=alice1
To: <sip:bob@a.test>
Call-ID: credentials@test
CSeq: %d MESSAGE
%sContent-Type: text/plain

hi`, caller.addr(), cseq, cseq, creds.String())
	}
	caller.send(d.addr, message(1, other))
	res := caller.response(sip.MESSAGE, 200, 5*time.Second)
	if res.StatusCode != 407 {
		t.Fatalf("first MESSAGE: %d, want 407", res.StatusCode)
	}
	chal, err := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "MESSAGE", URI: "sip:bob@a.test", Username: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	caller.send(d.addr, message(2, other, cred.String()))
	msg := callee.request(sip.MESSAGE, 5*time.Second)
	callee.reply(d.addr, msg, 200, "bob1")
	caller.response(sip.MESSAGE, 200, 5*time.Second)
	var got []string
	for _, h := range msg.GetHeaders("Proxy-Authorization") {
		got = append(got, h.Value())
	}
	if len(got) != 1 || got[0] != other {
		t.Fatalf("Proxy-Authorization at the callee: %q, want only the other realm's", got)
	}
}

// TestRFC3581_ReceivedWithRport: a request with rport gets received= as
// well as rport=PORT in its Via, even when the address is the one in
// the Via (RFC 3581 §4).
func TestRFC3581_ReceivedWithRport(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	caller.send(d.addr, fmt.Sprintf(`
MESSAGE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-rport;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: rport@test
CSeq: 1 MESSAGE
Content-Type: text/plain

hi`, caller.addr()))
	msg := callee.request(sip.MESSAGE, 5*time.Second)
	vias := msg.GetHeaders("Via")
	if len(vias) != 2 {
		t.Fatalf("Vias %v", vias)
	}
	v := vias[1].(*sip.ViaHeader)
	received, _ := v.Params.Get("received")
	rport, _ := v.Params.Get("rport")
	if received != "127.0.0.1" || rport != strconv.Itoa(caller.port()) {
		t.Fatalf("caller's Via at the callee: %s; want received=127.0.0.1 and rport=%d", v.Value(), caller.port())
	}
	callee.reply(d.addr, msg, 200, "bob1")
	caller.response(sip.MESSAGE, 200, 5*time.Second)
}

// TestServerHeaderAndAllow: the responses the proxy makes carry the
// Server header set for the process, and Allow lists PUBLISH, which is
// forwarded like the other methods.
func TestServerHeaderAndAllow(t *testing.T) {
	sipcore.SetServerHeader("sipfed/test")
	t.Cleanup(func() { sipcore.SetServerHeader("") })
	d := startProxy(t)
	e := udpEndpoint(t, "127.0.0.1")
	e.send(d.addr, fmt.Sprintf(`
OPTIONS sip:a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-opt;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:a.test>
Call-ID: options@test
CSeq: 1 OPTIONS

`, e.addr()))
	res := e.response(sip.OPTIONS, 200, 5*time.Second)
	if h := res.GetHeader("Server"); h == nil || h.Value() != "sipfed/test" {
		t.Errorf("Server: %v", h)
	}
	if h := res.GetHeader("Allow"); h == nil || !strings.Contains(h.Value(), "PUBLISH") {
		t.Errorf("Allow: %v", h)
	}
}

// TestEveryINVITELoggedOnce: an INVITE refused before any branch (480,
// nobody registered) is logged at info like a relayed one, once, with
// its status.
func TestEveryINVITELoggedOnce(t *testing.T) {
	var buf testenv.Buffer
	d := startProxy(t, proxy.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	caller := udpEndpoint(t, "127.0.0.1")
	caller.send(d.addr, fmt.Sprintf(`
INVITE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-log;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: logged@test
CSeq: 1 INVITE
Contact: <sip:carol@%s>

`, caller.addr(), caller.addr()))
	if res := caller.response(sip.INVITE, 200, 5*time.Second); res.StatusCode != 480 {
		t.Fatalf("INVITE to bob, not registered: %d, want 480", res.StatusCode)
	}
	eventually(t, "the call's log line", func() bool { return strings.Contains(buf.String(), "call_id=logged@test") })
	if n := strings.Count(buf.String(), "msg=call "); n != 1 || !strings.Contains(buf.String(), "status=480") || !strings.Contains(buf.String(), "level=INFO") {
		t.Fatalf("%d call lines, want one at INFO with status=480:\n%s", n, buf.String())
	}
}

// TestRFC3261_17_1_1_3_ACKForNon2xxOneVia: the proxy's ACK for a busy
// device's 486 carries exactly one Via, the top one of the INVITE it
// sent; a retransmitted 486 is ACKed again; the caller gets the 486.
func TestRFC3261_17_1_1_3_ACKForNon2xxOneVia(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	inv := ringing(t, d.addr, caller, "ack-via", callee)[0]
	if n := len(inv.GetHeaders("Via")); n != 2 {
		t.Fatalf("the INVITE at the callee has %d Vias, want 2 (ours and the caller's)", n)
	}
	for i := 0; i < 2; i++ { // the 486 and its retransmission
		callee.reply(d.addr, inv, 486, "bob0")
		ack := callee.request(sip.ACK, 5*time.Second)
		vias := ack.GetHeaders("Via")
		if len(vias) != 1 || vias[0].Value() != inv.Via().Value() {
			t.Fatalf("ACK %d: Vias %q, want only the INVITE's top Via %q", i, vias, inv.Via().Value())
		}
		if to := ack.To(); to == nil || !to.Params.Has("tag") {
			t.Fatalf("ACK %d: To %v, want the 486's, with its tag", i, to)
		}
	}
	if res := caller.response(sip.INVITE, 200, 5*time.Second); res.StatusCode != 486 {
		t.Fatalf("caller got %d, want 486", res.StatusCode)
	}
}

// carolInvite is carol's INVITE to bob@a.test from caller, without a
// body, for endpoint.send.
func carolInvite(caller *endpoint, branch, callID string) string {
	return fmt.Sprintf(`
INVITE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:carol@%s>

`, caller.addr(), branch, callID, caller.addr())
}

// answer200 has callee answer inv 200 (tag bob0) and waits for what as
// a 200 at the caller.
func answer200(t *testing.T, proxyAddr string, callee, caller *endpoint, inv *sip.Request, what string) {
	t.Helper()
	callee.reply(proxyAddr, inv, 200, "bob0", "Contact: <sip:bob@"+callee.addr()+">")
	if res := caller.response(sip.INVITE, 200, 5*time.Second); res.StatusCode != 200 {
		t.Fatalf("%s: caller got %d, want 200", what, res.StatusCode)
	}
}

// TestRFC3261_17_1_1_2_TimerA: over UDP the proxy retransmits the INVITE
// it forwarded (Timer A, T1 then 2*T1…) until the first response, then
// never again; a non-2xx that follows the 2xx (forged, or a broken
// device) is neither ACKed nor passed on, and the transaction goes on
// relaying the 2xx's retransmissions.
func TestRFC3261_17_1_1_2_TimerA(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	caller.send(d.addr, carolInvite(caller, "z9hG4bK-timer-a", "timer-a"))
	first := callee.request(sip.INVITE, 5*time.Second)
	again := callee.request(sip.INVITE, 2*time.Second) // T1 = 500 ms later
	if again.Via().Value() != first.Via().Value() {
		t.Fatalf("retransmission's Via %q, want the first's %q", again.Via().Value(), first.Via().Value())
	}
	answer200(t, d.addr, callee, caller, first, "the 200")
	if !callee.quiet(sip.INVITE, 2500*time.Millisecond) {
		t.Fatal("the INVITE was retransmitted after its 200")
	}
	callee.reply(d.addr, first, 486, "bob0")
	if !callee.quiet(sip.ACK, time.Second) {
		t.Fatal("a 486 after the 200 was ACKed")
	}
	answer200(t, d.addr, callee, caller, first, "the 200's retransmission")
}

// TestRFC6026_7_1_RetransmittedINVITEAfter2xxAbsorbed: the server
// transaction ends as soon as the 2xx is relayed (the proxy keeps only the
// branch), over UDP and over TCP, yet a retransmission of the INVITE that
// arrives afterwards is still absorbed as in the Accepted state: the
// callee gets no second INVITE, and the callee's retransmitted 2xx still
// reaches the caller. Over TCP the caller's connection stays up for the
// dialog's requests.
func TestRFC6026_7_1_RetransmittedINVITEAfter2xxAbsorbed(t *testing.T) {
	for _, transport := range []string{"UDP", "TCP"} {
		t.Run(transport, func(t *testing.T) {
			d := startProxy(t)
			callee := udpEndpoint(t, "127.0.0.1")
			d.bind(t, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
			var caller *endpoint
			if transport == "TCP" {
				caller = tcpEndpoint(t, d.addr)
			} else {
				caller = udpEndpoint(t, "127.0.0.1")
			}
			invite := strings.Replace(carolInvite(caller, "z9hG4bK-accepted", "accepted-1"), "SIP/2.0/UDP", "SIP/2.0/"+transport, 1)
			caller.send(d.addr, invite)
			inv := callee.request(sip.INVITE, 5*time.Second)
			answer200(t, d.addr, callee, caller, inv, "the 200")
			time.Sleep(100 * time.Millisecond) // the transaction ends after the relay
			caller.send(d.addr, invite)
			if !callee.quiet(sip.INVITE, time.Second) {
				t.Fatal("the INVITE retransmitted after the 2xx was forwarded again")
			}
			answer200(t, d.addr, callee, caller, inv, "the 200's retransmission")
		})
	}
}

// TestRFC3261_17_2_2_RetransmissionAfterFinalAnsweredAgain: over UDP a
// non-INVITE server transaction ends once its final response is relayed
// (the proxy keeps the response's bytes), yet a retransmission of the
// request that arrives afterwards gets that same response again, as the
// Completed state would give it, and is not forwarded a second time.
func TestRFC3261_17_2_2_RetransmissionAfterFinalAnsweredAgain(t *testing.T) {
	d := startProxy(t)
	callee := udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	msg := fmt.Sprintf(`
MESSAGE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-completed;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: completed-1
CSeq: 1 MESSAGE
Content-Type: text/plain

hello
`, caller.addr())
	caller.send(d.addr, msg)
	got := callee.request(sip.MESSAGE, 5*time.Second)
	callee.reply(d.addr, got, 202, "bob0")
	first := caller.response(sip.MESSAGE, 200, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	caller.send(d.addr, msg)
	again := caller.response(sip.MESSAGE, 200, 5*time.Second)
	if again.StatusCode != 202 || again.String() != first.String() {
		t.Fatalf("the retransmission got\n%s\nafter\n%s", again, first)
	}
	if !callee.quiet(sip.MESSAGE, 500*time.Millisecond) {
		t.Fatal("the retransmitted MESSAGE was forwarded again")
	}
	// The same branch and Call-ID from another address is not a
	// retransmission: it does not get carol's response.
	other := udpEndpoint(t, "127.0.0.1")
	other.send(d.addr, strings.Replace(msg, caller.addr(), other.addr(), 1))
	callee.request(sip.MESSAGE, 5*time.Second)
	if m := other.quietResponse(300 * time.Millisecond); m != nil {
		t.Fatalf("another address got carol's kept response:\n%s", m)
	}
}

// TestRFC3261_16_7_10_OneFinalForNonINVITE: a MESSAGE forked to two
// devices that both accept it gets one final response upstream, over UDP
// where its transaction ends at that response.
func TestRFC3261_16_7_10_OneFinalForNonINVITE(t *testing.T) {
	d := startProxy(t)
	one, two := udpEndpoint(t, "127.0.0.1"), udpEndpoint(t, "127.0.0.1")
	d.bind(t, "bob@a.test", "sip:bob@"+one.addr(), 1000)
	d.bind(t, "bob@a.test", "sip:bob@"+two.addr(), 1000)
	caller := udpEndpoint(t, "127.0.0.1")
	caller.send(d.addr, fmt.Sprintf(`
MESSAGE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-fork-msg;rport
Max-Forwards: 70
From: <sip:carol@c.test>;tag=carol1
To: <sip:bob@a.test>
Call-ID: fork-msg
CSeq: 1 MESSAGE
Content-Type: text/plain

hello
`, caller.addr()))
	m1, m2 := one.request(sip.MESSAGE, 5*time.Second), two.request(sip.MESSAGE, 5*time.Second)
	one.reply(d.addr, m1, 200, "one")
	two.reply(d.addr, m2, 200, "two")
	first := caller.response(sip.MESSAGE, 200, 5*time.Second)
	if res := caller.quietResponse(time.Second); res != nil {
		t.Fatalf("a second final response upstream:\n%s\nafter\n%s", res, first)
	}
}
