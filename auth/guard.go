package auth

import (
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipfed/sipfed/sipcore"
)

// Guard defaults, used for the zero fields of GuardConfig.
const (
	DefaultMaxFailuresIP   = 10
	DefaultMaxFailuresUser = 30
	DefaultFailureWindow   = time.Minute
	DefaultBanTime         = 10 * time.Minute
	DefaultGuardMaxTracked = 100_000
)

// GuardConfig configures a Guard. A zero field means its default.
type GuardConfig struct {
	// MaxFailuresIP is how many failed authentications from one source
	// (sipcore.SourcePrefix) within Window ban it (default
	// DefaultMaxFailuresIP; negative: never).
	MaxFailuresIP int
	// MaxFailuresUser is how many failed authentications for one
	// existing user, from any sources, within Window put the user under
	// attack (default DefaultMaxFailuresUser; negative: never).
	MaxFailuresUser int
	// Window is the sliding window failures are counted in (default
	// DefaultFailureWindow).
	Window time.Duration
	// BanTime is how long a ban, and a user's time under attack, last
	// (default DefaultBanTime).
	BanTime time.Duration
	// MaxTracked bounds the sources, users and bans remembered at once
	// (default DefaultGuardMaxTracked); when full, an arbitrary one is
	// forgotten.
	MaxTracked int
	// Logger gets one info line per failure and one warn line per ban,
	// each at most 10 a second; default discards.
	Logger *slog.Logger
	// Trusted sources (a peer domain's proxy, an SBC, our other nodes)
	// are never banned: their failures are counted and logged only, so
	// that failures they relay for others, or spoofed in their name,
	// cannot cut a whole peer off. Nil: none.
	Trusted func(netip.Addr) bool
	// Clock is time.Now by default; tests set it.
	Clock func() time.Time
}

// Guard bans sources that guess passwords, as fail2ban does with a
// registrar's log or a Kamailio script with htable counters. Wrong
// credentials (a wrong digest response, an unknown user) are counted per
// source address and per existing user in a sliding window:
//
//   - A source with MaxFailuresIP failures is banned for BanTime: every
//     request from it is refused (dropped before parsing over UDP,
//     answered 403 without digest work otherwise), whichever user it
//     names.
//   - A user with MaxFailuresUser failures, from any mix of sources (a
//     guesser spread over many addresses), is under attack for BanTime:
//     meanwhile, any source that fails for that user is banned at its
//     first failure.
//
// The user is never locked out: from a source that is not banned, right
// credentials are accepted, under attack or not. A real user who mistypes
// while under attack loses only that source, for BanTime. Counting is per
// address for IPv4 and per /64 for IPv6. It is safe for concurrent use.
type Guard struct {
	maxIP, maxUser int
	window, ban    int64 // ns
	max            int
	log            *slog.Logger
	failLog        *sipcore.LogLimiter
	banLog         *sipcore.LogLimiter
	now            func() time.Time
	epoch          time.Time
	trusted        func(netip.Addr) bool

	mu        sync.Mutex
	ips       map[netip.Addr]window
	users     map[string]userState
	bans      map[netip.Addr]int64 // until, ns since epoch
	nextSweep int64

	nbans                     atomic.Int64 // len(bans), for a look-up-free Banned when none
	failures, banned, refused atomic.Uint64
}

// window counts events in a sliding window approximated from two fixed
// ones: the current count plus the previous one weighted by how much of
// it the sliding window still covers.
type window struct {
	idx       int64 // index of the current fixed window
	cur, prev int32
}

func (w *window) add(t, size int64) float64 {
	i := t / size
	switch i {
	case w.idx:
	case w.idx + 1:
		w.prev, w.cur = w.cur, 0
	default:
		w.prev, w.cur = 0, 0
	}
	w.idx = i
	w.cur++
	frac := float64(t%size) / float64(size)
	return float64(w.prev)*(1-frac) + float64(w.cur)
}

// idle reports whether the window counts nothing at t.
func (w window) idle(t, size int64) bool { return t/size > w.idx+1 }

type userState struct {
	fails window
	until int64 // under attack until; 0: not
}

// NewGuard returns a Guard for cfg.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.MaxFailuresIP == 0 {
		cfg.MaxFailuresIP = DefaultMaxFailuresIP
	}
	if cfg.MaxFailuresUser == 0 {
		cfg.MaxFailuresUser = DefaultMaxFailuresUser
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultFailureWindow
	}
	if cfg.BanTime <= 0 {
		cfg.BanTime = DefaultBanTime
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = DefaultGuardMaxTracked
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Guard{
		maxIP: cfg.MaxFailuresIP, maxUser: cfg.MaxFailuresUser, window: int64(cfg.Window), ban: int64(cfg.BanTime),
		max: cfg.MaxTracked, log: cfg.Logger, now: cfg.Clock, epoch: cfg.Clock(), trusted: cfg.Trusted,
		failLog: sipcore.NewLogLimiter(10, time.Second), banLog: sipcore.NewLogLimiter(10, time.Second),
		ips: map[netip.Addr]window{}, users: map[string]userState{}, bans: map[netip.Addr]int64{},
	}
}

func (g *Guard) since(t time.Time) int64 { return int64(t.Sub(g.epoch)) }

// Banned reports whether ip is banned now. It costs an atomic load when
// no source is banned.
func (g *Guard) Banned(ip netip.Addr) bool {
	if g.nbans.Load() == 0 {
		return false
	}
	key := sipcore.SourcePrefix(ip)
	t := g.since(g.now())
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.bans[key]
	if !ok {
		return false
	}
	if t >= until {
		delete(g.bans, key)
		g.nbans.Store(int64(len(g.bans)))
		return false
	}
	return true
}

// Refuse is Banned, counting each refusal (Refused).
func (g *Guard) Refuse(ip netip.Addr) bool {
	if g.Banned(ip) {
		g.refused.Add(1)
		return true
	}
	return false
}

// Fail records a failed authentication from ip naming user (user@realm);
// known says whether the user exists (only existing users are counted
// per user: names made up by a guesser would fill the table). cause is
// logged.
func (g *Guard) Fail(ip netip.Addr, user string, known bool, cause error) {
	g.failures.Add(1)
	key := sipcore.SourcePrefix(ip)
	wall := g.now()
	t := g.since(wall)
	g.logFailure(ip, user, cause, wall)
	if g.trusted != nil && g.trusted(ip) {
		return
	}

	g.mu.Lock()
	if t >= g.nextSweep {
		g.sweep(t)
	}
	var ipFails, userFails float64
	banIP, attacked := false, false
	if g.maxIP > 0 {
		w, ok := g.ips[key]
		if !ok && len(g.ips) >= g.max {
			evictOne(g.ips)
		}
		ipFails = w.add(t, g.window)
		g.ips[key] = w
		banIP = ipFails >= float64(g.maxIP)
	}
	if known && g.maxUser > 0 {
		u, ok := g.users[user]
		if !ok && len(g.users) >= g.max {
			evictOne(g.users)
		}
		userFails = u.fails.add(t, g.window)
		if u.until > t {
			banIP = true
		} else if userFails >= float64(g.maxUser) {
			u.until, attacked, banIP = t+g.ban, true, true
		}
		g.users[user] = u
	}
	if banIP {
		until, ok := g.bans[key]
		switch {
		case ok && until > t:
			banIP = false // a request that was in flight when the ban came
		case !ok && len(g.bans) >= g.max:
			evictOne(g.bans)
		}
	}
	if banIP {
		g.bans[key] = t + g.ban
		g.nbans.Store(int64(len(g.bans)))
		delete(g.ips, key)
	}
	g.mu.Unlock()

	if attacked {
		g.logBan(wall, "auth: user "+clip(user)+" under attack: every source that fails for it is banned at once for "+g.banSecs()+" s",
			"user", clip(user), "failures", int(userFails))
	}
	if banIP {
		g.banned.Add(1)
		g.logBan(wall, "auth: source "+key.String()+" banned for "+g.banSecs()+" s",
			"source", key.String(), "user", clip(user), "source_failures", int(ipFails), "user_failures", int(userFails))
	}
}

func (g *Guard) banSecs() string {
	return strconv.FormatFloat(time.Duration(g.ban).Seconds(), 'f', -1, 64)
}

//go:noinline
func (g *Guard) logFailure(ip netip.Addr, user string, cause error, now time.Time) {
	ok, suppressed := g.failLog.Allow(now)
	if !ok {
		return
	}
	args := []any{"source", ip.String(), "user", clip(user), "error", cause}
	if suppressed > 0 {
		args = append(args, "similar_lines_dropped", suppressed)
	}
	g.log.Info("auth: failed", args...)
}

//go:noinline
func (g *Guard) logBan(now time.Time, msg string, args ...any) {
	ok, suppressed := g.banLog.Allow(now)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "similar_lines_dropped", suppressed)
	}
	g.log.Warn(msg, args...)
}

// sweep forgets counts that have left the window, attacks and bans that
// are over. g.mu is held.
func (g *Guard) sweep(t int64) {
	for k, w := range g.ips {
		if w.idle(t, g.window) {
			delete(g.ips, k)
		}
	}
	for k, u := range g.users {
		if u.fails.idle(t, g.window) && u.until <= t {
			delete(g.users, k)
		}
	}
	for k, until := range g.bans {
		if until <= t {
			delete(g.bans, k)
		}
	}
	g.nbans.Store(int64(len(g.bans)))
	g.nextSweep = t + min(int64(10*time.Second), g.window/2)
}

// evictOne deletes an arbitrary entry of m.
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}

// Failures returns the number of failed authentications recorded.
func (g *Guard) Failures() uint64 { return g.failures.Load() }

// Bans returns the number of bans made.
func (g *Guard) Bans() uint64 { return g.banned.Load() }

// Refused returns the number of requests refused by Refuse.
func (g *Guard) Refused() uint64 { return g.refused.Load() }
