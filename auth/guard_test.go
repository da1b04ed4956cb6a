package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

var errGuess = errors.New("wrong password")

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestGuardBansSourceAfterMaxFailures(t *testing.T) {
	clk := newClock()
	var logs testenv.Buffer
	g := NewGuard(GuardConfig{MaxFailuresIP: 10, BanTime: 10 * time.Minute, Clock: clk.now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	attacker, other := addr("192.0.2.3"), addr("192.0.2.2")
	for i := range 9 {
		g.Fail(attacker, "alice@a.example", true, errGuess)
		if g.Banned(attacker) {
			t.Fatalf("banned after %d failures", i+1)
		}
	}
	g.Fail(attacker, "alice@a.example", true, errGuess)
	if !g.Banned(attacker) {
		t.Fatal("not banned after 10 failures")
	}
	if g.Banned(other) {
		t.Fatal("another source is banned too")
	}
	if g.Bans() != 1 || g.Failures() != 10 {
		t.Errorf("bans %d failures %d, want 1 and 10", g.Bans(), g.Failures())
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN msg=\"auth: source 192.0.2.3 banned for 600 s\""); n != 1 || !strings.Contains(out, "user=alice@a.example") {
		t.Errorf("want one warn line naming the source and the user:\n%s", out)
	}
	if n := strings.Count(out, "level=INFO msg=\"auth: failed\" source=192.0.2.3"); n != 10 {
		t.Errorf("%d failures logged at info, want 10:\n%s", n, out)
	}
	clk.add(10*time.Minute - time.Second)
	if !g.Banned(attacker) {
		t.Fatal("ban ended early")
	}
	clk.add(time.Second)
	if g.Banned(attacker) {
		t.Fatal("still banned after the ban time")
	}
}

// TestGuardCountsInSlidingWindow checks that failures spread wider than
// the window do not add up.
func TestGuardCountsInSlidingWindow(t *testing.T) {
	clk := newClock()
	g := NewGuard(GuardConfig{MaxFailuresIP: 10, Window: time.Minute, Clock: clk.now})
	src := addr("192.0.2.3")
	// One failure every 10 s: 6 per minute, never 10.
	for i := range 60 {
		g.Fail(src, "alice@a.example", true, errGuess)
		if g.Banned(src) {
			t.Fatalf("banned at failure %d, 6 a minute", i+1)
		}
		clk.add(10 * time.Second)
	}
	// Ten within 30 s are too many.
	for range 10 {
		g.Fail(src, "alice@a.example", true, errGuess)
		clk.add(3 * time.Second)
	}
	if !g.Banned(src) {
		t.Fatal("10 failures in 30 s did not ban")
	}
}

// TestGuardUserUnderAttack checks the per-user limit: guesses for one user
// spread over many sources put her under attack, after which each source
// that fails for her is banned at once, while she still gets in from any
// source that is not banned.
func TestGuardUserUnderAttack(t *testing.T) {
	clk := newClock()
	var logs testenv.Buffer
	g := NewGuard(GuardConfig{MaxFailuresIP: 10, MaxFailuresUser: 30, Clock: clk.now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s := NewServer(users(), testSecret, WithGuard(g), WithClock(clk.now))
	// 29 sources, one guess each: nobody is banned yet.
	for i := range 29 {
		g.Fail(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "alice@a.example", true, errGuess)
	}
	if g.Bans() != 0 {
		t.Fatalf("%d bans before the user limit", g.Bans())
	}
	g.Fail(addr("198.51.100.29"), "alice@a.example", true, errGuess)
	if !g.Banned(addr("198.51.100.29")) {
		t.Fatal("the source of the 30th failure is not banned")
	}
	if !strings.Contains(logs.String(), "auth: user alice@a.example under attack") {
		t.Errorf("no warn line for the attack:\n%s", logs.String())
	}
	// Under attack: one failure bans a new source; other users are not
	// affected.
	g.Fail(addr("198.51.100.200"), "alice@a.example", true, errGuess)
	if !g.Banned(addr("198.51.100.200")) {
		t.Fatal("a new source failing for the attacked user is not banned at once")
	}
	g.Fail(addr("198.51.100.201"), "bob@a.example", true, errGuess)
	if g.Banned(addr("198.51.100.201")) {
		t.Fatal("one failure for another user banned its source")
	}
	// Alice, right password, from a clean address.
	nonce := fetchNonceFrom(t, s, "192.0.2.2:5060")
	c := client{user: "alice", realm: "a.example", password: "alice-secret"}
	req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "abc"))
	req.SetSource("192.0.2.2:5060")
	if user, err := s.Authenticate(context.Background(), req, "a.example", false); err != nil || user != "alice" {
		t.Fatalf("alice from a clean source: %q, %v", user, err)
	}
}

// TestAuthenticateRefusesBannedSource checks the server's side: wrong
// responses and unknown users are counted, a banned source gets 403 with
// no challenge even with the right password, and another source is
// served.
func TestAuthenticateRefusesBannedSource(t *testing.T) {
	clk := newClock()
	g := NewGuard(GuardConfig{MaxFailuresIP: 10, Clock: clk.now})
	s := NewServer(users(), testSecret, WithGuard(g), WithClock(clk.now))
	nonces := map[string]string{}
	try := func(src, user, pw string, nc int) error {
		host, _, _ := strings.Cut(src, ":")
		nonce, ok := nonces[host]
		if !ok {
			nonce = fetchNonceFrom(t, s, src)
			nonces[host] = nonce
		}
		c := client{user: user, realm: "a.example", password: pw}
		req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, fmt.Sprintf("%08x", nc), "abc"))
		req.SetSource(src)
		_, err := s.Authenticate(context.Background(), req, "a.example", false)
		return err
	}
	for i := range 10 {
		user := "alice"
		if i%2 == 1 {
			user = fmt.Sprint("nobody", i)
		}
		if se := statusOf(t, try("192.0.2.3:40000", user, "guess", i+1)); se.Code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, se.Code)
		}
	}
	err := try("192.0.2.3:40001", "alice", "alice-secret", 11)
	if se := statusOf(t, err); se.Code != 403 || len(se.Headers) != 0 || !errors.Is(err, ErrBanned) {
		t.Fatalf("banned source, right password: %v with %d headers, want 403 without a challenge", err, len(se.Headers))
	}
	if g.Refused() != 1 {
		t.Errorf("refused %d, want 1", g.Refused())
	}
	if err := try("192.0.2.2:5060", "alice", "alice-secret", 12); err != nil {
		t.Fatalf("alice from another source: %v", err)
	}
}

// TestGuardBoundsMemory checks that spoofed sources and made-up user
// names cannot grow the guard's tables past MaxTracked, and that unknown
// users are not counted per user at all.
func TestGuardBoundsMemory(t *testing.T) {
	g := NewGuard(GuardConfig{MaxFailuresIP: 2, MaxTracked: 1000, Clock: newClock().now})
	for i := range 100_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Fail(ip, fmt.Sprint("u", i, "@a.example"), false, errGuess)
		g.Fail(ip, "alice@a.example", true, errGuess)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ips) > 1000 || len(g.bans) > 1000 || len(g.users) > 1 {
		t.Fatalf("tracking %d sources, %d bans, %d users; bound 1000, 1000, 1", len(g.ips), len(g.bans), len(g.users))
	}
}

// TestGuardDisabled checks that negative limits never ban.
func TestGuardDisabled(t *testing.T) {
	g := NewGuard(GuardConfig{MaxFailuresIP: -1, MaxFailuresUser: -1, Clock: newClock().now})
	for range 1000 {
		g.Fail(addr("192.0.2.3"), "alice@a.example", true, errGuess)
	}
	if g.Banned(addr("192.0.2.3")) || g.Bans() != 0 {
		t.Fatal("banned with limits off")
	}
}

func BenchmarkGuardBannedNone(b *testing.B) {
	g := NewGuard(GuardConfig{})
	ip := addr("192.0.2.3")
	b.ReportAllocs()
	for b.Loop() {
		g.Banned(ip)
	}
}
