package rtp

import (
	"net/netip"
	"time"
)

// Stats is a snapshot of a session's counters.
type Stats struct {
	SSRC       uint32 // ours
	RemoteSSRC uint32 // the source we receive from now
	RemoteAddr netip.AddrPort

	PacketsSent, OctetsSent         uint64 // octets of payload, as in an SR
	PacketsReceived, OctetsReceived uint64

	// PacketsLost is the cumulative number of packets lost from the current
	// source: expected minus received (RFC 3550 A.3); it can be negative
	// with duplicates.
	PacketsLost int64
	// FractionLost is the fraction lost in the last interval between our
	// reports, 0 to 1 (RFC 3550 section 6.4.1).
	FractionLost float64
	// Jitter is the interarrival jitter of RFC 3550 A.8.
	Jitter time.Duration

	// RTT is the round-trip time from the last report block about us that
	// had LSR and DLSR (RFC 3550 section 6.4.1); 0 until one came.
	RTT time.Duration
	// RemotePacketsLost, RemoteFractionLost and RemoteJitter are what the
	// peer last reported about our stream.
	RemotePacketsLost  int64
	RemoteFractionLost float64
	RemoteJitter       time.Duration

	SSRCChanges int
	// StrayDropped counts packets dropped because they came from another
	// address than the latched source (WithStrictSource).
	StrayDropped                 uint64
	ReportsSent, ReportsReceived int
}

const (
	maxDropout  = 3000 // RFC 3550 A.1
	maxMisorder = 100
	seqMod      = 1 << 16
)

// source is the reception state of one remote SSRC (RFC 3550 A.1, A.3, A.8).
type source struct {
	ssrc          uint32
	maxSeq        uint16
	cycles        uint32
	baseSeq       uint32
	badSeq        uint32
	received      uint64
	octets        uint64
	expectedPrior uint64
	receivedPrior uint64
	fraction      uint8
	transit       int64
	haveTransit   bool
	lastTS        uint32
	jitter        float64 // timestamp units
	lastSRMiddle  uint32  // middle 32 bits of the NTP time in its last SR
	lastSRArrival time.Time
}

func (s *source) init(ssrc uint32, seq uint16) {
	*s = source{ssrc: ssrc, maxSeq: seq, baseSeq: uint32(seq), badSeq: seqMod + 1}
}

// update applies RFC 3550 A.1 to a packet's sequence number. It returns
// false for a packet to ignore while a jump is being confirmed.
func (s *source) update(seq uint16) bool {
	udelta := seq - s.maxSeq
	switch {
	case udelta < maxDropout:
		if seq < s.maxSeq {
			s.cycles += seqMod
		}
		s.maxSeq = seq
	case udelta <= seqMod-maxMisorder:
		if uint32(seq) != s.badSeq {
			s.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return false
		}
		// Two sequential packets after a jump: the source restarted.
		s.init(s.ssrc, seq)
	default:
		// duplicate or reordered
	}
	s.received++
	return true
}

// updateJitter applies RFC 3550 A.8 with arrival in timestamp units. Packets
// that share the previous timestamp (video frames, telephone-event
// retransmissions) are not new samples of the media clock and are skipped.
func (s *source) updateJitter(arrival, ts uint32) {
	transit := int64(int32(arrival - ts))
	if s.haveTransit && ts == s.lastTS {
		return
	}
	if s.haveTransit {
		d := transit - s.transit
		if d < 0 {
			d = -d
		}
		s.jitter += (float64(d) - s.jitter) / 16
	}
	s.haveTransit, s.transit, s.lastTS = true, transit, ts
}

func (s *source) expected() uint64 {
	return uint64(s.cycles) + uint64(s.maxSeq) - uint64(s.baseSeq) + 1
}

func (s *source) lost() int64 { return int64(s.expected()) - int64(s.received) }

// interval computes the fraction lost since the previous call (RFC 3550
// A.3) and starts a new interval.
func (s *source) interval() uint8 {
	exp := s.expected()
	expInt := exp - s.expectedPrior
	recInt := s.received - s.receivedPrior
	s.expectedPrior, s.receivedPrior = exp, s.received
	lostInt := int64(expInt) - int64(recInt)
	if expInt == 0 || lostInt <= 0 {
		s.fraction = 0
	} else {
		s.fraction = uint8((lostInt << 8) / int64(expInt))
	}
	return s.fraction
}
