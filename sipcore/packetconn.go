package sipcore

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// PacketConn defaults, used for the zero fields of PacketConnConfig.
const (
	DefaultSourceTTL   = 10 * time.Minute
	DefaultRotateAfter = 100_000
	// quiesce is how long ReadFrom pauses before it ends sipgo's read
	// loop, so that the requests already handed on have taken their
	// connection (sipgo does it at once, in the goroutine that handles
	// each) before the loop's pool entries go.
	quiesce = 10 * time.Millisecond
)

// errRotate ends sipgo's read loop quietly: sipgo treats net.ErrClosed as
// an orderly end.
var errRotate = fmt.Errorf("sipcore: udp read loop restarted to free per-source state: %w", net.ErrClosed)

// PacketConnConfig configures NewPacketConn. A zero field means its
// default.
type PacketConnConfig struct {
	// Allow decides from a datagram's source IP address alone whether it
	// is handed on (Pike.Allow, a ban list); nil hands on every one.
	Allow func(netip.Addr) bool
	// Pool is the UDP connection pool of the sipgo transport layer that
	// reads the conn (TransportLayer().Pool("udp")). When set, sipgo's
	// per-source state is bounded: pool entries of sources quiet for
	// SourceTTL are removed, and the read loop is restarted after
	// RotateAfter new sources (Serve). Nil: neither.
	Pool *sip.ConnectionPool
	// SourceTTL is how long a source's pool entry outlives its last
	// datagram (default DefaultSourceTTL). sipgo needs the entry when it
	// takes a request's connection, at once, and to relay a response
	// statelessly to that source later (a 2xx retransmitted after the
	// proxy's INVITE transaction ended): keep it above twice Timer C plus
	// 64*T1.
	SourceTTL time.Duration
	// RotateAfter is how many new sources sipgo's read loop may record
	// before it is restarted (default DefaultRotateAfter, about 6 MB).
	RotateAfter int
	// Intercept, when set, sees each allowed datagram before sipgo and
	// may take it (true): it is then not handed on. It runs in the read
	// loop and must not keep b.
	Intercept func(b []byte, from netip.AddrPort) bool
}

// PacketConn is the net.PacketConn handed to sipgo's ServeUDP. It does two
// things before sipgo sees a datagram:
//
//   - It drops datagrams whose source is not allowed (Allow: the pike
//     rate limit, banned addresses) before they are parsed or given a
//     transaction: a flood from one address costs a read and a map
//     look-up per datagram, and no allocation.
//   - It bounds sipgo's per-source state. sipgo v1.7.2's UDP read loop
//     (TransportUDP.readListenerConnection) adds every new source
//     "ip:port" to the transport's ConnectionPool (map[string]Connection)
//     and to a map of its own (acceptedAddr), about 110 bytes per
//     distinct source together, and frees neither while the loop runs.
//     PacketConn removes the pool entries of sources quiet for
//     SourceTTL; the loop's own map is out of reach, so after
//     RotateAfter new sources ReadFrom ends the loop (with an error
//     wrapping net.ErrClosed, which sipgo takes as an orderly end, after
//     which it deletes every pool entry of the loop) and Serve starts it
//     again on the same socket.
//
// Writes go to the wrapped conn unchanged. ReadFrom must be called by one
// goroutine at a time, as sipgo does.
type PacketConn struct {
	net.PacketConn
	udp       *net.UDPConn // fast path: addresses without allocation
	allow     func(netip.Addr) bool
	pool      *sip.ConnectionPool
	ttl       int64 // ns
	rotate    int
	intercept func([]byte, netip.AddrPort) bool
	local     string
	epoch     time.Time

	// Owned by the reading goroutine.
	seen      map[netip.AddrPort]int64 // ns since epoch of the last datagram
	last      netip.AddrPort           // source of the datagram returned last
	nextSweep int64
	fresh     int // sources added to seen since the loop started

	rotating           atomic.Bool // ReadFrom ended the loop to restart it
	evicted, rotations atomic.Uint64
}

// NewPacketConn wraps pc.
func NewPacketConn(pc net.PacketConn, cfg PacketConnConfig) *PacketConn {
	if cfg.SourceTTL <= 0 {
		cfg.SourceTTL = DefaultSourceTTL
	}
	if cfg.RotateAfter <= 0 {
		cfg.RotateAfter = DefaultRotateAfter
	}
	c := &PacketConn{PacketConn: pc, allow: cfg.Allow, pool: cfg.Pool, ttl: int64(cfg.SourceTTL), rotate: cfg.RotateAfter, intercept: cfg.Intercept,
		local: pc.LocalAddr().String(), epoch: time.Now(), seen: make(map[netip.AddrPort]int64)}
	c.udp, _ = pc.(*net.UDPConn)
	return c
}

// Serve runs serve (a sipgo ServeUDP) on c until it returns for any other
// reason than c restarting its read loop.
func (c *PacketConn) Serve(serve func(net.PacketConn) error) error {
	for {
		err := serve(c)
		if !c.rotating.Swap(false) {
			return err
		}
		c.rotations.Add(1)
	}
}

// ReadFrom reads the next datagram that is allowed through.
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.fresh >= c.rotate {
		time.Sleep(quiesce)
		// sipgo deletes the pool entries of every source of the loop as
		// it ends: nothing is left to track.
		c.seen, c.fresh, c.last = make(map[netip.AddrPort]int64), 0, netip.AddrPort{}
		c.rotating.Store(true)
		return 0, nil, errRotate
	}
	for {
		n, ap, addr, err := c.read(b)
		if err != nil || !ap.IsValid() {
			return n, addr, err
		}
		if c.allow != nil && !c.allow(ap.Addr()) {
			continue
		}
		// sipgo skips these without noting their source: so must the
		// record of the source it saw last.
		if len(bytes.Trim(b[:n], "\x00")) == 0 {
			continue
		}
		if c.intercept != nil && c.intercept(b[:n], ap) {
			continue
		}
		if c.pool != nil {
			c.track(ap)
		}
		if addr == nil {
			addr = net.UDPAddrFromAddrPort(ap)
		}
		return n, addr, nil
	}
}

func (c *PacketConn) read(b []byte) (int, netip.AddrPort, net.Addr, error) {
	if c.udp != nil {
		n, ap, err := c.udp.ReadFromUDPAddrPort(b)
		return n, ap, nil, err
	}
	n, addr, err := c.PacketConn.ReadFrom(b)
	if ua, ok := addr.(*net.UDPAddr); ok && err == nil {
		return n, ua.AddrPort(), addr, nil
	}
	return n, netip.AddrPort{}, addr, err
}

// track notes that ap is being handed to sipgo, and evicts the sources
// that have been quiet too long. It runs in the read loop, so an eviction
// never races with sipgo adding the same source: the source returned last
// (which sipgo will not add again while it keeps sending) is never
// evicted.
func (c *PacketConn) track(ap netip.AddrPort) {
	now := int64(time.Since(c.epoch))
	if now >= c.nextSweep {
		c.sweep(now)
	}
	if _, ok := c.seen[ap]; !ok {
		c.fresh++
	}
	c.seen[ap] = now
	c.last = ap
}

func (c *PacketConn) sweep(now int64) {
	for ap, t := range c.seen {
		if now-t < c.ttl || ap == c.last {
			continue
		}
		delete(c.seen, ap)
		c.evict(ap)
	}
	c.nextSweep = now + min(int64(time.Second), c.ttl/2)
}

// evict removes ap's pool entry when it is this listener's: a connection
// of another kind sipgo made for that address is left alone.
func (c *PacketConn) evict(ap netip.AddrPort) {
	key := net.UDPAddrFromAddrPort(ap).String() // as sipgo writes it
	if key == c.local {
		return
	}
	conn := c.pool.Get(key)
	if conn == nil {
		return
	}
	uc, ok := conn.(*sip.UDPConnection)
	mine := ok && uc.PacketConn == net.PacketConn(c)
	conn.TryClose() // gives back the reference Get took; a listener is never closed by it
	if mine {
		c.pool.Delete(key)
		c.evicted.Add(1)
	}
}

// Evicted returns the number of sipgo pool entries removed so far.
func (c *PacketConn) Evicted() uint64 { return c.evicted.Load() }

// Rotations returns the number of times sipgo's read loop was restarted.
func (c *PacketConn) Rotations() uint64 { return c.rotations.Load() }
