package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/internal/memlimit"
	"github.com/sipfed/sipfed/internal/redisurl"
	"github.com/sipfed/sipfed/server"
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

// runServe parses the flags into a server.Config and runs the server
// until ctx is done (SIGTERM, SIGINT), then drains it.
func runServe(ctx context.Context, e *env, args []string) error {
	cfg, proc, err := serveConfig(e, args)
	if err != nil {
		return err
	}
	// The live heap is small and every SIP message allocates, so the
	// default GOGC=100 collects dozens of times a second under load. 400
	// measured p99 REGISTER latency at 10,000/s from ~80 ms down to ~10 ms
	// (test/bench, one run each, same machine). GOGC in the environment
	// still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	redisurl.SetLogger(cfg.Logger, 10*time.Second)
	srv, err := server.New(cfg)
	if errors.Is(err, server.ErrConfig) {
		return usagef("%s", strings.TrimPrefix(err.Error(), server.ErrConfig.Error()+": "))
	}
	if err != nil {
		return err
	}
	// A flood can still outrun GOGC=400 (finished transactions stay 32 s,
	// Timer J): the soft memory limit makes the collector run before the
	// process reaches its cgroup's limit.
	proc.memory.Apply()
	if proc.gcPercent > 0 {
		debug.SetGCPercent(proc.gcPercent)
	}
	cfg.Logger.Info("memory limit", "limit", proc.memory.String(), "source", proc.memory.Source, "cgroup_bytes", proc.memory.Cgroup)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	// SIGHUP rereads the TLS certificate and key (renewals).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err = <-errc:
			break wait
		case <-hup:
			if err := srv.ReloadTLS(); err != nil {
				cfg.Logger.Error("tls reload failed, keeping the previous certificate", "error", err)
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), proc.drain)
	defer cancel()
	srv.Shutdown(sctx)
	return err
}

// defaultGCPercent is serve's GOGC: chosen by measurement (2026-11-30,
// make bench against Kamailio): at 12,000 REGISTER/s the p99 went from 20
// ms to 8 ms and the CPU per registration from 64 µs to 52 µs, and at 2,000
// calls/s the p99 from 52 ms to 8 ms, against Go's default of 100. The
// heap it lets grow stays under the memory limit (--memory-limit), which
// makes the collector work harder near it.
const defaultGCPercent = 400

// serveProc is what serve's command line sets for the process rather than
// for the server.
type serveProc struct {
	drain     time.Duration
	memory    memlimit.Choice
	gcPercent int // -1: GOGC from the environment decides
}

// serveConfig parses serve's command line (flags, SIPFED_* variables,
// --config file) into a server.Config and the settings of the process.
func serveConfig(e *env, args []string) (server.Config, serveProc, error) {
	fs := newFlagSet(e, "serve", serveUsage)
	fs.withConfig()
	host, _ := os.Hostname()
	var (
		c             server.Config
		digest        string
		logLevel      string
		drain         time.Duration
		memoryLimit   string
		signature     bool
		domains       = newListFlag()
		listen        = newListFlag("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
		md5OnlyAgents = newListFlag(auth.DefaultMD5OnlyAgents...)
		dns           = newListFlag()
		trusted       = newListFlag()
		wsOrigins     = newListFlag()
		enumSuffixes  = newListFlag("e164.arpa")
		mediaPorts    string
		gcPercent     int
	)
	fs.Var(domains, "domain", "a SIP `domain` served here (repeatable)")
	fs.Var(listen, "listen", "`transport:host:port` to listen on, transport udp, tcp, tls, or ws and wss for browsers (RFC 7118) (repeatable)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM `file` of the certificate (and chain) of tls: and wss: listeners; it should name the domains served (RFC 5922); reread on SIGHUP")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM `file` of the key of tls: and wss: listeners; reread on SIGHUP")
	fs.Var(wsOrigins, "ws-origin", "`origin` (scheme://host[:port] of a web page) whose browsers may connect to the ws:/wss: listeners; others get 403 (repeatable; none: any)")
	fs.StringVar(&c.MediaAddr, "media-address", "", "local IP `address` of the media bridge between browsers and plain RTP phones (made with a ws:/wss: listener); default: --advertise when an IP, else the first --listen host")
	fs.StringVar(&c.MediaPublic, "media-public-address", "", "IP `address` the bridge announces in SDP and ICE instead (a 1:1 NAT, as in a cloud)")
	fs.StringVar(&mediaPorts, "media-ports", "40000-49999", "UDP port `range` of the media bridge (ICE and RTP)")
	fs.IntVar(&c.MediaMaxCalls, "media-max-calls", 1000, "most calls the media bridge joins at once (four UDP ports each); more get 503 with Retry-After")
	fs.DurationVar(&c.MediaTimeout, "media-timeout", 30*time.Second, "end a bridged call's media after this long without a packet either way (not while on hold)")
	fs.DurationVar(&c.WSHandshakeTimeout, "ws-handshake-timeout", sipcore.DefaultWSHandshakeTimeout, "how long a new WebSocket connection may take to send its upgrade request")
	fs.BoolVar(&c.FederationTLS, "federation-tls", false, "send requests to other domains over TLS only (their SIPS+D2T/_sips._tcp targets); a domain without one gets 503")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM `file` of the authorities trusted for other domains' certificates (default: the system's)")
	fs.StringVar(&c.Store, "store", "memory", "location store: memory, or a Redis `URL` (redis://, rediss://, redis+sentinel://, redis+cluster://)")
	fs.IntVar(&c.StoreMinReplicas, "store-min-replicas", 0, "replicas of the Redis master that must have a binding before its REGISTER gets 200 (Redis WAIT; fewer within --store-replica-timeout: 503); 0: none, replication is asynchronous")
	fs.DurationVar(&c.StoreReplicaTimeout, "store-replica-timeout", time.Second, "how long a REGISTER waits for --store-min-replicas")
	fs.StringVar(&c.Users, "users", "users.txt", "credentials: a users `file` written by 'sipfed user add', or 'redis' to keep them in the --store Redis")
	fs.StringVar(&c.HTTP, "http", "", "`address` for /healthz, /metrics, /debug/pprof and the web phone /phone/ (empty: off; keep it private)")
	fs.StringVar(&c.Web, "web", "", "`address` serving the web phone (/phone/) alone, for browsers: HTTPS with --tls-cert and --tls-key (empty: off)")
	fs.StringVar(&c.Secret, "secret", "", "nonce `secret` shared by every node of a domain (default: kept in Redis when --store is Redis, else random per process)")
	fs.StringVar(&digest, "digest-algorithms", "MD5,SHA-256", "digest `algorithms` offered, most preferred first (MD5 first suits clients that read only the first challenge)")
	fs.Var(md5OnlyAgents, "digest-md5-only-agents", "User-Agent `prefix` of clients that fail on a SHA-256 challenge and get MD5 alone (repeatable)")
	fs.IntVar(&c.MinExpires, "min-expires", 60, "shortest registration interval in `seconds` (shorter → 423)")
	fs.IntVar(&c.MaxExpires, "max-expires", 3600, "longest registration interval in `seconds` (longer is clamped)")
	fs.IntVar(&c.DefaultExpires, "default-expires", 3600, "interval in `seconds` when a REGISTER gives none")
	fs.IntVar(&c.MaxContacts, "max-contacts", 10, "most bindings per address-of-record (0: no limit)")
	fs.StringVar(&c.NodeID, "node-id", host, "`name` of this node, stored with each binding")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Var(dns, "dns", "DNS `server` (host[:port]) for finding other domains (RFC 3263; repeatable; default: /etc/resolv.conf)")
	fs.StringVar(&c.Advertise, "advertise", "", "`host` (IP or name) put in Via and Record-Route; default: the --listen host (required when that is 0.0.0.0 or ::)")
	fs.DurationVar(&c.TimerC, "timer-c", 180*time.Second, "Timer C: how long an INVITE branch may ring before it is CANCELed (RFC 3261 §16.6); a whole INVITE is bounded at twice this")
	fs.DurationVar(&c.FailoverTimeout, "failover-timeout", 5*time.Second, "how long to wait for any answer from another domain's server before trying the next one")
	fs.BoolVar(&signature, "server-header", true, "send Server: sipfed/VERSION on the responses sipfed makes (false: none, for operators who do not say what they run)")
	fs.Var(enumSuffixes, "enum-suffix", "ENUM `tree` (RFC 6116) a number dialled by a user of ours is looked up in, in turn (repeatable; none: no ENUM, numbers that are no user or alias get 404)")
	fs.StringVar(&c.ENUMFallback, "enum-fallback", "", "SIP `URI` (a gateway) for numbers with no ENUM record, the number as its user part; empty: 404")
	fs.BoolVar(&c.HideUsers, "hide-users", false, "answer other domains' requests for users who do not exist 480, as for offline ones, not 404 (no user enumeration)")
	fs.IntVar(&c.TCPMaxConns, "tcp-max-connections", sipcore.DefaultMaxConns, "most TCP connections open at once on each TCP listener; more are closed at once (0: no limit)")
	fs.IntVar(&c.TCPMaxPerSource, "tcp-max-per-source", sipcore.DefaultMaxPerSource, "most TCP connections open at once from one IP address (IPv6: one /64); more are closed at once (0: no limit)")
	fs.DurationVar(&c.TCPIdleTimeout, "tcp-idle-timeout", sipcore.DefaultIdleTimeout, "close a TCP connection nothing was received on for this long (keep-alives count; 0: never)")
	fs.DurationVar(&drain, "drain", 5*time.Second, "on SIGTERM or SIGINT, how long requests in progress may take before they are cancelled")
	fs.Float64Var(&c.PikeRate, "pike-rate", sipcore.DefaultPikeRate, "`datagrams` per second one source (IPv4 address, IPv6 /64) may send over UDP before it is blocked (0: no limit)")
	fs.IntVar(&c.PikeBurst, "pike-burst", 0, "`datagrams` one source may send at once above --pike-rate (0: twice --pike-rate)")
	fs.DurationVar(&c.PikeBlock, "pike-block-time", sipcore.DefaultPikeBlock, "how long a source over --pike-rate is dropped")
	fs.IntVar(&c.AuthMaxFailuresIP, "auth-max-failures-ip", auth.DefaultMaxFailuresIP, "failed authentications from one source within --auth-window that ban it (0: no limit)")
	fs.IntVar(&c.AuthMaxFailuresUser, "auth-max-failures-user", auth.DefaultMaxFailuresUser, "failed authentications for one user within --auth-window after which any source that fails for it is banned at once (0: no limit)")
	fs.DurationVar(&c.AuthWindow, "auth-window", auth.DefaultFailureWindow, "the sliding window failed authentications are counted in")
	fs.DurationVar(&c.AuthBanTime, "auth-ban-time", auth.DefaultBanTime, "how long a ban lasts")
	fs.Var(trusted, "trusted", "`network` (CIDR or address) never rate-limited nor banned: peer domains' proxies, SBCs, our other nodes (repeatable)")
	fs.IntVar(&gcPercent, "gc-percent", defaultGCPercent, "Go's GOGC: heap growth in `percent` before a collection (GOGC in the environment wins; the memory limit still bounds the heap)")
	fs.StringVar(&memoryLimit, "memory-limit", "", "Go soft memory `limit`, e.g. 512MiB or 2GiB ('off': none; default: 90 % of the cgroup's limit; GOMEMLIMIT wins)")
	pos, err := fs.parse(e, args)
	if err != nil {
		return c, serveProc{}, err
	}
	if len(pos) > 0 {
		return c, serveProc{}, usagef("unexpected argument %q (see --help)", pos[0])
	}
	if len(domains.vals) == 0 {
		return c, serveProc{}, usagef("--domain is required (see --help)")
	}
	if c.TimerC < time.Second || c.FailoverTimeout < 100*time.Millisecond {
		return c, serveProc{}, usagef("--timer-c must be at least 1s and --failover-timeout at least 100ms")
	}
	if c.MinExpires < 1 || c.MaxExpires < c.MinExpires || c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires {
		return c, serveProc{}, usagef("need 1 <= --min-expires <= --default-expires <= --max-expires")
	}
	if err := auth.CheckAlgorithms(splitList(digest)); err != nil {
		return c, serveProc{}, usagef("--digest-algorithms: %v", err)
	}
	if c.MaxContacts == 0 {
		c.MaxContacts = -1 // server.Config: negative is no limit
	}
	if c.TCPMaxConns < 0 || c.TCPMaxPerSource < 0 || c.TCPIdleTimeout < 0 {
		return c, serveProc{}, usagef("--tcp-max-connections, --tcp-max-per-source and --tcp-idle-timeout cannot be negative (0: no limit)")
	}
	for _, v := range []*int{&c.TCPMaxConns, &c.TCPMaxPerSource} {
		if *v == 0 {
			*v = -1 // server.Config: negative is no limit
		}
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = -1
	}
	if c.PikeRate < 0 || c.PikeBurst < 0 || c.PikeBlock < 0 || c.AuthMaxFailuresIP < 0 || c.AuthMaxFailuresUser < 0 || c.AuthWindow <= 0 || c.AuthBanTime <= 0 {
		return c, serveProc{}, usagef("--pike-* and --auth-max-failures-* cannot be negative (0: no limit), --auth-window and --auth-ban-time must be positive")
	}
	for _, v := range []*int{&c.AuthMaxFailuresIP, &c.AuthMaxFailuresUser} {
		if *v == 0 {
			*v = -1 // server.Config: negative is no limit
		}
	}
	if c.PikeRate == 0 {
		c.PikeRate = -1
	}
	if lo, hi, ok := strings.Cut(mediaPorts, "-"); ok {
		c.MediaPortMin, _ = strconv.Atoi(lo)
		c.MediaPortMax, _ = strconv.Atoi(hi)
	}
	if c.MediaPortMin < 1024 || c.MediaPortMax > 65535 || c.MediaPortMax < c.MediaPortMin+3 {
		return c, serveProc{}, usagef("--media-ports %q: want LOW-HIGH within 1024-65535, at least 4 ports", mediaPorts)
	}
	if c.MediaTimeout <= 0 || c.MediaMaxCalls <= 0 {
		return c, serveProc{}, usagef("--media-timeout and --media-max-calls must be positive")
	}
	c.Domains, c.Listen, c.DNS, c.WSOrigins = domains.vals, listen.vals, dns.vals, wsOrigins.vals
	c.ENUMSuffixes = enumSuffixes.vals
	if signature {
		c.ServerHeader = serverHeader(debug.ReadBuildInfo())
	}
	for _, v := range trusted.vals {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return c, serveProc{}, usagef("--trusted %q: want a network (192.0.2.0/24) or an address", v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.Trusted = append(c.Trusted, p.Masked())
	}
	c.DigestAlgorithms = splitList(digest)
	c.MD5OnlyAgents, c.NoMD5OnlyAgents = md5OnlyAgents.vals, len(md5OnlyAgents.vals) == 0
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return c, serveProc{}, usagef("--log-level: %v", err)
	}
	c.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	mem, err := memlimit.Choose(e.getenv, memoryLimit, "/")
	if err != nil {
		return c, serveProc{}, usagef("--memory-limit: %v", err)
	}
	if gcPercent <= 0 {
		return c, serveProc{}, usagef("--gc-percent must be positive")
	}
	if e.getenv("GOGC") != "" {
		gcPercent = -1
	}
	return c, serveProc{drain: drain, memory: mem, gcPercent: gcPercent}, nil
}

// splitList splits a comma-separated flag value, trimming spaces.
func splitList(s string) []string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}
