package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/auth"
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

const serveUsage = `
Usage: sipfed serve --domain DOMAIN [--domain DOMAIN...] [flags]

Runs the registrar and the proxy of one or more SIP domains. Users are
user@DOMAIN; add them with 'sipfed user add'. Calls to other domains are
routed through DNS (NAPTR, SRV, A/AAAA; --dns picks the servers).

Examples:
  sipfed serve --domain a.example --users users.txt
  sipfed serve --domain a.example --listen udp:0.0.0.0:5060 --listen tcp:0.0.0.0:5060 \
               --store redis://127.0.0.1:6379/0 --users redis --http 127.0.0.1:8080
`

type serveConfig struct {
	domains        *listFlag
	listen         *listFlag
	store          string
	users          string
	http           string
	secret         string
	digest         string
	md5OnlyAgents  *listFlag
	minExpires     int
	maxExpires     int
	defaultExpires int
	maxContacts    int
	nodeID         string
	logLevel       string
	drain          time.Duration
	dns            *listFlag
	advertise      string
	timerC         time.Duration
	failover       time.Duration
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", serveUsage)
	fs.withConfig()
	host, _ := os.Hostname()
	c := serveConfig{dns: newListFlag(), domains: newListFlag(), md5OnlyAgents: newListFlag(auth.DefaultMD5OnlyAgents...), listen: newListFlag("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")}
	fs.Var(c.domains, "domain", "a SIP `domain` served here (repeatable)")
	fs.Var(c.listen, "listen", "`transport:host:port` to listen on, transport udp or tcp (repeatable)")
	fs.StringVar(&c.store, "store", "memory", "location store: memory, or a Redis `URL` (redis://, rediss://, redis+sentinel://, redis+cluster://)")
	fs.StringVar(&c.users, "users", "users.txt", "credentials: a users `file` written by 'sipfed user add', or 'redis' to keep them in the --store Redis")
	fs.StringVar(&c.http, "http", "", "`address` for /healthz, /metrics and /debug/pprof (empty: off; keep it private)")
	fs.StringVar(&c.secret, "secret", "", "nonce `secret` shared by every node of a domain (default: kept in Redis when --store is Redis, else random per process)")
	fs.StringVar(&c.digest, "digest-algorithms", "MD5,SHA-256", "digest `algorithms` offered, most preferred first (MD5 first suits clients that read only the first challenge)")
	fs.Var(c.md5OnlyAgents, "digest-md5-only-agents", "User-Agent `prefix` of clients that fail on a SHA-256 challenge and get MD5 alone (repeatable)")
	fs.IntVar(&c.minExpires, "min-expires", 60, "shortest registration interval in `seconds` (shorter → 423)")
	fs.IntVar(&c.maxExpires, "max-expires", 3600, "longest registration interval in `seconds` (longer is clamped)")
	fs.IntVar(&c.defaultExpires, "default-expires", 3600, "interval in `seconds` when a REGISTER gives none")
	fs.IntVar(&c.maxContacts, "max-contacts", 10, "most bindings per address-of-record (0: no limit)")
	fs.StringVar(&c.nodeID, "node-id", host, "`name` of this node, stored with each binding")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Var(c.dns, "dns", "DNS `server` (host[:port]) for finding other domains (RFC 3263; repeatable; default: /etc/resolv.conf)")
	fs.StringVar(&c.advertise, "advertise", "", "`host` (IP or name) put in Via and Record-Route; default: the --listen host (required when that is 0.0.0.0 or ::)")
	fs.DurationVar(&c.timerC, "timer-c", 180*time.Second, "Timer C: how long an INVITE branch may ring before it is CANCELed (RFC 3261 §16.6)")
	fs.DurationVar(&c.failover, "failover-timeout", 5*time.Second, "how long to wait for any answer from another domain's server before trying the next one")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "on SIGTERM, how long to wait for requests in progress")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	if c.timerC < time.Second || c.failover < 100*time.Millisecond {
		return usagef("--timer-c must be at least 1s and --failover-timeout at least 100ms")
	}
	if len(c.domains.vals) == 0 {
		return usagef("--domain is required (see --help)")
	}
	for i, d := range c.domains.vals {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" || strings.ContainsAny(d, " @:/\r\n") {
			return usagef("--domain %q is not a domain name", d)
		}
		c.domains.vals[i] = d
	}
	if c.minExpires < 1 || c.maxExpires < c.minExpires || c.defaultExpires < c.minExpires || c.defaultExpires > c.maxExpires {
		return usagef("need 1 <= --min-expires <= --default-expires <= --max-expires")
	}
	if err := auth.CheckAlgorithms(splitList(c.digest)); err != nil {
		return usagef("--digest-algorithms: %v", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return usagef("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	return serve(ctx, e, c, log)
}

type listenSpec struct{ network, addr string }

func parseListen(s string) (listenSpec, error) {
	network, addr, ok := strings.Cut(s, ":")
	network = strings.ToLower(network)
	if !ok || (network != "udp" && network != "tcp") {
		return listenSpec{}, usagef("--listen %q: want udp:HOST:PORT or tcp:HOST:PORT", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return listenSpec{}, usagef("--listen %q: %v", s, err)
	}
	return listenSpec{network, addr}, nil
}

func serve(ctx context.Context, e *env, c serveConfig, log *slog.Logger) error {
	// The live heap is small and every SIP message allocates, so the
	// default GOGC=100 collects dozens of times a second under load. 400
	// measured p99 REGISTER latency at 10,000/s from ~80 ms down to ~10 ms
	// (test/bench, one run each, same machine). GOGC in the environment
	// still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	var specs []listenSpec
	for _, l := range c.listen.vals {
		s, err := parseListen(l)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}

	listeners, err := proxyListeners(specs, c.advertise)
	if err != nil {
		return err
	}
	resOpts := []resolver.Option{resolver.WithTransports(resolver.UDP, resolver.TCP)}
	if len(c.dns.vals) > 0 {
		resOpts = append(resOpts, resolver.WithServers(c.dns.vals))
	}
	res, err := resolver.New(resOpts...)
	if err != nil {
		return usagef("--dns: %v", err)
	}

	// Stores.
	var (
		rdb   goredis.UniversalClient
		store location.Store
		creds auth.CredentialStore
	)
	if c.store == "memory" {
		store = memory.New()
	} else {
		var err error
		rdb, err = redisurl.Open(c.store)
		if err != nil {
			return usagef("--store: %v", err)
		}
		defer rdb.Close()
		store = locredis.New(rdb)
	}
	defer store.Close()
	switch {
	case c.users == "redis":
		if rdb == nil {
			return usagef("--users redis needs --store redis://…")
		}
		creds = auth.NewRedisStore(rdb)
	default:
		if _, err := os.Stat(c.users); errors.Is(err, os.ErrNotExist) {
			log.Warn("users file does not exist yet: every REGISTER and call from a user of ours will be refused until 'sipfed user add' creates it", "users", c.users)
		}
		fstore, err := auth.OpenFile(c.users)
		if err != nil {
			return fmt.Errorf("--users: %w", err)
		}
		creds = fstore
	}
	secret, err := nonceSecret(ctx, c.secret, rdb, log)
	if err != nil {
		return err
	}
	authSrv := auth.NewServer(creds, secret, auth.WithLogger(log), auth.WithAlgorithms(splitList(c.digest)...), auth.WithMD5OnlyAgents(c.md5OnlyAgents.vals...))

	reg := metrics.Registry{}
	requests := reg.NewCounterVec("sipfed_sip_requests_total", "SIP requests received, by method.", "method")
	responses := reg.NewCounterVec("sipfed_sip_responses_total", "SIP final responses sent, by method and status code.", "method", "code")
	start := time.Now()
	reg.NewGaugeFunc("sipfed_uptime_seconds", "Seconds since the server started.", func() float64 { return time.Since(start).Seconds() })

	registrarOpts := []registrar.Option{
		registrar.WithExpires(c.minExpires, c.maxExpires, c.defaultExpires),
		registrar.WithMaxContacts(c.maxContacts),
		registrar.WithNodeID(c.nodeID),
		registrar.WithLogger(log),
	}
	rg := registrar.New(c.domains.vals, store, authSrv, registrarOpts...)

	var px *proxy.Proxy
	stray := func(r *sip.Response) {
		if px != nil {
			px.HandleStrayResponse(r)
		}
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("sipfed"), sipgo.WithUserAgentParser(sipcore.NewParser()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(stray)))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ua.Close()
	client, err := sipgo.NewClient(ua)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	px = proxy.New(c.domains.vals, store, authSrv, creds, res, client, listeners,
		proxy.WithTimerC(c.timerC), proxy.WithFailoverTimeout(c.failover), proxy.WithLogger(log))
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	// Requests in progress, waited for on SIGTERM.
	var inflight sync.WaitGroup
	var draining sync.Mutex
	closed := false
	track := func(h func(*sip.Request, sip.ServerTransaction)) sipgo.RequestHandler {
		return func(req *sip.Request, tx sip.ServerTransaction) {
			draining.Lock()
			if closed {
				draining.Unlock()
				tx.Respond(sipcore.Response(req, sipcore.Errorf(503, "Shutting down").With(sip.NewHeader("Retry-After", "5"))))
				return
			}
			inflight.Add(1)
			draining.Unlock()
			defer inflight.Done()
			requests.Inc(string(req.Method))
			h(req, &countingTx{ServerTransaction: tx, method: string(req.Method), responses: responses})
		}
	}
	srv.OnRegister(track(rg.ServeSIP))
	// Every other method is the proxy's (it answers OPTIONS for itself).
	srv.OnNoRoute(track(px.ServeSIP))

	// Listeners.
	var closers []func()
	serveErr := make(chan error, len(specs)+1)
	for _, s := range specs {
		switch s.network {
		case "udp":
			conn, err := net.ListenPacket("udp", s.addr)
			if err != nil {
				return fmt.Errorf("serve: listen udp %s: %w", s.addr, err)
			}
			// A burst of datagrams must not overflow the socket while
			// the handlers catch up; the kernel caps this at rmem_max.
			if uc, ok := conn.(*net.UDPConn); ok {
				uc.SetReadBuffer(udpBuffer)
				uc.SetWriteBuffer(udpBuffer)
			}
			closers = append(closers, func() { conn.Close() })
			log.Info("listening", "transport", "udp", "addr", conn.LocalAddr().String())
			go func() { serveErr <- srv.ServeUDP(conn) }()
		case "tcp":
			l, err := net.Listen("tcp", s.addr)
			if err != nil {
				return fmt.Errorf("serve: listen tcp %s: %w", s.addr, err)
			}
			closers = append(closers, func() { l.Close() })
			log.Info("listening", "transport", "tcp", "addr", l.Addr().String())
			go func() { serveErr <- srv.ServeTCP(l) }()
		}
	}
	if c.http != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		mux.Handle("/metrics", &reg)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		hl, err := net.Listen("tcp", c.http)
		if err != nil {
			return fmt.Errorf("serve: listen http %s: %w", c.http, err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		closers = append(closers, func() { hs.Close() })
		log.Info("http", "addr", hl.Addr().String())
		go hs.Serve(hl)
	}
	log.Info("serving", "domains", strings.Join(c.domains.vals, ","), "store", storeKind(c.store), "users", c.users)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	// Drain: refuse new work, wait for what is in progress, then close.
	log.Info("draining", "timeout", c.drain)
	draining.Lock()
	closed = true
	draining.Unlock()
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.drain):
		log.Warn("drain timeout: requests still in progress")
	}
	for _, cl := range closers {
		cl()
	}
	log.Info("stopped")
	return nil
}

// proxyListeners turns the --listen specs into the addresses the proxy
// puts in Via and Record-Route.
func proxyListeners(specs []listenSpec, advertise string) ([]proxy.Listener, error) {
	var out []proxy.Listener
	for _, s := range specs {
		host, port, _ := net.SplitHostPort(s.addr)
		n, err := strconv.Atoi(port)
		if err != nil || n == 0 {
			return nil, usagef("--listen %s:%s: give a port number (not 0)", s.network, s.addr)
		}
		adv := advertise
		if adv == "" {
			ip, err := netip.ParseAddr(host)
			if host == "" || (err == nil && ip.IsUnspecified()) {
				return nil, usagef("--listen %s:%s listens on every address: give --advertise HOST for Via and Record-Route", s.network, s.addr)
			}
			adv = host
		}
		out = append(out, proxy.Listener{Transport: s.network, Host: adv, Port: n, Bind: s.addr})
	}
	return out, nil
}

// udpBuffer is the socket buffer asked for on UDP listeners.
const udpBuffer = 4 << 20

// splitList splits a comma-separated flag value, trimming spaces.
func splitList(s string) []string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func storeKind(s string) string {
	if s == "memory" {
		return s
	}
	return "redis"
}

// nonceSecret returns the HMAC secret for digest nonces: the flag, else one
// kept in Redis (so every node of a domain shares it), else a random one.
func nonceSecret(ctx context.Context, flagSecret string, rdb goredis.UniversalClient, log *slog.Logger) ([]byte, error) {
	if flagSecret != "" {
		return []byte(flagSecret), nil
	}
	b := make([]byte, 32)
	rand.Read(b)
	fresh := hex.EncodeToString(b)
	if rdb == nil {
		return []byte(fresh), nil
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	const key = "sipfed:nonce-secret"
	if err := rdb.SetNX(cctx, key, fresh, 0).Err(); err != nil {
		log.Warn("redis unreachable at start; using a per-process nonce secret", "error", err)
		return []byte(fresh), nil
	}
	v, err := rdb.Get(cctx, key).Result()
	if err != nil {
		log.Warn("redis unreachable at start; using a per-process nonce secret", "error", err)
		return []byte(fresh), nil
	}
	return []byte(v), nil
}

// countingTx counts the final response a handler sends.
type countingTx struct {
	sip.ServerTransaction
	method    string
	responses *metrics.CounterVec
}

func (t *countingTx) Respond(res *sip.Response) error {
	if res.StatusCode >= 200 {
		t.responses.Inc(t.method, strconv.Itoa(res.StatusCode))
	}
	return t.ServerTransaction.Respond(res)
}
