package endpoint

import (
	"net"
	"net/netip"
	"testing"

	"github.com/sipfed/sipfed/media/codec/g711"
	"github.com/sipfed/sipfed/media/sdp"
)

func udpPair(b *testing.B) (*net.UDPConn, *net.UDPConn) {
	b.Helper()
	c1, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	c2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// BenchmarkEchoPacket is the per-packet media path of an echo call: a
// PCMA packet arrives, is read, and is sent back (one round trip per op).
func BenchmarkEchoPacket(b *testing.B) {
	rtpC, rtcpC := udpPair(b)
	peer, _ := udpPair(b)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	s, err := startAudio(rtpC, rtcpC, negotiated{codec: sdp.PCMA, tePT: -1, remote: peerAddr, rtcp: netip.AddrPortFrom(peerAddr.Addr(), peerAddr.Port()+1)}, mediaFiles{echo: true})
	if err != nil {
		b.Fatal(err)
	}
	s.run()
	defer s.close()
	to := rtpC.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, 8
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		pkt[7] = byte(i)
		if _, err := peer.WriteToUDPAddrPort(pkt, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendFrame is the per-packet send path of a G.711 call: 20 ms
// of the tone encoded and sent.
func BenchmarkSendFrame(b *testing.B) {
	rtpC, rtcpC := udpPair(b)
	sink, _ := udpPair(b)
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	s, err := startAudio(rtpC, rtcpC, negotiated{codec: sdp.PCMU, tePT: -1, remote: sinkAddr, rtcp: netip.AddrPortFrom(sinkAddr.Addr(), sinkAddr.Port()+1)}, mediaFiles{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	pcm := make([]int16, g711.FrameSamples)
	payload := make([]byte, 0, g711.FrameSamples)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if payload, err = s.sendFrame(pcm, payload, i == 0); err != nil {
			b.Fatal(err)
		}
	}
}
