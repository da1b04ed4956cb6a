package security

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// forged builds a request that looks in-dialog (a To tag) and carries a
// Route to the server, aimed at victim.
func forged(method, server, victim, from, routeParams string) string {
	return fmt.Sprintf(`%[1]s sip:+19005551234@%[3]s SIP/2.0
Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-forged%[6]d;rport
Route: <sip:%[2]s;lr%[5]s>
From: <sip:%[4]s>;tag=attacker
To: <sip:+19005551234@%[3]s>;tag=x
Call-ID: forged-%[6]d@attacker
CSeq: 7 %[1]s
Max-Forwards: 70
Contact: <sip:attacker@LOCAL>
Content-Length: 0

`, method, server, victim, from, routeParams, time.Now().UnixNano())
}

// TestForgedInDialogRequestsNotRelayed: requests that look in-dialog and
// carry a Route to us, but belong to no dialog we record-routed, are not
// relayed — whatever the method, the From, or a made-up token.
func TestForgedInDialogRequestsNotRelayed(t *testing.T) {
	s := startTarget(t, options{})
	victim := newSink(t)
	for _, method := range []string{"INVITE", "MESSAGE", "BYE", "ACK"} {
		for _, from := range []string{"toll@c.test", "alice@a.test"} {
			for _, params := range []string{"", ";sf=AAAAAAAAAAAAAAAA"} {
				name := fmt.Sprintf("%s from %s token %q", method, from, params)
				got := exchangeUDP(t, "", s.Addr(), forged(method, s.Addr(), victim.Addr(), from, params), 500*time.Millisecond)
				code := finalOf(got)
				switch {
				case method == "ACK":
					if code != 0 {
						t.Errorf("%s: answered %d", name, code)
					}
				case strings.HasPrefix(from, "alice@"):
					// A user of ours must prove who she is.
					if code != 407 {
						t.Errorf("%s: got %d, want 407", name, code)
					}
				default:
					if code != 403 {
						t.Errorf("%s: got %d, want 403", name, code)
					}
				}
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := victim.messages(); len(got) > 0 {
		t.Fatalf("the victim got %d messages; first:\n%s", len(got), got[0])
	}
}

// TestStrayResponseNotRelayedToVictim: a 200 OK whose top Via looks like
// ours and whose second Via names a victim is not relayed there.
func TestStrayResponseNotRelayedToVictim(t *testing.T) {
	s := startTarget(t, options{})
	victim := newSink(t)
	for _, branch := range []string{"z9hG4bK-sf12345678.abcdef012345.0011223344556677", "z9hG4bK-sf12345678.0123456789abcdef", "z9hG4bKplain"} {
		res := fmt.Sprintf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP %s;branch=%s
Via: SIP/2.0/UDP %s;branch=z9hG4bK-victim;rport
From: <sip:alice@a.test>;tag=1
To: <sip:bob@a.test>;tag=2
Call-ID: stray-%s
CSeq: 1 INVITE
Contact: <sip:bob@LOCAL>
Content-Type: application/sdp
Content-Length: 31

v=0
o=- 1 1 IN IP4 192.0.2.1
`, s.Addr(), branch, victim.Addr(), branch)
		exchangeUDP(t, "", s.Addr(), res, 200*time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got := victim.messages(); len(got) > 0 {
		t.Fatalf("the victim got %d messages; first:\n%s", len(got), got[0])
	}
}
