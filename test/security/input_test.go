package security

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// message is a MESSAGE to bob@a.test from another domain; {{X}} marks
// where a case puts its twist. A bare LF is written <LF> (the harness
// turns every other line end into CRLF).
const message = `MESSAGE sip:bob@a.test SIP/2.0
Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-in{{N}}{{VIA}}
From: <sip:eve@c.test>;tag=e{{FROM}}
To: {{TO}}<sip:bob@a.test>
Call-ID: input-{{N}}
CSeq: 1{{CSEQ}} MESSAGE
Max-Forwards: 70
{{EXTRA}}Content-Length: 0

`

func variant(n int, field, twist string) string {
	m := strings.ReplaceAll(message, "{{N}}", strconv.Itoa(n))
	for _, f := range []string{"VIA", "FROM", "TO", "CSEQ", "EXTRA"} {
		v := ""
		if f == field {
			v = twist
		}
		m = strings.ReplaceAll(m, "{{"+f+"}}", v)
	}
	return m
}

// sendRaw is exchangeUDP for messages holding bare LFs (<LF>).
func sendRaw(t *testing.T, to, raw string) []string {
	t.Helper()
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.ReplaceAll(raw, "LOCAL", c.LocalAddr().String())
	msg = strings.ReplaceAll(msg, "\n", "\r\n")
	msg = strings.ReplaceAll(msg, "<LF>", "\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
	}
}

// TestBareLFNeitherReflectedNorForwarded: a bare LF inside a From tag, a
// display name, a Via branch or a CSeq does not become a header of its own
// in the answer (400, or nothing for a message without a usable Via/CSeq).
func TestBareLFNeitherReflectedNorForwarded(t *testing.T) {
	s := startTarget(t, options{})
	inject := "<LF>P-Asserted-Identity: <sip:boss@a.test>"
	for i, tc := range []struct{ field, twist string }{
		{"FROM", inject},
		{"TO", `"Bob` + inject + `" `},
		{"VIA", inject},
		{"CSEQ", inject},
		{"FROM", "\x00nul"},
		{"RURI", inject},
	} {
		raw := variant(i, tc.field, tc.twist)
		if tc.field == "RURI" {
			raw = strings.Replace(raw, "MESSAGE sip:bob@a.test SIP/2.0", "MESSAGE sip:bob@a.test;x=a"+tc.twist+" SIP/2.0", 1)
		}
		got := sendRaw(t, s.Addr(), raw)
		for _, m := range got {
			if regexp.MustCompile(`(?m)^P-Asserted-Identity`).MatchString(m) || strings.ContainsRune(m, 0) {
				t.Errorf("%s: injected header reflected:\n%q", tc.field, m)
			}
		}
		if code := finalOf(got); code != 0 && code != 400 {
			t.Errorf("%s: got %d, want 400 or no answer", tc.field, code)
		}
	}
}

// TestMalformedRequestsRefused: another SIP version gets 505 (on a
// SIP/2.0 status line), a repeated single-value header or an empty header
// name gets 400.
func TestMalformedRequestsRefused(t *testing.T) {
	s := startTarget(t, options{})
	for i, tc := range []struct {
		name, raw string
		want      int
	}{
		{"SIP/3.0", strings.Replace(variant(100, "", ""), "SIP/2.0\n", "SIP/3.0\n", 1), 505},
		{"sip/2.0 is SIP/2.0 (RFC 3261 §7.1)", strings.Replace(variant(105, "", ""), "SIP/2.0\n", "sip/2.0\n", 1), 480},
		{"two To", variant(101, "EXTRA", "To: <sip:mallory@a.test>\n"), 400},
		{"two From", variant(102, "EXTRA", "From: <sip:mallory@c.test>;tag=2\n"), 400},
		{"two Call-ID", variant(103, "EXTRA", "Call-ID: other\n"), 400},
		{"empty header name", variant(104, "EXTRA", ": nameless\n"), 400},
	} {
		got := exchangeUDP(t, "", s.Addr(), tc.raw, 500*time.Millisecond)
		code := finalOf(got)
		if tc.name == "empty header name" && code == 0 {
			continue // dropped as unparsable is fine too
		}
		if code != tc.want {
			t.Errorf("case %d %s: got %d, want %d", i, tc.name, code, tc.want)
			continue
		}
		if !strings.HasPrefix(got[len(got)-1], "SIP/2.0 ") {
			t.Errorf("%s: status line %q", tc.name, strings.SplitN(got[len(got)-1], "\r\n", 2)[0])
		}
	}
}

// TestJunkIsCountedNotLoggedAtError: 200 unparsable datagrams leave no
// ERROR line in the log, and /metrics counts them.
func TestJunkIsCountedNotLoggedAtError(t *testing.T) {
	s := startTarget(t, options{})
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 200; i++ {
		fmt.Fprintf(c, "GARBAGE %d \x01\x02 not sip at all\r\nVia: nonsense\r\n\r\n", i)
		if i%50 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(s.out.String(), "level=ERROR") {
		t.Errorf("junk logged at ERROR:\n%s", tail(s.out.String(), 2000))
	}
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^sipfed_sip_malformed_total (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatal("/metrics has no sipfed_sip_malformed_total")
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 190 {
		t.Errorf("sipfed_sip_malformed_total = %d, want about 200", n)
	}
}
