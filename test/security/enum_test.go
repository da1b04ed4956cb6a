package security

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// TestSvwarFindsNoUser runs sipvicious svwar with REGISTER, INVITE and
// OPTIONS over a list holding the real users: it finds none (a user of
// the domain gets the same challenge whether it exists or not).
func TestSvwarFindsNoUser(t *testing.T) {
	svwar := testenv.Need(t, "svwar")
	s := startTarget(t, options{args: []string{"--hide-users"}})
	names := filepath.Join(t.TempDir(), "names.txt")
	if err := os.WriteFile(names, []byte("alice\nbob\ncarol\nadmin\n100\n1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"REGISTER", "INVITE", "OPTIONS"} {
		cmd := exec.Command("timeout", "60", svwar, "-d", names, "--domain", "a.test", "--force", "-m", m, "-p", strconv.Itoa(s.Port), "127.0.0.1")
		out, _ := cmd.CombinedOutput()
		if strings.Contains(string(out), "| alice") || strings.Contains(string(out), "| bob") || !strings.Contains(string(out), "found nothing") {
			t.Errorf("svwar -m %s found something:\n%s", m, tail(string(out), 1500))
		}
	}
}

// TestHideUsersSameAnswer: with --hide-users, a request from another
// domain for a user who does not exist is answered as for one who is
// offline (480), so the two cannot be told apart.
func TestHideUsersSameAnswer(t *testing.T) {
	s := startTarget(t, options{args: []string{"--hide-users"}})
	msg := func(user string) string {
		return fmt.Sprintf(`MESSAGE sip:%[1]s@a.test SIP/2.0
Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-enum-%[1]s-%[2]d;rport
From: <sip:probe@c.test>;tag=p
To: <sip:%[1]s@a.test>
Call-ID: enum-%[1]s-%[2]d
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Length: 0

`, user, time.Now().UnixNano())
	}
	known := finalOf(exchangeUDP(t, "", s.Addr(), msg("alice"), 500*time.Millisecond))
	unknown := finalOf(exchangeUDP(t, "", s.Addr(), msg("nosuchuser"), 500*time.Millisecond))
	if known != 480 || unknown != 480 {
		t.Fatalf("offline user %d, unknown user %d: want 480 for both", known, unknown)
	}
}

// TestSvcrackBanned runs sipvicious svcrack against alice with a word
// list whose 41st word is her password: the guard bans its address after
// 10 wrong answers and svcrack never finds the password; alice then
// registers from another address.
func TestSvcrackBanned(t *testing.T) {
	svcrack := testenv.Need(t, "svcrack")
	s := startTarget(t, options{})
	var words strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&words, "wrong%02d\n", i)
	}
	words.WriteString("alice-pw\n")
	list := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(list, []byte(words.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("timeout", "60", svcrack, "-u", "alice", "-d", list, "--domain", "a.test", "-t", "0.5", "--maximumtime", "8", "-p", strconv.Itoa(s.Port), "127.0.0.1").CombinedOutput()
	if strings.Contains(string(out), "alice-pw") {
		t.Fatalf("svcrack found the password:\n%s", tail(string(out), 1500))
	}
	if !strings.Contains(s.out.String(), "banned") {
		t.Errorf("no ban in the log:\n%s", tail(s.out.String(), 1500))
	}
	if code := finalOf(registerFrom(t, "127.0.0.2:0", "127.0.0.2:0", s.Addr(), "alice", "alice-pw", []string{"<sip:alice@127.0.0.2:5099>"})); code != 200 {
		t.Fatalf("alice from another address: got %d, want 200", code)
	}
}
