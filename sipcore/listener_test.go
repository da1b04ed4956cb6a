package sipcore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/internal/testenv"
)

// limitedLn is a LimitListener on 127.0.0.1:0 whose accepted connections
// arrive on conns.
type limitedLn struct {
	*Listener
	conns chan net.Conn
	log   *testenv.Buffer
}

func listenLimited(t *testing.T, limits ConnLimits) *limitedLn {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveLimited(t, inner, limits)
}

func serveLimited(t *testing.T, inner net.Listener, limits ConnLimits) *limitedLn {
	t.Helper()
	buf := &testenv.Buffer{}
	l := &limitedLn{Listener: LimitListener(inner, limits, slog.New(slog.NewTextHandler(buf, nil))), conns: make(chan net.Conn, 1000), log: buf}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			l.conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(l.conns)
		for c := range l.conns {
			c.Close()
		}
	})
	return l
}

// accepted waits for the next connection handed on.
func (l *limitedLn) accepted(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-l.conns:
		return c
	case <-time.After(2 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// dialFrom connects to addr from the loopback address src.
func dialTCPFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer reports whether the other end closes c within wait.
func closedByPeer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestLimitListenerMaxPerSource(t *testing.T) {
	l := listenLimited(t, ConnLimits{MaxConns: 100, MaxPerSource: 3, IdleTimeout: -1})
	addr := l.Addr().String()
	var fromOne []net.Conn
	for range 5 {
		fromOne = append(fromOne, dialTCPFrom(t, "127.0.0.1", addr))
	}
	var served []net.Conn
	for range 3 {
		served = append(served, l.accepted(t))
	}
	for i, c := range fromOne {
		if got, want := closedByPeer(c, 300*time.Millisecond), i >= 3; got != want {
			t.Errorf("connection %d from 127.0.0.1: closed %v, want %v", i, got, want)
		}
	}
	// Another source is not affected.
	dialTCPFrom(t, "127.0.0.2", addr)
	l.accepted(t)
	// A closed connection gives its slot back, once.
	served[0].Close()
	served[0].Close()
	dialTCPFrom(t, "127.0.0.1", addr)
	l.accepted(t)
	late := dialTCPFrom(t, "127.0.0.1", addr)
	if !closedByPeer(late, 2*time.Second) {
		t.Error("a fourth connection from 127.0.0.1 was kept")
	}

	st := l.Stats()
	if st.Open != 4 || st.Refused[RefusedPerSource] != 3 || st.Refused[RefusedMaxConns] != 0 {
		t.Errorf("stats %+v, want 4 open, 3 refused per source", st)
	}
	// One warn line per 10 s, naming the source for fail2ban.
	if got := l.log.Lines("level=WARN", "tcp connection refused", "reason=max_per_source", "peer=127.0.0.1", "limit=3"); len(got) != 1 {
		t.Errorf("want one warn line for the per-source limit, got:\n%s", strings.Join(l.log.Lines(), "\n"))
	}
}

func TestLimitListenerMaxConns(t *testing.T) {
	l := listenLimited(t, ConnLimits{MaxConns: 2, MaxPerSource: -1, IdleTimeout: -1})
	addr := l.Addr().String()
	a := dialTCPFrom(t, "127.0.0.1", addr)
	b := dialTCPFrom(t, "127.0.0.2", addr)
	l.accepted(t)
	l.accepted(t)
	c := dialTCPFrom(t, "127.0.0.3", addr)
	if !closedByPeer(c, 2*time.Second) {
		t.Error("a third connection was kept")
	}
	if closedByPeer(a, 100*time.Millisecond) || closedByPeer(b, 100*time.Millisecond) {
		t.Error("an admitted connection was closed")
	}
	if st := l.Stats(); st.Open != 2 || st.Refused[RefusedMaxConns] != 1 {
		t.Errorf("stats %+v, want 2 open, 1 refused", st)
	}
	if got := l.log.Lines("level=WARN", "reason=max_connections", "peer=127.0.0.3", "limit=2"); len(got) != 1 {
		t.Errorf("want one warn line, got:\n%s", strings.Join(l.log.Lines(), "\n"))
	}
}

func TestLimitListenerDefaults(t *testing.T) {
	l := LimitListener(nil, ConnLimits{}, nil)
	defer l.reserve.Close()
	if l.limits != (ConnLimits{MaxConns: 2048, MaxPerSource: 64, IdleTimeout: 120 * time.Second, WriteTimeout: 10 * time.Second}) {
		t.Errorf("defaults %+v", l.limits)
	}
}

func TestLimitListenerClosesIdleConnections(t *testing.T) {
	const idle = 300 * time.Millisecond
	l := listenLimited(t, ConnLimits{IdleTimeout: idle})
	c := dialTCPFrom(t, "127.0.0.1", l.Addr().String())
	sc := l.accepted(t)
	readErr := make(chan error, 1)
	var lastRead time.Time
	go func() {
		buf := make([]byte, 64)
		for {
			_, err := sc.Read(buf)
			if err != nil {
				readErr <- err
				return
			}
			lastRead = time.Now()
		}
	}()
	// A byte every third of the timeout keeps it open, longer than the
	// timeout itself.
	for range 6 {
		if _, err := c.Write([]byte("\r\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(idle / 3)
	}
	select {
	case err := <-readErr:
		t.Fatalf("closed while in use: %v", err)
	default:
	}
	// Then silence closes it within 1.25 times the timeout.
	var err error
	select {
	case err = <-readErr:
	case <-time.After(3 * idle):
		t.Fatal("idle connection not closed")
	}
	if silent := time.Since(lastRead); silent < idle || silent > idle*5/4+100*time.Millisecond {
		t.Errorf("closed after %v of silence, want %v to %v", silent, idle, idle*5/4)
	}
	if !errors.Is(err, ErrIdleTimeout) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read error %v, want ErrIdleTimeout wrapping net.ErrClosed", err)
	}
	if !closedByPeer(c, time.Second) {
		t.Error("the client still sees the connection open")
	}
	if st := l.Stats(); st.Open != 0 || st.IdleClosed != 1 {
		t.Errorf("stats %+v, want 0 open, 1 closed idle", st)
	}
}

func TestLimitListenerKeepsCallerReadDeadline(t *testing.T) {
	l := listenLimited(t, ConnLimits{IdleTimeout: 10 * time.Second})
	dialTCPFrom(t, "127.0.0.1", l.Addr().String())
	sc := l.accepted(t)
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := sc.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrIdleTimeout) || time.Since(start) > time.Second {
		t.Fatalf("Read = %v after %v, want the caller's deadline after 50ms", err, time.Since(start))
	}
	if st := l.Stats(); st.Open != 1 {
		t.Errorf("the caller's deadline closed the connection: %+v", st)
	}
	if nc := sc.(interface{ NetConn() net.Conn }).NetConn(); nc == nil {
		t.Error("NetConn is nil")
	} else if _, ok := nc.(*net.TCPConn); !ok {
		t.Errorf("NetConn is %T, want *net.TCPConn", nc)
	}
}

// failingListener is a listener that returns errs before the inner listener's
// connections (the error paths of accept; the connections are real).
type failingListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *failingListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		if len(f.errs) > 1 || err != errAcceptForever {
			f.errs = f.errs[1:]
		}
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

var errAcceptForever = &net.OpError{Op: "accept", Net: "tcp", Err: syscall.ENOBUFS}

func listenFailing(t *testing.T, errs ...error) *failingListener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &failingListener{Listener: inner, errs: errs}
}

func TestLimitListenerAcceptRetriesErrors(t *testing.T) {
	enobufs := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENOBUFS)}
	f := listenFailing(t, enobufs, enobufs, enobufs)
	start := time.Now()
	l := serveLimited(t, f, ConnLimits{})
	dialTCPFrom(t, "127.0.0.1", l.Addr().String())
	l.accepted(t)
	if d := time.Since(start); d < 35*time.Millisecond {
		t.Errorf("three retries took %v, want at least 5+10+20ms of backoff", d)
	}
	if got := l.log.Lines("level=WARN", "tcp accept failed", "reason=accept_error"); len(got) != 1 {
		t.Errorf("want one warn line for three failures, got:\n%s", strings.Join(l.log.Lines(), "\n"))
	}
}

// TestLimitListenerOutOfDescriptorsThenFreed checks that when accept
// fails with EMFILE but a descriptor is free again by the time the
// reserve is given up, the connection is served rather than shed.
func TestLimitListenerOutOfDescriptorsThenFreed(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	l := serveLimited(t, listenFailing(t, emfile), ConnLimits{})
	dialTCPFrom(t, "127.0.0.1", l.Addr().String())
	l.accepted(t)
	if st := l.Stats(); st.Refused[RefusedDescriptors] != 0 || st.Open != 1 {
		t.Errorf("stats %+v, want the connection served", st)
	}
}

func TestLimitListenerCloseEndsBackoff(t *testing.T) {
	l := LimitListener(listenFailing(t, errAcceptForever), ConnLimits{}, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	time.Sleep(1500 * time.Millisecond) // the backoff reaches its 1 s cap
	start := time.Now()
	l.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Accept returned no error after Close")
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("Accept returned %v after Close", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// TestLimitListenerServesSipgo runs sipgo's TCP transport on a
// LimitListener: requests are answered on the wrapped connection, a
// request to the client reuses it (RFC 3261 §18.2.2, RFC 5626 flows), and
// an idle close is an orderly end for sipgo, not a read error.
func TestLimitListenerServesSipgo(t *testing.T) {
	sipLog := &testenv.Buffer{}
	logger := slog.New(slog.NewTextHandler(sipLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(logger)))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const idle = 400 * time.Millisecond
	l := LimitListener(inner, ConnLimits{IdleTimeout: idle}, nil)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTCP(l) }()
	defer func() {
		l.Close()
		<-served
	}()

	c := dialTCPFrom(t, "127.0.0.1", l.Addr().String())
	r := bufio.NewReader(c)
	local := c.LocalAddr().String()
	opts := "OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/TCP " + local + ";branch=z9hG4bK-limit-1\r\n" +
		"From: <sip:x@a.test>;tag=1\r\nTo: <sip:a.test>\r\nCall-ID: limit-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, opts); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if msg := readSIPMessage(t, r); !strings.HasPrefix(msg, "SIP/2.0 200 ") {
		t.Fatalf("OPTIONS over the limited listener: %q", msg)
	}

	// A request from the server to the client's address goes over the
	// same connection.
	client, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(local)
	p, _ := strconv.Atoi(port)
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Host: host, Port: p, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res := make(chan *sip.Response, 1)
	go func() {
		rs, err := client.Do(ctx, req)
		if err != nil {
			t.Errorf("request to the client: %v", err)
		}
		res <- rs
	}()
	in := readSIPMessage(t, r)
	if !strings.HasPrefix(in, "OPTIONS sip:") {
		t.Fatalf("the client got %q on its connection, want the server's OPTIONS", in)
	}
	io.WriteString(c, answer200(in))
	if rs := <-res; rs == nil || rs.StatusCode != 200 {
		t.Fatalf("response to the server's request: %v", rs)
	}
	if st := l.Stats(); st.Open != 1 {
		t.Errorf("%d connections open, want the one reused", st.Open)
	}

	// Silence closes it; sipgo sees an orderly close.
	c.SetReadDeadline(time.Now().Add(3 * idle))
	if _, err := r.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: read %v, want closed", err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := sipLog.Lines("level=ERROR"); len(got) > 0 {
		t.Errorf("sipgo logged errors:\n%s", strings.Join(got, "\n"))
	}
	if st := l.Stats(); st.Open != 0 || st.IdleClosed != 1 {
		t.Errorf("stats %+v, want 0 open, 1 closed idle", st)
	}
}

// readSIP reads one message without a body from r.
func readSIPMessage(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a SIP message: %v (got %q)", err, b.String()+line)
		}
		b.WriteString(line)
		if line == "\r\n" && b.Len() > 2 {
			return b.String()
		}
	}
}

// answer builds a 200 for the request msg.
func answer200(msg string) string {
	out := "SIP/2.0 200 OK\r\n"
	for _, l := range strings.Split(msg, "\r\n") {
		for _, h := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:"} {
			if strings.HasPrefix(l, h) {
				out += l + "\r\n"
			}
		}
	}
	return out + "Content-Length: 0\r\n\r\n"
}

// BenchmarkLimitedConnRead reads 1 KiB messages over loopback TCP from a
// plain connection and from one handed on by LimitListener (idle deadline
// kept).
func BenchmarkLimitedConnRead(b *testing.B) {
	for _, limit := range []bool{false, true} {
		name := "plain"
		if limit {
			name = "limited"
		}
		b.Run(name, func(b *testing.B) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var l net.Listener = inner
			if limit {
				l = LimitListener(inner, ConnLimits{}, nil)
			}
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			sc, err := l.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			msg := bytes.Repeat([]byte("x"), 1024)
			go func() {
				for range b.N {
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 1024)
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := io.ReadFull(sc, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLimitListenerWriteTimeout: a peer that stops reading is cut off when
// a write blocks for WriteTimeout, instead of holding the writer forever.
func TestLimitListenerWriteTimeout(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitListener(inner, ConnLimits{WriteTimeout: 200 * time.Millisecond, IdleTimeout: -1}, slog.New(slog.DiscardHandler))
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // never read
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	start := time.Now()
	for {
		if _, err := conn.Write(chunk); err != nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("writes to a peer that does not read never failed")
		}
	}
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Fatal("the connection stayed open after the write timeout")
	}
}
