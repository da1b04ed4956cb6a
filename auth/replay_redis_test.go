package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/redisurl"
	"github.com/sipfed/sipfed/internal/testenv"
)

func sharedClient(t *testing.T, url string) goredis.UniversalClient {
	t.Helper()
	c, err := redisurl.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSharedNonceCountAcrossNodes: two nodes of a domain (one secret, one
// Redis, single or Cluster) share the nonce counts, so an Authorization
// replayed to the other node is refused there (stale=true challenge), and
// a higher count is accepted by either.
func TestSharedNonceCountAcrossNodes(t *testing.T) {
	for _, kind := range []string{"single", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			var url string
			if kind == "single" {
				url = testenv.StartRedis(t).URL()
			} else {
				url = testenv.StartCluster(t).URL("")
			}
			node1 := NewServer(users(), testSecret, WithSharedNonceCounts(sharedClient(t, url)))
			node2 := NewServer(users(), testSecret, WithSharedNonceCounts(sharedClient(t, url)))
			nonce := fetchNonce(t, node1)
			c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "MD5"}
			for i, tc := range []struct {
				node *Server
				nc   string
				ok   bool
			}{
				{node1, "00000001", true},
				{node2, "00000001", false}, // the replay, to the other node
				{node1, "00000001", false},
				{node2, "00000002", true},
				{node1, "00000002", false},
				{node1, "00000003", true},
				{node2, "00000003", false},
			} {
				req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, tc.nc, fmt.Sprint("c", i)))
				_, err := tc.node.Authenticate(context.Background(), req, "a.example", false)
				if tc.ok != (err == nil) {
					t.Fatalf("step %d nc=%s: err %v, want ok=%v", i, tc.nc, err, tc.ok)
				}
				if !tc.ok && (!errors.Is(err, ErrReplay) || !strings.Contains(statusOf(t, err).Headers[0].Value(), "stale=true")) {
					t.Fatalf("step %d nc=%s: %v, want a stale=true challenge for a replay", i, tc.nc, err)
				}
			}
		})
	}
}

// TestSharedNonceCountBoundedPerUser: a user who uses many nonces within
// their lifetime keeps at most maxNCPerUser of them in Redis; a forgotten
// one is never accepted again (stale), the newest still work, and the
// hash expires with the nonce lifetime.
func TestSharedNonceCountBoundedPerUser(t *testing.T) {
	r := testenv.StartRedis(t)
	rc := sharedClient(t, r.URL())
	clk := newClock()
	clk.t = time.Now() // the key's TTL runs on Redis' clock
	s := NewServer(users(), testSecret, WithClock(clk.now), WithSharedNonceCounts(rc))
	c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "MD5"}
	auth := func(nonce, nc string) error {
		req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, nc, "x"))
		_, err := s.Authenticate(context.Background(), req, "a.example", false)
		return err
	}
	var nonces []string
	for i := range 3 * maxNCPerUser {
		clk.add(time.Millisecond)
		n := fetchNonce(t, s)
		if err := auth(n, "00000001"); err != nil {
			t.Fatalf("nonce %d: %v", i, err)
		}
		nonces = append(nonces, n)
	}
	key := ncKey("alice", "a.example")
	if n := rc.HLen(context.Background(), key).Val(); n > maxNCPerUser+1 {
		t.Fatalf("alice's hash holds %d fields, want at most %d nonces and the floor", n, maxNCPerUser)
	}
	if ttl := rc.PTTL(context.Background(), key).Val(); ttl <= 0 || ttl > DefaultNonceLifetime+maxSkew {
		t.Fatalf("alice's hash expires in %v, want within the nonce lifetime and skew", ttl)
	}
	// The oldest were forgotten: a next count on them is stale, not new.
	if err := auth(nonces[0], "00000002"); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("forgotten nonce with a higher count: %v, want stale", err)
	}
	// The newest are tracked: a replay is caught, a higher count works.
	last := nonces[len(nonces)-1]
	if err := auth(last, "00000001"); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay of the newest nonce: %v", err)
	}
	if err := auth(last, "00000002"); err != nil {
		t.Fatalf("next count of the newest nonce: %v", err)
	}
}

// TestSharedNonceCountRedisDown: with Redis gone, authentication keeps
// working on the node's own tracker, which still refuses a replay to the
// same node.
func TestSharedNonceCountRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	rc := sharedClient(t, r.URL()+"?dial_timeout=200ms&read_timeout=200ms&max_retries=0")
	s := NewServer(users(), testSecret, WithSharedNonceCounts(rc))
	r.Stop()
	nonce := fetchNonce(t, s)
	c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "MD5"}
	req := func(nc string) error {
		_, err := s.Authenticate(context.Background(), register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, nc, "x")), "a.example", false)
		return err
	}
	if err := req("00000001"); err != nil {
		t.Fatalf("with Redis down: %v", err)
	}
	if err := req("00000001"); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay with Redis down: %v", err)
	}
}
