package sipcore

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// fakeClock is a settable clock for limiters.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func allowed(p *Pike, ip netip.Addr, n int) int {
	ok := 0
	for range n {
		if p.Allow(ip) {
			ok++
		}
	}
	return ok
}

func TestPikeTokenBucket(t *testing.T) {
	clk := newFakeClock()
	var logs testenv.Buffer
	p := NewPike(PikeConfig{Rate: 10, Burst: 5, Block: 30 * time.Second, Clock: clk.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	src := netip.MustParseAddr("192.0.2.1")

	if got := allowed(p, src, 5); got != 5 {
		t.Fatalf("burst: %d of 5 allowed", got)
	}
	if p.Allow(src) {
		t.Fatal("the message over the burst was allowed")
	}
	// Blocked: refilling does not help until the block is over.
	clk.Advance(29 * time.Second)
	if got := allowed(p, src, 3); got != 0 {
		t.Fatalf("%d messages allowed while blocked", got)
	}
	clk.Advance(time.Second)
	if got := allowed(p, src, 6); got != 5 {
		t.Fatalf("after the block: %d of 6 allowed, want the full burst of 5", got)
	}
	if p.Blocks() != 2 || p.Dropped() != 1+3+1 {
		t.Errorf("blocks %d dropped %d, want 2 and 5", p.Blocks(), p.Dropped())
	}
	if n := strings.Count(logs.String(), "rate limit: source 192.0.2.1 blocked for 30 s"); n != 2 {
		t.Errorf("%d block lines logged, want one per block:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("block not logged at warn:\n%s", logs.String())
	}
}

func TestPikeRefillsAtRate(t *testing.T) {
	clk := newFakeClock()
	p := NewPike(PikeConfig{Rate: 100, Burst: 10, Clock: clk.Now})
	src := netip.MustParseAddr("192.0.2.1")
	// 100/s for 3 s, in steps of 10 ms: always within budget.
	for i := range 300 {
		if !p.Allow(src) {
			t.Fatalf("message %d at the sustained rate was dropped", i)
		}
		clk.Advance(10 * time.Millisecond)
	}
	if p.Dropped() != 0 {
		t.Fatalf("dropped %d", p.Dropped())
	}
}

func TestPikeOtherSourcesUnaffected(t *testing.T) {
	clk := newFakeClock()
	p := NewPike(PikeConfig{Rate: 1, Burst: 2, Clock: clk.Now})
	attacker := netip.MustParseAddr("192.0.2.3")
	allowed(p, attacker, 1000)
	for _, s := range []string{"192.0.2.2", "::ffff:192.0.2.4", "2001:db8:1::1"} {
		if !p.Allow(netip.MustParseAddr(s)) {
			t.Errorf("%s dropped while another source is blocked", s)
		}
	}
}

// TestPikeIPv6CountsPer64 checks that one host cannot escape the limit by
// cycling the addresses of its /64.
func TestPikeIPv6CountsPer64(t *testing.T) {
	p := NewPike(PikeConfig{Rate: 1, Burst: 2, Clock: newFakeClock().Now})
	ok := 0
	for i := range 10 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)})
		if p.Allow(a) {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("%d of 10 messages from one /64 allowed, want the burst of 2", ok)
	}
}

func TestPikeForgetsIdleSources(t *testing.T) {
	clk := newFakeClock()
	p := NewPike(PikeConfig{Rate: 10, Burst: 20, Block: 5 * time.Second, Clock: clk.Now})
	for i := range 1000 {
		p.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	blocked := netip.MustParseAddr("192.0.2.9")
	allowed(p, blocked, 100)
	if n := p.Sources(); n != 1001 {
		t.Fatalf("%d sources tracked, want 1001", n)
	}
	// After 1 s every bucket that took one message is full again; the
	// blocked source is kept until its block is over.
	clk.Advance(time.Second)
	p.Allow(netip.MustParseAddr("192.0.2.10"))
	if n := p.Sources(); n != 2 {
		t.Fatalf("%d sources tracked after a second, want 2 (the blocked one and the newest)", n)
	}
	clk.Advance(5 * time.Second)
	p.Allow(netip.MustParseAddr("192.0.2.10"))
	if n := p.Sources(); n != 1 {
		t.Fatalf("%d sources tracked after the block, want 1", n)
	}
}

// TestPikeMaxSourcesBoundsMemory checks that spoofed sources, each
// sending once, cannot grow the table past MaxSources.
func TestPikeMaxSourcesBoundsMemory(t *testing.T) {
	p := NewPike(PikeConfig{Rate: 1, Burst: 5, MaxSources: 1000, Clock: newFakeClock().Now})
	for i := range 300_000 {
		p.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := p.Sources(); n > 1000 {
		t.Fatalf("%d sources tracked, bound 1000", n)
	}
}

func TestPikeLogIsRateLimited(t *testing.T) {
	var logs testenv.Buffer
	p := NewPike(PikeConfig{Rate: 1, Burst: 1, Clock: newFakeClock().Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range 100 {
		allowed(p, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 2)
	}
	if p.Blocks() != 100 {
		t.Fatalf("%d blocks, want 100", p.Blocks())
	}
	if n := strings.Count(logs.String(), "rate limit:"); n != 10 {
		t.Fatalf("%d lines logged in one second, want 10", n)
	}
}

func TestLogLimiterReportsSuppressed(t *testing.T) {
	l := NewLogLimiter(2, time.Second)
	now := time.Unix(0, 0)
	for i, want := range []bool{true, true, false, false, false} {
		if ok, _ := l.Allow(now); ok != want {
			t.Fatalf("line %d: allowed %v, want %v", i, ok, want)
		}
	}
	ok, suppressed := l.Allow(now.Add(time.Second))
	if !ok || suppressed != 3 {
		t.Fatalf("next interval: allowed %v, suppressed %d; want true, 3", ok, suppressed)
	}
}

func BenchmarkPikeAllow(b *testing.B) {
	p := NewPike(PikeConfig{Rate: 1e9, Burst: 1e9})
	src := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		p.Allow(src)
	}
}
