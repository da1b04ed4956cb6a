package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// LabServer is a small authoritative DNS server for labs and tests: it
// serves RFC 1035 zone files (NAPTR, SRV, A, AAAA, SOA, NS, CNAME, ...)
// over UDP and TCP. Production domains publish their records in their
// real DNS instead.
type LabServer struct {
	files []string

	mu    sync.RWMutex
	zones []*zone // longest origin first

	udp, tcp *dns.Server
}

// NewLabServer loads the zone files.
func NewLabServer(files ...string) (*LabServer, error) {
	if len(files) == 0 {
		return nil, errors.New("resolver: lab server: no zone files")
	}
	s := &LabServer{files: files}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the zone files again. On an error the zones served so far
// stay in place.
func (s *LabServer) Reload() error {
	var zones []*zone
	seen := map[string]string{}
	for _, f := range s.files {
		z, err := loadZone(f)
		if err != nil {
			return err
		}
		if prev, ok := seen[z.origin]; ok {
			return fmt.Errorf("resolver: zone %s is in both %s and %s", z.origin, prev, f)
		}
		seen[z.origin] = f
		zones = append(zones, z)
	}
	sort.Slice(zones, func(i, j int) bool { return len(zones[i].origin) > len(zones[j].origin) })
	s.mu.Lock()
	s.zones = zones
	s.mu.Unlock()
	return nil
}

// Zones returns the origins served, e.g. "a.test.".
func (s *LabServer) Zones() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var o []string
	for _, z := range s.zones {
		o = append(o, z.origin)
	}
	sort.Strings(o)
	return o
}

// Listen binds addr ("127.0.0.1:5353") for UDP and TCP. Port 0 picks a
// port free for both.
func (s *LabServer) Listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("resolver: lab server: %w", err)
	}
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("resolver: lab server: %w", err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port)))
		if err != nil {
			pc.Close()
			if port == "0" {
				continue
			}
			return fmt.Errorf("resolver: lab server: %w", err)
		}
		s.udp = &dns.Server{PacketConn: pc, Handler: s}
		s.tcp = &dns.Server{Listener: l, Handler: s}
		return nil
	}
	return fmt.Errorf("resolver: lab server: no port free for both UDP and TCP on %s", host)
}

// Addr returns the address bound by Listen.
func (s *LabServer) Addr() string { return s.udp.PacketConn.LocalAddr().String() }

// Serve answers queries until ctx is done, then shuts down.
func (s *LabServer) Serve(ctx context.Context) error {
	if s.udp == nil {
		return errors.New("resolver: lab server: Serve before Listen")
	}
	errs := make(chan error, 2)
	var started sync.WaitGroup
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		go func() { errs <- srv.ActivateAndServe() }()
	}
	started.Wait()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	s.udp.Shutdown()
	s.tcp.Shutdown()
	return err
}

// ServeDNS answers one query from the zones, authoritatively.
func (s *LabServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := s.answer(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer builds the response to req.
func (s *LabServer) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(max(o.UDPSize(), dns.MinMsgSize), false)
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	s.mu.RLock()
	defer s.mu.RUnlock()
	name := strings.ToLower(q.Name)
	z := s.zoneFor(name)
	if z == nil || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		return m
	}
	// Follow CNAMEs inside our zones (RFC 1034 §4.3.2), a few hops at most.
	found := false
	for range 8 {
		var cname *dns.CNAME
		for _, rr := range z.names[name] {
			if t := rr.Header().Rrtype; t == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, rr)
				found = true
			} else if t == dns.TypeCNAME {
				cname = rr.(*dns.CNAME)
			}
		}
		if found || cname == nil {
			break
		}
		m.Answer = append(m.Answer, cname)
		name = strings.ToLower(cname.Target)
		if z = s.zoneFor(name); z == nil {
			return m // the client follows the chain out of our zones
		}
	}
	if !found {
		// NXDOMAIN or NODATA, with the SOA for negative caching (RFC 2308 §3).
		if !z.exists[name] {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = append(m.Ns, z.soa)
		return m
	}
	if q.Qtype == dns.TypeSRV {
		s.addGlue(m)
	}
	return m
}

// addGlue puts the addresses of SRV targets we serve in the additional
// section, as RFC 2782 suggests.
func (s *LabServer) addGlue(m *dns.Msg) {
	for _, rr := range m.Answer {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		target := strings.ToLower(srv.Target)
		if z := s.zoneFor(target); z != nil {
			for _, a := range z.names[target] {
				if t := a.Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
					m.Extra = append(m.Extra, a)
				}
			}
		}
	}
}

// zoneFor returns the zone that holds name, the one with the longest
// origin. s.mu is read-locked.
func (s *LabServer) zoneFor(name string) *zone {
	for _, z := range s.zones {
		if dns.IsSubDomain(z.origin, name) {
			return z
		}
	}
	return nil
}
