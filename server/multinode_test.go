package server_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/server"
)

// TestReplayToAnotherNodeRefused: two nodes of a.test share a Redis. A
// REGISTER accepted by node 1, sent again as it was to node 2 (a replay
// by someone who saw it), and its Authorization reused with a new CSeq,
// get a stale=true challenge there: the nonce counts are shared. A higher
// count on the same nonce is accepted by node 2.
func TestReplayToAnotherNodeRefused(t *testing.T) {
	r := testenv.StartRedis(t)
	users := usersFile(t, "a.test", "alice")
	node1 := start(t, server.Config{Domains: []string{"a.test"}, Users: users, Store: r.URL(), NodeID: "n1"})
	node2 := start(t, server.Config{Domains: []string{"a.test"}, Users: users, Store: r.URL(), NodeID: "n2"})
	conn, to1, port := rawUDP(t, node1)
	to2 := node2.Addr("udp")
	msg := func(branch string, cseq int, authz string) string {
		return "REGISTER sip:a.test SIP/2.0\r\n" +
			fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n", port, branch) +
			"Max-Forwards: 70\r\nTo: <sip:alice@a.test>\r\nFrom: <sip:alice@a.test>;tag=r1\r\n" +
			"Call-ID: replay-1\r\n" + fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) +
			fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>\r\n", port) + authz + "Content-Length: 0\r\n\r\n"
	}
	roundTrip := func(m string, to any) string {
		t.Helper()
		addr := to1
		if to == node2 {
			addr = to2.(*net.UDPAddr)
		}
		if _, err := conn.WriteToUDP([]byte(m), addr); err != nil {
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
	first := roundTrip(msg("z9hG4bK1", 1, ""), node1)
	res, err := sip.ParseMessage([]byte(first))
	if err != nil || !strings.HasPrefix(first, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %v\n%s", err, first)
	}
	chal, _ := digest.ParseChallenge(res.(*sip.Response).GetHeader("WWW-Authenticate").Value())
	authz := func(count int) string {
		cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: "alice", Password: "alice-pw", Count: count, Cnonce: "c0ffee"})
		return "Authorization: " + cred.String() + "\r\n"
	}
	accepted := msg("z9hG4bK2", 2, authz(1))
	if got := roundTrip(accepted, node1); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Fatalf("REGISTER with credentials on node 1:\n%s", got)
	}
	for name, m := range map[string]string{
		"the same request":            accepted,
		"its Authorization, new CSeq": msg("z9hG4bK3", 3, authz(1)),
	} {
		got := roundTrip(m, node2)
		if !strings.HasPrefix(got, "SIP/2.0 401") || !strings.Contains(got, "stale=true") {
			t.Fatalf("%s replayed to node 2: want 401 with stale=true, got\n%s", name, got)
		}
	}
	if got := roundTrip(msg("z9hG4bK4", 4, authz(2)), node2); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Fatalf("the next nonce count on node 2:\n%s", got)
	}
}
