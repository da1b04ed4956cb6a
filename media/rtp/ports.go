package rtp

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
)

// PortAllocator hands out UDP sockets for RTP from a port range: an even
// port for RTP and, without rtcp-mux, the next odd one for RTCP
// (https://www.rfc-editor.org/rfc/rfc3550#section-11). The operating system
// is the only record of which ports are in use: closing the sockets gives
// the ports back.
type PortAllocator struct {
	ip       netip.Addr
	min, max int // even min; max is the last usable RTCP port

	mu   sync.Mutex
	next int
}

// NewPortAllocator returns an allocator for ports min to max on ip. With min
// and max both 0 the system picks ports (not necessarily adjacent).
func NewPortAllocator(ip netip.Addr, min, max int) (*PortAllocator, error) {
	if min == 0 && max == 0 {
		return &PortAllocator{ip: ip}, nil
	}
	if min%2 == 1 {
		min++
	}
	if min <= 0 || max > 65535 || max < min+1 {
		return nil, fmt.Errorf("rtp: bad port range %d-%d", min, max)
	}
	// Start at a random pair: ports handed out in order from the bottom
	// of the range are easy to guess for someone spraying RTP at them.
	next := min
	if pairs := (max - min + 1) / 2; pairs > 1 {
		next += 2 * rand.IntN(pairs)
	}
	if next+1 > max {
		next = min
	}
	return &PortAllocator{ip: ip, min: min, max: max, next: next}, nil
}

// Listen binds a socket for RTP and, unless rtcpMux, one for RTCP on the
// port after it. rtcp is nil with rtcpMux.
func (a *PortAllocator) Listen(rtcpMux bool) (rtp, rtcp *net.UDPConn, err error) {
	if a.min == 0 {
		return a.listenAny(rtcpMux)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := (a.max - a.min + 1) / 2
	for range n {
		port := a.next
		a.next += 2
		if a.next+1 > a.max {
			a.next = a.min
		}
		rtp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.ip, uint16(port))))
		if err != nil {
			continue
		}
		if rtcpMux {
			return rtp, nil, nil
		}
		rtcp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.ip, uint16(port+1))))
		if err != nil {
			rtp.Close()
			continue
		}
		return rtp, rtcp, nil
	}
	return nil, nil, fmt.Errorf("%w %d-%d on %s", ErrNoPorts, a.min, a.max, a.ip)
}

func (a *PortAllocator) listenAny(rtcpMux bool) (rtp, rtcp *net.UDPConn, err error) {
	addr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.ip, 0))
	if rtp, err = net.ListenUDP("udp", addr); err != nil {
		return nil, nil, fmt.Errorf("rtp: listen: %w", err)
	}
	if rtcpMux {
		return rtp, nil, nil
	}
	if rtcp, err = net.ListenUDP("udp", addr); err != nil {
		rtp.Close()
		return nil, nil, fmt.Errorf("rtp: listen: %w", err)
	}
	return rtp, rtcp, nil
}
