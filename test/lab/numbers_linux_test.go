package labtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLabNumbers: extensions and telephone numbers in the lab.
//
//   - 1001@a.test is an alias of alice@a.test (sipfed user alias add, in
//     Redis): carol dials the bare extension and both of alice's devices
//     ring (one over TCP through a1, one over UDP through a3), each
//     seeing the 1001 that was dialled; the first answers, the other
//     gets CANCEL.
//   - carol dials +81312345678: her node looks it up in the lab's ENUM
//     tree (e164.lab, deploy/lab/netns/e164.lab.zone, served by sipfed
//     dns), which maps it to sip:dave@b.test, and the call goes to b.test
//     with the media straight between the phones. +81300000006 maps to
//     alice@a.test, a number of the domain's own.
//   - The broken records of the zone each end the call with a clear
//     status at once: a regular expression that does not compile (502),
//     non-terminal records in a loop (482), two numbers mapping to each
//     other (482), no record (404); and ENUM is for users of ours only:
//     dave@b.test asking a.test for a number gets 404.
func TestLabNumbers(t *testing.T) {
	l := startLab(t, false)
	ip := func(h string) string { return l.Host(h).IP }
	ctx := context.Background()
	if err := l.AddAlias(ctx, "1001@a.test", "alice@a.test"); err != nil {
		t.Fatal(err)
	}
	// alice's first device answers after a second, the second would after
	// ten: the first wins, the second is CANCELed while it rings.
	alice1 := startPhone(t, l, "p1", "alice-tcp", "alice@a.test", pw["alice@a.test"], "--listen", ip("p1")+":5060",
		"--transport", "tcp", "--proxy", l.SIPAddr("a1"), "--answer-delay", "1s", "--media-timeout", "2s", "answer")
	alice2 := startPhone(t, l, "p2", "alice-udp", "alice@a.test", pw["alice@a.test"], "--listen", ip("p2")+":5060",
		"--proxy", l.SIPAddr("a3"), "--answer-delay", "10s", "--media-timeout", "2s", "answer")
	dave := startPhone(t, l, "p4", "dave", "dave@b.test", pw["dave@b.test"], "--listen", ip("p4")+":5060", "--media-timeout", "2s", "answer")
	for _, p := range []*phone{alice1, alice2, dave} {
		p.mustWait(t, "registered", "", 10*time.Second)
	}
	call := func(name, host, aor, target string, args ...string) *phone {
		a := append([]string{"--listen", ip(host) + ":0", "--duration", "2s"}, args...)
		return startPhone(t, l, host, name, aor, pw[aor], append(a, "call", target)...)
	}
	// ringsBoth checks that a call reached both of alice's devices under
	// the address dialled.
	ringsBoth := func(t *testing.T, r callResult, dialled string) {
		t.Helper()
		for _, p := range []*phone{alice1, alice2} {
			ev, ok := p.wait("ringing", r.id, 5*time.Second)
			if !ok {
				t.Errorf("%s did not ring for call %s\n%s", p.name, r.id, p.dump())
				continue
			}
			if !strings.Contains(ev.To, dialled) {
				t.Errorf("%s rang for %q; want the address dialled, %s", p.name, ev.To, dialled)
			}
		}
		if ev, ok := alice2.wait("hangup", r.id, 5*time.Second); !ok || ev.Reason != "canceled" {
			t.Errorf("alice's second device: %+v; want the call canceled once the first answered", ev)
		}
	}

	t.Run("extension", func(t *testing.T) {
		c := call("call-carol-1001", "p3", "carol@a.test", "1001", "--proxy", l.SIPAddr("a2"))
		r := checkCall(t, c, alice1, 60, 10*time.Second)
		t.Logf("carol → 1001 (alice): %s; nodes %v", r, callLogs(l, r.id, "a1", "a2", "a3"))
		ringsBoth(t, r, "1001@a.test")
	})

	t.Run("enum", func(t *testing.T) {
		c := call("call-carol-number", "p3", "carol@a.test", "+81312345678", "--proxy", l.SIPAddr("a2"))
		r := checkCall(t, c, dave, 60, 10*time.Second)
		t.Logf("carol → +81312345678 (dave@b.test through ENUM): %s; a2: %v, b1: %v", r, callLogs(l, r.id, "a2"), callLogs(l, r.id, "b1"))
		if ev, _ := dave.find(func(e event) bool { return e.Event == "ringing" && e.CallID == r.id }); !strings.Contains(ev.To, "+81312345678") {
			t.Errorf("dave rang for %q; want the number dialled", ev.To)
		}
		own := call("call-carol-own-number", "p3", "carol@a.test", "tel:+81300000006", "--proxy", l.SIPAddr("a2"))
		r = checkCall(t, own, alice1, 60, 10*time.Second)
		t.Logf("carol → +81300000006 (alice@a.test through ENUM): %s", r)
		ringsBoth(t, r, "+81300000006")
	})

	t.Run("broken", func(t *testing.T) {
		cases := []struct {
			name, aor, target, want string
		}{
			{"bad-regexp", "carol@a.test", "+81300000001", "502"},
			{"naptr-loop", "carol@a.test", "+81300000002", "482"},
			{"number-loop", "carol@a.test", "+81300000004", "482"},
			{"no-record", "carol@a.test", "+81399999999", "404"},
			{"not-ours", "dave@b.test", "sip:+81312345678@a.test;user=phone", "404"},
		}
		phones := make([]*phone, len(cases))
		for i, c := range cases {
			host := "p3"
			if strings.HasSuffix(c.aor, "@b.test") {
				host = "p4"
			}
			phones[i] = call("call-"+c.name, host, c.aor, c.target)
		}
		for i, c := range cases {
			p := phones[i]
			err := p.exit(t, 15*time.Second)
			took := time.Since(p.started)
			if err == nil || !strings.Contains(p.proc.Log(), c.want) {
				t.Errorf("%s: %s calling %s: %v; want %s\n%s", c.name, c.aor, c.target, err, c.want, p.dump())
				continue
			}
			t.Logf("%s: %s → %s: %s in %v", c.name, c.aor, c.target, strings.TrimSpace(tail(p.proc.Log(), 200)), took.Round(time.Millisecond))
		}
	})
}
