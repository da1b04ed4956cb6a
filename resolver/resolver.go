package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// Transport names, as in the transport= URI parameter (RFC 3261 §19.1.1,
// RFC 7118 for WebSocket), with TLS spelled out.
const (
	UDP = "udp"
	TCP = "tcp"
	TLS = "tls"
	WS  = "ws"
	WSS = "wss"
)

// transportInfo is what RFC 3263 and RFC 7118 say about a transport.
type transportInfo struct {
	naptr  string // NAPTR service field
	srv    string // SRV service and protocol labels
	port   uint16 // default port
	secure bool   // usable for a sips: URI
}

var transports = map[string]transportInfo{
	UDP: {"SIP+D2U", "_sip._udp.", 5060, false},
	TCP: {"SIP+D2T", "_sip._tcp.", 5060, false},
	TLS: {"SIPS+D2T", "_sips._tcp.", 5061, true},
	WS:  {"SIP+D2W", "_sip._ws.", 80, false},
	WSS: {"SIPS+D2W", "_sips._ws.", 443, true},
}

// Family says which address records are asked for, and in which order.
type Family int

// Address family preferences.
const (
	PreferIPv4 Family = iota // A records first, then AAAA (the default)
	PreferIPv6               // AAAA records first, then A
	IPv4Only                 // A records only
	IPv6Only                 // AAAA records only
)

// Target is one place to send a request: a transport, a server and an
// address, with the DNS records that led to it.
type Target struct {
	Transport string     `json:"transport"` // udp, tcp, tls, ws or wss
	Host      string     `json:"host"`      // server name (SRV target, or the URI host), no trailing dot
	IP        netip.Addr `json:"ip"`
	Port      uint16     `json:"port"`
	// Records are the DNS records that produced the target, NAPTR first,
	// in presentation format. The slice is shared: do not modify it.
	Records []string `json:"records"`
}

// AddrPort returns the IP address and port of t.
func (t Target) AddrPort() netip.AddrPort { return netip.AddrPortFrom(t.IP, t.Port) }

// String returns e.g. "udp 127.0.0.1:5061 (sip.a.test)".
func (t Target) String() string {
	return t.Transport + " " + t.AddrPort().String() + " (" + t.Host + ")"
}

// Resolver turns SIP URIs into ordered lists of targets (RFC 3263 §4). It
// is safe for concurrent use.
type Resolver struct {
	servers    []string         // upstream servers, host:port; default from /etc/resolv.conf
	timeout    time.Duration    // per query and server; default 2s
	now        func() time.Time // default time.Now
	rng        *rand.Rand       // nil: the global generator
	rngMu      sync.Mutex
	maxEntries int      // per cache; default 10000
	family     Family   // default PreferIPv4
	transports []string // the transports we speak, in order of preference; default udp, tcp

	mu    sync.Mutex // guards rrs and calls
	rrs   map[rrKey]*answer
	calls map[rrKey]*call

	pmu   sync.RWMutex // guards plans
	plans map[planKey]*plan

	dmu  sync.RWMutex // guards down
	down map[downKey]time.Time

	smu    sync.Mutex            // guards substs
	substs map[string]substEntry // ENUM regexp fields, compiled
}

// Option configures a Resolver.
type Option func(*Resolver) error

// WithServers sets the upstream DNS servers, tried in order: "host",
// "host:port" or "[v6]:port" (port 53 when none is given).
func WithServers(servers []string) Option {
	return func(r *Resolver) error {
		if len(servers) == 0 {
			return fmt.Errorf("resolver: no upstream servers given")
		}
		r.servers = r.servers[:0]
		for _, s := range servers {
			a, err := serverAddr(s)
			if err != nil {
				return err
			}
			r.servers = append(r.servers, a)
		}
		return nil
	}
}

func serverAddr(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("resolver: empty server address")
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53"), nil
}

// WithTimeout sets how long to wait for each server's answer (default 2s).
func WithTimeout(d time.Duration) Option {
	return func(r *Resolver) error {
		if d <= 0 {
			return fmt.Errorf("resolver: timeout %v is not positive", d)
		}
		r.timeout = d
		return nil
	}
}

// WithClock sets the clock the caches use (default time.Now); tests pass a
// fake one.
func WithClock(now func() time.Time) Option {
	return func(r *Resolver) error { r.now = now; return nil }
}

// WithRand sets the source of the RFC 2782 weighted order (default: the
// global generator of math/rand/v2); tests pass a seeded one.
func WithRand(src rand.Source) Option {
	return func(r *Resolver) error { r.rng = rand.New(src); return nil }
}

// WithMaxEntries caps each cache (records, and URI results) at n entries
// (default 10000).
func WithMaxEntries(n int) Option {
	return func(r *Resolver) error {
		if n < 1 {
			return fmt.Errorf("resolver: max entries %d is less than 1", n)
		}
		r.maxEntries = n
		return nil
	}
}

// WithFamily sets the address family preference (default PreferIPv4).
func WithFamily(f Family) Option {
	return func(r *Resolver) error {
		if f < PreferIPv4 || f > IPv6Only {
			return fmt.Errorf("resolver: unknown address family %d", f)
		}
		r.family = f
		return nil
	}
}

// WithTransports sets the transports we speak, in order of preference
// (default udp, tcp). Targets for other transports are never returned.
func WithTransports(ts ...string) Option {
	return func(r *Resolver) error {
		if len(ts) == 0 {
			return fmt.Errorf("resolver: no transports given")
		}
		r.transports = nil
		for _, t := range ts {
			t = strings.ToLower(t)
			if _, ok := transports[t]; !ok {
				return fmt.Errorf("resolver: transport %q: %w (known: udp, tcp, tls, ws, wss)", t, ErrUnsupported)
			}
			r.transports = append(r.transports, t)
		}
		return nil
	}
}

// New returns a Resolver. Without WithServers it asks the name servers of
// /etc/resolv.conf (127.0.0.1:53 when that file cannot be read).
func New(opts ...Option) (*Resolver, error) {
	r := &Resolver{
		timeout:    2 * time.Second,
		now:        time.Now,
		maxEntries: 10000,
		transports: []string{UDP, TCP},
		rrs:        map[rrKey]*answer{},
		calls:      map[rrKey]*call{},
		plans:      map[planKey]*plan{},
		down:       map[downKey]time.Time{},
		substs:     map[string]substEntry{},
	}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	if len(r.servers) == 0 {
		r.servers = []string{"127.0.0.1:53"}
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(cc.Servers) > 0 {
			r.servers = r.servers[:0]
			for _, s := range cc.Servers {
				r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
			}
		}
	}
	return r, nil
}

// Servers returns the upstream servers, in the order they are asked.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

func (r *Resolver) speaks(t string) bool {
	for _, s := range r.transports {
		if s == t {
			return true
		}
	}
	return false
}

// planKey identifies what a URI asks for: all URIs with the same key
// resolve to the same targets.
type planKey struct {
	host      string // lower case, no trailing dot
	port      uint16 // 0: none given
	transport string // "": none given
	secure    bool   // sips:
}

var numericRecords = []string{"(numeric IP address in the URI: no DNS look-up)"}

// Resolve returns the targets to try for uri, in order (RFC 3263 §4): the
// caller tries the first, and on a transport error, a timeout or a 503
// moves on to the next, marking the failed one down with MarkDown.
// Targets marked down come last. The error says which name failed and why;
// it wraps ErrNXDomain, ErrTimeout, ErrNoService, ... (see errors.go).
func (r *Resolver) Resolve(ctx context.Context, uri sip.Uri) ([]Target, error) {
	k, err := r.key(&uri)
	if err != nil {
		return nil, err
	}
	if looksNumeric(k.host) {
		ip, err := netip.ParseAddr(k.host)
		if err != nil {
			return nil, fmt.Errorf("resolver: host %q: %w", k.host, err)
		}
		t, port, err := r.defaultTransport(k)
		if err != nil {
			return nil, err
		}
		return []Target{{Transport: t, Host: k.host, IP: ip.Unmap(), Port: port, Records: numericRecords}}, nil
	}
	r.pmu.RLock()
	p := r.plans[k]
	r.pmu.RUnlock()
	if p == nil || !r.now().Before(p.expires) {
		if p, err = r.plan(ctx, k); err != nil {
			return nil, err
		}
		r.storePlan(k, p)
	}
	return r.order(p), nil
}

// key reads what resolution needs from uri: the target host (maddr, else
// the host), port, transport parameter and scheme (RFC 3263 §4.1).
func (r *Resolver) key(uri *sip.Uri) (planKey, error) {
	var k planKey
	switch {
	case uri.Scheme == "" || strings.EqualFold(uri.Scheme, "sip"):
	case strings.EqualFold(uri.Scheme, "sips"):
		k.secure = true
	default:
		return k, fmt.Errorf("resolver: scheme %q: %w", uri.Scheme, ErrUnsupported)
	}
	k.host = uri.Host
	var tp string
	for _, kv := range uri.UriParams {
		switch {
		case strings.EqualFold(kv.K, "maddr") && kv.V != "":
			k.host = kv.V
		case strings.EqualFold(kv.K, "transport"):
			tp = kv.V
		}
	}
	if k.host == "" {
		return k, fmt.Errorf("resolver: URI without a host: %w", ErrUnsupported)
	}
	if k.host[0] == '[' {
		k.host = strings.Trim(k.host, "[]")
	}
	k.host = strings.TrimSuffix(strings.ToLower(k.host), ".")
	if uri.Port < 0 || uri.Port > 65535 {
		return k, fmt.Errorf("resolver: port %d out of range", uri.Port)
	}
	k.port = uint16(uri.Port)
	if tp == "" {
		return k, nil
	}
	// A sips: URI with transport=tcp means TLS over TCP (RFC 3261 §26.2.2).
	switch {
	case strings.EqualFold(tp, UDP) && !k.secure:
		k.transport = UDP
	case strings.EqualFold(tp, TCP) && !k.secure:
		k.transport = TCP
	case strings.EqualFold(tp, TCP) || strings.EqualFold(tp, TLS):
		k.transport = TLS
	case strings.EqualFold(tp, WS) && !k.secure:
		k.transport = WS
	case strings.EqualFold(tp, WS) || strings.EqualFold(tp, WSS):
		k.transport = WSS
	default:
		return k, fmt.Errorf("resolver: %s: transport=%s: %w", uri.Scheme, tp, ErrUnsupported)
	}
	if !r.speaks(k.transport) {
		return k, fmt.Errorf("resolver: transport %s: %w here (we speak %s)", k.transport, ErrUnsupported, strings.Join(r.transports, ", "))
	}
	return k, nil
}

// looksNumeric reports whether host is an IP address rather than a name:
// it has a colon (IPv6) or only digits and dots.
func looksNumeric(host string) bool {
	if strings.IndexByte(host, ':') >= 0 {
		return true
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// defaultTransport picks the transport and port when DNS does not: the
// transport parameter, else UDP for sip: and TLS for sips: (RFC 3263
// §4.1), else the first transport we speak that suits the scheme; the
// URI's port, else the transport's default.
func (r *Resolver) defaultTransport(k planKey) (string, uint16, error) {
	t := k.transport
	if t == "" {
		want := UDP
		if k.secure {
			want = TLS
		}
		if r.speaks(want) {
			t = want
		} else {
			for _, s := range r.transports {
				if !k.secure || transports[s].secure {
					t = s
					break
				}
			}
		}
	}
	if t == "" {
		return "", 0, fmt.Errorf("resolver: sips: needs tls or wss, we speak %s: %w", strings.Join(r.transports, ", "), ErrUnsupported)
	}
	port := k.port
	if port == 0 {
		port = transports[t].port
	}
	return t, port, nil
}

// storePlan caches p until it expires, making room as store does.
func (r *Resolver) storePlan(k planKey, p *plan) {
	now := r.now()
	if !now.Before(p.expires) {
		return
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	makeRoom(r.plans, r.maxEntries, now, func(p *plan) time.Time { return p.expires })
	r.plans[k] = p
}

type downKey struct {
	transport string
	addr      netip.AddrPort
}

// MarkDown records that t failed: for d, Resolve puts it after the targets
// that did not fail (RFC 3263 §4.3). It never drops it, so a caller whose
// every target is down still has something to retry.
func (r *Resolver) MarkDown(t Target, d time.Duration) {
	now := r.now()
	r.dmu.Lock()
	defer r.dmu.Unlock()
	for k, until := range r.down {
		if !now.Before(until) {
			delete(r.down, k)
		}
	}
	r.down[downKey{t.Transport, t.AddrPort()}] = now.Add(d)
}

// isDown reports whether t is marked down. r.dmu is read-locked.
func (r *Resolver) isDown(t *Target, now time.Time) bool {
	until, ok := r.down[downKey{t.Transport, t.AddrPort()}]
	return ok && now.Before(until)
}

// demote moves the targets marked down to the end, keeping the order of
// the others and of themselves.
func (r *Resolver) demote(ts []Target) {
	r.dmu.RLock()
	defer r.dmu.RUnlock()
	if len(r.down) == 0 {
		return
	}
	now := r.now()
	end := len(ts)
	for i := 0; i < end; {
		if !r.isDown(&ts[i], now) {
			i++
			continue
		}
		t := ts[i]
		copy(ts[i:], ts[i+1:])
		ts[len(ts)-1] = t
		end--
	}
}
