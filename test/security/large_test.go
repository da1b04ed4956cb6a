package security

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// registerUDP registers user@a.test with contacts over UDP from a fresh
// loopback port, answering the 401, and returns every datagram the
// server sent back to the authenticated REGISTER.
func registerUDP(t *testing.T, server, user, password string, contacts []string) []string {
	t.Helper()
	return registerFrom(t, "", "", server, user, password, contacts)
}

// registerFrom is registerUDP with the challenge fetched from local1 and
// answered from local2 ("" for any port on 127.0.0.1).
func registerFrom(t *testing.T, local1, local2, server, user, password string, contacts []string) []string {
	t.Helper()
	callID := fmt.Sprintf("reg-%d", time.Now().UnixNano())
	build := func(cseq int, auth string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "REGISTER sip:a.test SIP/2.0\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK-reg%d-%s;rport\n", cseq, callID)
		fmt.Fprintf(&b, "From: <sip:%s@a.test>;tag=r1\nTo: <sip:%s@a.test>\nCall-ID: %s\nCSeq: %d REGISTER\nMax-Forwards: 70\n", user, user, callID, cseq)
		for _, c := range contacts {
			b.WriteString("Contact: " + c + "\n")
		}
		if auth != "" {
			b.WriteString("Authorization: " + auth + "\n")
		}
		b.WriteString("Expires: 600\nContent-Length: 0\n\n")
		return b.String()
	}
	first := exchangeUDP(t, local1, server, build(1, ""), time.Second)
	if finalOf(first) != 401 {
		t.Fatalf("first REGISTER: got %d, want 401", finalOf(first))
	}
	m := regexp.MustCompile(`(?m)^WWW-Authenticate: (.*)\r$`).FindStringSubmatch(first[len(first)-1])
	if m == nil {
		t.Fatalf("401 without WWW-Authenticate:\n%s", first[len(first)-1])
	}
	chal, err := digest.ParseChallenge(m[1])
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: user, Password: password, Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	return exchangeUDP(t, local2, server, build(2, cred.String()), 2*time.Second)
}

// TestLargeREGISTERResponseOverUDP: nine devices with long Contacts
// (+sip.instance, as RFC 5626 phones send) register over UDP and get
// their 200, well over 1300 bytes, listing every binding.
func TestLargeREGISTERResponseOverUDP(t *testing.T) {
	s := startTarget(t, options{})
	var contacts []string
	for i := 0; i < 9; i++ {
		contacts = append(contacts, fmt.Sprintf(`<sip:alice-device-%d@192.0.2.%d:5060;transport=udp;ob>;+sip.instance="<urn:uuid:00000000-0000-4000-8000-%012d>";reg-id=1;expires=600`, i, 10+i, i))
	}
	got := registerUDP(t, s.Addr(), "alice", "alice-pw", contacts)
	if finalOf(got) != 200 {
		t.Fatalf("REGISTER with 9 contacts: got %d, want 200 (datagrams: %d)", finalOf(got), len(got))
	}
	res := got[len(got)-1]
	if n := strings.Count(res, "\r\nContact: "); n != 9 || len(res) < 1300 {
		t.Fatalf("200 lists %d Contacts in %d bytes, want 9 in over 1300", n, len(res))
	}
}

// TestTrustedSourceNeverBanned: 15 wrong passwords from a --trusted
// address (a peer's proxy relaying for others) do not ban it; the right
// password from it then registers. The same from an untrusted address
// bans it (TestGuessing…).
func TestTrustedSourceNeverBanned(t *testing.T) {
	s := startTarget(t, options{args: []string{"--trusted", "127.0.0.1/32"}})
	for i := 0; i < 15; i++ {
		if code := finalOf(registerUDP(t, s.Addr(), "alice", "wrong", []string{"<sip:alice@127.0.0.1:5099>"})); code != 401 && code != 403 {
			t.Fatalf("guess %d: got %d", i, code)
		}
	}
	if code := finalOf(registerUDP(t, s.Addr(), "alice", "alice-pw", []string{"<sip:alice@127.0.0.1:5099>"})); code != 200 {
		t.Fatalf("right password from the trusted source: got %d, want 200", code)
	}
}

// TestNonceGoodOnlyFromItsSource: answers from one address to challenges
// sent to another are challenged again and never counted, so failures
// cannot be charged to an address (and have it banned) by someone who
// does not receive its challenges; that address then registers.
func TestNonceGoodOnlyFromItsSource(t *testing.T) {
	s := startTarget(t, options{})
	for i := 0; i < 15; i++ {
		got := registerFrom(t, "127.0.0.3:0", "127.0.0.4:0", s.Addr(), "alice", "wrong", []string{"<sip:alice@127.0.0.4:5099>"})
		if code := finalOf(got); code != 401 {
			t.Fatalf("answer %d to another address's challenge: got %d, want 401", i, code)
		}
	}
	if code := finalOf(registerFrom(t, "127.0.0.4:0", "127.0.0.4:0", s.Addr(), "alice", "alice-pw", []string{"<sip:alice@127.0.0.4:5099>"})); code != 200 {
		t.Fatalf("127.0.0.4 after 15 answers to others' challenges: got %d, want 200 (not banned)", code)
	}
}
