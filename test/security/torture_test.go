package security

import (
	"net"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// sipgoRefuses are valid messages that sipgo's transaction layer answers
// with a stateless 400 before any handler of ours sees them.
var sipgoRefuses = map[string]string{
	"wsinv.dat": "its Via is folded over three lines with spaces around the slashes and has an RFC 2543 branch; sipgo builds no transaction key for it",
}

// TestRFC4475Torture sends every RFC 4475 torture message over UDP. The
// server never answers a valid one 400 or 5xx, answers an invalid one 4xx
// or drops it, never echoes a 2xx to garbage, and is alive and answering
// OPTIONS at the end.
func TestRFC4475Torture(t *testing.T) {
	s := startTarget(t, options{})
	for _, kind := range []string{"valid", "invalid"} {
		msgs := testenv.Torture(t, kind)
		names := make([]string, 0, len(msgs))
		for n := range msgs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			got := sendBytes(t, s.Addr(), loopback(msgs[name]))
			code := finalOf(got)
			switch {
			case kind == "valid" && code == 400 && sipgoRefuses[name] != "":
				t.Logf("valid %s: 400 from sipgo: %s", name, sipgoRefuses[name])
			case kind == "valid" && (code == 400 || code >= 500):
				t.Errorf("valid %s: got %q", name, strings.SplitN(got[len(got)-1], "\r\n", 2)[0])
			case kind == "invalid" && code != 0 && (code < 400 || code >= 500):
				t.Errorf("invalid %s: got %d, want 4xx or nothing", name, code)
			}
			t.Logf("%s %s: %d", kind, name, code)
		}
	}
	if !s.alive() {
		t.Fatal("the server died")
	}
	opt := "OPTIONS sip:a.test SIP/2.0\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK-alive\nFrom: <sip:x@c.test>;tag=1\nTo: <sip:a.test>\nCall-ID: alive\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
	if code := finalOf(exchangeUDP(t, "", s.Addr(), opt, time.Second)); code != 200 {
		t.Fatalf("OPTIONS after the torture: %d", code)
	}
}

// docNets are the documentation and private networks the messages name.
var docNets = regexp.MustCompile(`\b(192\.0\.2|192\.168\.\d{1,3}|10\.\d{1,3}\.\d{1,3})\.(\d{1,3})\b`)

// loopback maps every address of the messages to 127.0.0.0/8: nothing
// the server sends for them may leave the machine.
func loopback(b []byte) []byte {
	return docNets.ReplaceAll(b, []byte("127.0.0.$2"))
}

// topVia is the sent-by of the first Via (or v) line.
var topVia = regexp.MustCompile(`(?mi)^((?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*UDP[ \t]+)([^;\r\n]+)`)

// sendBytes sends b with its top Via pointed at the sender (the messages
// name 192.0.2.0/24 hosts, which responses must never go to) and returns
// the datagrams received within 300 ms.
func sendBytes(t *testing.T, to string, b []byte) []string {
	t.Helper()
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := false
	b = topVia.ReplaceAllFunc(b, func(m []byte) []byte {
		if done {
			return m
		}
		done = true
		sub := topVia.FindSubmatch(m)
		return append(append([]byte(nil), sub[1]...), []byte(c.LocalAddr().String()+";rport")...)
	})
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
	}
}
