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

// Options are the client options of a Redis URL: the option struct that
// go-redis' own parser for the form returned, exactly one of them set.
type Options struct {
	Single   *goredis.Options         // redis://, rediss://
	Failover *goredis.FailoverOptions // redis+sentinel://, rediss+sentinel://
	Cluster  *goredis.ClusterOptions  // redis+cluster://, rediss+cluster://
}

// Addrs returns the addresses the client starts from: the server's, the
// Sentinels' or the cluster nodes'.
func (o *Options) Addrs() []string {
	switch {
	case o.Failover != nil:
		return o.Failover.SentinelAddrs
	case o.Cluster != nil:
		return o.Cluster.Addrs
	case o.Single != nil:
		return []string{o.Single.Addr}
	}
	return nil
}

// Open returns a client for the Redis named by rawURL; see Parse for the
// forms accepted. It does not connect: go-redis dials on first use and
// reconnects by itself.
func Open(rawURL string) (goredis.UniversalClient, error) {
	o, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch {
	case o.Cluster != nil:
		return goredis.NewClusterClient(o.Cluster), nil
	case o.Failover != nil && (o.Failover.RouteByLatency || o.Failover.RouteRandomly):
		// Reads spread over the replicas need the cluster client;
		// NewFailoverClient panics on these options.
		return goredis.NewFailoverClusterClient(o.Failover), nil
	case o.Failover != nil:
		return goredis.NewFailoverClient(o.Failover), nil
	default:
		return goredis.NewClient(o.Single), nil
	}
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
//
// go-redis' ParseURL, ParseFailoverURL and ParseClusterURL do the parsing;
// Parse adds what they lack: host lists, the master name as the path,
// the Sentinel default port, sentinel_password, and stricter checks
// (fragments, ports, one host for redis://, no path for a cluster).
func Parse(rawURL string) (*Options, error) {
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
	// net/url would accept a fragment and go-redis ignore it.
	if strings.Contains(rest, "#") {
		return nil, errors.New("redisurl: URL must not have a fragment")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	p := &parts{path: path}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		p.userinfo, authority = authority[:i], authority[i+1:]
	}
	// go-redis would default an empty host to localhost.
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
	// go-redis reads the query with url.URL.Query, which drops what it
	// cannot decode.
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

// goURL rebuilds a URL for go-redis' parsers, which take one host: the
// first host goes into the authority, the others into addr options,
// which go-redis' Sentinel and Cluster parsers read.
func (p *parts) goURL(base, path string) string {
	for _, h := range p.hosts[1:] {
		p.query.Add("addr", h)
	}
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

// defaultProtocol is the RESP version spoken unless the URL's protocol
// parameter says otherwise: 2. go-redis speaks RESP3 by default and then,
// before every command, looks for push notifications on the connection
// (7 % of a registration's CPU on a Redis store); sipfed uses none (its
// pub/sub has connections of its own, which RESP2 serves).
const defaultProtocol = 2

func parseSingle(base, rest string) (*Options, error) {
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
	resp3 := p.query.Has("protocol")
	o, err := goredis.ParseURL(p.goURL(base, p.path))
	if err != nil {
		return nil, wrap(err)
	}
	o.ContextTimeoutEnabled = ctxTimeout
	if !resp3 {
		o.Protocol = defaultProtocol
	}
	return &Options{Single: o}, nil
}

func parseSentinel(base, rest string) (*Options, error) {
	p, err := split(rest, sentinelPort)
	if err != nil {
		return nil, err
	}
	// go-redis takes the master name from an option and the path as the
	// database number, which it checks itself.
	master, db, _ := strings.Cut(strings.Trim(p.path, "/"), "/")
	if master == "" || strings.Contains(db, "/") {
		return nil, errors.New("redisurl: redis+sentinel:// needs the master name as its path: redis+sentinel://host:26379/MASTER[/db]")
	}
	master, err = url.PathUnescape(master)
	if err != nil {
		return nil, fmt.Errorf("redisurl: bad master name: %w", err)
	}
	p.query.Set("master_name", master)
	sentinelPassword := p.query.Get("sentinel_password")
	p.query.Del("sentinel_password")
	resp3 := p.query.Has("protocol")
	o, err := goredis.ParseFailoverURL(p.goURL(base, db))
	if err != nil {
		return nil, wrap(err)
	}
	if !resp3 {
		o.Protocol = defaultProtocol
	}
	// go-redis reads the URL's user info as the Sentinels' credentials and
	// the username and password options as the servers'; ours are the
	// servers'.
	if p.userinfo != "" {
		o.Username, o.Password = o.SentinelUsername, o.SentinelPassword
	}
	o.SentinelUsername, o.SentinelPassword = "", sentinelPassword
	return &Options{Failover: o}, nil
}

func parseCluster(base, rest string) (*Options, error) {
	p, err := split(rest, redisPort)
	if err != nil {
		return nil, err
	}
	// go-redis would ignore a path.
	if p.path != "" {
		return nil, errors.New("redisurl: redis+cluster:// takes no path: a cluster has only database 0")
	}
	ctxTimeout, err := p.takeBool("context_timeout_enabled")
	if err != nil {
		return nil, err
	}
	resp3 := p.query.Has("protocol")
	o, err := goredis.ParseClusterURL(p.goURL(base, ""))
	if err != nil {
		return nil, wrap(err)
	}
	o.ContextTimeoutEnabled = ctxTimeout
	if !resp3 {
		o.Protocol = defaultProtocol
	}
	return &Options{Cluster: o}, nil
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
