package endpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/media/rtp"
	"github.com/sipfed/sipfed/media/sdp"
	"github.com/sipfed/sipfed/resolver"
)

// Config is one account and what the phone does with calls.
type Config struct {
	AOR      string // user@domain
	Password string
	// Proxy is the outbound proxy, host:port; empty: the AOR's domain's
	// proxy, found through DNS (RFC 3263) with DNS as the servers.
	Proxy string
	DNS   []string
	// Listen is the local SIP address, ip:port (port 0: any); default
	// 127.0.0.1:0. RTP uses the same IP.
	Listen    string
	Transport string // "udp" (default) or "tcp"
	// Codecs are the codecs offered or accepted, in order: "pcmu",
	// "pcma", "opus" (audio), "vp8" (video). Default: opus when Play is an
	// Ogg file (Opus is sent as the file has it: there is no encoder
	// here), else pcmu and pcma; vp8 when Video or RecordVideo is set.
	// Echo takes all of them.
	Codecs []string
	// Expires is the registration interval asked for; default 300 s.
	Expires time.Duration
	// Play is a WAV file sent as the audio of every call (8 kHz mono
	// 16-bit, or converted by media/file); empty: a 440 Hz tone.
	Play string
	// Record is a WAV file (G.711) or Ogg file (Opus) the received audio
	// of a call is written to; with several calls the second is
	// NAME-2.wav and so on. Empty: none.
	Record string
	// Video is an IVF file of VP8 frames sent as the call's video, once;
	// RecordVideo an IVF file the received video is written to.
	Video, RecordVideo string
	// MediaTimeout ends a call when no RTP arrived for this long (not
	// while the call is on hold); default 30 s, negative: never.
	MediaTimeout time.Duration
	// AnswerDelay is how long an incoming call rings before it is
	// answered; Reject answers 486 Busy Here instead.
	AnswerDelay time.Duration
	Reject      bool
	// Echo sends every audio packet received back to its sender instead
	// of playing anything: an echo test service.
	Echo bool
	// MaxIncoming bounds the incoming calls ringing or in progress at
	// once; more are answered 486 Busy Here before anything is allocated
	// for them (a flood of INVITEs cannot take every socket). Default
	// DefaultMaxIncoming.
	MaxIncoming int
	// Events receives everything that happens, in order per call; it must
	// not block for long.
	Events func(Event)
	Log    *slog.Logger
}

// DefaultMaxIncoming is Config.MaxIncoming's default.
const DefaultMaxIncoming = 256

// Phone is a running user agent for one account.
type Phone struct {
	cfg    Config
	user   string
	domain string
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	inDlg  *sipgo.DialogServerCache
	outDlg *sipgo.DialogClientCache
	ports  *rtp.PortAllocator

	local     netip.AddrPort // SIP address we listen on
	transport string
	resolve   func(context.Context) ([]resolver.Target, error) // nil: a configured proxy
	contact   sip.ContactHeader
	instance  string // +sip.instance URN (RFC 5626)
	audio     []sdp.Codec
	video     []sdp.Codec // none: no video

	incoming atomic.Int32 // incoming calls ringing or in progress

	mu         sync.Mutex
	onAnswered func(*Call)
	calls      map[string]*Call  // by Call-ID
	proxy      resolver.Target   // where every request goes first
	targets    []resolver.Target // the proxy's RFC 3263 targets, in order
	kick       chan struct{}     // re-register now: the proxy failed us
	recorded   int               // calls recorded so far, for file names
	reg        registration
	closed     bool
	ln         net.Listener
	pc         net.PacketConn
	done       chan struct{}
	wg         sync.WaitGroup
}

// New checks cfg and prepares a phone; Start brings it up.
func New(cfg Config) (*Phone, error) {
	user, domain, ok := strings.Cut(cfg.AOR, "@")
	if !ok || user == "" || domain == "" {
		return nil, fmt.Errorf("endpoint: AOR %q: want user@domain", cfg.AOR)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	cfg.Transport = strings.ToLower(cfg.Transport)
	if cfg.Transport != "udp" && cfg.Transport != "tcp" {
		return nil, fmt.Errorf("endpoint: transport %q: want udp or tcp", cfg.Transport)
	}
	if cfg.Expires <= 0 {
		cfg.Expires = 300 * time.Second
	}
	if cfg.MediaTimeout == 0 {
		cfg.MediaTimeout = 30 * time.Second
	}
	if cfg.MaxIncoming <= 0 {
		cfg.MaxIncoming = DefaultMaxIncoming
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	audio, video, err := codecs(cfg)
	if err != nil {
		return nil, err
	}
	// A file that cannot be played is a mistake to report now, not in the
	// middle of the first call.
	if err := checkPlayable(cfg.Play, cfg.Video); err != nil {
		return nil, err
	}
	var id [16]byte
	rand.Read(id[:])
	h := hex.EncodeToString(id[:])
	return &Phone{
		cfg: cfg, user: user, domain: strings.ToLower(domain), log: cfg.Log, audio: audio, video: video,
		calls: map[string]*Call{}, done: make(chan struct{}), kick: make(chan struct{}, 1), transport: cfg.Transport,
		instance: "urn:uuid:" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:],
	}, nil
}

// codecs maps codec names to the SDP codecs offered and accepted:
// audio (telephone-event added) and video.
func codecs(cfg Config) (audio, video []sdp.Codec, err error) {
	names := cfg.Codecs
	if len(names) == 0 {
		switch {
		case cfg.Echo:
			names = []string{"pcmu", "pcma", "opus", "vp8"}
		case isOgg(cfg.Play):
			names = []string{"opus"}
		default:
			names = []string{"pcmu", "pcma"}
		}
		if !cfg.Echo && (cfg.Video != "" || cfg.RecordVideo != "") {
			names = append(names, "vp8")
		}
	}
	for _, n := range names {
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "pcmu":
			audio = append(audio, sdp.PCMU)
		case "pcma":
			audio = append(audio, sdp.PCMA)
		case "opus":
			if !cfg.Echo && !isOgg(cfg.Play) {
				return nil, nil, fmt.Errorf("endpoint: opus needs an Ogg/Opus file to play (there is no encoder here)")
			}
			audio = append(audio, sdp.Opus)
		case "vp8":
			video = append(video, sdp.VP8)
		default:
			return nil, nil, fmt.Errorf("endpoint: codec %q: want pcmu, pcma, opus or vp8", n)
		}
	}
	if len(audio) == 0 {
		return nil, nil, fmt.Errorf("endpoint: no audio codec in %q", names)
	}
	if isOgg(cfg.Play) && !cfg.Echo {
		for _, c := range audio {
			if !strings.EqualFold(c.Name, "opus") {
				return nil, nil, fmt.Errorf("endpoint: %s is Opus, which cannot be sent as %s (no transcoding)", cfg.Play, c.Name)
			}
		}
	}
	return append(audio, sdp.TelephoneEvent), video, nil
}

// Start listens, finds the proxy and serves incoming requests until
// Close. It does not register (see Register).
func (p *Phone) Start(ctx context.Context) error {
	ap, err := netip.ParseAddrPort(p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("endpoint: listen %q: want ip:port", p.cfg.Listen)
	}
	if p.ports, err = rtp.NewPortAllocator(ap.Addr(), 0, 0); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	switch p.transport {
	case "udp":
		pc, err := net.ListenPacket("udp", ap.String())
		if err != nil {
			return fmt.Errorf("endpoint: listen: %w", err)
		}
		p.pc = pc
		p.local = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	case "tcp":
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			return fmt.Errorf("endpoint: listen: %w", err)
		}
		p.ln = ln
		p.local = ln.Addr().(*net.TCPAddr).AddrPort()
	}
	p.local = netip.AddrPortFrom(p.local.Addr().Unmap(), p.local.Port())
	if err := p.findProxy(ctx); err != nil {
		p.closeSockets()
		return err
	}

	host := p.local.Addr().String()
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent("sipfed-phone"), sipgo.WithUserAgentHostname(p.domain))
	if err != nil {
		p.closeSockets()
		return fmt.Errorf("endpoint: %w", err)
	}
	opts := []sipgo.ClientOption{sipgo.WithClientHostname(host), sipgo.WithClientPort(int(p.local.Port()))}
	if p.transport == "udp" {
		// Requests leave from the listening socket: symmetric signalling,
		// so a NAT in between maps one flow (RFC 3581).
		opts = append(opts, sipgo.WithClientConnectionAddr(p.local.String()))
	}
	if p.client, err = sipgo.NewClient(p.ua, opts...); err != nil {
		p.closeSockets()
		return fmt.Errorf("endpoint: %w", err)
	}
	if p.srv, err = sipgo.NewServer(p.ua); err != nil {
		p.closeSockets()
		return fmt.Errorf("endpoint: %w", err)
	}
	p.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: p.user, Host: host, Port: int(p.local.Port())}}
	if p.transport == "tcp" {
		p.contact.Address.UriParams = sip.NewParams()
		p.contact.Address.UriParams.Add("transport", "tcp")
	}
	p.inDlg = sipgo.NewDialogServerCache(p.client, p.contact)
	p.outDlg = sipgo.NewDialogClientCache(p.client, p.contact)
	p.handle()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var err error
		if p.pc != nil {
			err = p.srv.ServeUDP(p.pc)
		} else {
			err = p.srv.ServeTCP(p.ln)
		}
		if err != nil && !p.isClosed() {
			p.log.Debug("serve", "error", err)
		}
	}()
	// Requests go out from the listening socket: wait until sipgo has it.
	tl := p.ua.TransportLayer()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := tl.GetConnection(p.transport, p.local.String()); err == nil && c != nil || p.transport != "udp" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("endpoint: the SIP socket did not come up")
		}
		time.Sleep(time.Millisecond)
	}
}

// findProxy sets the outbound proxy: the configured one, or the first
// RFC 3263 target of our domain over our transport (the others are kept
// for failover).
func (p *Phone) findProxy(ctx context.Context) error {
	if p.cfg.Proxy != "" {
		host, port, err := net.SplitHostPort(p.cfg.Proxy)
		if err != nil {
			return fmt.Errorf("endpoint: proxy %q: want host:port", p.cfg.Proxy)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("endpoint: proxy %q: bad port", p.cfg.Proxy)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if lerr != nil || len(ips) == 0 {
				return fmt.Errorf("endpoint: proxy %q: %v", p.cfg.Proxy, lerr)
			}
			ip = ips[0]
		}
		p.proxy = resolver.Target{Transport: p.transport, Host: host, IP: ip.Unmap(), Port: uint16(n)}
		p.targets = []resolver.Target{p.proxy}
		return nil
	}
	opts := []resolver.Option{resolver.WithTransports(p.transport), resolver.WithTimeout(2 * time.Second)}
	if len(p.cfg.DNS) > 0 {
		opts = append(opts, resolver.WithServers(p.cfg.DNS))
	}
	res, err := resolver.New(opts...)
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	p.resolve = func(ctx context.Context) ([]resolver.Target, error) {
		targets, err := res.Resolve(ctx, sip.Uri{Scheme: "sip", Host: p.domain})
		if err != nil {
			return nil, fmt.Errorf("endpoint: finding the proxy of %s: %w", p.domain, err)
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("endpoint: %s has no %s SIP server in DNS", p.domain, p.transport)
		}
		return targets, nil
	}
	targets, err := p.resolve(ctx)
	if err != nil {
		return err
	}
	p.proxy, p.targets = targets[0], targets
	return nil
}

// attemptTimeout bounds a REGISTER sent to one of several proxy targets:
// a proxy that does not answer within it is taken for dead and the next
// is tried (RFC 3263 §4.3). The last target gets the whole transaction.
const attemptTimeout = 4 * time.Second

// proxyTargets returns the current proxy and how many targets there are.
func (p *Phone) proxyTargets() (resolver.Target, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proxy, len(p.targets)
}

// failover moves the outbound proxy past bad, which failed a request
// (transport error, timeout or 503: RFC 3263 §4.3), to the next target;
// past the last one, DNS is asked again and the round starts over (the
// domain may have moved its servers). It returns the proxy to use now.
// Another request that already moved the proxy on is not undone.
func (p *Phone) failover(ctx context.Context, bad resolver.Target) resolver.Target {
	p.mu.Lock()
	if !sameTarget(p.proxy, bad) {
		defer p.mu.Unlock()
		return p.proxy
	}
	i := 0
	for i < len(p.targets) && !sameTarget(p.targets[i], bad) {
		i++
	}
	if i+1 < len(p.targets) {
		p.proxy = p.targets[i+1]
		defer p.mu.Unlock()
		p.log.Info("proxy failed, trying the next", "failed", bad.String(), "next", p.proxy.String())
		return p.proxy
	}
	resolve := p.resolve
	p.mu.Unlock()
	if resolve == nil {
		return bad
	}
	targets, err := resolve(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.log.Warn("proxy failed and DNS did not answer again", "failed", bad.String(), "error", err)
		p.proxy = p.targets[0]
		return p.proxy
	}
	p.targets = targets
	p.proxy = targets[0]
	if sameTarget(p.proxy, bad) && len(targets) > 1 {
		p.proxy = targets[1]
	}
	p.log.Info("proxy failed, DNS asked again", "failed", bad.String(), "next", p.proxy.String(), "targets", len(targets))
	return p.proxy
}

// sameTarget reports whether a and b are the same transport address.
func sameTarget(a, b resolver.Target) bool {
	return a.Transport == b.Transport && a.IP == b.IP && a.Port == b.Port
}

// reregister asks KeepRegistered to register now: a request found the
// proxy gone, so the binding through it is likely gone too.
func (p *Phone) reregister() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// flowLost reports whether the TCP connection to the proxy that carried
// our registration has closed (RFC 5626 §4.4: a failed flow is
// re-registered at once, not at the next refresh).
func (p *Phone) flowLost() bool {
	if p.transport != "tcp" || !p.registered() {
		return false
	}
	proxy, _ := p.proxyTargets()
	c, err := p.ua.TransportLayer().GetConnection("tcp", proxy.AddrPort().String())
	return err != nil || c == nil
}

// Proxy returns the address requests are sent to now.
func (p *Phone) Proxy() resolver.Target {
	proxy, _ := p.proxyTargets()
	return proxy
}

// Addr returns the phone's SIP address.
func (p *Phone) Addr() netip.AddrPort { return p.local }

// AOR returns user@domain.
func (p *Phone) AOR() string { return p.user + "@" + p.domain }

// emit hands an event to the Events callback.
func (p *Phone) emit(e Event) {
	if p.cfg.Events != nil {
		p.cfg.Events(e)
	}
}

// outbound prepares req to go to the proxy: destination and transport,
// unless a Route already says where it goes.
func (p *Phone) outbound(req *sip.Request) {
	p.outboundTo(req, p.Proxy())
}

func (p *Phone) outboundTo(req *sip.Request, proxy resolver.Target) {
	req.SetTransport(strings.ToUpper(p.transport))
	if req.Route() == nil {
		req.SetDestination(proxy.AddrPort().String())
	}
}

func (p *Phone) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Close hangs up every call, unregisters (within ctx) and stops.
func (p *Phone) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	calls := make([]*Call, 0, len(p.calls))
	for _, c := range p.calls {
		calls = append(calls, c)
	}
	p.mu.Unlock()
	for _, c := range calls {
		c.Hangup(ctx)
	}
	var err error
	if p.registered() {
		// Best effort, and short: a registrar that is gone does not hold
		// the phone up (the binding expires by itself).
		uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err = p.unregister(uctx)
		cancel()
	}
	close(p.done)
	if p.ua != nil {
		p.ua.Close()
	}
	p.closeSockets()
	p.wg.Wait()
	return err
}

func (p *Phone) closeSockets() {
	if p.pc != nil {
		p.pc.Close()
	}
	if p.ln != nil {
		p.ln.Close()
	}
}

// ErrClosed is returned for work asked of a closed phone.
var ErrClosed = errors.New("endpoint: phone closed")
