package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/sipcore"
)

// Config is everything one node needs. The zero value of a field means
// its default, written beside it; only Domains is required.
type Config struct {
	// Domains are the SIP domains served here: users are user@domain.
	Domains []string
	// Listen are the SIP listeners, "udp:HOST:PORT", "tcp:HOST:PORT",
	// "tls:HOST:PORT", and for browsers (RFC 7118) "ws:HOST:PORT" and
	// "wss:HOST:PORT"; port 0 picks a free port (the same one for udp
	// and tcp on one host). Default: udp and tcp on 127.0.0.1:5060.
	Listen []string
	// Advertise is the host put in Via and Record-Route; default the
	// listener's address (required when that is 0.0.0.0 or ::).
	Advertise string
	// Store is the location store: "memory" (default) or a Redis URL
	// (redis://, rediss://, redis+sentinel://, redis+cluster://).
	Store string
	// StoreMinReplicas makes a REGISTER wait until this many replicas of
	// the Redis master have its binding (WAIT, for at most
	// StoreReplicaTimeout) before it is answered 200; fewer → 503. 0: no
	// wait (replication is asynchronous: a binding acknowledged just
	// before a master fails can be lost until the device re-registers).
	StoreMinReplicas int
	// StoreReplicaTimeout bounds that wait (default 1 s).
	StoreReplicaTimeout time.Duration
	// Users is the users file written by 'sipfed user add' (default
	// users.txt), or "redis" to keep users in the Store's Redis.
	Users string
	// HTTP is the address of /healthz, /metrics, /debug/pprof and the
	// web phone (/phone/); empty: none. Keep it private.
	HTTP string
	// Web is the address of the web phone alone, for browsers anywhere:
	// HTTPS with TLSCert and TLSKey when set (browsers allow the
	// microphone only on https:// pages and localhost); empty: none.
	Web string
	// Secret is the digest nonce secret shared by every node of a
	// domain; default: kept in Redis when Store is Redis, else random.
	Secret string
	// DigestAlgorithms are the digest algorithms offered, most
	// preferred first. Default MD5, SHA-256.
	DigestAlgorithms []string
	// MD5OnlyAgents are User-Agent prefixes of clients that fail on a
	// SHA-256 challenge. Default auth.DefaultMD5OnlyAgents; set
	// NoMD5OnlyAgents for none.
	MD5OnlyAgents   []string
	NoMD5OnlyAgents bool
	// MinExpires, MaxExpires and DefaultExpires bound registration
	// intervals in seconds (defaults 60, 3600, 3600); MaxContacts bounds
	// the bindings per AOR (default 10; negative: no bound).
	MinExpires, MaxExpires, DefaultExpires, MaxContacts int
	// NodeID names this node in the bindings it writes; default the
	// host name.
	NodeID string
	// DNS are the servers for finding other domains; default
	// /etc/resolv.conf.
	DNS []string
	// TimerC bounds a ringing INVITE branch (RFC 3261 §16.6; default
	// 180 s, at least 1 s). A whole INVITE transaction is bounded at
	// twice TimerC.
	TimerC time.Duration
	// FailoverTimeout is how long to wait for any answer from another
	// domain's server before trying the next (default 5 s, at least
	// 100 ms).
	FailoverTimeout time.Duration
	// ServerHeader is the Server header of the responses the server
	// makes ("sipfed/1.4.0"); empty: none.
	ServerHeader string
	// HideUsers answers a request from another domain for a user who
	// does not exist 480, as for one who is offline, not 404, so that
	// outsiders cannot enumerate users.
	HideUsers bool
	// ENUMSuffixes are the ENUM trees (RFC 6116) a user of ours calling
	// an E.164 number has it looked up in, in turn; nil: e164.arpa. A
	// list holding "none" turns ENUM off (numbers that are no user or
	// alias get 404).
	ENUMSuffixes []string
	// ENUMFallback is the SIP URI (a gateway) a number with no ENUM record
	// is sent to, with the number as its user part when it has none;
	// empty: 404.
	ENUMFallback string
	// TCPMaxConns bounds the connections open at once on each TCP
	// listener (default 2048, Kamailio's tcp_max_connections),
	// TCPMaxPerSource those from one IPv4 address or IPv6 /64 (default
	// 64), and TCPIdleTimeout closes a connection nothing was read from
	// for that long (default 120 s, Kamailio's tcp_connection_lifetime).
	// Negative: no bound. A connection over a limit is closed at once and
	// logged at warn (see sipcore.ConnLimits).
	TCPMaxConns, TCPMaxPerSource int
	TCPIdleTimeout               time.Duration
	// PikeRate is how many datagrams per second one source (an IPv4
	// address or IPv6 /64) may send to the UDP listeners, PikeBurst how
	// many at once above that; a source that goes over is dropped,
	// before parsing, for PikeBlock (Kamailio's pike). Defaults 200/s,
	// twice the rate, 10 s; a negative rate: no limit.
	PikeRate  float64
	PikeBurst int
	PikeBlock time.Duration
	// AuthMaxFailuresIP failed digest authentications from one source
	// within AuthWindow ban it for AuthBanTime; AuthMaxFailuresUser
	// failures for one user, from any sources, put the user under attack
	// for AuthBanTime, when any source that fails for it is banned at
	// once (see auth.Guard). Defaults 10, 30, 60 s, 10 min; negative: no
	// limit.
	AuthMaxFailuresIP, AuthMaxFailuresUser int
	AuthWindow, AuthBanTime                time.Duration
	// TLSCert and TLSKey are the PEM files of the certificate (with its
	// chain) and key of tls: listeners, reread by Server.ReloadTLS. The
	// certificate should name the SIP domains served (RFC 5922: SAN DNS
	// or sip: URI), as other domains check.
	TLSCert, TLSKey string
	// TLSCA is a PEM file of the authorities trusted for other domains'
	// certificates, instead of the system's (a private CA in a lab).
	TLSCA string
	// WSOrigins are the Origins (scheme://host[:port] of a web page)
	// whose browsers may open a ws:/wss: connection; "*" or none: any.
	WSOrigins []string
	// WSHandshakeTimeout bounds the wait for a new WebSocket
	// connection's upgrade request (default 10 s).
	WSHandshakeTimeout time.Duration
	// MediaAddr is the local address of the media bridge between browsers
	// and plain RTP phones (made when a ws: or wss: listener exists):
	// its plain RTP sockets, and its ICE candidates when it is not a
	// wildcard; default the advertised host when it is an IP, else the
	// first listener's. MediaPublic is announced instead (1:1 NAT).
	MediaAddr, MediaPublic string
	// MediaPortMin and MediaPortMax bound the bridge's UDP ports, ICE
	// and RTP (default 40000-49999).
	MediaPortMin, MediaPortMax int
	// MediaTimeout ends a bridged call's media after that long without a
	// packet either way, unless on hold (default 30 s).
	MediaTimeout time.Duration
	// MediaMaxCalls bounds the calls bridged at once (default 1000); a
	// call beyond it gets 503 with Retry-After.
	MediaMaxCalls int
	// FederationTLS sends requests to other domains over TLS only.
	FederationTLS bool
	// Trusted are the networks (a peer domain's proxies, an SBC, our
	// other nodes) that the per-source rate limit and the
	// password-guessing bans never apply to.
	Trusted []netip.Prefix
	// Logger receives the server's logs; default discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.Listen) == 0 {
		c.Listen = []string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"}
	}
	if c.StoreReplicaTimeout <= 0 {
		c.StoreReplicaTimeout = time.Second
	}
	if c.Store == "" {
		c.Store = "memory"
	}
	if c.Users == "" {
		c.Users = "users.txt"
	}
	if len(c.DigestAlgorithms) == 0 {
		c.DigestAlgorithms = []string{"MD5", "SHA-256"}
	}
	if len(c.MD5OnlyAgents) == 0 && !c.NoMD5OnlyAgents {
		c.MD5OnlyAgents = auth.DefaultMD5OnlyAgents
	}
	if c.MinExpires == 0 {
		c.MinExpires = 60
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = 3600
	}
	if c.DefaultExpires == 0 {
		c.DefaultExpires = c.MaxExpires
	}
	switch {
	case c.MaxContacts == 0:
		c.MaxContacts = 10
	case c.MaxContacts < 0:
		c.MaxContacts = 0
	}
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	if c.TimerC == 0 {
		c.TimerC = 180 * time.Second
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = 5 * time.Second
	}
	if c.ENUMSuffixes == nil {
		c.ENUMSuffixes = []string{"e164.arpa"}
	}
	if slices.Contains(c.ENUMSuffixes, "none") {
		c.ENUMSuffixes = []string{}
	}
	if c.PikeRate == 0 {
		c.PikeRate = sipcore.DefaultPikeRate // burst and block: sipcore.NewPike's
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	doms := make([]string, len(c.Domains))
	for i, d := range c.Domains {
		doms[i] = strings.ToLower(strings.TrimSpace(d))
	}
	c.Domains = doms
	return c
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// validate reports the first setting that cannot work, wrapping ErrConfig.
func (c Config) validate() error {
	if len(c.Domains) == 0 {
		return configErr("no domain to serve")
	}
	for _, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, " @:/\r\n\t") {
			return configErr("domain %q is not a domain name", d)
		}
	}
	if c.TimerC < time.Second {
		return configErr("timer C %v is below 1s", c.TimerC)
	}
	if c.FailoverTimeout < 100*time.Millisecond {
		return configErr("failover timeout %v is below 100ms", c.FailoverTimeout)
	}
	if c.MinExpires < 1 || c.MaxExpires < c.MinExpires || c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires {
		return configErr("need 1 <= min-expires (%d) <= default-expires (%d) <= max-expires (%d)", c.MinExpires, c.DefaultExpires, c.MaxExpires)
	}
	if err := auth.CheckAlgorithms(c.DigestAlgorithms); err != nil {
		return configErr("digest algorithms: %v", err)
	}
	for _, sfx := range c.ENUMSuffixes {
		if _, ok := dns.IsDomainName(sfx); !ok || strings.Trim(sfx, ".") == "" || strings.Contains(sfx, "..") || strings.ContainsAny(sfx, " @:/\r\n\t") {
			return configErr("ENUM suffix %q is not a domain name", sfx)
		}
	}
	if c.ENUMFallback != "" {
		if _, err := c.enumFallback(); err != nil {
			return configErr("ENUM fallback %q: %v", c.ENUMFallback, err)
		}
	}
	if c.Users == "redis" && c.Store == "memory" {
		return configErr("users in redis need a Redis store (redis://…)")
	}
	if c.StoreMinReplicas < 0 || c.StoreMinReplicas > 0 && c.Store == "memory" {
		return configErr("store-min-replicas (%d) needs a Redis store and cannot be negative", c.StoreMinReplicas)
	}
	specs, err := c.listenSpecs()
	if err != nil {
		return err
	}
	for _, s := range specs {
		if (s.transport == "tls" || s.transport == "wss") && (c.TLSCert == "" || c.TLSKey == "") {
			return configErr("a %s listener needs a certificate and a key (--tls-cert, --tls-key)", s.transport)
		}
	}
	return nil
}

type listenSpec struct {
	transport, host string
	port            int
}

// listenSpecs parses Listen.
func (c Config) listenSpecs() ([]listenSpec, error) {
	var out []listenSpec
	for _, l := range c.Listen {
		transport, addr, ok := strings.Cut(l, ":")
		transport = strings.ToLower(transport)
		switch transport {
		case "udp", "tcp", "tls", "ws", "wss":
		default:
			ok = false
		}
		if !ok {
			return nil, configErr("listen %q: want udp:, tcp:, tls:, ws: or wss:HOST:PORT", l)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, configErr("listen %q: %v", l, err)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			return nil, configErr("listen %q: bad port", l)
		}
		if c.Advertise == "" {
			ip, err := netip.ParseAddr(host)
			if host == "" || err == nil && ip.IsUnspecified() {
				return nil, configErr("listen %q listens on every address: give an advertised host for Via and Record-Route", l)
			}
		}
		out = append(out, listenSpec{transport, host, n})
	}
	return out, nil
}

// bind opens the listeners, the TCP ones wrapped to enforce limits (and
// log when they are hit). Specs with port 0 on one host share the port
// chosen for the first of them, so that udp and tcp agree (as a SIP
// address without a transport means both); when that port is taken for
// the other transport, it starts again.
func bind(specs []listenSpec, limits sipcore.ConnLimits, log *slog.Logger) ([]socket, error) {
	for attempt := 0; ; attempt++ {
		socks, err := bindOnce(specs, limits, log)
		if err == nil {
			return socks, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt >= 20 || !hasZeroPort(specs) {
			return nil, err
		}
	}
}

func hasZeroPort(specs []listenSpec) bool {
	for _, s := range specs {
		if s.port == 0 {
			return true
		}
	}
	return false
}

func bindOnce(specs []listenSpec, limits sipcore.ConnLimits, log *slog.Logger) ([]socket, error) {
	chosen := map[string]int{} // host → port picked for its port-0 specs
	var socks []socket
	fail := func(err error) ([]socket, error) {
		for _, so := range socks {
			so.close()
		}
		return nil, err
	}
	for _, s := range specs {
		// udp and tcp share a port 0 choice; tls (5061 beside 5060), ws
		// and wss have their own.
		share := s.host
		if s.transport != "udp" && s.transport != "tcp" {
			share += "#" + s.transport
		}
		port := s.port
		if port == 0 {
			port = chosen[share]
		}
		addr := net.JoinHostPort(s.host, strconv.Itoa(port))
		var so socket
		switch s.transport {
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fail(fmt.Errorf("server: %w", err))
			}
			if uc, ok := pc.(*net.UDPConn); ok {
				uc.SetReadBuffer(udpBuffer)
				uc.SetWriteBuffer(udpBuffer)
			}
			so = socket{transport: "udp", pc: pc}
		default:
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fail(fmt.Errorf("server: %w", err))
			}
			lim := sipcore.LimitListener(l, limits, log)
			so = socket{transport: s.transport, l: lim, lim: lim}
		}
		socks = append(socks, so)
		if s.port == 0 && chosen[share] == 0 {
			chosen[share] = int(addrPort(so.addr()).Port())
		}
	}
	return socks, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// enumFallback parses ENUMFallback: a sip: or sips: URI with a host.
func (c Config) enumFallback() (*sip.Uri, error) {
	var u sip.Uri
	if err := sip.ParseUri(c.ENUMFallback, &u); err != nil {
		return nil, err
	}
	if u.Scheme != "sip" && u.Scheme != "sips" || u.Host == "" {
		return nil, errors.New("want a SIP URI with a host, e.g. sip:gw.a.example")
	}
	return &u, nil
}
