package rtp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/pion/rtcp"
)

// ntpEpochOffset is the number of seconds from 1900 to 1970.
const ntpEpochOffset = 2208988800

// ntp returns t as a 64-bit NTP timestamp (RFC 3550 section 4).
func ntp(t time.Time) uint64 {
	sec := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// middle returns the middle 32 bits of an NTP timestamp, the unit of LSR.
func middle(n uint64) uint32 { return uint32(n >> 16) }

// interval returns the time to the next report per RFC 3550 section 6.3.1
// and A.7 for a session of at most two members, both of them senders.
func (s *Session) interval(initial bool) time.Duration {
	s.mu.Lock()
	members := 1.0
	if s.haveSrc {
		members = 2
	}
	avg := s.avgRTCPSize
	s.mu.Unlock()
	rtcpBW := float64(s.bandwidth) * 0.05 / 8 // bytes per second
	t := avg * members / rtcpBW
	tmin := s.rtcpMin.Seconds()
	if initial {
		tmin /= 2
	}
	t = math.Max(t, tmin)
	t *= rand.Float64() + 0.5
	t /= math.E - 1.5 // compensation for timer reconsideration
	return time.Duration(t * float64(time.Second))
}

func (s *Session) reportLoop() {
	defer s.wg.Done()
	timer := time.NewTimer(s.interval(true))
	defer timer.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-timer.C:
			s.sendReport(false)
			timer.Reset(s.interval(false))
		}
	}
}

// sendReport sends a compound RTCP packet: SR if we sent RTP since the last
// report, else RR, then SDES CNAME, then BYE when bye.
func (s *Session) sendReport(bye bool) {
	now := time.Now()
	s.wmu.Lock()
	weSent, sent, octets := s.weSent, s.sent, s.sentOctets
	rtpNow := s.lastTS + uint32(uint64(now.Sub(s.lastSend)/time.Microsecond)*uint64(s.clockRate)/1e6)
	s.weSent = false
	s.wmu.Unlock()

	s.mu.Lock()
	to := s.remoteRTCP
	var blocks []rtcp.ReceptionReport
	if s.haveSrc {
		src := &s.src
		lost := src.lost()
		lost = max(min(lost, 0x7FFFFF), -0x800000)
		rr := rtcp.ReceptionReport{
			SSRC:               src.ssrc,
			FractionLost:       src.interval(),
			TotalLost:          uint32(lost) & 0xFFFFFF,
			LastSequenceNumber: src.cycles + uint32(src.maxSeq),
			Jitter:             uint32(src.jitter),
		}
		if !src.lastSRArrival.IsZero() {
			rr.LastSenderReport = src.lastSRMiddle
			rr.Delay = uint32(now.Sub(src.lastSRArrival) * 65536 / time.Second)
		}
		blocks = append(blocks, rr)
	}
	s.mu.Unlock()
	if !to.IsValid() {
		return
	}

	var pkts []rtcp.Packet
	if weSent {
		pkts = append(pkts, &rtcp.SenderReport{
			SSRC: s.ssrc, NTPTime: ntp(now), RTPTime: rtpNow,
			PacketCount: uint32(sent), OctetCount: uint32(octets), Reports: blocks,
		})
	} else {
		pkts = append(pkts, &rtcp.ReceiverReport{SSRC: s.ssrc, Reports: blocks})
	}
	pkts = append(pkts, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: s.ssrc,
		Items:  []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: s.cname}},
	}}})
	if bye {
		pkts = append(pkts, &rtcp.Goodbye{Sources: []uint32{s.ssrc}})
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		s.log.Debug("rtp: marshal RTCP", "error", err)
		return
	}
	conn := s.conn
	if s.rtcpConn != nil {
		conn = s.rtcpConn
	}
	if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
		s.log.Debug("rtp: send RTCP", "peer", to, "error", err)
		return
	}
	s.mu.Lock()
	s.reportsOut++
	s.avgRTCPSize += (float64(len(b)+28) - s.avgRTCPSize) / 16
	s.mu.Unlock()
}

// WriteRTCP sends pkts (feedback such as a PLI for the peer's stream,
// whose sender SSRC becomes ours) to the peer's RTCP address.
func (s *Session) WriteRTCP(pkts ...rtcp.Packet) error {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication:
			p.SenderSSRC = s.ssrc
		case *rtcp.FullIntraRequest:
			p.SenderSSRC = s.ssrc
		}
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		return fmt.Errorf("rtp: marshal RTCP: %w", err)
	}
	s.mu.Lock()
	to := s.remoteRTCP
	s.mu.Unlock()
	if !to.IsValid() {
		return ErrNoRemote
	}
	conn := s.conn
	if s.rtcpConn != nil {
		conn = s.rtcpConn
	}
	if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
		return fmt.Errorf("rtp: send RTCP: %w", err)
	}
	return nil
}

func (s *Session) readRTCPLoop() {
	defer s.wg.Done()
	var buf [maxPacket]byte
	for {
		n, from, err := s.rtcpConn.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			if s.isClosed() {
				return
			}
			s.log.Debug("rtp: read RTCP", "error", err)
			continue
		}
		s.handleRTCP(buf[:n], from)
	}
}

// handleRTCP takes in a compound RTCP packet from addr.
func (s *Session) handleRTCP(b []byte, from netip.AddrPort) {
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		s.log.Debug("rtp: dropping malformed RTCP", "peer", from, "error", err)
		return
	}
	now := time.Now()
	var feedback []rtcp.Packet
	s.mu.Lock()
	// Feedback goes to the relay after the lock is released: its handler
	// may take locks of its own that are held while it calls SetRemote.
	defer func() {
		s.mu.Unlock()
		for _, p := range feedback {
			s.feedback(p)
		}
	}()
	if s.strict && s.latched && from.Addr() != s.remote.Addr() {
		s.strayDropped++
		return // RTCP from somewhere else than the RTP we latched to
	}
	if s.symmetric && !s.rtcpLatched {
		s.remoteRTCP, s.rtcpLatched = from, true
	}
	s.reportsIn++
	s.avgRTCPSize += (float64(len(b)+28) - s.avgRTCPSize) / 16
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			if s.haveSrc && p.SSRC == s.src.ssrc {
				s.src.lastSRMiddle = middle(p.NTPTime)
				s.src.lastSRArrival = now
			}
			s.reportBlocks(p.Reports, now)
		case *rtcp.ReceiverReport:
			s.reportBlocks(p.Reports, now)
		case *rtcp.Goodbye:
			s.log.Debug("rtp: BYE", "peer", from, "sources", p.Sources)
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest, *rtcp.TransportLayerNack, *rtcp.ReceiverEstimatedMaximumBitrate:
			if s.feedback != nil {
				feedback = append(feedback, p)
			}
		}
	}
}

// reportBlocks takes in the peer's reception reports about our stream and
// derives the round-trip time (RFC 3550 section 6.4.1). mu is held.
func (s *Session) reportBlocks(rs []rtcp.ReceptionReport, now time.Time) {
	for _, r := range rs {
		if r.SSRC != s.ssrc {
			continue
		}
		lost := int64(r.TotalLost & 0xFFFFFF)
		if lost >= 0x800000 {
			lost -= 0x1000000
		}
		s.peerLost, s.peerFrac, s.peerJitter = lost, r.FractionLost, r.Jitter
		if r.LastSenderReport != 0 {
			rtt := int32(middle(ntp(now)) - r.LastSenderReport - r.Delay)
			if rtt >= 0 {
				s.rtt = time.Duration(int64(rtt) * int64(time.Second) / 65536)
			}
		}
	}
}
