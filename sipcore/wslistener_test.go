package sipcore_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/sipfed/sipfed/sipcore"
)

// serveWS runs a WebSocket server (as sipgo's WS transport does: the
// upgrade in the accept loop) on a WSListener and returns its address;
// each upgraded connection gets one text frame, "hello".
func serveWS(t *testing.T, cfg sipcore.WSConfig) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := sipcore.NewWSListener(l, cfg, nil)
	t.Cleanup(func() { wl.Close() })
	go func() {
		u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == "sip" }}
		for {
			c, err := wl.Accept()
			if err != nil {
				return
			}
			if _, err := u.Upgrade(c); err != nil {
				c.Close()
				continue
			}
			wsutil.WriteServerText(c, []byte("hello"))
		}
	}()
	return l.Addr().String()
}

// dial opens a WebSocket to addr with the subprotocols and Origin given
// and returns the first text frame, or the error.
func dial(addr string, protocols []string, origin string) (string, error) {
	d := ws.Dialer{Protocols: protocols, Timeout: 2 * time.Second}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, br, _, err := d.Dial(ctx, "ws://"+addr+"/")
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var rw io.ReadWriter = c
	if br != nil { // the frame came with the handshake's response
		rw = struct {
			io.Reader
			io.Writer
		}{br, c}
	}
	b, err := wsutil.ReadServerText(rw)
	return string(b), err
}

// TestWSListenerHandshake: a SIP WebSocket from an allowed Origin is
// handed on and upgraded; another Origin gets 403, another subprotocol
// 400, and neither reaches the server.
func TestWSListenerHandshake(t *testing.T) {
	addr := serveWS(t, sipcore.WSConfig{Origins: []string{"https://phone.a.test"}})
	if got, err := dial(addr, []string{"sip"}, "https://phone.a.test"); err != nil || got != "hello" {
		t.Fatalf("allowed Origin: %q, %v", got, err)
	}
	for _, c := range []struct {
		name      string
		protocols []string
		origin    string
		status    string
	}{
		{"other Origin", []string{"sip"}, "https://evil.test", "403"},
		{"no Origin", []string{"sip"}, "", "403"},
		{"other subprotocol", []string{"chat"}, "https://phone.a.test", "400"},
		{"no subprotocol", nil, "https://phone.a.test", "400"},
	} {
		_, err := dial(addr, c.protocols, c.origin)
		if err == nil || !strings.Contains(err.Error(), c.status) {
			t.Errorf("%s: %v, want a refusal with %s", c.name, err, c.status)
		}
	}
	// No Origin list: any Origin, and none.
	open := serveWS(t, sipcore.WSConfig{})
	for _, origin := range []string{"", "https://anywhere.test"} {
		if got, err := dial(open, []string{"sip"}, origin); err != nil || got != "hello" {
			t.Errorf("no Origin list, Origin %q: %q, %v", origin, got, err)
		}
	}
}

// TestWSListenerIdleConnectionBlocksNobody: a connection that never sends
// its upgrade request does not hold up the next client, and is closed
// after the handshake timeout.
func TestWSListenerIdleConnectionBlocksNobody(t *testing.T) {
	addr := serveWS(t, sipcore.WSConfig{HandshakeTimeout: 500 * time.Millisecond})
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	if got, err := dial(addr, []string{"sip"}, ""); err != nil || got != "hello" {
		t.Fatalf("a client behind an idle connection: %q, %v", got, err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("the client waited %v behind the idle connection", d)
	}
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := bufio.NewReader(idle).ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("the idle connection was not closed after the handshake timeout: %v", err)
	}
}

// TestWSListenerOversizedRequest: an upgrade request larger than
// MaxHeader is refused.
func TestWSListenerOversizedRequest(t *testing.T) {
	addr := serveWS(t, sipcore.WSConfig{MaxHeader: 1024})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Junk: " + strings.Repeat("a", 4000) + "\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, "400") {
		t.Fatalf("response %q, want 400", line)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
