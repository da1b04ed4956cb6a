package rtp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/sipfed/sipfed/media/codec/dtmf"
)

// maxPacket is the largest datagram read or written.
const maxPacket = 1500

// Session is one RTP stream and its RTCP over UDP: one m= line of an SDP
// session. One goroutine may read (ReadRTP) while others write.
type Session struct {
	conn      *net.UDPConn
	rtcpConn  *net.UDPConn // nil with rtcp-mux
	log       *slog.Logger
	clockRate uint32
	symmetric bool
	cname     string
	rtcpMin   time.Duration
	bandwidth int // session bandwidth in bit/s, for the RTCP interval
	epoch     time.Time

	// Send side, guarded by wmu.
	wmu        sync.Mutex
	ssrc       uint32
	seq        uint16
	ts         uint32 // timestamp of the next WriteSample
	out        rtp.Packet
	wbuf       [maxPacket]byte
	sent       uint64
	sentOctets uint64
	weSent     bool // sent RTP since our last report
	lastTS     uint32
	lastSend   time.Time

	// Receive side and peer state, guarded by mu.
	mu          sync.Mutex
	remote      netip.AddrPort
	remoteRTCP  netip.AddrPort
	latched     bool
	rtcpLatched bool
	src         source
	haveSrc     bool
	ssrcChanges int
	lastRecv    time.Time
	timeout     time.Duration
	rtt         time.Duration
	peerLost    int64
	peerFrac    uint8
	peerJitter  uint32
	reportsOut  int
	reportsIn   int
	avgRTCPSize float64

	rbuf [maxPacket]byte // used by the ReadRTP goroutine only

	feedback     func(rtcp.Packet) // PLI, FIR and other feedback received (WithFeedback)
	strict       bool              // WithStrictSource
	strayDropped uint64            // packets dropped by strict, mu

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// Option configures a Session.
type Option func(*Session)

// WithRemote sets where RTP and RTCP are sent until symmetric RTP latches.
// An invalid rtcp address means RTP port + 1, or the RTP address itself when
// the session multiplexes RTCP.
func WithRemote(rtpAddr, rtcpAddr netip.AddrPort) Option {
	return func(s *Session) { s.remote, s.remoteRTCP = rtpAddr, rtcpAddr }
}

// WithClockRate sets the RTP clock rate (default 8000).
func WithClockRate(hz uint32) Option { return func(s *Session) { s.clockRate = hz } }

// WithSSRC sets our SSRC (default random).
func WithSSRC(ssrc uint32) Option { return func(s *Session) { s.ssrc = ssrc } }

// WithCNAME sets the RTCP SDES CNAME (default "sipfed@" and the local address).
func WithCNAME(cname string) Option { return func(s *Session) { s.cname = cname } }

// WithSymmetric turns symmetric RTP on or off (default on): the session
// sends to the address the peer's RTP (and RTCP) really comes from, which is
// what gets media through NAT (https://www.rfc-editor.org/rfc/rfc4961).
func WithSymmetric(on bool) Option { return func(s *Session) { s.symmetric = on } }

// WithReceiveTimeout makes ReadRTP fail with ErrTimeout after d without RTP
// (default 0: no timeout).
func WithReceiveTimeout(d time.Duration) Option { return func(s *Session) { s.timeout = d } }

// WithRTCPInterval sets the minimum RTCP interval (default 5 s, RFC 3550
// section 6.2); the actual interval is randomised around it.
func WithRTCPInterval(d time.Duration) Option { return func(s *Session) { s.rtcpMin = d } }

// WithBandwidth sets the session bandwidth in bit/s that RTCP takes 5% of
// (default 80000, G.711 with headers).
func WithBandwidth(bps int) Option { return func(s *Session) { s.bandwidth = bps } }

// WithStrictSource keeps symmetric RTP latched to the first source
// until SetRemote: packets (RTP and RTCP) from any other address are
// dropped, and a new SSRC from a new address does not move the latch. A
// relay that forwards what it receives wants this: without it, one
// spoofed packet with a new SSRC redirects the stream to its sender.
func WithStrictSource(on bool) Option { return func(s *Session) { s.strict = on } }

// WithFeedback calls f, from the goroutine reading RTCP, for each
// payload-specific or transport feedback message received (PLI, FIR,
// NACK, REMB): a relay passes them on to the stream's sender.
func WithFeedback(f func(rtcp.Packet)) Option { return func(s *Session) { s.feedback = f } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Session) { s.log = l } }

// NewSession starts a session on conn (RTP) and rtcpConn (RTCP; nil for
// rtcp-mux), for example from PortAllocator.Listen. The session owns both
// sockets and closes them in Close.
func NewSession(conn, rtcpConn *net.UDPConn, opts ...Option) *Session {
	s := &Session{
		conn:      conn,
		rtcpConn:  rtcpConn,
		clockRate: 8000,
		symmetric: true,
		rtcpMin:   5 * time.Second,
		bandwidth: 80000,
		epoch:     time.Now(),
		done:      make(chan struct{}),
	}
	var r [10]byte
	_, _ = rand.Read(r[:])
	s.ssrc = binary.BigEndian.Uint32(r[0:])
	s.seq = binary.BigEndian.Uint16(r[4:])
	s.ts = binary.BigEndian.Uint32(r[6:])
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cname == "" {
		s.cname = "sipfed@" + conn.LocalAddr().String()
	}
	s.avgRTCPSize = 28 + 52 // UDP/IP headers and a small RR with SDES
	s.fixRTCPRemote()
	s.wg.Add(1)
	go s.reportLoop()
	if rtcpConn != nil {
		s.wg.Add(1)
		go s.readRTCPLoop()
	}
	return s
}

func (s *Session) fixRTCPRemote() {
	if s.remoteRTCP.IsValid() || !s.remote.IsValid() {
		return
	}
	if s.rtcpConn == nil {
		s.remoteRTCP = s.remote
	} else {
		s.remoteRTCP = netip.AddrPortFrom(s.remote.Addr(), s.remote.Port()+1)
	}
}

// SetRemote changes where media goes, for example after a re-INVITE, and
// lets symmetric RTP latch again.
func (s *Session) SetRemote(rtpAddr, rtcpAddr netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remote, s.remoteRTCP = rtpAddr, rtcpAddr
	s.latched, s.rtcpLatched = false, false
	s.fixRTCPRemote()
}

// SetReceiveTimeout changes the receive timeout; 0 turns it off (on hold).
func (s *Session) SetReceiveTimeout(d time.Duration) {
	s.mu.Lock()
	s.timeout = d
	s.lastRecv = time.Now()
	s.mu.Unlock()
	// A ReadRTP waiting now waits under the new rule.
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	s.conn.SetReadDeadline(deadline)
}

// LocalAddr returns the RTP socket's address.
func (s *Session) LocalAddr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// LocalRTCPAddr returns the RTCP socket's address (the RTP one with rtcp-mux).
func (s *Session) LocalRTCPAddr() netip.AddrPort {
	if s.rtcpConn == nil {
		return s.LocalAddr()
	}
	return s.rtcpConn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// SSRC returns our SSRC.
func (s *Session) SSRC() uint32 { return s.ssrc }

// ClockRate returns the RTP clock rate.
func (s *Session) ClockRate() uint32 { return s.clockRate }

// Timestamp returns the RTP timestamp WriteSample will use next.
func (s *Session) Timestamp() uint32 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ts
}

// WriteSample sends payload as the next packet of our stream and then
// advances the timestamp by samples (160 for 20 ms at 8 kHz). marker starts
// a talkspurt or ends a video frame.
func (s *Session) WriteSample(pt uint8, payload []byte, samples uint32, marker bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := s.writeLocked(pt, marker, s.ts, payload)
	s.ts += samples
	return err
}

// WritePayload sends payload with our SSRC and next sequence number and
// the given timestamp, leaving the running timestamp alone; Advance moves it.
func (s *Session) WritePayload(pt uint8, marker bool, ts uint32, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(pt, marker, ts, payload)
}

// Advance moves the running timestamp on by samples.
func (s *Session) Advance(samples uint32) {
	s.wmu.Lock()
	s.ts += samples
	s.wmu.Unlock()
}

// WriteRTP sends p as it is apart from its SSRC, which becomes ours: a
// relay keeps its own sequence numbers and timestamps continuous.
func (s *Session) WriteRTP(p *rtp.Packet) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	p.SSRC = s.ssrc
	return s.send(p)
}

func (s *Session) writeLocked(pt uint8, marker bool, ts uint32, payload []byte) error {
	s.out.Header = rtp.Header{
		Version:        2,
		PayloadType:    pt,
		Marker:         marker,
		SequenceNumber: s.seq,
		Timestamp:      ts,
		SSRC:           s.ssrc,
		CSRC:           s.out.CSRC[:0],
		Extensions:     s.out.Extensions[:0],
	}
	s.out.Payload = payload
	s.seq++
	return s.send(&s.out)
}

// send marshals and sends p; wmu is held.
func (s *Session) send(p *rtp.Packet) error {
	n, err := p.MarshalTo(s.wbuf[:])
	if err != nil {
		return fmt.Errorf("rtp: marshal: %w", err)
	}
	s.mu.Lock()
	to := s.remote
	s.mu.Unlock()
	if !to.IsValid() {
		return ErrNoRemote
	}
	if _, err := s.conn.WriteToUDPAddrPort(s.wbuf[:n], to); err != nil {
		if s.isClosed() {
			return ErrClosed
		}
		return fmt.Errorf("rtp: send: %w", err)
	}
	s.sent++
	s.sentOctets += uint64(len(p.Payload))
	s.weSent = true
	s.lastTS = p.Timestamp
	s.lastSend = time.Now()
	return nil
}

// WriteDTMF sends one digit as RFC 4733 telephone events with payload type
// pt, one packet per interval and then the end packet three times, and moves
// the running timestamp past the event.
// It blocks for the digit's duration; the caller sends no audio meanwhile.
func (s *Session) WriteDTMF(ctx context.Context, pt uint8, digit rune, d, interval time.Duration) error {
	ps, err := dtmf.Packets(digit, d, s.clockRate, interval)
	if err != nil {
		return err
	}
	ts := s.Timestamp()
	var b [4]byte
	t := time.NewTicker(interval)
	defer t.Stop()
	for i, p := range ps {
		if i > 0 && !ps[i-1].Event.End { // the end packets go back to back
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.done:
				return ErrClosed
			case <-t.C:
			}
		}
		if err := s.WritePayload(pt, p.Marker, ts, p.Event.Marshal(b[:0])); err != nil {
			return err
		}
	}
	s.Advance(uint32(ps[len(ps)-1].Event.Duration))
	return nil
}

// ReadRTP waits for the next RTP packet and unmarshals it into p. p.Payload
// points into the session's buffer and is valid until the next ReadRTP. With
// rtcp-mux, RTCP arriving meanwhile is handled here, so a session that only
// sends must still keep a goroutine in ReadRTP to learn its peer's reports.
// Only one goroutine may call ReadRTP.
func (s *Session) ReadRTP(p *rtp.Packet) error {
	for {
		s.mu.Lock()
		timeout, last := s.timeout, s.lastRecv
		s.mu.Unlock()
		var deadline time.Time
		if timeout > 0 {
			if last.IsZero() {
				last = time.Now()
				s.mu.Lock()
				s.lastRecv = last
				s.mu.Unlock()
			}
			deadline = last.Add(timeout)
		}
		if err := s.conn.SetReadDeadline(deadline); err != nil {
			return s.readErr(err)
		}
		n, from, err := s.conn.ReadFromUDPAddrPort(s.rbuf[:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.mu.Lock()
				timeout, last := s.timeout, s.lastRecv
				s.mu.Unlock()
				if timeout == 0 || time.Since(last) < timeout {
					continue // the timeout changed meanwhile (SetReceiveTimeout)
				}
				return ErrTimeout
			}
			return s.readErr(err)
		}
		b := s.rbuf[:n]
		if n >= 2 && b[1] >= 192 && b[1] <= 223 {
			// RTCP on the RTP port: RFC 5761 section 4.
			s.handleRTCP(b, from)
			continue
		}
		if err := p.Unmarshal(b); err != nil || p.Version != 2 {
			s.log.Debug("rtp: dropping malformed packet", "peer", from, "error", err)
			continue
		}
		if s.receive(p, from) {
			return nil
		}
	}
}

func (s *Session) readErr(err error) error {
	if s.isClosed() {
		return ErrClosed
	}
	return fmt.Errorf("rtp: read: %w", err)
}

// receive updates reception state for p from addr and reports whether p is
// to be passed on.
func (s *Session) receive(p *rtp.Packet, from netip.AddrPort) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.strict && s.latched && from != s.remote {
		s.strayDropped++
		return false // not the source we latched to: an injection, or a hijack attempt
	}
	if !s.haveSrc || p.SSRC != s.src.ssrc {
		if s.haveSrc {
			s.ssrcChanges++
			s.log.Debug("rtp: SSRC changed", "old", s.src.ssrc, "new", p.SSRC, "peer", from)
			if from != s.remote && s.symmetric && !s.strict {
				s.latched = false // a new source from a new place
			}
		}
		s.src.init(p.SSRC, p.SequenceNumber)
		s.haveSrc = true
	}
	if s.symmetric && !s.latched {
		if from != s.remote {
			s.log.Debug("rtp: latching to source", "peer", from, "signalled", s.remote)
		}
		s.remote, s.latched = from, true
		if s.rtcpConn == nil {
			s.remoteRTCP, s.rtcpLatched = from, true
		}
	}
	if !s.src.update(p.SequenceNumber) {
		return false
	}
	s.src.octets += uint64(len(p.Payload))
	s.src.updateJitter(s.arrival(now), p.Timestamp)
	s.lastRecv = now
	return true
}

// arrival converts a wall-clock instant to the RTP clock (RFC 3550 A.8).
func (s *Session) arrival(t time.Time) uint32 {
	us := uint64(t.Sub(s.epoch) / time.Microsecond)
	return uint32(us * uint64(s.clockRate) / 1e6)
}

func (s *Session) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stats returns a snapshot of the counters.
func (s *Session) Stats() Stats {
	s.wmu.Lock()
	st := Stats{SSRC: s.ssrc, PacketsSent: s.sent, OctetsSent: s.sentOctets}
	s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	st.RemoteAddr = s.remote
	st.RTT = s.rtt
	st.RemotePacketsLost = s.peerLost
	st.RemoteFractionLost = float64(s.peerFrac) / 256
	st.RemoteJitter = s.units(s.peerJitter)
	st.SSRCChanges = s.ssrcChanges
	st.StrayDropped = s.strayDropped
	st.ReportsSent, st.ReportsReceived = s.reportsOut, s.reportsIn
	if s.haveSrc {
		st.RemoteSSRC = s.src.ssrc
		st.PacketsReceived = s.src.received
		st.OctetsReceived = s.src.octets
		st.PacketsLost = s.src.lost()
		st.FractionLost = float64(s.src.fraction) / 256
		st.Jitter = s.units(uint32(s.src.jitter))
	}
	return st
}

func (s *Session) units(ts uint32) time.Duration {
	return time.Duration(uint64(ts) * uint64(time.Second) / uint64(s.clockRate))
}

// Close sends an RTCP BYE, stops the session and closes its sockets.
func (s *Session) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.sendReport(true)
		close(s.done)
		err = s.conn.Close()
		if s.rtcpConn != nil {
			if e := s.rtcpConn.Close(); err == nil {
				err = e
			}
		}
		s.wg.Wait()
	})
	return err
}
