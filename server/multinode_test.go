package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	goredis "github.com/redis/go-redis/v9"

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

// TestAnyNodeReachesAFlowOfAnother: bob's phone registers over TCP with
// node 1, so only node 1's connection reaches it. Alice's MESSAGE reaches
// it through node 2 all the same: node 1 stored itself as the binding's
// Path with the flow (RFC 5626 §5), node 2 routes through it, and node 1
// trusts node 2's signed word that alice was authenticated. When node 1
// is gone, node 2 answers 480 at once, not after a timeout.
func TestAnyNodeReachesAFlowOfAnother(t *testing.T) {
	r := testenv.StartRedis(t)
	users := usersFile(t, "a.test", "alice", "bob")
	cfg1 := server.Config{Domains: []string{"a.test"}, Users: users, Store: r.URL(), NodeID: "n1",
		Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}, Logger: testLogger()}
	node1, err := server.New(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	go node1.Serve()
	stopped := false
	stop1 := func() {
		if !stopped {
			stopped = true
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			node1.Shutdown(ctx)
		}
	}
	t.Cleanup(stop1)
	node2 := start(t, server.Config{Domains: []string{"a.test"}, Users: users, Store: r.URL(), NodeID: "n2"})

	// Bob's phone: one user agent that registers over TCP and answers
	// on that connection.
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("bob-phone"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	phone, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	messagePhone(&got)(phone)
	bob, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	reg := request(sip.REGISTER, "bob@a.test", "bob@a.test", node1.Addr("tcp"))
	reg.Recipient = sip.Uri{Scheme: "sip", Host: "a.test"}
	reg.SetTransport("TCP")
	// A Contact nobody listens on: only the connection reaches bob.
	reg.AppendHeader(sip.NewHeader("Contact", "<sip:bob@127.0.0.1:9;transport=tcp>"))
	if res := do(t, bob, reg, "bob"); res.StatusCode != 200 {
		t.Fatalf("REGISTER over TCP with node 1: %d %s", res.StatusCode, res.Reason)
	}

	alice := newClient(t, "alice-phone")
	send := func() *sip.Response {
		msg := request(sip.MESSAGE, "alice@a.test", "bob@a.test", node2.Addr("udp"))
		msg.SetBody([]byte("hello"))
		msg.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
		return do(t, alice, msg, "alice")
	}
	if res := send(); res.StatusCode != 200 || got.Load() != 1 {
		t.Fatalf("MESSAGE through node 2: %d %s, bob's phone got %d", res.StatusCode, res.Reason, got.Load())
	}

	// Bob's Path, as any node reads it from the store: a device that
	// learned it, or anyone who saw it, may not use it to skip the
	// policy. A made-up or copied node assertion does not help.
	rc := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer rc.Close()
	vals, err := rc.HVals(context.Background(), "sipfed:loc:{bob@a.test}").Result()
	if err != nil || len(vals) != 1 {
		t.Fatalf("bob's binding in Redis: %v %v", vals, err)
	}
	var wire struct {
		Path []string `json:"p"`
	}
	json.Unmarshal([]byte(vals[0]), &wire)
	if len(wire.Path) != 1 || !strings.Contains(wire.Path[0], ";nf=") {
		t.Fatalf("bob's binding %s: want node 1's Path with the flow", vals[0])
	}
	mallory := newClient(t, "mallory")
	for _, tc := range []struct {
		name, from, assertion string
		want                  int
	}{
		{"another domain", "mallory@evil.test", "", 403},
		{"another domain, made-up assertion", "mallory@evil.test", "t=" + fmt.Sprint(time.Now().Unix()) + ";m=AAAAAAAAAAAAAAAAAAAAAA", 403},
		{"a user of ours without credentials", "alice@a.test", "", 407},
	} {
		msg := request(sip.MESSAGE, tc.from, "bob@127.0.0.1:9;transport=tcp", node1.Addr("udp"))
		msg.AppendHeader(sip.NewHeader("Route", wire.Path[0]))
		if tc.assertion != "" {
			msg.AppendHeader(sip.NewHeader("Sipfed-Node", tc.assertion))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := mallory.Do(ctx, msg)
		cancel()
		if err != nil || res.StatusCode != tc.want {
			t.Fatalf("%s, with bob's Path straight to node 1: %v %v, want %d", tc.name, res, err, tc.want)
		}
	}
	if got.Load() != 1 {
		t.Fatalf("bob's phone got %d MESSAGEs, want 1", got.Load())
	}

	stop1()
	start := time.Now()
	if res := send(); res.StatusCode != 480 {
		t.Fatalf("MESSAGE through node 2 with node 1 gone: %d %s, want 480", res.StatusCode, res.Reason)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 480 took %v", d)
	}
}

// TestLateFork: bob's first phone rings without answering; while it
// rings, his second phone registers, gets a branch of the same call and
// answers it, and the first stops ringing (CANCEL). On one node, told by
// its own registrar, and across two nodes on one Redis, where the second
// phone registers with the node that does not hold the call and the
// news comes through the store's change notifications.
func TestLateFork(t *testing.T) {
	for _, multi := range []bool{false, true} {
		name := "one node"
		if multi {
			name = "two nodes"
		}
		t.Run(name, func(t *testing.T) {
			users := usersFile(t, "a.test", "alice", "bob")
			var callNode, regNode *server.Server
			if multi {
				r := testenv.StartRedis(t)
				callNode = start(t, server.Config{Domains: []string{"a.test"}, Users: users, Store: r.URL(), NodeID: "n1"})
				regNode = start(t, server.Config{Domains: []string{"a.test"}, Users: users, Store: r.URL(), NodeID: "n2"})
			} else {
				callNode = start(t, server.Config{Domains: []string{"a.test"}, Users: users})
				regNode = callNode
			}
			ringing := make(chan struct{}, 1)
			var canceled atomic.Int32
			startPhone(t, callNode, "bob", "a.test", func(phone *sipgo.Server) {
				phone.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
					tx.OnCancel(func(*sip.Request) { canceled.Add(1) })
					tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
					ringing <- struct{}{}
					select {
					case <-tx.Done():
					case <-time.After(10 * time.Second):
					}
				})
			})

			alice := newClient(t, "alice-phone")
			inv := request(sip.INVITE, "alice@a.test", "bob@a.test", callNode.Addr("udp"))
			inv.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:9>"))
			answer := make(chan *sip.Response, 1)
			go func() { answer <- do(t, alice, inv, "alice") }()
			select {
			case <-ringing:
			case <-time.After(5 * time.Second):
				t.Fatal("bob's first phone never rang")
			}

			// Bob's second phone registers now, and answers at once.
			var second atomic.Int32
			startPhone(t, regNode, "bob", "a.test", func(phone *sipgo.Server) {
				phone.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
					second.Add(1)
					res := sip.NewResponseFromRequest(req, 200, "OK", nil)
					res.AppendHeader(sip.NewHeader("Contact", "<sip:bob@127.0.0.1:9>"))
					tx.Respond(res)
				})
				phone.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {})
			})
			select {
			case res := <-answer:
				if res.StatusCode != 200 || second.Load() != 1 {
					t.Fatalf("the call: %d %s; bob's second phone got %d INVITEs", res.StatusCode, res.Reason, second.Load())
				}
			case <-time.After(8 * time.Second):
				t.Fatal("the call was not answered by the phone that registered while it rang")
			}
			deadline := time.Now().Add(5 * time.Second)
			for canceled.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if canceled.Load() == 0 {
				t.Error("bob's first phone was not CANCELed")
			}
		})
	}
}
