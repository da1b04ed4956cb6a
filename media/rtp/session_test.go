package rtp_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	mrtp "github.com/sipfed/sipfed/media/rtp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func listen(t testing.TB, mux bool) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	a, err := mrtp.NewPortAllocator(loopback, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, rc, err := a.Listen(mux)
	if err != nil {
		t.Fatal(err)
	}
	return c, rc
}

// newSession starts a session on fresh sockets; remote may be the zero
// address (learned by latching).
func newSession(t testing.TB, mux bool, opts ...mrtp.Option) *mrtp.Session {
	t.Helper()
	c, rc := listen(t, mux)
	s := mrtp.NewSession(c, rc, opts...)
	t.Cleanup(func() { s.Close() })
	return s
}

// pair returns two sessions sending to each other.
func pair(t testing.TB, mux bool, opts ...mrtp.Option) (a, b *mrtp.Session) {
	t.Helper()
	ca, rca := listen(t, mux)
	cb, rcb := listen(t, mux)
	addr := func(c *net.UDPConn) netip.AddrPort {
		if c == nil {
			return netip.AddrPort{}
		}
		return c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	a = mrtp.NewSession(ca, rca, append([]mrtp.Option{mrtp.WithRemote(addr(cb), addr(rcb))}, opts...)...)
	b = mrtp.NewSession(cb, rcb, append([]mrtp.Option{mrtp.WithRemote(addr(ca), addr(rca))}, opts...)...)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestReceiveTimeout(t *testing.T) {
	s := newSession(t, true, mrtp.WithReceiveTimeout(50*time.Millisecond))
	var p rtp.Packet
	if err := s.ReadRTP(&p); !errors.Is(err, mrtp.ErrTimeout) {
		t.Fatalf("ReadRTP = %v, want ErrTimeout", err)
	}
	s.Close()
	if err := s.ReadRTP(&p); !errors.Is(err, mrtp.ErrClosed) {
		t.Fatalf("ReadRTP after Close = %v, want ErrClosed", err)
	}
}

// TestReceiveTimeoutChangedWhileReading: a ReadRTP already waiting
// follows SetReceiveTimeout: turned off (a call put on hold), it does not
// time out under the old rule.
func TestReceiveTimeoutChangedWhileReading(t *testing.T) {
	a, _ := pair(t, true, mrtp.WithReceiveTimeout(200*time.Millisecond))
	done := make(chan error, 1)
	go func() {
		var p rtp.Packet
		done <- a.ReadRTP(&p)
	}()
	time.Sleep(50 * time.Millisecond)
	a.SetReceiveTimeout(0)
	select {
	case err := <-done:
		t.Fatalf("ReadRTP returned %v after the timeout was turned off", err)
	case <-time.After(400 * time.Millisecond):
	}
	a.SetReceiveTimeout(100 * time.Millisecond)
	select {
	case err := <-done:
		if !errors.Is(err, mrtp.ErrTimeout) {
			t.Fatalf("ReadRTP: %v, want ErrTimeout", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadRTP did not time out after the timeout was set again")
	}
}

// TestRFC4961SymmetricLatch checks that a session told a wrong address for
// its peer (as behind NAT) answers to where the peer's RTP comes from.
func TestRFC4961SymmetricLatch(t *testing.T) {
	a := newSession(t, true)
	b := newSession(t, true, mrtp.WithRemote(netip.MustParseAddrPort("127.0.0.1:9"), netip.AddrPort{}),
		mrtp.WithReceiveTimeout(2*time.Second))
	a.SetRemote(b.LocalAddr(), netip.AddrPort{})
	if err := a.WriteSample(0, make([]byte, 160), 160, true); err != nil {
		t.Fatal(err)
	}
	var p rtp.Packet
	if err := b.ReadRTP(&p); err != nil {
		t.Fatal(err)
	}
	if got := b.Stats().RemoteAddr; got != a.LocalAddr() {
		t.Fatalf("b sends to %v, want %v", got, a.LocalAddr())
	}
	if err := b.WriteSample(0, make([]byte, 160), 160, true); err != nil {
		t.Fatal(err)
	}
	a.SetReceiveTimeout(2 * time.Second)
	if err := a.ReadRTP(&p); err != nil {
		t.Fatalf("a got nothing back: %v", err)
	}
}

// TestSSRCChange checks that a new source (a new device after a re-INVITE)
// restarts the statistics and, from a new address, the latch.
func TestSSRCChange(t *testing.T) {
	b := newSession(t, true, mrtp.WithReceiveTimeout(2*time.Second))
	a1 := newSession(t, true, mrtp.WithRemote(b.LocalAddr(), netip.AddrPort{}), mrtp.WithSSRC(111))
	a2 := newSession(t, true, mrtp.WithRemote(b.LocalAddr(), netip.AddrPort{}), mrtp.WithSSRC(222))
	var p rtp.Packet
	for range 3 {
		if err := a1.WriteSample(0, make([]byte, 160), 160, false); err != nil {
			t.Fatal(err)
		}
		if err := b.ReadRTP(&p); err != nil {
			t.Fatal(err)
		}
	}
	if err := a2.WriteSample(0, make([]byte, 160), 160, false); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadRTP(&p); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.SSRCChanges != 1 || st.RemoteSSRC != 222 || st.PacketsReceived != 1 || st.RemoteAddr != a2.LocalAddr() {
		t.Fatalf("after SSRC change: %+v", st)
	}
}

// TestStrictSourceDropsOtherSenders: with WithStrictSource, once latched,
// a packet from another address (even with a new SSRC) is dropped and the
// stream keeps going to the latched source.
func TestStrictSourceDropsOtherSenders(t *testing.T) {
	c, rc := listen(t, false)
	s := mrtp.NewSession(c, rc, mrtp.WithSymmetric(true), mrtp.WithStrictSource(true))
	defer s.Close()
	peer, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	attacker, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer peer.Close()
	defer attacker.Close()
	send := func(from *net.UDPConn, ssrc uint32, seq uint16) {
		p := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq}, Payload: []byte{1, 2, 3}}
		b, _ := p.Marshal()
		from.WriteToUDP(b, c.LocalAddr().(*net.UDPAddr))
	}
	got := make(chan uint32, 10)
	go func() {
		var p rtp.Packet
		for s.ReadRTP(&p) == nil {
			got <- p.SSRC
		}
	}()
	send(peer, 1, 1)
	if ssrc := <-got; ssrc != 1 {
		t.Fatalf("got SSRC %d", ssrc)
	}
	send(attacker, 2, 100)
	send(peer, 1, 2)
	if ssrc := <-got; ssrc != 1 {
		t.Fatalf("after the attacker's packet: SSRC %d, want the peer's 1", ssrc)
	}
	if st := s.Stats(); st.StrayDropped != 1 {
		t.Fatalf("stray dropped %d, want 1", st.StrayDropped)
	}
	// Our stream still goes to the peer.
	s.WriteSample(0, make([]byte, 160), 160, false)
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	if _, err := peer.Read(buf); err != nil {
		t.Fatalf("the peer got nothing: %v", err)
	}
}
