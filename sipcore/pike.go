package sipcore

import (
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Pike defaults, used for the zero fields of PikeConfig.
const (
	DefaultPikeRate       = 200
	DefaultPikeBlock      = 10 * time.Second
	DefaultPikeMaxSources = 100_000
)

// PikeConfig configures a Pike. A zero field means its default.
type PikeConfig struct {
	// Rate is the sustained number of messages per second one source IP
	// address may send (default DefaultPikeRate).
	Rate float64
	// Burst is how many messages a source may send at once above Rate
	// (default twice Rate).
	Burst int
	// Block is how long a source that went over its budget is dropped
	// entirely (default DefaultPikeBlock).
	Block time.Duration
	// MaxSources bounds the sources tracked at once (default
	// DefaultPikeMaxSources); when full, an arbitrary one is forgotten.
	MaxSources int
	// Logger receives one warn line per block, at most 10 a second;
	// default discards.
	Logger *slog.Logger
	// Clock is time.Now by default; tests set it.
	Clock func() time.Time
}

// Pike limits the rate of messages per source (SourcePrefix) before any
// parsing or transaction state, as Kamailio's pike module does: each
// source has a token bucket of Burst messages refilled at Rate per
// second, and a source that empties it is dropped for Block, then starts
// again with a full bucket. A source's state is forgotten once its bucket
// is full again (or its block is over), so an idle source costs nothing,
// and at most MaxSources are kept: spoofed source addresses cannot grow
// memory without bound. It is safe for concurrent use.
type Pike struct {
	rate   float64 // tokens per nanosecond
	burst  float64
	block  int64 // ns
	max    int
	log    *slog.Logger
	logLim *LogLimiter
	now    func() time.Time
	epoch  time.Time

	mu        sync.Mutex
	src       map[netip.Addr]bucket
	nextSweep int64

	dropped, blocks atomic.Uint64
}

// bucket is one source's state; times are ns since Pike.epoch.
type bucket struct {
	tokens float64
	last   int64 // when tokens was computed
	until  int64 // blocked until; 0: not blocked
}

// NewPike returns a Pike for cfg.
func NewPike(cfg PikeConfig) *Pike {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultPikeRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = int(2 * cfg.Rate)
	}
	if cfg.Block <= 0 {
		cfg.Block = DefaultPikeBlock
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = DefaultPikeMaxSources
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Pike{
		rate: cfg.Rate / 1e9, burst: float64(cfg.Burst), block: int64(cfg.Block), max: cfg.MaxSources,
		log: cfg.Logger, logLim: NewLogLimiter(10, time.Second), now: cfg.Clock, epoch: cfg.Clock(),
		src: make(map[netip.Addr]bucket),
	}
}

// Allow takes one message from ip's budget and reports whether the
// message may be handled; false means drop it.
func (p *Pike) Allow(ip netip.Addr) bool {
	ip = SourcePrefix(ip)
	wall := p.now()
	t := int64(wall.Sub(p.epoch))
	p.mu.Lock()
	if t >= p.nextSweep {
		p.sweep(t)
	}
	b, ok := p.src[ip]
	if !ok {
		if len(p.src) >= p.max {
			p.evictOne()
		}
		b = bucket{tokens: p.burst, last: t}
	}
	if b.until != 0 {
		if t < b.until {
			p.mu.Unlock()
			p.dropped.Add(1)
			return false
		}
		b = bucket{tokens: p.burst, last: t}
	}
	b.tokens = min(p.burst, b.tokens+float64(t-b.last)*p.rate)
	b.last = t
	if b.tokens >= 1 {
		b.tokens--
		p.src[ip] = b
		p.mu.Unlock()
		return true
	}
	b.until = t + p.block
	p.src[ip] = b
	p.mu.Unlock()
	p.dropped.Add(1)
	p.blocks.Add(1)
	p.logBlock(ip, wall)
	return false
}

//go:noinline
func (p *Pike) logBlock(ip netip.Addr, now time.Time) {
	ok, suppressed := p.logLim.Allow(now)
	if !ok {
		return
	}
	secs := strconv.FormatFloat(time.Duration(p.block).Seconds(), 'f', -1, 64)
	args := []any{"source", ip.String(), "rate", p.rate * 1e9, "burst", p.burst}
	if suppressed > 0 {
		args = append(args, "similar_lines_dropped", suppressed)
	}
	p.log.Warn("rate limit: source "+ip.String()+" blocked for "+secs+" s", args...)
}

// sweep forgets every source whose state is that of a new one: its block
// over, or its bucket full again. p.mu is held.
func (p *Pike) sweep(t int64) {
	for ip, b := range p.src {
		if b.until != 0 {
			if t >= b.until {
				delete(p.src, ip)
			}
			continue
		}
		if b.tokens+float64(t-b.last)*p.rate >= p.burst {
			delete(p.src, ip)
		}
	}
	p.nextSweep = t + int64(time.Second)
}

// evictOne forgets one source to make room, a source that is not blocked
// when one of the first few looked at is not. p.mu is held.
func (p *Pike) evictOne() {
	n := 0
	var victim netip.Addr
	for ip, b := range p.src {
		if !victim.IsValid() || b.until == 0 {
			victim = ip
		}
		if n++; b.until == 0 || n >= 8 {
			break
		}
	}
	delete(p.src, victim)
}

// SourcePrefix is what per-source limits count by: an IPv4 address (an
// IPv4-mapped one unmapped), or the /64 of an IPv6 one, which one host
// may hold whole.
func SourcePrefix(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// Sources returns the number of sources tracked now.
func (p *Pike) Sources() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.src)
}

// Dropped returns the number of messages refused since the start.
func (p *Pike) Dropped() uint64 { return p.dropped.Load() }

// Blocks returns the number of times a source was blocked since the start.
func (p *Pike) Blocks() uint64 { return p.blocks.Load() }
