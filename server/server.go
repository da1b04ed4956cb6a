// Package server runs one node of sipfed: the listeners, stores,
// registrar and proxy of one or more SIP domains, built from a Config.
// A Server is a value: several run side by side in one process (the demo,
// tests), each with its own sockets, stores, metrics and shutdown, as
// net/http's Server does.
//
//	srv, err := server.New(server.Config{Domains: []string{"a.example"}, Users: "users.txt"})
//	go srv.Serve()
//	…
//	srv.Shutdown(ctx)
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/bridge"
	"github.com/sipfed/sipfed/bridge/webphone"
	"github.com/sipfed/sipfed/internal/metrics"
	"github.com/sipfed/sipfed/internal/redisurl"
	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/location/memory"
	locredis "github.com/sipfed/sipfed/location/redis"
	"github.com/sipfed/sipfed/proxy"
	"github.com/sipfed/sipfed/registrar"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// ErrConfig is wrapped by every error New returns for a Config that
// cannot work (as opposed to a failure to start it): the command line
// turns it into a usage error.
var ErrConfig = errors.New("server: bad configuration")

// Server is one running node. Make it with New, run it with Serve, stop it
// with Shutdown.
type Server struct {
	cfg   Config
	log   *slog.Logger
	base  context.Context
	stop  context.CancelFunc // cancels base: every request in flight
	gate  sipcore.Gate
	reg   *prometheus.Registry
	store location.Store
	rdb   goredis.UniversalClient
	ua    *sipgo.UserAgent
	sip   *sipgo.Server
	socks []socket
	http  *http.Server
	hl    net.Listener
	web   *http.Server // --web: the web phone alone, for browsers
	wl    net.Listener

	tlsst   *tlsState
	fastReg *statelessRegister // REGISTER over UDP without a server transaction
	bridge  *bridge.Bridge     // browsers' media; nil without ws:/wss: listeners
	phone   webphone.Config

	serveErr chan error
	closing  chan struct{}
	once     sync.Once
}

// socket is one bound SIP listener.
type socket struct {
	transport string
	pc        net.PacketConn      // udp
	filter    *sipcore.PacketConn // udp: pc as sipgo reads it (filterUDP)
	l         net.Listener        // tcp, tls (a tls.Listener over lim)
	lim       *sipcore.Listener   // tcp, tls: the connection limits
}

func (s socket) addr() net.Addr {
	if s.pc != nil {
		return s.pc.LocalAddr()
	}
	return s.l.Addr()
}

func (s socket) close() {
	if s.pc != nil {
		s.pc.Close()
	} else {
		s.l.Close()
	}
}

// New checks cfg, opens the stores and binds every listener (so a busy
// port is reported here, and a port 0 is chosen here), and wires the
// request pipeline. Nothing is served until Serve.
func New(cfg Config) (_ *Server, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	specs, _ := cfg.listenSpecs()
	base, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger, base: base, stop: stop, serveErr: make(chan error, len(specs)+1), closing: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()

	s.tlsst, err = newTLSState(cfg)
	if err != nil {
		return nil, err
	}
	transports := []string{resolver.UDP, resolver.TCP}
	if cfg.FederationTLS {
		transports = append(transports, resolver.TLS)
	}
	for _, sp := range specs {
		if sp.transport == "tls" {
			transports = append(transports, resolver.TLS)
			break
		}
	}
	resOpts := []resolver.Option{resolver.WithTransports(transports...)}
	if len(cfg.DNS) > 0 {
		resOpts = append(resOpts, resolver.WithServers(cfg.DNS))
	}
	res, err := resolver.New(resOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w: dns: %w", ErrConfig, err)
	}

	// Stores.
	var creds auth.CredentialStore
	if cfg.Store == "memory" {
		s.store = memory.New()
	} else {
		s.rdb, err = redisurl.Open(cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("%w: store: %w", ErrConfig, err)
		}
		s.store = locredis.New(s.rdb, locredis.WithMinReplicas(cfg.StoreMinReplicas, cfg.StoreReplicaTimeout))
	}
	if cfg.Users == "redis" {
		creds = auth.NewRedisStore(s.rdb)
	} else {
		if _, err := os.Stat(cfg.Users); errors.Is(err, os.ErrNotExist) {
			s.log.Warn("users file does not exist yet: every REGISTER and call from a user of ours will be refused until 'sipfed user add' creates it", "users", cfg.Users)
		}
		f, err := auth.OpenFile(cfg.Users)
		if err != nil {
			return nil, fmt.Errorf("server: users: %w", err)
		}
		f.OnWarning(func(msg string) { s.log.Warn(msg) })
		creds = f
	}
	secret := s.nonceSecret()
	guard := s.newGuard()
	authOpts := []auth.Option{auth.WithLogger(s.log), auth.WithAlgorithms(cfg.DigestAlgorithms...), auth.WithMD5OnlyAgents(cfg.MD5OnlyAgents...), auth.WithGuard(guard)}
	if s.rdb != nil {
		// The domain's nodes share the nonce counts, as they share the
		// secret: a replay to another node is refused there too.
		authOpts = append(authOpts, auth.WithSharedNonceCounts(s.rdb))
	}
	authSrv := auth.NewServer(creds, secret, authOpts...)

	// Listeners first: the proxy puts their real ports in Via and
	// Record-Route.
	tcpLimits := sipcore.ConnLimits{MaxConns: cfg.TCPMaxConns, MaxPerSource: cfg.TCPMaxPerSource, IdleTimeout: cfg.TCPIdleTimeout}
	s.socks, err = bind(specs, tcpLimits, s.log)
	if err != nil {
		return nil, err
	}
	listeners := make([]proxy.Listener, len(s.socks))
	wsCfg := sipcore.WSConfig{Origins: cfg.WSOrigins, HandshakeTimeout: cfg.WSHandshakeTimeout}
	for i, so := range s.socks {
		switch so.transport {
		case "tls":
			s.socks[i].l = tls.NewListener(so.lim, s.tlsst.serverConfig())
		case "ws":
			// The upgrade is read per connection, not in sipgo's accept
			// loop: one silent connection cannot hold up the others.
			s.socks[i].l = sipcore.NewWSListener(so.lim, wsCfg, s.log)
		case "wss":
			s.socks[i].l = sipcore.NewWSListener(tls.NewListener(so.lim, s.tlsst.serverConfig()), wsCfg, s.log)
		}
		host := cfg.Advertise
		if host == "" {
			host = specs[i].host
		}
		listeners[i] = proxy.Listener{Transport: so.transport, Host: host, Port: int(addrPort(so.addr()).Port()), Bind: so.addr().String()}
	}

	pxOpts := []proxy.Option{proxy.WithTimerC(cfg.TimerC), proxy.WithFailoverTimeout(cfg.FailoverTimeout), proxy.WithLogger(s.log),
		proxy.WithSecret(secret), proxy.WithHideUsers(cfg.HideUsers), proxy.WithTLSExpect(s.tlsst.Expect), proxy.WithRequireTLS(cfg.FederationTLS)}
	s.phone = webphone.Config{Domain: cfg.Domains[0]}
	for _, l := range listeners {
		switch l.Transport {
		case "ws":
			s.phone.WSPort = l.Port
		case "wss":
			s.phone.WSSPort = l.Port
		}
	}
	if s.phone.WSPort != 0 || s.phone.WSSPort != 0 {
		s.bridge, err = newBridge(cfg, specs)
		if err != nil {
			return nil, err
		}
		pxOpts = append(pxOpts, proxy.WithMediaAnchor(anchor{s.bridge}))
	}

	var px *proxy.Proxy
	rgOpts := []registrar.Option{registrar.WithExpires(cfg.MinExpires, cfg.MaxExpires, cfg.DefaultExpires),
		registrar.WithMaxContacts(cfg.MaxContacts),
		registrar.WithNodeID(cfg.NodeID),
		registrar.WithFlowKeeper(s.keepFlow),
		registrar.WithLogger(s.log)}
	// A device that registers while a call to its AOR rings joins the call.
	rgOpts = append(rgOpts, registrar.WithOnChange(func(aor string) { px.Changed(aor) }))
	if s.rdb != nil {
		// Bindings are shared with the domain's other nodes: a device
		// on a flow of this node is reached through this node.
		rgOpts = append(rgOpts, registrar.WithEdgePath(func(transport, source string) string { return px.NodePath(transport, source) }))
	}
	if a, ok := creds.(auth.AliasResolver); ok {
		rgOpts = append(rgOpts, registrar.WithAliases(a))
	}
	rg := registrar.New(cfg.Domains, s.store, authSrv, rgOpts...)

	stray := func(r *sip.Response) {
		if px != nil {
			px.HandleStrayResponse(r)
		}
	}
	sipcore.AllowLargeUDP()
	sipcore.SetServerHeader(cfg.ServerHeader)
	s.reg = metrics.NewRegistry()
	sipMetrics := metrics.New(s.reg)
	libLog := sipcore.LibraryLogger(s.log, sipMetrics.Malformed)
	allow, pike := s.sources(guard)
	s.ua, err = sipgo.NewUA(sipgo.WithUserAgent("sipfed"), sipgo.WithUserAgentParser(sipcore.NewParser()),
		sipgo.WithUserAgenTLSConfig(s.tlsst.clientConfig()), sipgo.WithUserAgentDNSResolver(s.tlsst.names.resolver()),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(libLog), sip.WithTransportLayerReadFilter(tcpFilter(allow))),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(stray), sip.WithTransactionLayerLogger(libLog)))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.fastReg = newStatelessRegister()
	s.filterUDP(allow, pike, guard)
	client, err := sipgo.NewClient(s.ua)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if a, ok := creds.(auth.AliasResolver); ok {
		pxOpts = append(pxOpts, proxy.WithAliases(a))
	}
	fallback, _ := cfg.enumFallback() // validated
	if cfg.ENUMFallback == "" {
		fallback = nil
	}
	pxOpts = append(pxOpts, proxy.WithENUM(res, cfg.ENUMSuffixes, fallback))
	px = proxy.New(cfg.Domains, s.store, authSrv, creds, res, client, listeners, pxOpts...)
	if w, ok := s.store.(watcher); ok {
		go s.watchStore(w, px.Changed)
	}
	s.sip, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(s.log))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}

	// The pipeline every request goes through, composed once.
	mws := []sipcore.Middleware{
		sipcore.Observe(sipMetrics),
		sipcore.Log(s.log),
		sipcore.Respond(s.log),
		sipcore.Drain(&s.gate),
		sipcore.Recover(s.log),
	}
	deadlines := sipcore.Deadlines{Invite: 2 * cfg.TimerC, Other: 64 * sip.T1}
	register := sipcore.Adapt(base, deadlines, sipcore.Chain(rg, mws...))
	go s.fastReg.sweep(base)
	s.sip.OnRegister(sipcore.OnWorker(register)) // over TCP, TLS, WS; UDP mostly without a transaction:
	s.fastReg.setHandler(register)
	// Every other method is the proxy's (it answers OPTIONS for itself);
	// over UDP the INVITEs it would only challenge take no transaction.
	proxied := sipcore.Adapt(base, deadlines, sipcore.Chain(px, mws...))
	s.sip.OnNoRoute(sipcore.OnWorker(proxied))
	s.fastReg.setInvite(proxied, px.AnswersAlone, cfg.Domains, secret)

	metrics.TCP(s.reg, s.tcpStats)
	if s.bridge != nil {
		br := s.bridge
		s.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipfed_bridge_sessions", Help: "Calls whose media the bridge joins now (a browser and a plain RTP endpoint)."},
				func() float64 { return float64(br.Stats().Sessions) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sipfed_bridge_packets_total", Help: "RTP packets the bridge passed between browsers and plain RTP endpoints, both ways."},
				func() float64 { return float64(br.Stats().Forwarded) }))
	}
	if cfg.HTTP != "" {
		s.hl, err = net.Listen("tcp", cfg.HTTP)
		if err != nil {
			return nil, fmt.Errorf("server: http: %w", err)
		}
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	}
	if cfg.Web != "" {
		wl, err := net.Listen("tcp", cfg.Web)
		if err != nil {
			return nil, fmt.Errorf("server: web: %w", err)
		}
		// Public: the same connection bounds as the SIP TCP listeners (per
		// source, in all, idle), so idle connections cannot use up the
		// process's descriptors.
		s.wl = sipcore.LimitListener(wl, tcpLimits, s.log)
		mux := http.NewServeMux()
		mux.Handle("/phone/", webphone.Handler(s.phone))
		mux.Handle("/phone", webphone.Handler(s.phone))
		mux.Handle("/{$}", http.RedirectHandler("/phone/", http.StatusFound))
		s.web = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		if cfg.TLSCert != "" {
			s.web.TLSConfig = s.tlsst.serverConfig()
			s.wl = tls.NewListener(s.wl, s.web.TLSConfig)
		}
	}
	return s, nil
}

// nonceSecret returns the HMAC secret for digest nonces: the configured
// one, else the one kept in Redis (so every node of a domain shares it),
// else a random one for this process.
func (s *Server) nonceSecret() []byte {
	if s.cfg.Secret != "" {
		return []byte(s.cfg.Secret)
	}
	b := make([]byte, 32)
	rand.Read(b)
	fresh := []byte(hex.EncodeToString(b))
	if s.rdb == nil {
		if s.cfg.Users == "redis" {
			return fresh
		}
		// Kept beside the users file, so a restart keeps nonces and the
		// dialog tokens of calls in progress valid.
		path := s.cfg.Users + ".secret"
		v, err := auth.FileSecret(path, fresh)
		if err != nil {
			s.log.Warn("using a per-process secret: calls in progress cannot be hung up from outside after a restart", "error", err)
			return fresh
		}
		return v
	}
	ctx, cancel := context.WithTimeout(s.base, 3*time.Second)
	defer cancel()
	v, err := auth.SharedSecret(ctx, s.rdb, fresh)
	if err != nil {
		s.log.Warn("redis unreachable at start: using a per-process nonce secret; REGISTERs get 503 until it is back", "error", err)
		return fresh
	}
	return v
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.closing:
			http.Error(w, "draining", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	mux.Handle("/metrics", metrics.Handler(s.reg))
	mux.Handle("/phone/", webphone.Handler(s.phone))
	mux.Handle("/phone", webphone.Handler(s.phone))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// udpBuffer is the socket buffer asked for on UDP listeners: a burst of
// datagrams must not overflow the socket while the handlers catch up (the
// kernel caps it at net.core.rmem_max).
const udpBuffer = 4 << 20

// Serve serves every listener until Shutdown, or until one fails. It
// returns nil after Shutdown.
func (s *Server) Serve() error {
	for _, so := range s.socks {
		s.log.Info("listening", "transport", so.transport, "addr", so.addr().String())
		switch so.transport {
		case "udp":
			go func() { s.serveErr <- so.filter.Serve(s.sip.ServeUDP) }()
		case "tcp":
			go func() { s.serveErr <- s.sip.ServeTCP(so.l) }()
		case "tls":
			go func() { s.serveErr <- s.sip.ServeTLS(so.l) }()
		case "ws":
			go func() { s.serveErr <- s.sip.ServeWS(so.l) }()
		case "wss":
			go func() { s.serveErr <- s.sip.ServeWSS(so.l) }()
		}
	}
	if s.http != nil {
		s.log.Info("http", "addr", s.hl.Addr().String())
		go func() { s.serveErr <- s.http.Serve(s.hl) }()
	}
	if s.web != nil {
		s.log.Info("web phone", "addr", s.wl.Addr().String(), "tls", s.web.TLSConfig != nil)
		go func() { s.serveErr <- s.web.Serve(s.wl) }()
	}
	store := "memory"
	if s.rdb != nil {
		store = "redis"
	}
	s.log.Info("serving", "domains", strings.Join(s.cfg.Domains, ","), "store", store, "users", s.cfg.Users)
	select {
	case <-s.closing:
		return nil
	case err := <-s.serveErr:
		select {
		case <-s.closing:
			return nil
		default:
		}
		if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
			return errors.New("server: a listener stopped")
		}
		return fmt.Errorf("server: %w", err)
	}
}

// Shutdown stops the server gracefully: new requests get 503 with
// Retry-After, requests in progress may finish until ctx is done; then
// their contexts are cancelled (ringing INVITE branches are CANCELed),
// and the listeners and stores are closed. It returns ctx.Err() when
// requests were still in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		s.log.Info("draining")
		s.gate.Close()
		if err = s.gate.Wait(ctx); err != nil {
			s.log.Warn("drain timeout: cancelling the requests in progress")
			s.stop()
			grace, cancel := context.WithTimeout(context.Background(), time.Second)
			s.gate.Wait(grace)
			cancel()
		}
		s.closeAll()
		s.log.Info("stopped")
	})
	return err
}

// closeAll releases whatever New opened.
func (s *Server) closeAll() {
	s.stop()
	if s.http != nil {
		s.http.Close()
	} else if s.hl != nil {
		s.hl.Close()
	}
	if s.web != nil {
		s.web.Close()
	} else if s.wl != nil {
		s.wl.Close()
	}
	for _, so := range s.socks {
		so.close()
	}
	if s.ua != nil {
		s.ua.Close()
	}
	if s.bridge != nil {
		s.bridge.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
}

// keepFlow keeps the connection a device registered over open until its
// binding expires (see sipcore.Listener.KeepUntil).
func (s *Server) keepFlow(transport, source string, until time.Time) {
	for _, so := range s.socks {
		if so.transport == transport && so.lim != nil && so.lim.KeepUntil(source, until) {
			return
		}
	}
}

// ReloadTLS reads the certificate and key of the tls: listeners again
// (on SIGHUP); connections made afterwards use the new ones. On error the
// old ones stay.
func (s *Server) ReloadTLS() error {
	if s.cfg.TLSCert == "" {
		return nil
	}
	if err := s.tlsst.reload(); err != nil {
		return err
	}
	s.log.Info("tls certificate reloaded", "cert", s.cfg.TLSCert)
	return nil
}

// Addr returns the address of the first SIP listener of transport ("udp"
// or "tcp"), or nil.
func (s *Server) Addr(transport string) net.Addr {
	for _, so := range s.socks {
		if so.transport == transport {
			return so.addr()
		}
	}
	return nil
}

// WebAddr returns the address of the web phone's listener (--web), or nil.
func (s *Server) WebAddr() net.Addr {
	if s.wl == nil {
		return nil
	}
	return s.wl.Addr()
}

// HTTPAddr returns the address of the HTTP listener, or nil.
func (s *Server) HTTPAddr() net.Addr {
	if s.hl == nil {
		return nil
	}
	return s.hl.Addr()
}

// tcpStats sums what the TCP listeners counted.
func (s *Server) tcpStats() sipcore.ConnStats {
	sum := sipcore.ConnStats{Refused: map[string]uint64{}}
	for _, so := range s.socks {
		if l := so.lim; l != nil {
			st := l.Stats()
			sum.Open += st.Open
			sum.IdleClosed += st.IdleClosed
			for r, n := range st.Refused {
				sum.Refused[r] += n
			}
		}
	}
	return sum
}

// watcher is a location store that tells of changes made by any node
// (location/redis.Store).
type watcher interface {
	Watch(ctx context.Context) (<-chan string, error)
}

// watchStore passes every AOR whose bindings change, on any node of the
// domain, to changed (the proxy's late forking) until the server stops.
// The subscription is made again when it fails (Redis away at start);
// go-redis renews an established one by itself.
func (s *Server) watchStore(w watcher, changed func(aor string)) {
	for s.base.Err() == nil {
		ch, err := w.Watch(s.base)
		if err != nil {
			s.log.Warn("store: no change notifications (late forking across nodes), retrying in 5 s", "error", err)
			select {
			case <-s.base.Done():
				return
			case <-time.After(5 * time.Second):
			}
			continue
		}
		for aor := range ch {
			changed(aor)
		}
	}
}
