package server_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/server"
)

// TestREGISTERRetransmissionGetsTheSameAnswer: REGISTER over UDP is
// answered without a server transaction; a retransmission (same branch,
// same source) of an accepted REGISTER gets the very same 200 again, not
// a second handling (which would refuse the copy: same CSeq, same nonce
// count). A challenged one is challenged again.
func TestREGISTERRetransmissionGetsTheSameAnswer(t *testing.T) {
	srv := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice")})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := srv.Addr("udp").(*net.UDPAddr)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	msg := func(branch string, cseq int, authz string) string {
		return "REGISTER sip:a.test SIP/2.0\r\n" +
			fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n", port, branch) +
			"Max-Forwards: 70\r\nTo: <sip:alice@a.test>\r\nFrom: <sip:alice@a.test>;tag=r1\r\n" +
			"Call-ID: retrans-1\r\n" + fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) +
			fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>\r\n", port) + authz + "Content-Length: 0\r\n\r\n"
	}
	roundTrip := func(m string) string {
		t.Helper()
		if _, err := conn.WriteToUDP([]byte(m), to); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 4096)
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return string(buf[:n])
	}
	first := roundTrip(msg("z9hG4bKfirst", 1, ""))
	if !strings.HasPrefix(first, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", first)
	}
	// A challenge is not kept: the copy gets a challenge of its own.
	if again := roundTrip(msg("z9hG4bKfirst", 1, "")); !strings.HasPrefix(again, "SIP/2.0 401") {
		t.Fatalf("the retransmitted REGISTER got:\n%s", again)
	}
	res, err := sip.ParseMessage([]byte(first))
	if err != nil {
		t.Fatal(err)
	}
	chal, _ := digest.ParseChallenge(res.(*sip.Response).GetHeader("WWW-Authenticate").Value())
	cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: "alice", Password: "alice-pw", Count: 1})
	authz := "Authorization: " + cred.String() + "\r\n"
	ok := roundTrip(msg("z9hG4bKsecond", 2, authz))
	if !strings.HasPrefix(ok, "SIP/2.0 200") {
		t.Fatalf("REGISTER with credentials: %s", ok)
	}
	if again := roundTrip(msg("z9hG4bKsecond", 2, authz)); again != ok {
		t.Fatalf("the retransmitted REGISTER got another answer:\n%s\nthen\n%s", ok, again)
	}
	// The rport was answered, and the response went to the source.
	if !strings.Contains(ok, fmt.Sprintf("rport=%d", port)) || !strings.Contains(ok, "received=127.0.0.1") {
		t.Fatalf("Via of the response: %s", ok)
	}
}
