package redisurl_test

import (
	"context"
	"crypto/tls"
	"reflect"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/redisurl"
	"github.com/sipfed/sipfed/internal/testenv"
)

func TestParse(t *testing.T) {
	tests := []struct {
		url  string
		want goredis.UniversalOptions // the fields checked below
		tls  bool
	}{
		{url: "redis://127.0.0.1:6379", want: goredis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}}},
		{url: "redis://localhost", want: goredis.UniversalOptions{Addrs: []string{"localhost:6379"}}},
		{url: "redis://[::1]", want: goredis.UniversalOptions{Addrs: []string{"[::1]:6379"}}},
		{url: "redis://[::1]:7000/2", want: goredis.UniversalOptions{Addrs: []string{"[::1]:7000"}, DB: 2}},
		{url: "redis://sip:s%40cret@redis.a.example:6380/3?dial_timeout=2s&read_timeout=500ms&pool_size=7",
			want: goredis.UniversalOptions{Addrs: []string{"redis.a.example:6380"}, DB: 3, Username: "sip", Password: "s@cret",
				DialTimeout: 2 * time.Second, ReadTimeout: 500 * time.Millisecond, PoolSize: 7}},
		{url: "redis://:pw@h:1", want: goredis.UniversalOptions{Addrs: []string{"h:1"}, Password: "pw"}},
		{url: "redis://h:1?context_timeout_enabled=true", want: goredis.UniversalOptions{Addrs: []string{"h:1"}, ContextTimeoutEnabled: true}},
		{url: "redis+cluster://h:1?context_timeout_enabled=1", want: goredis.UniversalOptions{Addrs: []string{"h:1"}, IsClusterMode: true, ContextTimeoutEnabled: true}},
		{url: "redis+sentinel://h:1/m?context_timeout_enabled=true", want: goredis.UniversalOptions{Addrs: []string{"h:1"}, MasterName: "m", ContextTimeoutEnabled: true}},
		{url: "rediss://h:6380", tls: true, want: goredis.UniversalOptions{Addrs: []string{"h:6380"}}},
		{url: "redis+sentinel://s1:26379,s2,[2001:db8::2]:5000/mymaster",
			want: goredis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26379", "[2001:db8::2]:5000"}, MasterName: "mymaster"}},
		{url: "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/4?sentinel_password=spw&dial_timeout=1",
			want: goredis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DB: 4,
				Password: "pw", SentinelPassword: "spw", DialTimeout: time.Second}},
		{url: "rediss+sentinel://s1/m", tls: true, want: goredis.UniversalOptions{Addrs: []string{"s1:26379"}, MasterName: "m"}},
		{url: "redis+cluster://n1:7000,n2:7001,n3",
			want: goredis.UniversalOptions{Addrs: []string{"n1:7000", "n2:7001", "n3:6379"}, IsClusterMode: true}},
		{url: "redis+cluster://u:pw@n1:7000?read_only=true",
			want: goredis.UniversalOptions{Addrs: []string{"n1:7000"}, IsClusterMode: true, Username: "u", Password: "pw", ReadOnly: true}},
		{url: "REDISS+CLUSTER://n1:7000/", tls: true, want: goredis.UniversalOptions{Addrs: []string{"n1:7000"}, IsClusterMode: true}},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			o, err := redisurl.Parse(tc.url)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, tlsConfig := checked(t, o)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("options\n got %+v\nwant %+v", got, tc.want)
			}
			if (tlsConfig != nil) != tc.tls {
				t.Errorf("TLS %v, want %v", tlsConfig != nil, tc.tls)
			}
		})
	}
}

// checked returns the fields of o that TestParse checks, in the
// UniversalOptions that go-redis maps its three option structs to, and
// the TLS configuration. It fails t unless exactly one struct is set.
func checked(t *testing.T, o *redisurl.Options) (goredis.UniversalOptions, *tls.Config) {
	t.Helper()
	set := 0
	for _, ok := range []bool{o.Single != nil, o.Failover != nil, o.Cluster != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		t.Fatalf("%d option structs set, want 1: %+v", set, o)
	}
	u := goredis.UniversalOptions{Addrs: o.Addrs()}
	switch {
	case o.Single != nil:
		s := o.Single
		u.DB, u.Username, u.Password = s.DB, s.Username, s.Password
		u.DialTimeout, u.ReadTimeout, u.PoolSize = s.DialTimeout, s.ReadTimeout, s.PoolSize
		u.ContextTimeoutEnabled = s.ContextTimeoutEnabled
		return u, s.TLSConfig
	case o.Failover != nil:
		f := o.Failover
		u.MasterName, u.SentinelPassword = f.MasterName, f.SentinelPassword
		u.DB, u.Username, u.Password = f.DB, f.Username, f.Password
		u.DialTimeout, u.ReadTimeout, u.PoolSize = f.DialTimeout, f.ReadTimeout, f.PoolSize
		u.ReadOnly, u.ContextTimeoutEnabled = f.ReplicaOnly, f.ContextTimeoutEnabled
		if f.SentinelUsername != "" {
			t.Errorf("SentinelUsername %q, want none", f.SentinelUsername)
		}
		return u, f.TLSConfig
	default:
		c := o.Cluster
		u.IsClusterMode = true
		u.Username, u.Password = c.Username, c.Password
		u.DialTimeout, u.ReadTimeout, u.PoolSize = c.DialTimeout, c.ReadTimeout, c.PoolSize
		u.ReadOnly, u.ContextTimeoutEnabled = c.ReadOnly, c.ContextTimeoutEnabled
		return u, c.TLSConfig
	}
}

// TestParseKeepsGoRedisOptions checks that options go-redis parses reach
// the client unchanged, including ones this package never names: copying
// them field by field used to drop these.
func TestParseKeepsGoRedisOptions(t *testing.T) {
	tests := []struct {
		url string
		ok  func(*redisurl.Options) bool
	}{
		{"redis://h?pipeline_pool_size=-1&conn_max_lifetime=1m&conn_max_lifetime_jitter=5s", func(o *redisurl.Options) bool {
			return o.Single.PipelinePoolSize == -1 && o.Single.ConnMaxLifetimeJitter == 5*time.Second
		}},
		{"rediss://h?skip_verify=true", func(o *redisurl.Options) bool {
			return o.Single.TLSConfig.InsecureSkipVerify
		}},
		{"redis+sentinel://s/m?replica_only=true&use_disconnected_replicas=true&pipeline_pool_size=3", func(o *redisurl.Options) bool {
			return o.Failover.ReplicaOnly && o.Failover.UseDisconnectedReplicas && o.Failover.PipelinePoolSize == 3
		}},
		{"redis+sentinel://s/m?route_by_latency=1&route_by_latency_tolerance=5ms", func(o *redisurl.Options) bool {
			return o.Failover.RouteByLatency && o.Failover.RouteByLatencyTolerance == 5*time.Millisecond
		}},
		{"redis+cluster://n?route_by_latency=1&route_by_latency_tolerance=5ms&pipeline_pool_size=-1", func(o *redisurl.Options) bool {
			return o.Cluster.RouteByLatencyTolerance == 5*time.Millisecond && o.Cluster.PipelinePoolSize == -1
		}},
		// RESP2 unless asked for (see defaultProtocol); the URL's choice wins.
		{"redis://h", func(o *redisurl.Options) bool { return o.Single.Protocol == 2 }},
		{"redis://h?protocol=3", func(o *redisurl.Options) bool { return o.Single.Protocol == 3 }},
		{"redis+sentinel://s/m", func(o *redisurl.Options) bool { return o.Failover.Protocol == 2 }},
		{"redis+sentinel://s/m?protocol=3", func(o *redisurl.Options) bool { return o.Failover.Protocol == 3 }},
		{"redis+cluster://n", func(o *redisurl.Options) bool { return o.Cluster.Protocol == 2 }},
		{"redis+cluster://n?protocol=3", func(o *redisurl.Options) bool { return o.Cluster.Protocol == 3 }},
	}
	for _, tc := range tests {
		o, err := redisurl.Parse(tc.url)
		if err != nil {
			t.Fatalf("Parse(%s): %v", tc.url, err)
		}
		if !tc.ok(o) {
			t.Errorf("Parse(%s) lost an option: %+v", tc.url, o)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ url, want string }{
		{"", "not a URL"},
		{"localhost:6379", "not a URL"},
		{"http://h", `unsupported scheme "http"`},
		{"redis+foo://h", `unsupported scheme "redis+foo"`},
		{"redis://", "no host"},
		{"redis://:secret@", "no host"},
		{"redis://h:notaport", "bad port"},
		{"redis://h:70000", "bad port"},
		{"redis://::1", "bad host"},
		{"redis://[::1", "bad host"},
		{"redis://h1,h2", "takes one host"},
		{"redis://h/x", "invalid database number"},
		{"redis://h/1/2", "invalid URL path"},
		{"redis://h?bogus=1", "unexpected option"},
		{"redis://h#frag", "fragment"},
		{"redis://h?x=%zz", "bad query"},
		{"redis+sentinel://s1,s2", "needs the master name"},
		{"redis+sentinel://s1/m/x", "invalid database number"},
		{"redis+sentinel://s1/m/1/2", "needs the master name"},
		{"redis+sentinel://s1,,s2/m", "empty host"},
		{"redis+cluster://n1:7000/0", "takes no path"},
		{"redis+cluster://n1?dial_timeout=soon", "invalid dial_timeout"},
		{"redis://h?context_timeout_enabled=yes", "invalid context_timeout_enabled"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			o, err := redisurl.Parse(tc.url)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", o)
			}
			if !strings.HasPrefix(err.Error(), "redisurl: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want one starting with redisurl: and saying %q", err, tc.want)
			}
			if _, err := redisurl.Open(tc.url); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}

// TestErrorsHideThePassword checks that a bad URL does not put its
// password into the error, which ends up in logs.
func TestErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:hunter2@h:1/x",
		"redis://user:hunter2@h:1?bogus=1",
		"redis+sentinel://:hunter2@h:1/m?bogus=1",
		"redis+cluster://:hunter2@h:1?bogus=1",
		"redis://user:hunter2%zz@h:1",
	} {
		_, err := redisurl.Parse(u)
		if err == nil {
			t.Fatalf("Parse(%s) succeeded", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%s): error %q shows the password", u, err)
		}
	}
}

func TestOpenPicksTheClient(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want any
	}{
		{"redis://h:1", (*goredis.Client)(nil)},
		{"redis+sentinel://s:1/m", (*goredis.Client)(nil)},
		{"redis+sentinel://s:1/m?route_randomly=true", (*goredis.ClusterClient)(nil)},
		{"redis+cluster://n:1", (*goredis.ClusterClient)(nil)},
		{"redis+cluster://n:1,n:2", (*goredis.ClusterClient)(nil)},
	} {
		c, err := redisurl.Open(tc.url)
		if err != nil {
			t.Fatalf("Open(%s): %v", tc.url, err)
		}
		if reflect.TypeOf(c) != reflect.TypeOf(tc.want) {
			t.Errorf("Open(%s) = %T, want %T", tc.url, c, tc.want)
		}
		c.Close()
	}
}

func TestOpenTalksToRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	c, err := redisurl.Open(r.URL() + "/1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	c0, err := redisurl.Open(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c0.Close()
	if n, err := c0.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key of db 1 seen in db 0: %d, %v", n, err)
	}
}
