package server

import (
	"errors"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/sipcore"
)

// newGuard returns the guard against password guessing, or nil when both
// of its limits are off.
func (s *Server) newGuard() *auth.Guard {
	c := s.cfg
	if c.AuthMaxFailuresIP < 0 && c.AuthMaxFailuresUser < 0 {
		return nil
	}
	return auth.NewGuard(auth.GuardConfig{MaxFailuresIP: c.AuthMaxFailuresIP, MaxFailuresUser: c.AuthMaxFailuresUser,
		Window: c.AuthWindow, BanTime: c.AuthBanTime, Logger: s.log, Trusted: s.trusted})
}

// trusted reports whether ip is in Config.Trusted.
func (s *Server) trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.cfg.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// sources makes the per-source admission check shared by every
// transport: trusted networks pass, banned sources and sources over the
// pike rate do not. It returns the pike (nil when off) for its counters.
func (s *Server) sources(guard *auth.Guard) (func(netip.Addr) bool, *sipcore.Pike) {
	var pike *sipcore.Pike
	if s.cfg.PikeRate > 0 {
		pike = sipcore.NewPike(sipcore.PikeConfig{Rate: s.cfg.PikeRate, Burst: s.cfg.PikeBurst, Block: s.cfg.PikeBlock, Logger: s.log})
	}
	return func(ip netip.Addr) bool {
		if len(s.cfg.Trusted) > 0 && s.trusted(ip) {
			return true
		}
		if guard != nil && guard.Refuse(ip) {
			return false
		}
		return pike == nil || pike.Allow(ip)
	}, pike
}

// errSourceRefused ends a TCP connection whose source is banned or over
// its rate: a stream cannot lose bytes without losing its framing.
var errSourceRefused = errors.New("server: source banned or over its rate limit")

// tcpFilter is sipgo's read filter for connections: a banned source, or
// one over its rate (counted per read, several messages at most), has its
// connection closed. UDP is filtered before sipgo (filterUDP).
func tcpFilter(allow func(netip.Addr) bool) sip.TransportReadFilter {
	return func(props sip.TransportReadProps, data []byte) ([]byte, error) {
		if props.Transport == "UDP" || props.Transport == "udp" {
			return data, nil
		}
		ap, err := netip.ParseAddrPort(props.RemoteAddr.String())
		if err == nil && !allow(ap.Addr()) {
			return nil, errSourceRefused
		}
		return data, nil
	}
}

// filterUDP puts a sipcore.PacketConn between each UDP socket and sipgo:
// datagrams from sources that allow refuses are dropped before parsing,
// and sipgo's per-source state is bounded. It registers the counters of
// both limits with s.reg.
func (s *Server) filterUDP(allow func(netip.Addr) bool, pike *sipcore.Pike, guard *auth.Guard) {
	// A source's pool entry must outlive the longest INVITE and the 2xx
	// retransmissions after it (see sipcore.PacketConnConfig.SourceTTL).
	ttl := max(sipcore.DefaultSourceTTL, 2*s.cfg.TimerC+64*sip.T1+time.Minute)
	pool := s.ua.TransportLayer().Pool("udp")
	for i, so := range s.socks {
		if so.transport == "udp" {
			s.socks[i].filter = sipcore.NewPacketConn(so.pc, sipcore.PacketConnConfig{Allow: allow, Pool: pool, SourceTTL: ttl, Intercept: s.fastReg.intercept(so.pc)})
		}
	}

	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	zero := func() uint64 { return 0 }
	dropped, blocks := zero, zero
	if pike != nil {
		dropped, blocks = pike.Dropped, pike.Blocks
	}
	failures, bans, refused := zero, zero, zero
	if guard != nil {
		failures, bans, refused = guard.Failures, guard.Bans, guard.Refused
	}
	sumUDP := func(f func(*sipcore.PacketConn) uint64) func() uint64 {
		return func() uint64 {
			var n uint64
			for _, so := range s.socks {
				if so.filter != nil {
					n += f(so.filter)
				}
			}
			return n
		}
	}
	s.reg.MustRegister(
		counter("sipfed_udp_sources_evicted_total", "Per-source records of sipgo's UDP transport removed after the source went quiet.", sumUDP((*sipcore.PacketConn).Evicted)),
		counter("sipfed_udp_read_loop_restarts_total", "Restarts of sipgo's UDP read loop to free its per-source records (every 100,000 new sources); each drops every source's record.", sumUDP((*sipcore.PacketConn).Rotations)),
		counter("sipfed_pike_dropped_total", "UDP datagrams dropped before parsing because their source was over its rate (--pike-rate).", dropped),
		counter("sipfed_pike_blocks_total", "Times a source was blocked for going over its rate.", blocks),
		counter("sipfed_auth_failures_total", "Failed digest authentications (wrong response or unknown user).", failures),
		counter("sipfed_auth_bans_total", "Sources banned for failing to authenticate too often.", bans),
		counter("sipfed_auth_refused_total", "Requests refused because their source was banned (UDP: dropped before parsing; TCP: 403).", refused),
	)
}
