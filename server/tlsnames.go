package server

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// pinnedNames answers sipgo's host-name look-ups. The proxy dials a
// domain of another operator over TLS by its SIP domain name, so that
// sipgo sends that name (SNI) and the handshake knows which domain the
// certificate must name (RFC 5922); the address was already chosen
// through NAPTR and SRV (RFC 3263), so the name is pinned to it here and
// the look-up never leaves the process. Any other name is asked of the
// system's name server, as sipgo would by default.
type pinnedNames struct {
	mu   sync.Mutex
	pins map[string]pinned // lower-case domain, no trailing dot
}

type pinned struct {
	ip    netip.Addr
	until time.Time
}

// maxPins bounds the table; pins are renewed by every request.
const maxPins = 10000

func newPinnedNames() *pinnedNames { return &pinnedNames{pins: map[string]pinned{}} }

// pin makes name resolve to ip for the next minute.
func (n *pinnedNames) pin(name string, ip netip.Addr) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.pins) >= maxPins {
		now := time.Now()
		for k, p := range n.pins {
			if now.After(p.until) {
				delete(n.pins, k)
			}
		}
		if len(n.pins) >= maxPins {
			n.pins = map[string]pinned{}
		}
	}
	n.pins[name] = pinned{ip: ip.Unmap(), until: time.Now().Add(time.Minute)}
}

func (n *pinnedNames) lookup(name string) (netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pins[name]
	if !ok || time.Now().After(p.until) {
		return netip.Addr{}, false
	}
	return p.ip, true
}

// resolver is the resolver for sipgo's transport layer: Go's own, with
// every query going to answer instead of the network.
func (n *pinnedNames) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, server string) (net.Conn, error) {
		c, s := net.Pipe()
		go n.answer(s, server)
		return c, nil
	}}
}

// answer reads one query from c, framed as over TCP (a pipe is not a
// packet connection, so Go's resolver frames it so), and writes the
// answer: the pinned address, or what server says.
func (n *pinnedNames) answer(c net.Conn, server string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	q := new(dns.Msg)
	if err := q.Unpack(buf); err != nil || len(q.Question) != 1 {
		return
	}
	res := n.reply(q, server)
	out, err := res.Pack()
	if err != nil {
		return
	}
	binary.BigEndian.PutUint16(l[:], uint16(len(out)))
	c.Write(append(l[:], out...))
}

func (n *pinnedNames) reply(q *dns.Msg, server string) *dns.Msg {
	question := q.Question[0]
	res := new(dns.Msg)
	if ip, ok := n.lookup(question.Name); ok {
		res.SetReply(q)
		res.Authoritative = true
		hdr := dns.RR_Header{Name: question.Name, Class: dns.ClassINET, Rrtype: question.Qtype}
		switch {
		case question.Qtype == dns.TypeA && ip.Is4():
			res.Answer = []dns.RR{&dns.A{Hdr: hdr, A: ip.AsSlice()}}
		case question.Qtype == dns.TypeAAAA && ip.Is6():
			res.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()}}
		}
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	r, _, err := new(dns.Client).ExchangeContext(ctx, q, server)
	if err != nil {
		res.SetRcode(q, dns.RcodeServerFailure)
		return res
	}
	return r
}
