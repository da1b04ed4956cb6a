package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/redisurl"
	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/location/redis"
	"github.com/sipfed/sipfed/location/storetest"
)

const alice = "alice@a.example"

func client(t testing.TB, r *testenv.Redis) goredis.UniversalClient {
	t.Helper()
	c, err := redisurl.Open(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) location.Store {
		return redis.New(client(t, testenv.StartRedis(t)), redis.WithClock(now))
	})
}

func register(t *testing.T, s location.Store, aor string, cseq uint32, bs ...location.Binding) []location.Binding {
	t.Helper()
	got, err := s.Update(context.Background(), aor, location.Update{CallID: "c1", CSeq: cseq, Now: time.Now(), Set: bs})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return got
}

func binding(contact string, ttl time.Duration) location.Binding {
	return location.Binding{Contact: contact, Q: 1000, Expires: time.Now().Add(ttl)}
}

// TestUnavailable checks that a stopped Redis makes calls fail promptly
// with location.ErrUnavailable (503 for the registrar), and that the store
// works again, script included, once Redis is back, empty.
func TestUnavailable(t *testing.T) {
	r := testenv.StartRedis(t)
	c, err := redisurl.Open(r.URL() + "?dial_timeout=200ms&read_timeout=200ms&write_timeout=200ms&max_retries=1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := redis.New(c)
	register(t, s, alice, 1, binding("sip:alice@10.0.0.1", time.Hour))

	r.Stop()
	for name, call := range map[string]func(context.Context) error{
		"Update": func(ctx context.Context) error {
			_, err := s.Update(ctx, alice, location.Update{CallID: "c1", CSeq: 2, Now: time.Now(),
				Set: []location.Binding{binding("sip:alice@10.0.0.2", time.Hour)}})
			return err
		},
		"Lookup": func(ctx context.Context) error {
			_, err := s.Lookup(ctx, alice)
			return err
		},
	} {
		start := time.Now()
		err := call(context.Background())
		if !errors.Is(err, location.ErrUnavailable) {
			t.Fatalf("%s with Redis stopped: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s with Redis stopped took %v", name, d)
		}
		t.Logf("%s with Redis stopped: %v after %v", name, err, time.Since(start))
	}

	r.Restart(t)
	// go-redis stops dialing after repeated failures and probes once a
	// second, so the first calls after the restart may still fail.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Update(context.Background(), alice, location.Update{CallID: "c1", CSeq: 3, Now: time.Now(),
			Set: []location.Binding{binding("sip:alice@10.0.0.3", time.Hour)}})
		if err == nil {
			break
		}
		if !errors.Is(err, location.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Update after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	bs, err := s.Lookup(context.Background(), alice)
	if err != nil || len(bs) != 1 || bs[0].Contact != "sip:alice@10.0.0.3" {
		t.Fatalf("Lookup after Redis came back = %v, %v; want the one binding made since", bs, err)
	}
}

// TestHungRedisTimesOut checks a Redis that accepts connections and never
// answers: the read timeout, or the caller's deadline, ends the call with
// ErrUnavailable.
// hungRedis listens on loopback like a Redis that accepts connections and
// never answers, until the test ends, and returns its address.
func hungRedis(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var held []net.Conn // accepted, never answered, closed with l
		for {
			conn, err := l.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, conn)
		}
	}()
	return l.Addr().String()
}

// TestUpdatesQueueBounded: with Redis hung, the updates waiting for a
// pipeline are bounded: past the bound an update fails at once with
// ErrUnavailable (503 for the registrar) instead of piling up.
func TestUpdatesQueueBounded(t *testing.T) {
	c, err := redisurl.Open("redis://" + hungRedis(t) + "?max_retries=-1&read_timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := redis.New(c)
	redis.SetMaxQueued(s, 4)
	update := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := s.Update(ctx, fmt.Sprintf("q%d@a.example", i), location.Update{CallID: "c", CSeq: 1, Now: time.Now(), Set: []location.Binding{binding("sip:q@192.0.2.1", time.Hour)}})
		return err
	}
	var wg sync.WaitGroup
	for i := range 6 { // two pipelines stuck on Redis, four waiting
		wg.Add(1)
		go func() { defer wg.Done(); update(i) }()
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	err = update(99)
	if !errors.Is(err, location.ErrUnavailable) {
		t.Fatalf("an update past the bound: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("an update past the bound waited %v", d)
	}
	wg.Wait()
}

func TestHungRedisTimesOut(t *testing.T) {
	addr := hungRedis(t)
	for _, tc := range []struct {
		name, query string
		timeout     time.Duration
	}{
		{"ReadTimeout", "?max_retries=-1&read_timeout=300ms", time.Minute},
		{"ContextDeadline", "?max_retries=-1&context_timeout_enabled=true", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redisurl.Open("redis://" + addr + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := redis.New(c)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			start := time.Now()
			_, err = s.Lookup(ctx, alice)
			if !errors.Is(err, location.ErrUnavailable) {
				t.Fatalf("Lookup on a hung Redis: %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Lookup on a hung Redis took %v", d)
			}
			// Updates too, several at once (a pipeline).
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
					defer cancel()
					start := time.Now()
					_, err := s.Update(ctx, fmt.Sprintf("u%d@a.example", i), location.Update{CallID: "c", CSeq: 1, Now: time.Now(), Set: []location.Binding{binding("sip:u@192.0.2.1", time.Hour)}})
					if !errors.Is(err, location.ErrUnavailable) {
						t.Errorf("Update on a hung Redis: %v, want ErrUnavailable", err)
					}
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("Update on a hung Redis took %v", d)
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestConcurrentUpdatesPipelined: updates made at once go to Redis in
// pipelines, each gets its own answer, and a Redis that forgot the
// script (SCRIPT FLUSH, as after a restart) is given it again for every
// update of a pipeline.
func TestConcurrentUpdatesPipelined(t *testing.T) {
	s := redis.New(client(t, testenv.StartRedis(t)))
	run := func(round int) {
		var wg sync.WaitGroup
		for i := range 300 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				aor := fmt.Sprintf("u%d@a.example", i)
				got, err := s.Update(context.Background(), aor, location.Update{CallID: "c", CSeq: uint32(round), Now: time.Now(),
					Set: []location.Binding{binding(fmt.Sprintf("sip:u%d-%d@192.0.2.1", i, round), time.Hour)}})
				if err != nil {
					t.Errorf("%s: %v", aor, err)
					return
				}
				if len(got) != round {
					t.Errorf("%s round %d: %d bindings back, want %d", aor, round, len(got), round)
				}
			}()
		}
		wg.Wait()
	}
	run(1)
	if n := redis.Pipelined(s); n == 0 {
		t.Error("300 updates at once: none went in a pipeline")
	}
	if err := redis.ScriptFlush(s); err != nil {
		t.Fatal(err)
	}
	run(2)
	for i := range 300 {
		bs, err := s.Lookup(context.Background(), fmt.Sprintf("u%d@a.example", i))
		if err != nil || len(bs) != 2 {
			t.Fatalf("u%d: %d bindings, %v", i, len(bs), err)
		}
	}
}

// TestLayout checks the data as other tools and nodes see it: one hash per
// AOR under its hash tag, one field per device, JSON values, and a key
// TTL that is the latest binding's expiry.
func TestLayout(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	s := redis.New(c)
	ctx := context.Background()
	key := "sipfed:loc:{alice@a.example}"
	if redis.Key(alice) != key {
		t.Fatalf("Key = %q, want %q", redis.Key(alice), key)
	}
	short, long := binding("sip:alice@10.0.0.1", time.Hour), binding("sip:alice@10.0.0.2", 2*time.Hour)
	register(t, s, alice, 1, short, long)

	pttl := func(want time.Duration) {
		t.Helper()
		got, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got > want || got < want-5*time.Second {
			t.Fatalf("PTTL %v, want about %v", got, want)
		}
	}
	pttl(2 * time.Hour)

	fields, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) != 2 {
		t.Fatalf("hash fields %v, want 2", fields)
	}
	// The compact value: the contact is the field's, the AOR the key's.
	var v map[string]any
	if err := json.Unmarshal([]byte(fields[short.Key()]), &v); err != nil {
		t.Fatalf("field %s: %v", short.Key(), err)
	}
	if v["e"] != float64(short.Expires.UnixMilli()) || v["ci"] != "c1" || v["s"] != float64(1) || v["c"] != nil || v["aor"] != nil {
		t.Fatalf("field %s = %s", short.Key(), fields[short.Key()])
	}

	_, err = s.Update(ctx, alice, location.Update{CallID: "c1", CSeq: 2, Now: time.Now(), Remove: []string{long.Key()}})
	if err != nil {
		t.Fatal(err)
	}
	pttl(time.Hour)
	_, err = s.Update(ctx, alice, location.Update{CallID: "c1", CSeq: 3, Now: time.Now(), RemoveAll: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Fatalf("key exists (%d, %v) after its last binding went", n, err)
	}
}

// TestFirstFormatRead checks that bindings written in the first, long
// format (before the compact one) are found, keep their CSeq order and are
// rewritten compactly by the next registration.
func TestFirstFormatRead(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	s := redis.New(c)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	old := fmt.Sprintf(`{"aor":%q,"contact":"sip:alice@10.0.0.9;transport=tcp","instance":"urn:uuid:1","reg_id":2,"q":500,"expires":%d,`+
		`"call_id":"old-1","cseq":7,"path":["<sip:edge.a.example;lr>"],"received":"198.51.100.1:5060","transport":"tcp","nat":true,"node":"n1","ua":"old phone","updated":%d}`,
		alice, exp.UnixMilli(), time.Now().UnixMilli())
	field := "i:urn:uuid:1;2"
	if err := c.HSet(ctx, redis.Key(alice), field, old).Err(); err != nil {
		t.Fatal(err)
	}
	want := location.Binding{AOR: alice, Contact: "sip:alice@10.0.0.9;transport=tcp", InstanceID: "urn:uuid:1", RegID: 2, Q: 500, Expires: exp,
		CallID: "old-1", CSeq: 7, Path: []string{"<sip:edge.a.example;lr>"}, Received: "198.51.100.1:5060", Transport: "tcp", NAT: true, NodeID: "n1", UserAgent: "old phone"}
	bs, err := s.Lookup(ctx, alice)
	if err != nil || len(bs) != 1 || !bs[0].Expires.Equal(exp) {
		t.Fatalf("Lookup = %+v, %v", bs, err)
	}
	bs[0].Expires = exp
	if !reflect.DeepEqual(bs[0], want) {
		t.Fatalf("Lookup = %+v\nwant     %+v", bs[0], want)
	}
	b := want
	b.Expires = time.Now().Add(2 * time.Hour)
	if _, err := s.Update(ctx, alice, location.Update{CallID: "old-1", CSeq: 7, Now: time.Now(), Set: []location.Binding{b}}); !errors.Is(err, location.ErrStaleCSeq) {
		t.Fatalf("Update with the old binding's CSeq: %v, want ErrStaleCSeq", err)
	}
	bs, err = s.Update(ctx, alice, location.Update{CallID: "old-1", CSeq: 8, Now: time.Now(), Set: []location.Binding{b}})
	if err != nil || len(bs) != 1 || bs[0].Contact != want.Contact || bs[0].InstanceID != "urn:uuid:1" || bs[0].RegID != 2 || bs[0].Q != 500 {
		t.Fatalf("Update = %+v, %v", bs, err)
	}
	v, err := c.HGet(ctx, redis.Key(alice), field).Result()
	if err != nil || strings.Contains(v, `"expires"`) || !strings.Contains(v, `"c":"sip:alice@10.0.0.9;transport=tcp"`) {
		t.Fatalf("rewritten value %s (%v)", v, err)
	}
}

// TestUndecodableFieldIgnored checks that a field that is not a binding
// (written by hand or by a future version) neither breaks the AOR nor stays.
func TestUndecodableFieldIgnored(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	s := redis.New(c)
	ctx := context.Background()
	if err := c.HSet(ctx, redis.Key(alice), "junk", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if bs, err := s.Lookup(ctx, alice); err != nil || len(bs) != 0 {
		t.Fatalf("Lookup = %v, %v; want nothing", bs, err)
	}
	register(t, s, alice, 1, binding("sip:alice@10.0.0.1", time.Hour))
	if ok, err := c.HExists(ctx, redis.Key(alice), "junk").Result(); err != nil || ok {
		t.Fatalf("junk field still there after an Update (%v, %v)", ok, err)
	}
}

// TestPublishOnChange checks the message other nodes get when an AOR
// changes, and that updates changing nothing publish nothing.
func TestPublishOnChange(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	s := redis.New(c)
	ctx := context.Background()
	ps := c.Subscribe(ctx, redis.Key(alice), redis.Key("bob@a.example"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := ps.Channel()
	next := func() *goredis.Message {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no message published")
			return nil
		}
	}

	register(t, s, alice, 1, binding("sip:alice@10.0.0.1", time.Hour))
	if m := next(); m.Channel != redis.Key(alice) || m.Payload != alice {
		t.Fatalf("message %q on %q, want %q on %q", m.Payload, m.Channel, alice, redis.Key(alice))
	}
	// A query, a refresh, a stale update and removing an unknown
	// contact add or remove no device.
	register(t, s, alice, 2)
	register(t, s, alice, 5, binding("sip:alice@10.0.0.1", time.Hour))
	if _, err := s.Update(ctx, alice, location.Update{CallID: "c1", CSeq: 4, Now: time.Now(),
		Set: []location.Binding{binding("sip:alice@10.0.0.1", time.Hour)}}); !errors.Is(err, location.ErrStaleCSeq) {
		t.Fatalf("stale Update: %v", err)
	}
	if _, err := s.Update(ctx, alice, location.Update{CallID: "c1", CSeq: 6, Now: time.Now(), Remove: []string{"c:sip:nobody"}}); err != nil {
		t.Fatal(err)
	}
	register(t, s, "bob@a.example", 1, binding("sip:bob@10.0.0.9", time.Hour))
	if m := next(); m.Payload != "bob@a.example" {
		t.Fatalf("message %q, want bob's: an update that changed nothing published", m.Payload)
	}
	// Removing publishes too.
	if _, err := s.Update(ctx, alice, location.Update{CallID: "c1", CSeq: 7, Now: time.Now(), RemoveAll: true}); err != nil {
		t.Fatal(err)
	}
	if m := next(); m.Payload != alice {
		t.Fatalf("message %q after removing, want %q", m.Payload, alice)
	}
}

func TestWatch(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	s := redis.New(c)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Another node's store on its own client.
	register(t, redis.New(client(t, r)), alice, 1, binding("sip:alice@10.0.0.1", time.Hour))
	select {
	case aor := <-ch:
		if aor != alice {
			t.Fatalf("Watch gave %q, want %q", aor, alice)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch gave nothing")
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("Watch gave a change after its context ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch channel not closed after its context ended")
	}
}

// TestSurvivesRestartOfSipfed checks that a new Store, as after a restart
// of sipfed, finds the bindings an earlier one made.
func TestSurvivesRestartOfSipfed(t *testing.T) {
	r := testenv.StartRedis(t)
	c1 := client(t, r)
	s1 := redis.New(c1)
	want := register(t, s1, alice, 1, binding("sip:alice@10.0.0.1", time.Hour), binding("sip:alice@10.0.0.2", time.Hour))
	s1.Close()
	c1.Close()

	got, err := redis.New(client(t, r)).Lookup(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("new store found %d bindings, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Contact != want[i].Contact || !got[i].Expires.Equal(want[i].Expires) {
			t.Fatalf("binding %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	storetest.BenchUpdate(b, redis.New(client(b, testenv.StartRedis(b))))
}

func BenchmarkLookup(b *testing.B) {
	storetest.BenchLookup(b, redis.New(client(b, testenv.StartRedis(b))))
}

// redisBindings is how many bindings BenchmarkRedisMemoryPerBinding
// stores: make bench sets a million (go test -bench RedisMemory
// -redis-bindings 1000000).
var redisBindings = flag.Int("redis-bindings", 100_000, "bindings stored by BenchmarkRedisMemoryPerBinding")

// BenchmarkRedisMemoryPerBinding stores -redis-bindings AORs of one
// binding each, shaped like real ones, and reports Redis's used_memory per
// binding: with Redis's default configuration, and with the
// hash-max-listpack-value the README suggests for a Redis of sipfed's own,
// which keeps an AOR's hash in one listpack instead of a hash table.
func BenchmarkRedisMemoryPerBinding(b *testing.B) {
	for _, listpack := range []string{"", "256"} {
		name := "default"
		if listpack != "" {
			name = "hash-max-listpack-value=" + listpack
		}
		b.Run(name, func(b *testing.B) { benchRedisMemory(b, listpack) })
	}
}

func benchRedisMemory(b *testing.B, listpack string) {
	n := *redisBindings
	for range b.N {
		c := client(b, testenv.StartRedis(b))
		s := redis.New(c)
		ctx := context.Background()
		if listpack != "" {
			if err := c.ConfigSet(ctx, "hash-max-listpack-value", listpack).Err(); err != nil {
				b.Fatal(err)
			}
		}
		used := func() float64 {
			info, err := c.Info(ctx, "memory").Result()
			if err != nil {
				b.Fatal(err)
			}
			for _, l := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
					f, _ := strconv.ParseFloat(v, 64)
					return f
				}
			}
			b.Fatal("no used_memory")
			return 0
		}
		before := used()
		now := time.Now()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					aor := fmt.Sprintf("user%06d@a.example", i)
					if _, err := s.Update(ctx, aor, location.Update{CallID: fmt.Sprintf("%08x-4b1c-9e2f-%012x", i, i), CSeq: 2, Now: now, Set: []location.Binding{{
						Contact: fmt.Sprintf("sip:user%06d@192.168.1.%d:5060;transport=udp", i, i%250), Q: 1000, Expires: now.Add(time.Hour),
						Received: fmt.Sprintf("203.0.113.%d:%d", i%250, 40000+i%20000), Transport: "udp", NAT: true, NodeID: "node-1", UserAgent: "baresip v3.10.1",
					}}}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric((used()-before)/float64(n), "redis-B/binding")
	}
}
