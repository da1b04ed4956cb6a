// Package bridge joins a browser's WebRTC media (ICE, DTLS-SRTP, BUNDLE,
// rtcp-mux) to a plain RTP endpoint's (RTP/AVP): one pion PeerConnection
// for the browser leg, one plain RTP socket pair per stream for the SIP
// leg. It never transcodes: codecs are intersected by name, payload types
// are mapped, sequence numbers and timestamps stay continuous across the
// source's SSRC changes, RTCP is terminated on each side and picture loss
// requests are passed across. The proxy calls it (proxy.MediaAnchor) only
// when the two sides of a call disagree; browser to browser, and phone to
// phone, media goes end to end.
package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/sipfed/sipfed/media/rtp"
	"github.com/sipfed/sipfed/media/sdp"
)

// Config is the bridge's network setting.
type Config struct {
	// Addr is the local address of the plain RTP sockets and the one
	// written in their SDP (default 127.0.0.1). ICE gathers on every
	// interface (with loopback when Addr is a loopback address).
	Addr netip.Addr
	// Public, when set, is the address announced instead of Addr: in the
	// plain SDP and as the ICE host candidate (a 1:1 NAT, as in a cloud).
	Public netip.Addr
	// PortMin and PortMax bound the UDP ports of ICE and of the plain RTP
	// sockets (default 40000-49999).
	PortMin, PortMax int
	// MediaTimeout ends a bridged call's media when neither side has sent
	// a packet for that long, unless the call is on hold, and when the
	// browser has stopped answering ICE consent checks for that long (it
	// vanished); default 30 s.
	MediaTimeout time.Duration
	// HoldTimeout ends a call on hold for that long (default 1 h): a
	// phone that put the browser on hold and vanished would otherwise
	// keep its ports for ever, as the browser keeps answering ICE.
	HoldTimeout time.Duration
	// MaxSessions bounds the sessions open at once (default 1000: four
	// UDP ports and a few goroutines each); Open fails beyond it, and the
	// proxy answers 503.
	MaxSessions int
	// GatherTimeout bounds the wait for ICE candidates before an SDP is
	// sent (JsSIP and SIP.js do not trickle; neither do we): default 3 s.
	GatherTimeout time.Duration
	Logger        *slog.Logger
}

// ErrNoCommonCodec is wrapped by the errors of an offer or answer that
// leaves no codec both sides have (the proxy answers 488).
var ErrNoCommonCodec = sdp.ErrNoCommonCodec

// ErrBusy is returned by Open when MaxSessions are open.
var ErrBusy = errors.New("bridge: too many calls bridged at once")

// Bridge makes sessions. Safe for concurrent use.
type Bridge struct {
	cfg   Config
	ports *rtp.PortAllocator
	se    webrtc.SettingEngine
	log   *slog.Logger

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool

	forwarded atomic.Uint64
}

// New returns a bridge for cfg.
func New(cfg Config) (*Bridge, error) {
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if !cfg.Public.IsValid() {
		cfg.Public = cfg.Addr
	}
	if cfg.PortMin == 0 && cfg.PortMax == 0 {
		cfg.PortMin, cfg.PortMax = 40000, 49999
	}
	if cfg.PortMin < 1024 || cfg.PortMax > 65535 || cfg.PortMax < cfg.PortMin+3 {
		return nil, fmt.Errorf("bridge: bad port range %d-%d", cfg.PortMin, cfg.PortMax)
	}
	if cfg.MediaTimeout == 0 {
		cfg.MediaTimeout = 30 * time.Second
	}
	if cfg.HoldTimeout == 0 {
		cfg.HoldTimeout = time.Hour
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.GatherTimeout == 0 {
		cfg.GatherTimeout = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ports, err := rtp.NewPortAllocator(cfg.Addr, cfg.PortMin, cfg.PortMax)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	b := &Bridge{cfg: cfg, ports: ports, log: cfg.Logger, sessions: map[*Session]struct{}{}}
	b.se.SetEphemeralUDPPortRange(uint16(cfg.PortMin), uint16(cfg.PortMax))
	b.se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// A browser that vanishes (no BYE) stops answering ICE consent
	// checks: its leg fails after the media timeout, which ends the
	// session although the plain side still sends.
	b.se.SetICETimeouts(min(5*time.Second, cfg.MediaTimeout/2), cfg.MediaTimeout, 2*time.Second)
	if cfg.Addr.IsLoopback() {
		b.se.SetIncludeLoopbackCandidate(true)
	}
	if cfg.Public != cfg.Addr {
		if err := b.se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: []string{cfg.Public.String()}, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}); err != nil {
			return nil, fmt.Errorf("bridge: public address: %w", err)
		}
	}
	if !cfg.Addr.IsUnspecified() && !cfg.Addr.IsLoopback() {
		keep := net.IP(cfg.Addr.AsSlice())
		b.se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(keep) })
	}
	return b, nil
}

// Stats is what the bridge has done.
type Stats struct {
	Sessions  int    // open now
	Forwarded uint64 // RTP packets passed across, both ways, since start
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Sessions: len(b.sessions), Forwarded: b.forwarded.Load()}
}

// Close ends every session.
func (b *Bridge) Close() {
	b.mu.Lock()
	b.closed = true
	var all []*Session
	for s := range b.sessions {
		all = append(all, s)
	}
	b.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
}

// Open starts a session for the call with Call-ID callID. Nothing is
// allocated until its first Offer.
func (b *Bridge) Open(callID string) (*Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("bridge: closed")
	}
	if len(b.sessions) >= b.cfg.MaxSessions {
		return nil, fmt.Errorf("%w (%d)", ErrBusy, b.cfg.MaxSessions)
	}
	s := &Session{b: b, callID: callID, done: make(chan struct{}), log: b.log.With("call_id", callID)}
	b.sessions[s] = struct{}{}
	return s, nil
}

func (b *Bridge) forget(s *Session) {
	b.mu.Lock()
	delete(b.sessions, s)
	b.mu.Unlock()
}

// newAPI makes a pion API whose media engine has exactly codecs (with
// their payload types), for one PeerConnection.
func (b *Bridge) newAPI(codecs []sdp.Codec, kinds map[string]bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range codecs {
		kind, typ := "audio", webrtc.RTPCodecTypeAudio
		if isVideo(c) {
			kind, typ = "video", webrtc.RTPCodecTypeVideo
		}
		if !kinds[kind] {
			continue
		}
		ch := uint16(c.Channels)
		if kind == "audio" && ch == 0 {
			ch = 1
		}
		p := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: kind + "/" + c.Name, ClockRate: c.ClockRate, Channels: ch, SDPFmtpLine: c.Fmtp},
			PayloadType:        webrtc.PayloadType(c.PayloadType),
		}
		for _, fb := range c.Feedback {
			t, param, _ := strings.Cut(fb, " ")
			p.RTCPFeedback = append(p.RTCPFeedback, webrtc.RTCPFeedback{Type: t, Parameter: param})
		}
		if err := m.RegisterCodec(p, typ); err != nil {
			return nil, fmt.Errorf("bridge: codec %s: %w", c.Name, err)
		}
	}
	// NACK (resend what the browser lost, ask it for what we lost) and
	// RTCP sender and receiver reports: RTCP ends here, each side gets
	// its own. Not pion's stats and transport-wide congestion control
	// interceptors: they cost allocations on every packet and the bridge
	// neither reads statistics nor adapts a bitrate it does not encode.
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(b.se), webrtc.WithInterceptorRegistry(ir)), nil
}
