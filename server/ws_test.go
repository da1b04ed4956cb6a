package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/proxy"
	"github.com/sipfed/sipfed/server"
)

// wsPhone is a SIP-over-WebSocket client shaped like JsSIP: Via
// SIP/2.0/WS with an .invalid host, Contact at an .invalid host, one
// text frame per message (RFC 7118).
type wsPhone struct {
	t    *testing.T
	conn net.Conn
	user string
	host string // the .invalid host
	in   chan sip.Message
	pong atomic.Int32 // CRLF keep-alive answers
}

func dialWSPhone(t *testing.T, addr, user, origin string) (*wsPhone, error) {
	return dialWSPhoneWith(t, "ws://"+addr+"/", nil, user, origin)
}

func dialWSPhoneWith(t *testing.T, url string, tlsConfig *tls.Config, user, origin string) (*wsPhone, error) {
	d := ws.Dialer{Protocols: []string{"sip"}, Timeout: 3 * time.Second, TLSConfig: tlsConfig}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, _, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	p := &wsPhone{t: t, conn: c, user: user, host: "r4nd0m.invalid", in: make(chan sip.Message, 16)}
	t.Cleanup(func() { c.Close() })
	go func() {
		for {
			b, err := wsutil.ReadServerText(c)
			if err != nil {
				close(p.in)
				return
			}
			if strings.Trim(string(b), "\r\n") == "" {
				p.pong.Add(1)
				continue
			}
			m, err := sip.ParseMessage(b)
			if err != nil {
				t.Errorf("ws phone: unparsable message: %v\n%s", err, b)
				continue
			}
			p.in <- m
		}
	}()
	return p, nil
}

func (p *wsPhone) send(msg string) {
	p.t.Helper()
	if err := wsutil.WriteClientText(p.conn, []byte(msg)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *wsPhone) next(what string) sip.Message {
	p.t.Helper()
	select {
	case m, ok := <-p.in:
		if !ok {
			p.t.Fatalf("ws phone: connection closed waiting for %s", what)
		}
		return m
	case <-time.After(5 * time.Second):
		p.t.Fatalf("ws phone: no %s", what)
	}
	return nil
}

// register registers user@domain over the WebSocket, answering the
// digest challenge.
func (p *wsPhone) register(domain string) {
	p.t.Helper()
	callID := fmt.Sprintf("ws-reg-%d", time.Now().UnixNano())
	msg := func(cseq int, authz string) string {
		return "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/WS " + p.host + ";branch=z9hG4bK" + callID + fmt.Sprint(cseq) + "\r\n" +
			"Max-Forwards: 69\r\n" +
			"To: <sip:" + p.user + "@" + domain + ">\r\n" +
			"From: <sip:" + p.user + "@" + domain + ">;tag=wsreg\r\n" +
			"Call-ID: " + callID + "\r\n" +
			fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) +
			"Contact: <sip:x7k2@" + p.host + ";transport=ws>;expires=600\r\n" + authz +
			"Content-Length: 0\r\n\r\n"
	}
	p.send(msg(1, ""))
	res := p.next("401").(*sip.Response)
	if res.StatusCode != 401 {
		p.t.Fatalf("REGISTER: %d %s, want 401", res.StatusCode, res.Reason)
	}
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		p.t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + domain, Username: p.user, Password: p.user + "-pw", Count: 1})
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(msg(2, "Authorization: "+cred.String()+"\r\n"))
	if res := p.next("200").(*sip.Response); res.StatusCode != 200 {
		p.t.Fatalf("REGISTER with credentials: %d %s", res.StatusCode, res.Reason)
	}
}

// TestWebSocketPhoneRegistersAndIsReached: a browser-like phone registers
// over ws: with an .invalid Contact, and a MESSAGE from a UDP phone
// reaches it over its own WebSocket; the answer goes back. CRLF
// keep-alives get their pong.
func TestWebSocketPhoneRegistersAndIsReached(t *testing.T) {
	srv := start(t, server.Config{
		Domains:   []string{"a.test"},
		Listen:    []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0", "ws:127.0.0.1:0"},
		Users:     usersFile(t, "a.test", "carol", "alice"),
		WSOrigins: []string{"http://127.0.0.1:8080"},
	})
	wsAddr := srv.Addr("ws").String()

	// Refused before any SIP: a page of another origin.
	if _, err := dialWSPhone(t, wsAddr, "carol", "http://evil.example"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("wrong origin: %v, want 403", err)
	}

	carol, err := dialWSPhone(t, wsAddr, "carol", "http://127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	carol.register("a.test")

	// RFC 5626 §3.5.1 keep-alive: a double CRLF gets a CRLF back.
	carol.send("\r\n\r\n")

	var got atomic.Int32
	go func() {
		m, ok := <-carol.in
		if !ok {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok || req.Method != sip.MESSAGE {
			t.Errorf("carol got %v, want a MESSAGE", m)
			return
		}
		if req.Recipient.Host != carol.host {
			t.Errorf("MESSAGE to %s, want the registered contact", req.Recipient.String())
		}
		got.Add(1)
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		carol.send(res.String())
	}()

	c := newClient(t, "alice-phone")
	req := request(sip.MESSAGE, "alice@a.test", "carol@a.test", srv.Addr("udp"))
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	req.SetBody([]byte("hello browser"))
	if res := do(t, c, req, "alice"); res.StatusCode != 200 {
		t.Fatalf("MESSAGE to the browser: %d %s", res.StatusCode, res.Reason)
	}
	if got.Load() != 1 {
		t.Fatal("the browser did not get the MESSAGE")
	}
	if carol.pong.Load() != 1 {
		t.Fatal("no answer to the CRLF keep-alive")
	}
}

// TestWebSocketDialogRecordRoutesBothSides: an INVITE from a UDP phone to
// a WebSocket phone carries two Record-Routes of ours, the ws one on top
// (towards the browser) and the udp one below, so each side's in-dialog
// requests reach us over its own transport (RFC 7118 §5, RFC 5658).
func TestWebSocketDialogRecordRoutesBothSides(t *testing.T) {
	srv := start(t, server.Config{
		Domains: []string{"a.test"},
		Listen:  []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"},
		Users:   usersFile(t, "a.test", "carol", "alice"),
	})
	carol, err := dialWSPhone(t, srv.Addr("ws").String(), "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	carol.register("a.test")

	c := newClient(t, "alice-phone")
	inv := request(sip.INVITE, "alice@a.test", "carol@a.test", srv.Addr("udp"))
	inv.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:5999>"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := c.TransactionRequest(ctx, inv, sipgo.ClientRequestBuild)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	res := <-tx.Responses()
	for res != nil && res.StatusCode < 200 {
		res = <-tx.Responses()
	}
	if res == nil || res.StatusCode != 407 {
		t.Fatalf("INVITE: %v, want 407", res)
	}
	// Answer the challenge by hand: sipgo's DoDigestAuth waits for a
	// final response, and this INVITE should ring.
	chal, _ := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
	cred, _ := digest.Digest(chal, digest.Options{Method: "INVITE", URI: inv.Recipient.String(), Username: "alice", Password: "alice-pw", Count: 1})
	inv2 := inv.Clone()
	inv2.RemoveHeader("Via")
	inv2.CSeq().SeqNo++
	inv2.AppendHeader(sip.NewHeader("Proxy-Authorization", cred.String()))
	tx2, err := c.TransactionRequest(ctx, inv2, sipgo.ClientRequestAddVia)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Terminate()

	got := carol.next("INVITE").(*sip.Request)
	rr := got.GetHeaders("Record-Route")
	if len(rr) != 2 || !strings.Contains(rr[0].Value(), "transport=ws") || !strings.Contains(rr[1].Value(), "transport=udp") {
		t.Fatalf("Record-Route %v, want ours twice: ws on top, udp below", rr)
	}
	if !strings.Contains(got.Via().Transport, "WS") {
		t.Fatalf("top Via %s, want ours over WS", got.Via().Value())
	}
	carol.send(sip.NewResponseFromRequest(got, 486, "Busy Here", nil).String())
	for r := range tx2.Responses() {
		if r.StatusCode >= 200 {
			if r.StatusCode != 486 {
				t.Fatalf("caller got %d, want 486", r.StatusCode)
			}
			return
		}
	}
	t.Fatal("no final response")
}

// TestWebSocketRefusesOtherSubprotocols: a WebSocket that does not ask
// for the "sip" subprotocol (RFC 7118 §4.1) is refused with 400 before
// any SIP.
func TestWebSocketRefusesOtherSubprotocols(t *testing.T) {
	srv := start(t, server.Config{
		Domains: []string{"a.test"},
		Listen:  []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"},
		Users:   usersFile(t, "a.test", "carol"),
	})
	d := ws.Dialer{Protocols: []string{"chat"}, Timeout: 3 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, _, _, err := d.Dial(ctx, "ws://"+srv.Addr("ws").String()+"/"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("subprotocol chat: %v, want 400", err)
	}
}

// TestBridgeNoCommonCodecIs488: a plain phone's offer with only G.729
// to a browser cannot be bridged (the bridge never transcodes): 488, and
// the browser is not disturbed.
func TestBridgeNoCommonCodecIs488(t *testing.T) {
	srv := start(t, server.Config{
		Domains: []string{"a.test"},
		Listen:  []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"},
		Users:   usersFile(t, "a.test", "carol", "alice"),
	})
	carol, err := dialWSPhone(t, srv.Addr("ws").String(), "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	carol.register("a.test")

	c := newClient(t, "alice-phone")
	inv := request(sip.INVITE, "alice@a.test", "carol@a.test", srv.Addr("udp"))
	inv.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:5999>"))
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"))
	if res := do(t, c, inv, "alice"); res.StatusCode != 488 {
		t.Fatalf("G.729 only to a browser: %d %s, want 488", res.StatusCode, res.Reason)
	}
	select {
	case m := <-carol.in:
		t.Fatalf("the browser got %v", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSecureWebSocket: a wss: listener (TLS with the server's
// certificate, then RFC 7118) registers a phone and reaches it.
func TestSecureWebSocket(t *testing.T) {
	ca := testenv.NewCA(t)
	cert, key := ca.Issue(t, "a.test", "127.0.0.1")
	srv := start(t, server.Config{
		Domains: []string{"a.test"},
		Listen:  []string{"udp:127.0.0.1:0", "wss:127.0.0.1:0"},
		Users:   usersFile(t, "a.test", "carol", "alice"),
		TLSCert: cert, TLSKey: key,
	})
	carol, err := dialWSPhoneWith(t, "wss://"+srv.Addr("wss").String()+"/", &tls.Config{RootCAs: roots(t, ca), ServerName: "a.test"}, "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	carol.register("a.test")
	go func() {
		if m, ok := <-carol.in; ok {
			if req, ok := m.(*sip.Request); ok {
				carol.send(sip.NewResponseFromRequest(req, 200, "OK", nil).String())
			}
		}
	}()
	c := newClient(t, "alice-phone")
	req := request(sip.MESSAGE, "alice@a.test", "carol@a.test", srv.Addr("udp"))
	if res := do(t, c, req, "alice"); res.StatusCode != 200 {
		t.Fatalf("MESSAGE over wss: %d %s", res.StatusCode, res.Reason)
	}
}

// TestWebListenerServesOnlyThePhone: --web serves the web phone over
// HTTPS with the server's certificate, and not the metrics or profiles.
func TestWebListenerServesOnlyThePhone(t *testing.T) {
	ca := testenv.NewCA(t)
	cert, key := ca.Issue(t, "a.test", "127.0.0.1")
	srv := start(t, server.Config{
		Domains: []string{"a.test"},
		Listen:  []string{"udp:127.0.0.1:0", "wss:127.0.0.1:0"},
		Users:   usersFile(t, "a.test", "carol"),
		TLSCert: cert, TLSKey: key,
		Web: "127.0.0.1:0",
	})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots(t, ca)}}, Timeout: 5 * time.Second}
	base := "https://" + srv.WebAddr().String()
	for path, want := range map[string]int{"/phone/": 200, "/phone/config.json": 200, "/metrics": 404, "/debug/pprof/": 404, "/healthz": 404} {
		res, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
		if path == "/phone/config.json" && !strings.Contains(string(body), `"wss://127.0.0.1:`) {
			t.Errorf("config.json over HTTPS: %s, want the wss listener", body)
		}
	}
}

// TestBridgeBoundsAgainstUnansweredCalls attacks the bridge from another
// domain (no authentication needed to call a user of ours): INVITEs with
// a plain offer to a registered browser that never answers each open a
// bridge session until Timer C. One browser holds at most
// proxy.MaxBridgedPerUser of them (486 beyond), and the whole bridge
// MediaMaxCalls (503 with Retry-After beyond), so the ports of the domain
// cannot be taken by calling one browser.
func TestBridgeBoundsAgainstUnansweredCalls(t *testing.T) {
	for _, c := range []struct {
		name     string
		maxCalls int
		calls    int
		want     string
	}{
		{"per user", 100, proxy.MaxBridgedPerUser + 1, "SIP/2.0 486"},
		{"whole bridge", 3, 4, "SIP/2.0 503"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := start(t, server.Config{
				Domains:       []string{"a.test"},
				Listen:        []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"},
				Users:         usersFile(t, "a.test", "carol"),
				MediaMaxCalls: c.maxCalls,
				PikeRate:      -1,
			})
			carol, err := dialWSPhone(t, srv.Addr("ws").String(), "carol", "")
			if err != nil {
				t.Fatal(err)
			}
			carol.register("a.test")
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			port := conn.LocalAddr().(*net.UDPAddr).Port
			to := srv.Addr("udp").(*net.UDPAddr)
			sdpBody := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", port+2)
			for i := range c.calls {
				conn.WriteToUDP([]byte("INVITE sip:carol@a.test SIP/2.0\r\n"+
					fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKatt%d;rport\r\n", port, i)+
					"Max-Forwards: 70\r\nTo: <sip:carol@a.test>\r\n"+
					fmt.Sprintf("From: <sip:mallory@evil.test>;tag=m%d\r\nCall-ID: attack-%d\r\nCSeq: 1 INVITE\r\n", i, i)+
					fmt.Sprintf("Contact: <sip:mallory@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\n", port)+
					fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(sdpBody), sdpBody)), to)
			}
			// The browser gets the calls the bridge takes, and answers none.
			var invites []*sip.Request
			for range c.calls - 1 {
				m := carol.next("INVITE")
				if req, ok := m.(*sip.Request); ok && req.IsInvite() {
					invites = append(invites, req)
				}
			}
			// The attacker: 100 Trying for each, and one final refusal.
			buf := make([]byte, 4096)
			var final string
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			for final == "" {
				n, _, err := conn.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("no final response to the call over the bound: %v", err)
				}
				if line, _, _ := strings.Cut(string(buf[:n]), "\r\n"); !strings.HasPrefix(line, "SIP/2.0 1") {
					final = string(buf[:n])
				}
			}
			if !strings.HasPrefix(final, c.want) {
				t.Fatalf("the call over the bound got:\n%s\nwant %s", final, c.want)
			}
			if c.want == "SIP/2.0 503" && !strings.Contains(final, "Retry-After:") {
				t.Fatalf("503 without Retry-After:\n%s", final)
			}
			// The browser refuses the rest, so the server can stop.
			for _, req := range invites {
				carol.send(sip.NewResponseFromRequest(req, 486, "Busy Here", nil).String())
			}
		})
	}
}

// roots is a pool that trusts ca alone.
func roots(t *testing.T, ca *testenv.CA) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the CA file")
	}
	return pool
}

// TestWebListenerBoundsConnections: idle connections to --web beyond
// the per-source bound are closed at once; the page is still served to
// another client.
func TestWebListenerBoundsConnections(t *testing.T) {
	srv := start(t, server.Config{
		Domains:         []string{"a.test"},
		Listen:          []string{"udp:127.0.0.1:0", "ws:127.0.0.1:0"},
		Users:           usersFile(t, "a.test", "carol"),
		Web:             "127.0.0.1:0",
		TCPMaxPerSource: 4,
	})
	addr := srv.WebAddr().String()
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the fifth idle connection from one source: %v, want it closed", err)
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	time.Sleep(200 * time.Millisecond)
	res, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + addr + "/phone/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /phone/ after the idle ones left: %d", res.StatusCode)
	}
}
