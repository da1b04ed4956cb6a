package security

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// Issue 9, item 2: idle TCP connections used to be neither limited nor
// closed; at the descriptor limit accept failed, sipgo's ServeTCP
// returned and the whole process exited, UDP with it. These tests open
// 1,100 idle connections to a server whose RLIMIT_NOFILE is 512.

const (
	connFlood    = 1100
	connUlimit   = 512
	connAttempts = 64 // dials in flight at once
)

// optionsProbe is an OPTIONS to the domain itself, which the proxy
// answers 200; T is UDP or TCP.
const optionsProbe = `OPTIONS sip:a.test SIP/2.0
Via: SIP/2.0/T LOCAL;branch=z9hG4bK-conn-N
From: <sip:probe@c.test>;tag=conn-N
To: <sip:a.test>
Call-ID: conn-N
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

`

var probes atomic.Int64

func probe(transport string) string {
	n := strconv.FormatInt(probes.Add(1), 10)
	return strings.NewReplacer("/T ", "/"+transport+" ", "-N", "-"+n).Replace(optionsProbe)
}

// optionsOverUDP reports the final status of an OPTIONS over UDP.
func optionsOverUDP(t *testing.T, s *target) int {
	t.Helper()
	return finalOf(exchangeUDP(t, "", s.Addr(), probe("UDP"), 500*time.Millisecond))
}

// optionsOverTCP sends an OPTIONS on a new TCP connection from the
// loopback address src and returns the final status, or 0 with the reason
// it got none.
func optionsOverTCP(t *testing.T, s *target, src string) (int, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := strings.ReplaceAll(probe("TCP"), "LOCAL", c.LocalAddr().String())
	if _, err := io.WriteString(c, strings.ReplaceAll(msg, "\n", "\r\n")); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if code := statusOf(line); code >= 200 {
			return code, nil
		}
	}
}

// idleFlood opens n TCP connections to s, spread over the loopback
// addresses srcs, sends nothing on them, and closes them when the test
// ends. Dials that fail are counted, not fatal: a server out of
// descriptors may reset a handshake.
func idleFlood(t *testing.T, s *target, srcs []string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := make(chan int)
	for range connAttempts {
		wg.Go(func() {
			for i := range next {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcs[i%len(srcs)])}, Timeout: 2 * time.Second}
				c, err := d.Dial("tcp", s.Addr())
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
			}
		})
	}
	start := time.Now()
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var out []net.Conn
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	t.Cleanup(func() {
		for _, c := range out {
			c.Close()
		}
	})
	t.Logf("%d idle connections from %d addresses opened in %v (%d dials failed)", len(out), len(srcs), time.Since(start).Round(time.Millisecond), failed.Load())
	return out
}

// closedByServer counts the connections among conns that the server has
// closed by deadline (a read past a deadline fails without looking, so
// each gets a millisecond at least).
func closedByServer(conns []net.Conn, deadline time.Time) int {
	n := 0
	buf := make([]byte, 1)
	for _, c := range conns {
		if soon := time.Now().Add(time.Millisecond); deadline.Before(soon) {
			deadline = soon
		}
		c.SetReadDeadline(deadline)
		if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			n++
		}
	}
	return n
}

// loopbacks returns 127.0.0.first … 127.0.0.(first+n-1).
func loopbacks(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d", first+i)
	}
	return out
}

// connMetric returns the value of the series named series (with its
// labels, e.g. `sipfed_tcp_refused_total{reason="max_per_source"}`)
// on the server's /metrics.
func connMetric(t *testing.T, s *target, series string) float64 {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", series)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mustServe checks that the process lives and answers OPTIONS over UDP.
func mustServe(t *testing.T, s *target, when string) {
	t.Helper()
	if !s.alive() {
		t.Fatalf("%s: the server exited", when)
	}
	if code := optionsOverUDP(t, s); code != 200 {
		t.Fatalf("%s: OPTIONS over UDP got %d, want 200", when, code)
	}
}

// TestTCPIdleFloodFromOneSourceIsCapped: 1,100 idle connections from
// 127.0.0.1 under ulimit 512. All but --tcp-max-per-source (64) are
// closed as soon as accepted, the server keeps serving UDP, a client at
// 127.0.0.2 still gets 200 over TCP, and the refusals are logged at warn
// (once per 10 s, naming the source) and counted in /metrics.
func TestTCPIdleFloodFromOneSourceIsCapped(t *testing.T) {
	s := startTarget(t, options{ulimitN: connUlimit})
	conns := idleFlood(t, s, []string{"127.0.0.1"}, connFlood)
	mustServe(t, s, "after the flood")
	if code, err := optionsOverTCP(t, s, "127.0.0.2"); code != 200 {
		t.Fatalf("OPTIONS over TCP from 127.0.0.2: %d (%v), want 200", code, err)
	}
	if closed := closedByServer(conns, time.Now().Add(5*time.Second)); closed < len(conns)-64 {
		t.Errorf("the server closed %d of %d connections from one source, want all but 64", closed, len(conns))
	}
	if open := connMetric(t, s, "sipfed_tcp_connections"); open > 64 {
		t.Errorf("sipfed_tcp_connections %v, want at most 64", open)
	}
	if refused := connMetric(t, s, `sipfed_tcp_refused_total{reason="max_per_source"}`); refused < float64(len(conns)-64) {
		t.Errorf("sipfed_tcp_refused_total{reason=max_per_source} %v, want at least %d", refused, len(conns)-64)
	}
	warns := regexp.MustCompile(`level=WARN msg="tcp connection refused" reason=max_per_source .*peer=127\.0\.0\.1 limit=64`).FindAllString(s.out.String(), -1)
	if len(warns) != 1 {
		t.Errorf("%d warn lines for the per-source limit, want 1 (one per 10 s)", len(warns))
	}
}

// TestTCPDescriptorExhaustionSurvived: 1,100 idle connections from 20
// addresses (55 each, under the per-source cap) under ulimit 512 use up
// the descriptors. The server sheds what it cannot hold instead of
// exiting, UDP keeps working, and TCP works again once the connections
// go away.
func TestTCPDescriptorExhaustionSurvived(t *testing.T) {
	s := startTarget(t, options{ulimitN: connUlimit})
	conns := idleFlood(t, s, loopbacks(10, 20), connFlood)
	mustServe(t, s, "while out of descriptors")
	if closed := closedByServer(conns, time.Now().Add(5*time.Second)); closed < len(conns)-connUlimit {
		t.Errorf("the server closed %d of %d connections, want at least %d shed", closed, len(conns), len(conns)-connUlimit)
	}
	if !strings.Contains(s.out.String(), `msg="tcp connection refused" reason=descriptors`) {
		t.Error("no warn line for running out of descriptors")
	}
	for _, c := range conns {
		c.Close()
	}
	released := time.Now()
	deadline := released.Add(5 * time.Second)
	for {
		code, err := optionsOverTCP(t, s, "127.0.0.2")
		if code == 200 {
			t.Logf("TCP served again %v after the flood ended", time.Since(released).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OPTIONS over TCP after the flood: %d (%v), want 200", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustServe(t, s, "after the flood")
	if shed := connMetric(t, s, `sipfed_tcp_refused_total{reason="descriptors"}`); shed < 1 {
		t.Errorf("sipfed_tcp_refused_total{reason=descriptors} %v, want > 0", shed)
	}
}

// TestTCPIdleConnectionsClosed: with --tcp-idle-timeout 1s, 1,100 idle
// connections are all closed by the server within the timeout and a
// quarter, while a connection sending RFC 5626 keep-alives (CRLF CRLF,
// answered CRLF) stays open; then TCP serves new clients.
func TestTCPIdleConnectionsClosed(t *testing.T) {
	s := startTarget(t, options{ulimitN: connUlimit, args: []string{"--tcp-idle-timeout", "1s"}})

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	alive, err := d.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	pongs := make(chan error, 1)
	go func() {
		buf := make([]byte, 2)
		for range 8 {
			if _, err := io.WriteString(alive, "\r\n\r\n"); err != nil {
				pongs <- err
				return
			}
			alive.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadFull(alive, buf); err != nil {
				pongs <- fmt.Errorf("keep-alive not answered: %w", err)
				return
			}
			time.Sleep(400 * time.Millisecond)
		}
		pongs <- nil
	}()

	conns := idleFlood(t, s, loopbacks(10, 20), connFlood)
	opened := time.Now()
	mustServe(t, s, "during the flood")
	if closed := closedByServer(conns, opened.Add(2500*time.Millisecond)); closed != len(conns) {
		t.Errorf("%d of %d idle connections still open %v after the flood", len(conns)-closed, len(conns), time.Since(opened).Round(time.Millisecond))
	}
	if err := <-pongs; err != nil {
		t.Errorf("a connection with keep-alives: %v", err)
	}
	if code, err := optionsOverTCP(t, s, "127.0.0.3"); code != 200 {
		t.Fatalf("OPTIONS over TCP after the idle ones closed: %d (%v), want 200", code, err)
	}
	mustServe(t, s, "after the flood")
	if idle := connMetric(t, s, "sipfed_tcp_idle_closed_total"); idle < 1 {
		t.Errorf("sipfed_tcp_idle_closed_total %v, want > 0", idle)
	}
}

// TestTCPRequestFloodClosesTheConnection: one connection from 127.0.0.3
// sending OPTIONS as fast as it can is closed once its source goes over
// --pike-rate; a TCP client from 127.0.0.2 is served meanwhile.
func TestTCPRequestFloodClosesTheConnection(t *testing.T) {
	s := startTarget(t, options{args: []string{"--pike-rate", "50"}})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	deadline := time.Now().Add(5 * time.Second)
	sent, closed := 0, false
	for time.Now().Before(deadline) {
		msg := strings.ReplaceAll(probe("TCP"), "LOCAL", c.LocalAddr().String())
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, strings.ReplaceAll(msg, "\n", "\r\n")); err != nil {
			closed = true
			break
		}
		sent++
		if sent%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if !closed {
		t.Fatalf("a connection sent %d OPTIONS in 5 s and was never closed", sent)
	}
	if code, err := optionsOverTCP(t, s, "127.0.0.2"); code != 200 {
		t.Fatalf("OPTIONS over TCP from another source: %d, %v", code, err)
	}
}

// readMessage reads one SIP message (headers and body) from a stream.
func readMessage(r *bufio.Reader) (string, error) {
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(line)
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" && b.Len() > 2 {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return b.String(), err
	}
	return b.String() + string(body), nil
}

// TestRegisteredTCPFlowOutlivesIdleTimeout: with --tcp-idle-timeout 1s, a
// connection that alice registered over stays open while idle for 3 s
// (she could not be reached otherwise), and a MESSAGE to her then arrives
// over it; an idle connection that registered nothing is closed.
func TestRegisteredTCPFlowOutlivesIdleTimeout(t *testing.T) {
	s := startTarget(t, options{args: []string{"--tcp-idle-timeout", "1s"}})
	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	local := c.LocalAddr().String()
	reg := func(cseq int, auth string) string {
		m := fmt.Sprintf("REGISTER sip:a.test SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK-flow%d;rport\r\nFrom: <sip:alice@a.test>;tag=f1\r\nTo: <sip:alice@a.test>\r\nCall-ID: flow-1\r\nCSeq: %d REGISTER\r\nMax-Forwards: 70\r\nContact: <sip:alice@%s;transport=tcp>\r\nExpires: 600\r\n", local, cseq, cseq, local)
		if auth != "" {
			m += "Authorization: " + auth + "\r\n"
		}
		return m + "Content-Length: 0\r\n\r\n"
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, reg(1, ""))
	first, err := readMessage(r)
	if err != nil || statusOf(first) != 401 {
		t.Fatalf("first REGISTER: %q %v", first, err)
	}
	m := regexp.MustCompile(`(?m)^WWW-Authenticate: (.*)\r$`).FindStringSubmatch(first)
	chal, err := digest.ParseChallenge(m[1])
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: "alice", Password: "alice-pw", Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, reg(2, cred.String()))
	if ok, err := readMessage(r); err != nil || statusOf(ok) != 200 {
		t.Fatalf("REGISTER with credentials: %q %v", ok, err)
	}

	time.Sleep(3 * time.Second)
	if closed := closedByServer([]net.Conn{idle}, time.Now().Add(time.Second)); closed != 1 {
		t.Fatal("an idle connection that registered nothing outlived --tcp-idle-timeout")
	}
	msg := "MESSAGE sip:alice@a.test SIP/2.0\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK-flowmsg;rport\nFrom: <sip:bob@c.test>;tag=m1\nTo: <sip:alice@a.test>\nCall-ID: flow-msg\nCSeq: 1 MESSAGE\nMax-Forwards: 70\nContent-Type: text/plain\nContent-Length: 5\n\nhello"
	caller, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "LOCAL", caller.LocalAddr().String()), "\n", "\r\n")
	if _, err := io.WriteString(caller, msg); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	got, err := readMessage(r)
	if err != nil || !strings.HasPrefix(got, "MESSAGE ") {
		t.Fatalf("alice's registered connection, idle for 3 s: got %q, %v; want the MESSAGE", got, err)
	}
}
