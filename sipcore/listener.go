package sipcore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of ConnLimits.
const (
	// DefaultMaxConns is Kamailio's tcp_max_connections.
	DefaultMaxConns = 2048
	// DefaultMaxPerSource leaves room for a NAT full of phones, each with
	// an RFC 5626 flow, while one host cannot take the whole of
	// DefaultMaxConns.
	DefaultMaxPerSource = 64
	// DefaultIdleTimeout is Kamailio's tcp_connection_lifetime; RFC 5626
	// clients send a keep-alive every 95 to 120 s over TCP.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultWriteTimeout bounds one write to a TCP connection.
	DefaultWriteTimeout = 10 * time.Second
)

// Reasons for refusing a connection, as logged and counted in
// ConnStats.Refused.
const (
	// RefusedMaxConns: ConnLimits.MaxConns connections were open.
	RefusedMaxConns = "max_connections"
	// RefusedPerSource: ConnLimits.MaxPerSource connections were open from
	// the same source.
	RefusedPerSource = "max_per_source"
	// RefusedDescriptors: the process was out of file descriptors
	// (EMFILE, ENFILE); the connection was accepted on the reserved
	// descriptor and closed at once.
	RefusedDescriptors = "descriptors"
)

// RefuseReasons lists every reason a connection is refused for.
var RefuseReasons = []string{RefusedMaxConns, RefusedPerSource, RefusedDescriptors}

// Indices in RefuseReasons, and of Listener.warns.
const (
	refusedMaxConns = iota
	refusedPerSource
	refusedDescriptors
	acceptFailed // not a refusal: only logged
)

// ErrIdleTimeout is returned by Read on a connection that LimitListener
// closed because nothing was read from it for ConnLimits.IdleTimeout. It
// wraps net.ErrClosed: the connection is closed, and readers such as
// sipgo's treat it as an orderly end.
var ErrIdleTimeout = fmt.Errorf("sipcore: tcp connection idle: %w", net.ErrClosed)

// connWarnInterval is how often, at most, one reason for refusing
// connections is logged.
const connWarnInterval = 10 * time.Second

// ConnLimits bound the connections a listener hands on, so that idle or
// piled-up connections cannot use up the process's file descriptors. The
// zero value of a field means its default; a negative value means no
// bound.
type ConnLimits struct {
	// MaxConns bounds the connections open at once (default
	// DefaultMaxConns, 2048).
	MaxConns int
	// MaxPerSource bounds the connections open at once from one source
	// (SourcePrefix: an IPv4 address, or an IPv6 /64). Default
	// DefaultMaxPerSource, 64.
	MaxPerSource int
	// IdleTimeout closes a connection from which no byte was read for
	// this long, within a quarter of it more (default
	// DefaultIdleTimeout, 120 s). RFC 5626 CRLF keep-alives are bytes.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write (default DefaultWriteTimeout,
	// 10 s): a peer that stops reading is disconnected instead of
	// holding a handler goroutine for every message sent to it.
	WriteTimeout time.Duration
}

func (o ConnLimits) withDefaults() ConnLimits {
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxPerSource == 0 {
		o.MaxPerSource = DefaultMaxPerSource
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	return o
}

// ConnStats is what a Listener counted since it started.
type ConnStats struct {
	// Open is the number of connections handed on and not yet closed.
	Open int
	// Refused counts the connections closed at once, by reason (every
	// one of RefuseReasons is present).
	Refused map[string]uint64
	// IdleClosed counts the connections closed by IdleTimeout.
	IdleClosed uint64
}

// Listener is a net.Listener that enforces ConnLimits. Make it with
// LimitListener.
//
// Its Accept survives what would end a plain accept loop (sipgo's
// ServeTCP returns on the first error, and the process with it): on
// running out of file descriptors it sheds the waiting connection through
// a reserved descriptor, on any other error it retries after a pause
// (5 ms doubling up to 1 s, as net/http does). It returns only once the
// listener is closed.
type Listener struct {
	inner  net.Listener
	limits ConnLimits
	log    *slog.Logger
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	open    int
	sources map[netip.Addr]int      // per source key, only while MaxPerSource > 0
	conns   map[string]*limitedConn // by remote address, for KeepUntil

	resMu   sync.Mutex
	reserve *os.File // a descriptor to give up when the process has none left

	refused    [3]atomic.Uint64 // by index in RefuseReasons
	idleClosed atomic.Uint64
	warns      [4]*LogLimiter // by index in RefuseReasons, then acceptFailed
}

var _ net.Listener = (*Listener)(nil)

// LimitListener wraps l to enforce limits (defaults for zero fields),
// logging at warn each limit hit, at most one line per reason every 10 s
// (with the number of lines dropped since the previous one), so that an
// operator or fail2ban can act on it. log may be nil.
func LimitListener(l net.Listener, limits ConnLimits, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ll := &Listener{
		inner:   l,
		limits:  limits.withDefaults(),
		log:     log,
		done:    make(chan struct{}),
		sources: map[netip.Addr]int{},
	}
	for i := range ll.warns {
		ll.warns[i] = NewLogLimiter(1, connWarnInterval)
	}
	ll.reserve, _ = os.Open(os.DevNull)
	return ll
}

// Accept waits for a connection within the limits and returns it; it
// closes the others as they come. Its error is the inner listener's once
// the listener is closed.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil && isOutOfDescriptors(err) && !l.isClosed() {
			c, err = l.shed()
			if err == nil && c == nil {
				continue
			}
		}
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			l.warn(acceptFailed, "tcp accept failed: retrying", "error", err)
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.sleep(delay)
			continue
		}
		delay = 0
		if wc := l.admit(c); wc != nil {
			return wc, nil
		}
	}
}

// shed runs when accept found no free descriptor: it frees the reserved
// one, accepts the waiting connection on it and closes it at once, so
// that the connection is refused rather than left in the backlog, and
// accept does not fail in a loop. It returns (nil, nil) after shedding
// one connection, or the connection itself if a descriptor was freed
// meanwhile.
func (l *Listener) shed() (net.Conn, error) {
	l.resMu.Lock()
	defer l.resMu.Unlock()
	if l.reserve == nil {
		var err error
		if l.reserve, err = os.Open(os.DevNull); err != nil {
			return nil, err
		}
	}
	l.reserve.Close()
	c, err := l.inner.Accept()
	var rerr error
	l.reserve, rerr = os.Open(os.DevNull)
	if err != nil || rerr == nil {
		return c, err
	}
	peer := sourceOf(c.RemoteAddr())
	l.refuse(refusedDescriptors, peer)
	c.Close()
	l.reserve, _ = os.Open(os.DevNull)
	return nil, nil
}

// admit hands c on wrapped, or closes it and returns nil when a limit is
// reached.
func (l *Listener) admit(c net.Conn) net.Conn {
	peer := sourceOf(c.RemoteAddr())
	key := SourcePrefix(peer)
	reason := -1
	l.mu.Lock()
	switch {
	case l.limits.MaxConns > 0 && l.open >= l.limits.MaxConns:
		reason = refusedMaxConns
	case l.limits.MaxPerSource > 0 && l.sources[key] >= l.limits.MaxPerSource:
		reason = refusedPerSource
	default:
		l.open++
		if l.limits.MaxPerSource > 0 {
			l.sources[key]++
		}
	}
	l.mu.Unlock()
	if reason >= 0 {
		// Counted before it is closed: whoever sees the close sees the
		// count (the test reading Stats after its connection was closed
		// did not, now and then).
		l.refuse(reason, peer)
		c.Close()
		return nil
	}
	wc := newLimitedConn(c, l, key)
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[string]*limitedConn{}
	}
	l.conns[c.RemoteAddr().String()] = wc
	l.mu.Unlock()
	return wc
}

// KeepUntil keeps the connection from remote (ip:port) open, idle or not,
// until at least until: a device registered over it can only be reached
// through it (RFC 5626), and many send no keep-alives between
// registrations. Kamailio's registrar does the same with
// tcp_persistent_flag. It reports whether such a connection is open here.
func (l *Listener) KeepUntil(remote string, until time.Time) bool {
	l.mu.Lock()
	c := l.conns[remote]
	l.mu.Unlock()
	if c == nil {
		return false
	}
	c.keepUntil(until)
	return true
}

// release frees the slot of a closed connection from source key.
func (l *Listener) release(key netip.Addr, remote string, c *limitedConn) {
	l.mu.Lock()
	if l.conns[remote] == c {
		delete(l.conns, remote)
	}
	l.open--
	if l.limits.MaxPerSource > 0 {
		if n := l.sources[key] - 1; n > 0 {
			l.sources[key] = n
		} else {
			delete(l.sources, key)
		}
	}
	l.mu.Unlock()
}

// refuse counts and logs a connection refused for RefuseReasons[i].
func (l *Listener) refuse(i int, peer netip.Addr) {
	l.refused[i].Add(1)
	args := []any{"peer", peer.String()}
	switch i {
	case refusedMaxConns:
		args = append(args, "limit", l.limits.MaxConns)
	case refusedPerSource:
		args = append(args, "limit", l.limits.MaxPerSource)
	}
	l.warn(i, "tcp connection refused", args...)
}

// warn logs msg at warn level for reason i (an index of l.warns) unless
// one was logged less than connWarnInterval ago.
func (l *Listener) warn(i int, msg string, args ...any) {
	ok, dropped := l.warns[i].Allow(time.Now())
	if !ok {
		return
	}
	reason := "accept_error"
	if i < len(RefuseReasons) {
		reason = RefuseReasons[i]
	}
	args = append([]any{"reason", reason, "listener", l.inner.Addr().String()}, args...)
	if dropped > 0 {
		args = append(args, "similar_lines_dropped", dropped)
	}
	l.log.Warn(msg, args...)
}

// sleep pauses for d or until the listener is closed.
func (l *Listener) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.done:
	}
}

func (l *Listener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Close closes the listener (and its reserved descriptor); connections
// already handed on stay open.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	err := l.inner.Close()
	l.resMu.Lock()
	if l.reserve != nil {
		l.reserve.Close()
		l.reserve = nil
	}
	l.resMu.Unlock()
	return err
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats returns what the listener counted so far.
func (l *Listener) Stats() ConnStats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	s := ConnStats{Open: open, Refused: make(map[string]uint64, len(RefuseReasons)), IdleClosed: l.idleClosed.Load()}
	for i, r := range RefuseReasons {
		s.Refused[r] = l.refused[i].Load()
	}
	return s
}

// isOutOfDescriptors reports whether err is accept's EMFILE or ENFILE.
func isOutOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// sourceOf returns the IP address of a, IPv4-mapped addresses unmapped.
func sourceOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// connEpoch is the origin of limitedConn.pushed: time.Since(connEpoch) is
// monotonic.
var connEpoch = time.Now()

// limitedConn is a connection handed on by a Listener: it keeps a read
// deadline IdleTimeout ahead and gives its slot back when closed. It is a
// plain net.Conn, all sipgo needs (v1.7.2 asserts no *net.TCPConn): sipgo
// wraps it in its TCPConnection, reads it from one goroutine, writes it
// from others, keys its pool by RemoteAddr, and reuses it for requests to
// that address.
type limitedConn struct {
	net.Conn
	l      *Listener
	key    netip.Addr
	idle   time.Duration
	pushed atomic.Int64 // time.Since(connEpoch) when the idle deadline was last pushed
	closed atomic.Bool

	mu     sync.Mutex // serialises deadline changes
	idleDL time.Time  // the idle deadline in force
	user   time.Time  // the read deadline set by the caller, zero: none
	keep   time.Time  // not idle-closed before this (KeepUntil)
}

func newLimitedConn(c net.Conn, l *Listener, key netip.Addr) *limitedConn {
	wc := &limitedConn{Conn: c, l: l, key: key, idle: l.limits.IdleTimeout}
	if wc.idle > 0 {
		wc.push()
	}
	return wc
}

// push moves the idle deadline to IdleTimeout and a quarter from now. Read
// calls it only when the last push is more than a quarter old, so a
// connection busy with small reads does not reset a timer on every one,
// and the deadline is always between IdleTimeout and 1.25 IdleTimeout
// ahead of a read.
func (c *limitedConn) push() {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushed.Store(int64(now.Sub(connEpoch)))
	c.idleDL = now.Add(c.idle + c.idle/4)
	if c.keep.After(c.idleDL) {
		c.idleDL = c.keep
	}
	c.Conn.SetReadDeadline(earliest(c.idleDL, c.user))
}

// keepUntil moves the idle deadline to until at least.
func (c *limitedConn) keepUntil(until time.Time) {
	if c.idle <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.keep) {
		c.keep = until
	}
	if c.keep.After(c.idleDL) {
		c.idleDL = c.keep
		c.Conn.SetReadDeadline(earliest(c.idleDL, c.user))
	}
}

// Read reads from the connection; when nothing came for IdleTimeout it
// closes the connection and returns ErrIdleTimeout.
func (c *limitedConn) Read(b []byte) (int, error) {
	if c.idle <= 0 {
		return c.Conn.Read(b)
	}
	if time.Since(connEpoch)-time.Duration(c.pushed.Load()) > c.idle/4 {
		c.push()
	}
	n, err := c.Conn.Read(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.idleExpired() {
		c.l.idleClosed.Add(1)
		c.Close()
		return n, ErrIdleTimeout
	}
	return n, err
}

// idleExpired reports whether the read deadline that passed is the idle
// one rather than the caller's.
func (c *limitedConn) idleExpired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user.IsZero() || time.Now().Before(c.user)
}

// SetReadDeadline sets the caller's read deadline; the idle deadline
// still applies when it is earlier.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	if c.idle <= 0 {
		return c.Conn.SetReadDeadline(t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user = t
	return c.Conn.SetReadDeadline(earliest(c.idleDL, t))
}

// SetDeadline sets the read and write deadlines, as SetReadDeadline and
// SetWriteDeadline do.
func (c *limitedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// Close closes the connection and gives its slot back, once.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key, c.Conn.RemoteAddr().String(), c)
	}
	return err
}

// NetConn returns the connection accepted by the inner listener (a
// *net.TCPConn for a TCP listener), as tls.Conn's NetConn does.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// Write writes with a deadline WriteTimeout ahead and closes the
// connection when it passes (sipgo v1.7.2 sets none).
func (c *limitedConn) Write(b []byte) (int, error) {
	wto := c.l.limits.WriteTimeout
	if wto <= 0 {
		return c.Conn.Write(b)
	}
	c.Conn.SetWriteDeadline(time.Now().Add(wto))
	n, err := c.Conn.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.Close()
	}
	return n, err
}

// earliest returns the earlier of a and b, a zero time counting as none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}
