package sipcore

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WSConfig is the policy of a SIP-over-WebSocket listener's handshake
// (RFC 7118).
type WSConfig struct {
	// Origins are the allowed values of the Origin header (a browser
	// page's scheme://host[:port]), compared without case; "*" allows any.
	// Empty: any, including none (a SIP client that is not a browser sends
	// none).
	Origins []string
	// HandshakeTimeout bounds the wait for the HTTP upgrade request;
	// default DefaultWSHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHeader bounds the upgrade request's size; default 8 KiB.
	MaxHeader int
}

// DefaultWSHandshakeTimeout is how long a new WebSocket connection may take
// to send its upgrade request.
const DefaultWSHandshakeTimeout = 10 * time.Second

// WSListener reads each new connection's HTTP upgrade request in a
// goroutine of its own, so that a connection that sends nothing holds up
// no other (sipgo's WS transport upgrades in its accept loop), and hands
// on only those that ask for a WebSocket with the "sip" subprotocol
// (RFC 7118 §4) from an allowed Origin, with the request still to be
// read. Others get 400 (not a SIP WebSocket) or 403 (Origin) and are
// closed; one that sends nothing is closed after the handshake timeout.
type WSListener struct {
	net.Listener
	cfg    WSConfig
	log    *slog.Logger
	ready  chan net.Conn
	done   chan struct{}
	closed sync.Once
	err    error
	errMu  sync.Mutex
}

// NewWSListener wraps l (a TCP or TLS listener). Each connection being
// checked holds a goroutine until its handshake timeout: l should be a
// LimitListener, whose per-source and total bounds then bound them too.
func NewWSListener(l net.Listener, cfg WSConfig, log *slog.Logger) *WSListener {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultWSHandshakeTimeout
	}
	if cfg.MaxHeader <= 0 {
		cfg.MaxHeader = 8 << 10
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &WSListener{Listener: l, cfg: cfg, log: log, ready: make(chan net.Conn), done: make(chan struct{})}
	go w.acceptLoop()
	return w
}

func (w *WSListener) acceptLoop() {
	for {
		c, err := w.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			w.errMu.Lock()
			w.err = err
			w.errMu.Unlock()
			w.Close()
			return
		}
		go w.handshake(c)
	}
}

// Accept returns the next connection whose upgrade request passed.
func (w *WSListener) Accept() (net.Conn, error) {
	select {
	case c := <-w.ready:
		return c, nil
	case <-w.done:
		w.errMu.Lock()
		defer w.errMu.Unlock()
		if w.err != nil {
			return nil, w.err
		}
		return nil, net.ErrClosed
	}
}

// Close closes the listener; connections being checked are dropped.
func (w *WSListener) Close() error {
	var err error
	w.closed.Do(func() {
		close(w.done)
		err = w.Listener.Close()
	})
	return err
}

// handshake checks c's upgrade request and hands c on or closes it.
func (w *WSListener) handshake(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(w.cfg.HandshakeTimeout))
	rec := &recorder{r: c, max: w.cfg.MaxHeader}
	req, err := http.ReadRequest(bufio.NewReader(rec))
	if err != nil {
		w.log.Debug("websocket: no upgrade request", "peer", c.RemoteAddr().String(), "error", err)
		if !errors.Is(err, io.EOF) && !isTimeout(err) {
			refuse(c, "400 Bad Request")
		}
		c.Close()
		return
	}
	if code := w.check(req); code != "" {
		w.log.Debug("websocket: upgrade refused", "peer", c.RemoteAddr().String(), "status", code, "origin", Sanitize(req.Header.Get("Origin")))
		refuse(c, code)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	select {
	case w.ready <- &replayConn{Conn: c, replay: rec.buf}:
	case <-w.done:
		c.Close()
	}
}

// check returns the status refusing req, or "" when it may upgrade.
func (w *WSListener) check(req *http.Request) string {
	if req.Method != http.MethodGet || !headerHas(req.Header, "Upgrade", "websocket") ||
		!headerHas(req.Header, "Connection", "upgrade") || req.Header.Get("Sec-WebSocket-Key") == "" {
		return "400 Bad Request"
	}
	if !headerHas(req.Header, "Sec-WebSocket-Protocol", "sip") {
		return "400 Bad Request" // RFC 7118 §4.1: the "sip" subprotocol
	}
	if len(w.cfg.Origins) == 0 {
		return ""
	}
	origin := req.Header.Get("Origin")
	for _, o := range w.cfg.Origins {
		if o == "*" || strings.EqualFold(o, origin) && origin != "" {
			return ""
		}
	}
	return "403 Forbidden"
}

// headerHas reports whether a comma-separated header holds token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func refuse(c net.Conn, status string) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "HTTP/1.1 "+status+"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// recorder keeps every byte read through it, up to max (more is an
// error): what the upgrade read, to be read again by sipgo.
type recorder struct {
	r   io.Reader
	buf []byte
	max int
}

var errTooLarge = errors.New("sipcore: websocket upgrade request too large")

func (r *recorder) Read(p []byte) (int, error) {
	if len(r.buf) >= r.max {
		return 0, errTooLarge
	}
	if room := r.max - len(r.buf); len(p) > room {
		p = p[:room]
	}
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

// replayConn reads the recorded bytes before the connection's own.
type replayConn struct {
	net.Conn
	replay []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
