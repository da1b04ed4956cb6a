package rtp_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/rtp"

	mrtp "github.com/sipfed/sipfed/media/rtp"
)

// BenchmarkSessionSend measures WriteSample of a 20 ms G.711 frame.
func BenchmarkSessionSend(b *testing.B) {
	sink, _ := listen(b, true)
	defer sink.Close()
	s := newSession(b, true, mrtp.WithRemote(sink.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{}))
	payload := make([]byte, 160)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WriteSample(0, payload, 160, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionReceive measures ReadRTP of 20 ms G.711 packets sent by
// a plain socket as fast as the receiver takes them.
func BenchmarkSessionReceive(b *testing.B) {
	s := newSession(b, true)
	src, _ := listen(b, true)
	defer src.Close()
	p := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 7}, Payload: make([]byte, 160)}
	buf := make([]byte, 1500)
	to := s.LocalAddr()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			p.SequenceNumber, p.Timestamp = seq, uint32(seq)*160
			n, _ := p.MarshalTo(buf)
			src.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	var in rtp.Packet
	b.ReportAllocs()
	for b.Loop() {
		if err := s.ReadRTP(&in); err != nil {
			b.Fatal(err)
		}
	}
}
