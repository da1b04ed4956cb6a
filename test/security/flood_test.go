package security

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// Issue 9, item 3: one source sending OPTIONS over UDP at full speed for
// 10 s took the server from 12 MB to 2.3 GB (sipgo keeps each finished
// transaction 32 s, Timer J), and 3 of 4 REGISTERs from another address
// timed out meanwhile. Datagrams from a source over its rate are now
// dropped before parsing (--pike-rate), and GOMEMLIMIT bounds the rest.

// floodRSSBoundKB is the most the server may hold during and after the
// flood below. Measured here (2 CPUs, 520,000-640,000 datagrams in 5 s):
// 17 MB peak, 14 MB at rest; 362 MB with --pike-rate 0.
const floodRSSBoundKB = 200 << 10

// floodOptions is the flooder's OPTIONS; the ten zeros are replaced by a
// counter, so that every datagram is a new transaction (a retransmission
// would cost the server nothing).
const floodOptions = "OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5999;branch=z9hG4bK-0000000000\r\n" +
	"From: <sip:flood@c.test>;tag=f\r\nTo: <sip:a.test>\r\nCall-ID: 0000000000\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

// flood sends unique OPTIONS on c as fast as one goroutine can until
// stop, and returns how many it sent.
func flood(c *net.UDPConn, stop time.Time) int { return floodWith(c, floodOptions, stop) }

// floodWith sends template on c as fast as one goroutine can until stop,
// its runs of ten zeros replaced by a counter, and returns how many it
// sent.
func floodWith(c *net.UDPConn, template string, stop time.Time) int {
	msg := []byte(template)
	var at []int
	for i := 0; ; {
		j := strings.Index(template[i:], "0000000000")
		if j < 0 {
			break
		}
		at = append(at, i+j)
		i += j + 10
	}
	n := 0
	var digits [10]byte
	for ; n%1024 != 0 || time.Now().Before(stop); n++ {
		d := strconv.AppendInt(digits[:0], int64(n), 10)
		for _, p := range at {
			copy(msg[p+10-len(d):p+10], d)
		}
		c.Write(msg) // a full socket buffer drops, as the network would
	}
	return n
}

func udpAddr(t *testing.T, s string) *net.UDPAddr {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// uac is a UDP client on one address and port that retransmits like a
// phone (RFC 3261 §17.1.2.2, Timer E: 0.5 s, 1 s, 2 s).
type uac struct {
	t    *testing.T
	conn *net.UDPConn
	seq  atomic.Int64
}

func newUAC(t *testing.T, local, server string) *uac {
	t.Helper()
	c, err := net.DialUDP("udp", udpAddr(t, local), udpAddr(t, server))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &uac{t: t, conn: c}
}

// ask sends raw (LF line ends become CRLF, LOCAL the client's address)
// until a final response with its branch comes back, and returns it, or
// "" after the retransmissions.
func (u *uac) ask(raw string) string {
	u.t.Helper()
	msg := strings.ReplaceAll(raw, "LOCAL", u.conn.LocalAddr().String())
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	branch := regexp.MustCompile(`branch=([^;\r\n]+)`).FindStringSubmatch(msg)[1]
	buf := make([]byte, 65536)
	for _, wait := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		if _, err := u.conn.Write([]byte(msg)); err != nil {
			u.t.Fatal(err)
		}
		deadline := time.Now().Add(wait)
		for {
			u.conn.SetReadDeadline(deadline)
			n, err := u.conn.Read(buf)
			if err != nil {
				break
			}
			if got := string(buf[:n]); statusOf(got) >= 200 && strings.Contains(got, branch) {
				return got
			}
		}
	}
	return ""
}

// options sends an OPTIONS to the domain and returns the final status.
func (u *uac) options() int {
	n := u.seq.Add(1)
	return statusOf(u.ask(fmt.Sprintf("OPTIONS sip:a.test SIP/2.0\nVia: SIP/2.0/UDP LOCAL;rport;branch=z9hG4bK-uac-o%d-%d\n"+
		"From: <sip:probe@c.test>;tag=u\nTo: <sip:a.test>\nCall-ID: uac-o%d-%d\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
		n, time.Now().UnixNano(), n, time.Now().UnixNano())))
}

// register registers user@a.test with password, answering the 401, and
// returns the final status of the authenticated REGISTER (or of the
// first, when it was not 401).
func (u *uac) register(user, password string) int {
	u.t.Helper()
	n := u.seq.Add(1)
	callID := fmt.Sprintf("uac-r%d-%d", n, time.Now().UnixNano())
	build := func(cseq int, auth string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "REGISTER sip:a.test SIP/2.0\nVia: SIP/2.0/UDP LOCAL;rport;branch=z9hG4bK-%s-%d\n", callID, cseq)
		fmt.Fprintf(&b, "From: <sip:%s@a.test>;tag=r\nTo: <sip:%s@a.test>\nCall-ID: %s\nCSeq: %d REGISTER\nMax-Forwards: 70\n", user, user, callID, cseq)
		fmt.Fprintf(&b, "Contact: <sip:%s@LOCAL>\nExpires: 600\n", user)
		if auth != "" {
			b.WriteString("Authorization: " + auth + "\n")
		}
		b.WriteString("Content-Length: 0\n\n")
		return b.String()
	}
	first := u.ask(build(1, ""))
	if statusOf(first) != 401 {
		return statusOf(first)
	}
	chal := challengeOf(u.t, first)
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: user, Password: password, Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		u.t.Fatal(err)
	}
	return statusOf(u.ask(build(2, cred.String())))
}

// challengeOf returns the first digest challenge of a 401.
func challengeOf(t *testing.T, res string) *digest.Challenge {
	t.Helper()
	m := regexp.MustCompile(`(?m)^WWW-Authenticate: (.*)\r$`).FindStringSubmatch(res)
	if m == nil {
		t.Fatalf("401 without WWW-Authenticate:\n%s", res)
	}
	chal, err := digest.ParseChallenge(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return chal
}

// TestUDPFloodFromOneSourceIsDropped floods the server with unique
// OPTIONS from 127.0.0.3 for 5 s while a phone on 127.0.0.2 registers and
// sends OPTIONS: every request of the phone is answered, the server stays
// small and alive, and the flooder is blocked once, logged at warn.
func TestUDPFloodFromOneSourceIsDropped(t *testing.T) {
	s := startTarget(t, options{})
	idle := s.rssKB()

	flooder, err := net.DialUDP("udp", udpAddr(t, "127.0.0.3:0"), udpAddr(t, s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	stop := time.Now().Add(5 * time.Second)
	var sent int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent = flood(flooder, stop)
	}()
	peak := 0
	sample := func() {
		if kb := s.rssKB(); kb > peak {
			peak = kb
		}
	}

	time.Sleep(500 * time.Millisecond)
	phone := newUAC(t, "127.0.0.2:0", s.Addr())
	var failed []string
	for i := 0; i < 5; i++ {
		if code := phone.register("alice", "alice-pw"); code != 200 {
			failed = append(failed, fmt.Sprintf("REGISTER %d: %d", i, code))
		}
		sample()
		if code := phone.options(); code != 200 {
			failed = append(failed, fmt.Sprintf("OPTIONS %d: %d", i, code))
		}
		sample()
	}
	if time.Now().After(stop) {
		t.Errorf("the phone's 10 requests outlasted the flood")
	}
	wg.Wait()
	for range 10 {
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("flood: %d datagrams in 5 s; RSS %d MB at rest, %d MB peak; dropped %.0f", sent, idle>>10, peak>>10, connMetric(t, s, "sipfed_pike_dropped_total"))

	if len(failed) > 0 {
		t.Errorf("requests from another address during the flood not served: %s", strings.Join(failed, "; "))
	}
	if !s.alive() {
		t.Fatal("server died")
	}
	if peak > floodRSSBoundKB {
		t.Errorf("RSS peaked at %d MB, bound %d MB", peak>>10, floodRSSBoundKB>>10)
	}
	if d := connMetric(t, s, "sipfed_pike_dropped_total"); d < float64(sent)/2 {
		t.Errorf("sipfed_pike_dropped_total %.0f of %d datagrams sent", d, sent)
	}
	if b := connMetric(t, s, "sipfed_pike_blocks_total"); b != 1 {
		t.Errorf("sipfed_pike_blocks_total %.0f, want 1 (a 5 s flood, a 10 s block)", b)
	}
	logs := s.out.String()
	if n := strings.Count(logs, `level=WARN msg="rate limit: source 127.0.0.3 blocked for 10 s"`); n != 1 {
		t.Errorf("%d warn lines for the block, want 1", n)
	}
	if strings.Contains(logs, "127.0.0.2 blocked") {
		t.Error("the phone's address was blocked")
	}
	// After the flood the phone is still served at once.
	if code := phone.options(); code != 200 {
		t.Errorf("OPTIONS after the flood: %d", code)
	}
}

// TestMemoryLimitFromFlagAndEnvironment checks that --memory-limit sets
// the Go runtime's soft memory limit, that GOMEMLIMIT in the environment
// wins over it, and that the choice is logged at start. (The cgroup
// default is tested in internal/memlimit: this machine's cgroup has no
// limit.)
func TestMemoryLimitFromFlagAndEnvironment(t *testing.T) {
	for _, c := range []struct {
		args, env []string
		bytes     float64
		log       string
	}{
		{[]string{"--memory-limit", "256MiB"}, nil, 256 << 20, `msg="memory limit" limit="256 MiB" source=flag`},
		{[]string{"--memory-limit", "256MiB"}, []string{"GOMEMLIMIT=100MiB"}, 100 << 20, `msg="memory limit" limit="100 MiB" source=GOMEMLIMIT`},
	} {
		s := startTarget(t, options{args: c.args, env: c.env})
		if got := connMetric(t, s, "go_gc_gomemlimit_bytes"); got != c.bytes {
			t.Errorf("%q %q: go_gc_gomemlimit_bytes %.0f, want %.0f", c.args, c.env, got, c.bytes)
		}
		// The log reaches the test through a pipe.
		for deadline := time.Now().Add(2 * time.Second); !strings.Contains(s.out.String(), c.log) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(s.out.String(), c.log) {
			t.Errorf("%q %q: no %q in the log:\n%s", c.args, c.env, c.log, s.out.String())
		}
	}
}

// floodInvite is an INVITE from a user of ours without credentials, the
// kind answered 407 without a server transaction, and floodACK an ACK
// with a forged To tag in the shape of those answers' tags: each new
// (counter) so that nothing is a retransmission.
const floodInvite = "INVITE sip:bob@a.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.4:5999;branch=z9hG4bK-0000000000\r\n" +
	"From: <sip:alice@a.test>;tag=f\r\nTo: <sip:bob@a.test>\r\nCall-ID: 0000000000\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
	"Contact: <sip:alice@127.0.0.4:5999>\r\nContent-Length: 0\r\n\r\n"

const floodACK = "ACK sip:bob@a.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.4:5999;branch=z9hG4bK-0000000000\r\n" +
	"From: <sip:alice@a.test>;tag=f\r\nTo: <sip:bob@a.test>;tag=sfs0000000000\r\nCall-ID: 0000000000\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

// TestStatelessChallengeFloodKeepsNothing: INVITEs without credentials
// and ACKs with forged tags of the stateless 407's shape, flooded from one
// address with the per-source limit off so that every one reaches the
// stateless path, leave nothing behind: RSS stays bounded, the handler
// workers end once idle (the goroutines come back to where they were),
// and a phone registers at once afterwards. (With the limit off, one
// source can fill the socket while it lasts: that is what --pike-rate is
// for, tested above.)
func TestStatelessChallengeFloodKeepsNothing(t *testing.T) {
	s := startTarget(t, options{args: []string{"--pike-rate", "0"}})
	goroutines := connMetric(t, s, "go_goroutines")
	flooder, err := net.DialUDP("udp", udpAddr(t, "127.0.0.4:0"), udpAddr(t, s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	stop := time.Now().Add(4 * time.Second)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for _, m := range []string{floodInvite, floodACK} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Add(int64(floodWith(flooder, m, stop)))
		}()
	}
	peak := 0
	for time.Now().Before(stop) {
		if kb := s.rssKB(); kb > peak {
			peak = kb
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	if !s.alive() {
		t.Fatal("server died")
	}
	time.Sleep(500 * time.Millisecond) // the socket's backlog
	if code := newUAC(t, "127.0.0.2:0", s.Addr()).register("alice", "alice-pw"); code != 200 {
		t.Errorf("REGISTER after the flood: %d", code)
	}
	// Idle workers end after 10 s.
	deadline := time.Now().Add(20 * time.Second)
	after := connMetric(t, s, "go_goroutines")
	for after > goroutines+5 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		after = connMetric(t, s, "go_goroutines")
	}
	t.Logf("%d datagrams in 4 s; RSS peak %d MB; goroutines %.0f before, %.0f after", sent.Load(), peak>>10, goroutines, after)
	if peak == 0 {
		t.Fatal("RSS never sampled")
	}
	if after > goroutines+5 {
		t.Errorf("goroutines %.0f 20 s after the flood, %.0f before: something was kept", after, goroutines)
	}
	if peak > floodRSSBoundKB {
		t.Errorf("RSS peaked at %d MB, bound %d MB", peak>>10, floodRSSBoundKB>>10)
	}
}
