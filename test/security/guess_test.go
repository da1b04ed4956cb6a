package security

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// Issue 9, item 4: 17,945 wrong digest guesses a second from one address
// were each answered with a fresh challenge, without a ban, and logged at
// debug only. Failures are now counted per source and per user (auth.Guard,
// --auth-max-failures-ip, --auth-max-failures-user), a banned source's
// datagrams are dropped before parsing, and failures and bans are logged.

// guesses is how many wrong passwords the attacker sends.
const guesses = 3000

// TestPasswordGuessingFromOneSourceBanned sends 3,000 wrong guesses for
// alice from 127.0.0.3 back to back: about ten get a 401, then the source
// is banned and hears nothing more, right password included, while alice
// registers from 127.0.0.2.
func TestPasswordGuessingFromOneSourceBanned(t *testing.T) {
	// The rate limit is off: this is about the ban, not the flood limit.
	s := startTarget(t, options{args: []string{"--pike-rate", "0"}})
	atk := newUAC(t, "127.0.0.3:0", s.Addr())
	register := func(cseq int, auth string) string {
		id := fmt.Sprintf("guess-%d", cseq)
		return fmt.Sprintf("REGISTER sip:a.test SIP/2.0\nVia: SIP/2.0/UDP LOCAL;rport;branch=z9hG4bK-%s\nFrom: <sip:alice@a.test>;tag=g\n"+
			"To: <sip:alice@a.test>\nCall-ID: %s\nCSeq: 1 REGISTER\nMax-Forwards: 70\nContact: <sip:alice@LOCAL>\n%sContent-Length: 0\n\n", id, id, auth)
	}
	first := atk.ask(register(0, ""))
	if statusOf(first) != 401 {
		t.Fatalf("REGISTER without credentials: %d, want 401", statusOf(first))
	}
	chal := challengeOf(t, first)

	// Answers are counted while the guesses go out.
	counts := map[int]int{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			atk.conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			n, err := atk.conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			counts[statusOf(string(buf[:n]))]++
			mu.Unlock()
		}
	}()
	start := time.Now()
	local := atk.conn.LocalAddr().String()
	for i := 1; i <= guesses; i++ {
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: "alice",
			Password: fmt.Sprintf("guess-%d", i), Count: i, Cnonce: fmt.Sprintf("%08x", i)})
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.ReplaceAll(strings.ReplaceAll(register(i, "Authorization: "+cred.String()+"\n"), "LOCAL", local), "\n", "\r\n")
		if _, err := atk.conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	sending := time.Since(start)
	<-done
	mu.Lock()
	challenged, refused, answered := counts[401], counts[403], 0
	for _, n := range counts {
		answered += n
	}
	mu.Unlock()
	t.Logf("%d guesses sent in %v: %d answered 401, %d 403, %d not answered", guesses, sending.Round(time.Millisecond), challenged, refused, guesses-answered)

	if challenged < 10 {
		t.Errorf("%d guesses got a 401, want the 10 before the ban", challenged)
	}
	if challenged > guesses/20 {
		t.Errorf("%d of %d guesses got a fresh challenge: not cut off", challenged, guesses)
	}
	if answered > guesses/10 {
		t.Errorf("%d of %d guesses answered after the ban", answered, guesses)
	}
	if code := newUAC(t, "127.0.0.2:0", s.Addr()).register("alice", "alice-pw"); code != 200 {
		t.Errorf("alice from 127.0.0.2 during the ban: %d, want 200", code)
	}
	if code := newUAC(t, "127.0.0.3:0", s.Addr()).register("alice", "alice-pw"); code != 0 {
		t.Errorf("the banned address, right password, another port: %d, want no answer", code)
	}

	logs := s.out.String()
	if n := strings.Count(logs, `level=WARN msg="auth: source 127.0.0.3 banned for 600 s"`); n != 1 {
		t.Errorf("%d warn lines for the ban, want 1", n)
	}
	if !strings.Contains(logs, "user=alice@a.test") {
		t.Error("the ban line does not name the user")
	}
	if n := strings.Count(logs, `level=INFO msg="auth: failed" source=127.0.0.3`); n < 10 || n > 40 {
		t.Errorf("%d failures logged at info, want the 10 or so before the ban (rate-limited)", n)
	}
	if v := connMetric(t, s, "sipfed_auth_bans_total"); v != 1 {
		t.Errorf("sipfed_auth_bans_total %.0f, want 1", v)
	}
	if v := connMetric(t, s, "sipfed_auth_refused_total"); v < guesses/2 {
		t.Errorf("sipfed_auth_refused_total %.0f, want most of the %d guesses", v, guesses)
	}
	if !s.alive() {
		t.Fatal("server died")
	}
}

// TestPasswordGuessingSpreadOverSourcesBanned guesses alice's password
// once from each of 30 addresses, under the per-source limit: alice is
// then under attack, and the next address that fails for her is banned at
// its first guess, while she registers from a clean address.
func TestPasswordGuessingSpreadOverSourcesBanned(t *testing.T) {
	s := startTarget(t, options{})
	for i := 0; i < 30; i++ {
		if code := newUAC(t, fmt.Sprintf("127.0.1.%d:0", 10+i), s.Addr()).register("alice", "wrong"); code != 401 {
			t.Fatalf("guess from source %d: %d, want 401", i, code)
		}
	}
	late := newUAC(t, "127.0.1.100:0", s.Addr())
	if code := late.register("alice", "wrong"); code != 401 {
		t.Fatalf("first guess from a new source: %d, want 401", code)
	}
	if code := late.options(); code != 0 {
		t.Errorf("OPTIONS from a source banned at its first failure: %d, want no answer", code)
	}
	if code := newUAC(t, "127.0.0.2:0", s.Addr()).register("alice", "alice-pw"); code != 200 {
		t.Errorf("alice from a clean address while under attack: %d, want 200", code)
	}
	if code := newUAC(t, "127.0.0.4:0", s.Addr()).register("bob", "bob-pw"); code != 200 {
		t.Errorf("bob: %d, want 200", code)
	}
	// The server's output reaches the test through a pipe: by now it has.
	if !strings.Contains(s.out.String(), `level=WARN msg="auth: user alice@a.test under attack`) {
		t.Error("no warn line for alice under attack")
	}
}
