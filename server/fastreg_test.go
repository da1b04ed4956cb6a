package server_test

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/server"
)

// rawUDP returns a UDP socket on loopback for hand-written messages to
// srv, srv's UDP address and the socket's port.
func rawUDP(t *testing.T, srv *server.Server) (*net.UDPConn, *net.UDPAddr, int) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, srv.Addr("udp").(*net.UDPAddr), conn.LocalAddr().(*net.UDPAddr).Port
}

// TestREGISTERRetransmissionGetsTheSameAnswer: REGISTER over UDP is
// answered without a server transaction; a retransmission (same branch,
// same source) of an accepted REGISTER gets the very same 200 again, not
// a second handling (which would refuse the copy: same CSeq, same nonce
// count). A challenged one is challenged again.
func TestREGISTERRetransmissionGetsTheSameAnswer(t *testing.T) {
	srv := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice")})
	conn, to, port := rawUDP(t, srv)
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

// TestINVITEChallengedWithoutTransaction: over UDP, an INVITE from a user
// of ours without credentials gets its 407 without a server transaction.
// The 407's To tag is the same for a retransmission, its ACK is absorbed
// (it never reaches the proxy), an ACK with a made-up tag of the same
// shape is not (the proxy gets it), and the INVITE with credentials
// reaches bob.
func TestINVITEChallengedWithoutTransaction(t *testing.T) {
	srv := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice", "bob"), HTTP: "127.0.0.1:0"})
	ackCount := func() string {
		t.Helper()
		return grep(get(t, "http://"+srv.HTTPAddr().String()+"/metrics"), `sipfed_sip_requests_total{method="ACK"}`)
	}
	var invites, acks atomic.Int32
	startPhone(t, srv, "bob", "a.test", func(phone *sipgo.Server) {
		phone.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			invites.Add(1)
			tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		})
		phone.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { acks.Add(1) })
	})
	conn, to, port := rawUDP(t, srv)
	head := func(method, branch string, cseq int, toTag string) string {
		if toTag != "" {
			toTag = ";tag=" + toTag
		}
		return fmt.Sprintf("%s sip:bob@a.test SIP/2.0\r\n", method) +
			fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n", port, branch) +
			"Max-Forwards: 70\r\nTo: <sip:bob@a.test>" + toTag + "\r\nFrom: <sip:alice@a.test>;tag=a1\r\n" +
			fmt.Sprintf("Call-ID: stateless-407\r\nCSeq: %d %s\r\n", cseq, method)
	}
	invite := func(branch string, cseq int, authz string) string {
		return head("INVITE", branch, cseq, "") + fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>\r\n", port) + authz + "Content-Length: 0\r\n\r\n"
	}
	send := func(m string) {
		t.Helper()
		if _, err := conn.WriteToUDP([]byte(m), to); err != nil {
			t.Fatal(err)
		}
	}
	read := func(min int) *sip.Response {
		t.Helper()
		buf := make([]byte, 8192)
		for {
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("no response ≥ %d: %v", min, err)
			}
			m, err := sip.ParseMessage(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
			if res, ok := m.(*sip.Response); ok && res.StatusCode >= min {
				return res
			}
		}
	}
	send(invite("z9hG4bKchal", 1, ""))
	chal := read(200)
	send(invite("z9hG4bKchal", 1, "")) // a retransmission
	again := read(200)
	tag, _ := chal.To().Params.Get("tag")
	tag2, _ := again.To().Params.Get("tag")
	if chal.StatusCode != 407 || !strings.HasPrefix(tag, "sfs") || tag2 != tag {
		t.Fatalf("407s with To tags %q and %q:\n%s", tag, tag2, chal)
	}
	send(head("ACK", "z9hG4bKchal", 1, tag) + "Content-Length: 0\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	if n := ackCount(); !strings.HasSuffix(n, " 0") {
		t.Fatalf("the ACK of the stateless 407 reached the proxy: %s", n)
	}
	send(head("ACK", "z9hG4bKchal", 1, "sfs0forged") + "Content-Length: 0\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	if n := ackCount(); !strings.HasSuffix(n, " 1") {
		t.Fatalf("the ACK with a forged tag: %q, want it counted once", n)
	}

	c, _ := digest.ParseChallenge(chal.GetHeader("Proxy-Authenticate").Value())
	cred, _ := digest.Digest(c, digest.Options{Method: "INVITE", URI: "sip:bob@a.test", Username: "alice", Password: "alice-pw", Count: 1})
	send(invite("z9hG4bKauth", 2, "Proxy-Authorization: "+cred.String()+"\r\n"))
	if res := read(200); res.StatusCode != 486 {
		t.Fatalf("INVITE with credentials: %d %s", res.StatusCode, res.Reason)
	}
	time.Sleep(300 * time.Millisecond)
	if invites.Load() != 1 || acks.Load() != 0 {
		t.Fatalf("bob's phone got %d INVITEs and %d ACKs, want only the INVITE with credentials", invites.Load(), acks.Load())
	}
}
