package sipcore

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// udpTarget is a sipgo server answering OPTIONS with 200 over a
// PacketConn.
type udpTarget struct {
	ua      *sipgo.UserAgent
	pc      *PacketConn
	handled atomic.Int64
}

func serveUDP(t *testing.T, cfg func(*sipgo.UserAgent) PacketConnConfig) *udpTarget {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	u := &udpTarget{ua: ua}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		u.handled.Add(1)
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	inner, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.pc = NewPacketConn(inner, cfg(ua))
	served := make(chan error, 1)
	go func() { served <- u.pc.Serve(srv.ServeUDP) }()
	t.Cleanup(func() {
		u.pc.Close()
		<-served
		ua.Close()
	})
	return u
}

// optionsFrom sends an OPTIONS from c (a connected socket, which takes
// datagrams only from the server's own address and port) and reports
// whether a 200 came back within wait.
func optionsFrom(t *testing.T, c *net.UDPConn, id string, wait time.Duration) bool {
	t.Helper()
	msg := "OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";rport;branch=z9hG4bK-" + id + "\r\n" +
		"From: <sip:x@a.test>;tag=1\r\nTo: <sip:a.test>\r\nCall-ID: " + id + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(wait))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		if strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 ") && strings.Contains(string(buf[:n]), id) {
			return true
		}
	}
}

func dialUDP(t *testing.T, from string, to net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPacketConnDropsBeforeSipgo checks that datagrams from a source over
// its budget never reach sipgo, that other sources are served meanwhile,
// and that responses still go out through the wrapped conn.
func TestPacketConnDropsBeforeSipgo(t *testing.T) {
	pike := NewPike(PikeConfig{Rate: 0.001, Burst: 3, Block: time.Minute})
	u := serveUDP(t, func(*sipgo.UserAgent) PacketConnConfig { return PacketConnConfig{Allow: pike.Allow} })
	attacker := dialUDP(t, "127.0.0.3:0", u.pc.LocalAddr())
	for i := range 3 {
		if !optionsFrom(t, attacker, fmt.Sprint("a", i), 2*time.Second) {
			t.Fatalf("OPTIONS %d within the burst not answered", i)
		}
	}
	for i := 3; i < 10; i++ {
		if optionsFrom(t, attacker, fmt.Sprint("a", i), 100*time.Millisecond) {
			t.Fatalf("OPTIONS %d over the burst answered", i)
		}
	}
	if !optionsFrom(t, dialUDP(t, "127.0.0.2:0", u.pc.LocalAddr()), "legit", 2*time.Second) {
		t.Fatal("another source was not served")
	}
	if got := u.handled.Load(); got != 4 {
		t.Errorf("sipgo handled %d requests, want 4", got)
	}
	if pike.Dropped() != 7 {
		t.Errorf("dropped %d, want 7", pike.Dropped())
	}
}

// TestPacketConnEvictsQuietSourcesFromSipgoPool checks the fix for
// sipgo's per-source leak: every source address:port that sends a
// request gets an entry in the UDP transport's connection pool, which
// sipgo never removes. Quiet sources are evicted, and an evicted source
// that comes back is answered from the listener's own port.
func TestPacketConnEvictsQuietSourcesFromSipgoPool(t *testing.T) {
	const ttl = 300 * time.Millisecond
	var pool *sip.ConnectionPool
	u := serveUDP(t, func(ua *sipgo.UserAgent) PacketConnConfig {
		pool = ua.TransportLayer().Pool("udp")
		return PacketConnConfig{Pool: pool, SourceTTL: ttl}
	})
	var clients []*net.UDPConn
	for i := range 50 {
		c := dialUDP(t, "127.0.0.2:0", u.pc.LocalAddr())
		if !optionsFrom(t, c, fmt.Sprint("s", i), 2*time.Second) {
			t.Fatalf("source %d not answered", i)
		}
		clients = append(clients, c)
	}
	if n := pool.Size(); n < 51 {
		t.Fatalf("sipgo pool holds %d entries after 50 sources, want 51 (what this test is about changed)", n)
	}
	time.Sleep(ttl + ttl/2)
	if !optionsFrom(t, dialUDP(t, "127.0.0.2:0", u.pc.LocalAddr()), "late", 2*time.Second) {
		t.Fatal("new source not answered")
	}
	// Left: the listener, the source seen last before (sipgo would not
	// add it again), the new one.
	if n := pool.Size(); n > 3 {
		t.Fatalf("sipgo pool holds %d entries after the quiet ones expired, want at most 3", n)
	}
	if u.pc.Evicted() < 49 {
		t.Fatalf("evicted %d, want 49", u.pc.Evicted())
	}
	for i, c := range clients[:5] {
		if !optionsFrom(t, c, fmt.Sprint("back", i), 2*time.Second) {
			t.Fatalf("evicted source %d not answered from the listener's port when it came back", i)
		}
	}
}

// TestPacketConnRestartsSipgoReadLoop checks that the read loop is
// restarted after RotateAfter new sources, and that every source, old or
// new, is still answered from the listener's port.
func TestPacketConnRestartsSipgoReadLoop(t *testing.T) {
	var pool *sip.ConnectionPool
	u := serveUDP(t, func(ua *sipgo.UserAgent) PacketConnConfig {
		pool = ua.TransportLayer().Pool("udp")
		return PacketConnConfig{Pool: pool, RotateAfter: 10}
	})
	var clients []*net.UDPConn
	for i := range 35 {
		c := dialUDP(t, "127.0.0.2:0", u.pc.LocalAddr())
		if !optionsFrom(t, c, fmt.Sprint("r", i), 2*time.Second) {
			t.Fatalf("source %d not answered", i)
		}
		clients = append(clients, c)
	}
	if r := u.pc.Rotations(); r != 3 {
		t.Fatalf("%d restarts after 35 sources, want 3", r)
	}
	if n := pool.Size(); n > 6 {
		t.Fatalf("sipgo pool holds %d entries, want at most the listener and the 5 sources since the last restart", n)
	}
	for i, c := range clients[:3] {
		if !optionsFrom(t, c, fmt.Sprint("again", i), 2*time.Second) {
			t.Fatalf("source %d not answered after the restarts", i)
		}
	}
}

// TestPacketConnBoundsSipgoMemoryPerSource measures what sipgo keeps per
// distinct source address:port, with and without PacketConn's bounds:
// without, a pool entry and the read loop's own record of it, for as
// long as the listener runs; with, nothing once the loop has restarted.
func TestPacketConnBoundsSipgoMemoryPerSource(t *testing.T) {
	const sources = 20_000
	measure := func(evict bool) float64 {
		u := serveUDP(t, func(ua *sipgo.UserAgent) PacketConnConfig {
			if !evict {
				return PacketConnConfig{}
			}
			return PacketConnConfig{Pool: ua.TransportLayer().Pool("udp"), SourceTTL: time.Millisecond, RotateAfter: 1000}
		})
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Sources differ only in the port sipgo sees: a CRLF keep-alive
		// from a fresh socket each time is enough to make an entry.
		before := heapInUse()
		for i := range sources {
			s, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, u.pc.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("\r\n\r\n"))
			s.Close()
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // stay within the socket buffer
			}
		}
		// A last request, answered, shows that every earlier datagram
		// has been read.
		time.Sleep(100 * time.Millisecond)
		if !optionsFrom(t, dialUDP(t, "127.0.0.2:0", u.pc.LocalAddr()), "last", 2*time.Second) {
			t.Fatal("last request not answered")
		}
		return float64(heapInUse()-before) / sources
	}
	leak, kept := measure(false), measure(true)
	t.Logf("heap per distinct source: %.0f bytes without eviction, %.0f with", leak, kept)
	if leak < 50 {
		t.Errorf("sipgo kept %.0f bytes per source without eviction: what this test is about changed", leak)
	}
	// What is left is fixed: the maps sized for RotateAfter sources,
	// spread over all of them.
	if kept > leak/4 {
		t.Errorf("%.0f bytes per source kept with eviction", kept)
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// BenchmarkPacketConnReadFrom reads datagrams through the filter and the
// source tracking, as sipgo does: one allocation, the address sipgo needs.
func BenchmarkPacketConnReadFrom(b *testing.B) {
	pike := NewPike(PikeConfig{Rate: 1e9, Burst: 1e9})
	inner, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pc := NewPacketConn(inner, PacketConnConfig{Allow: pike.Allow, Pool: newPool(b)})
	defer pc.Close()
	src, err := net.DialUDP("udp", nil, inner.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	go func() {
		msg := []byte("OPTIONS sip:a.test SIP/2.0\r\n\r\n")
		for {
			if _, err := src.Write(msg); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func newPool(b *testing.B) *sip.ConnectionPool {
	ua, err := sipgo.NewUA()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ua.Close() })
	return ua.TransportLayer().Pool("udp")
}
