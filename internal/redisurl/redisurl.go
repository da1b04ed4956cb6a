package redisurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Default ports when a URL leaves them out.
const (
	redisPort    = "6379"
	sentinelPort = "26379"
)

// Open returns a client for the Redis named by rawURL; see Parse for the
// forms accepted. It does not connect: go-redis dials on first use and
// reconnects by itself.
func Open(rawURL string) (goredis.UniversalClient, error) {
	o, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return goredis.NewUniversalClient(o), nil
}

// Parse returns the client options for rawURL, one of
//
//	redis://[user:pass@]host[:port][/db][?options]     one server
//	rediss://...                                        the same over TLS
//	redis+sentinel://[user:pass@]host[:port],.../MASTER[/db][?options]
//	redis+cluster://[user:pass@]host[:port],...[?options]
//
// (rediss+sentinel and rediss+cluster use TLS). Ports default to 6379,
// 26379 for Sentinel. The password authenticates to the Redis servers;
// Sentinels that require one of their own get it from the
// sentinel_password option. The other options are go-redis' own URL
// options (dial_timeout, read_timeout, pool_size, ...), and
// context_timeout_enabled for every form.
func Parse(rawURL string) (*goredis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("redisurl: not a URL (want redis://host:port, redis+sentinel://... or redis+cluster://...)")
	}
	base, topology, _ := strings.Cut(strings.ToLower(scheme), "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("redisurl: unsupported scheme %q (want redis, rediss, redis+sentinel or redis+cluster)", scheme)
	}
	switch topology {
	case "":
		return parseSingle(base, rest)
	case "sentinel":
		return parseSentinel(base, rest)
	case "cluster":
		return parseCluster(base, rest)
	default:
		return nil, fmt.Errorf("redisurl: unsupported scheme %q (want redis, rediss, redis+sentinel or redis+cluster)", scheme)
	}
}

// parts is a URL split by hand, as net/url does not accept host lists.
type parts struct {
	userinfo string // still escaped, without the "@"
	hosts    []string
	path     string
	query    url.Values
}

func split(rest, defaultPort string) (*parts, error) {
	if strings.Contains(rest, "#") {
		return nil, errors.New("redisurl: URL must not have a fragment")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	p := &parts{path: path}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		p.userinfo, authority = authority[:i], authority[i+1:]
	}
	if authority == "" {
		return nil, errors.New("redisurl: URL has no host")
	}
	for _, h := range strings.Split(authority, ",") {
		hp, err := hostPort(h, defaultPort)
		if err != nil {
			return nil, err
		}
		p.hosts = append(p.hosts, hp)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("redisurl: bad query: %w", err)
	}
	p.query = q
	return p, nil
}

// hostPort returns h ("host", "host:port", "[v6]" or "[v6]:port") as
// host:port.
func hostPort(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("redisurl: empty host in host list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: "host" or "[v6]".
		host, port = h, defaultPort
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			host = h[1 : len(h)-1]
		} else if strings.ContainsAny(h, "[]:") {
			return "", fmt.Errorf("redisurl: bad host %q", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("redisurl: bad host %q", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("redisurl: bad port in %q", h)
	}
	return net.JoinHostPort(host, port), nil
}

// goURL rebuilds a go-redis URL with one host and path: go-redis takes
// further hosts as addr options.
func (p *parts) goURL(base, path string) string {
	s := base + "://"
	if p.userinfo != "" {
		s += p.userinfo + "@"
	}
	s += p.hosts[0]
	if path != "" {
		s += "/" + path
	}
	if len(p.query) > 0 {
		s += "?" + p.query.Encode()
	}
	return s
}

func parseSingle(base, rest string) (*goredis.UniversalOptions, error) {
	p, err := split(rest, redisPort)
	if err != nil {
		return nil, err
	}
	if len(p.hosts) > 1 {
		return nil, errors.New("redisurl: redis:// takes one host; use redis+cluster:// or redis+sentinel:// for several")
	}
	ctxTimeout, err := p.takeBool("context_timeout_enabled")
	if err != nil {
		return nil, err
	}
	o, err := goredis.ParseURL(p.goURL(base, p.path))
	if err != nil {
		return nil, wrap(err)
	}
	return &goredis.UniversalOptions{
		Addrs:                 []string{o.Addr},
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              o.Protocol,
		Username:              o.Username,
		Password:              o.Password,
		MaxRetries:            o.MaxRetries,
		MinRetryBackoff:       o.MinRetryBackoff,
		MaxRetryBackoff:       o.MaxRetryBackoff,
		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialerRetries,
		DialerRetryTimeout:    o.DialerRetryTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: ctxTimeout,
		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		MaxConcurrentDials:    o.MaxConcurrentDials,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		TLSConfig:             o.TLSConfig,
		DisableIdentity:       o.DisableIdentity,
		IdentitySuffix:        o.IdentitySuffix,
	}, nil
}

func parseSentinel(base, rest string) (*goredis.UniversalOptions, error) {
	p, err := split(rest, sentinelPort)
	if err != nil {
		return nil, err
	}
	segs := strings.Split(strings.Trim(p.path, "/"), "/")
	if segs[0] == "" || len(segs) > 2 {
		return nil, errors.New("redisurl: redis+sentinel:// needs the master name as its path: redis+sentinel://host:26379/MASTER[/db]")
	}
	master, err := url.PathUnescape(segs[0])
	if err != nil {
		return nil, fmt.Errorf("redisurl: bad master name: %w", err)
	}
	if len(segs) == 2 {
		if _, err := strconv.Atoi(segs[1]); err != nil {
			return nil, fmt.Errorf("redisurl: bad database number %q", segs[1])
		}
		p.query.Set("db", segs[1])
	}
	p.query.Set("master_name", master)
	for _, h := range p.hosts[1:] {
		p.query.Add("addr", h)
	}
	sentinelPassword := p.query.Get("sentinel_password")
	p.query.Del("sentinel_password")
	// go-redis reads the URL's user info as the Sentinels' credentials and
	// the username and password options as the servers'; ours is the
	// servers'.
	if p.userinfo != "" {
		u, err := url.Parse("redis://" + p.userinfo + "@h")
		if err != nil {
			return nil, wrap(err)
		}
		p.query.Set("username", u.User.Username())
		pw, _ := u.User.Password()
		p.query.Set("password", pw)
		p.userinfo = ""
	}
	o, err := goredis.ParseFailoverURL(p.goURL(base, ""))
	if err != nil {
		return nil, wrap(err)
	}
	return &goredis.UniversalOptions{
		Addrs:                 o.SentinelAddrs,
		MasterName:            o.MasterName,
		SentinelPassword:      sentinelPassword,
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              o.Protocol,
		Username:              o.Username,
		Password:              o.Password,
		MaxRetries:            o.MaxRetries,
		MinRetryBackoff:       o.MinRetryBackoff,
		MaxRetryBackoff:       o.MaxRetryBackoff,
		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialerRetries,
		DialerRetryTimeout:    o.DialerRetryTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: o.ContextTimeoutEnabled,
		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		MaxConcurrentDials:    o.MaxConcurrentDials,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		TLSConfig:             o.TLSConfig,
		RouteByLatency:        o.RouteByLatency,
		RouteRandomly:         o.RouteRandomly,
		DisableIdentity:       o.DisableIdentity,
		IdentitySuffix:        o.IdentitySuffix,
	}, nil
}

func parseCluster(base, rest string) (*goredis.UniversalOptions, error) {
	p, err := split(rest, redisPort)
	if err != nil {
		return nil, err
	}
	if p.path != "" {
		return nil, errors.New("redisurl: redis+cluster:// takes no path: a cluster has only database 0")
	}
	for _, h := range p.hosts[1:] {
		p.query.Add("addr", h)
	}
	ctxTimeout, err := p.takeBool("context_timeout_enabled")
	if err != nil {
		return nil, err
	}
	o, err := goredis.ParseClusterURL(p.goURL(base, ""))
	if err != nil {
		return nil, wrap(err)
	}
	return &goredis.UniversalOptions{
		Addrs:                 o.Addrs,
		IsClusterMode:         true,
		ClientName:            o.ClientName,
		Protocol:              o.Protocol,
		Username:              o.Username,
		Password:              o.Password,
		MaxRetries:            o.MaxRetries,
		MinRetryBackoff:       o.MinRetryBackoff,
		MaxRetryBackoff:       o.MaxRetryBackoff,
		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialerRetries,
		DialerRetryTimeout:    o.DialerRetryTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: ctxTimeout,
		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		MaxConcurrentDials:    o.MaxConcurrentDials,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		TLSConfig:             o.TLSConfig,
		MaxRedirects:          o.MaxRedirects,
		ReadOnly:              o.ReadOnly,
		RouteByLatency:        o.RouteByLatency,
		RouteRandomly:         o.RouteRandomly,
		FailingTimeoutSeconds: o.FailingTimeoutSeconds,
	}, nil
}

// takeBool removes the option name from p's query and returns its value:
// for options go-redis reads from some URLs and not from others.
func (p *parts) takeBool(name string) (bool, error) {
	v := p.query.Get(name)
	p.query.Del(name)
	switch v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, fmt.Errorf("redisurl: invalid %s boolean %q", name, v)
}

// wrap prefixes a parse error, dropping the URL that net/url errors quote
// so that a password never reaches a log.
func wrap(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("redisurl: %w", err)
}
