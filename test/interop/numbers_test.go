package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// Numbers from real peers: baresip dials an extension (an alias) and a
// global number that the a.test proxy looks up in ENUM (RFC 6116), and
// SIPp sends the same number as a tel: URI (RFC 3966).

// e164Zone is a private ENUM tree in which +81312345678 is bob@b.test: a
// terminal "u" rule for the E2U+sip service (RFC 3403, RFC 3402 regexp).
const e164Zone = `$ORIGIN e164.test.
$TTL 60
@ IN SOA ns.e164.test. hostmaster.e164.test. 1 3600 600 86400 60
@ IN NS ns.e164.test.
ns IN A 127.0.0.1
8.7.6.5.4.3.2.1.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^\\+81312345678$!sip:bob@b.test!" .
`

// addAliases adds aliases to a users file through `sipfed user alias
// add`: pairs of alias and AOR.
func addAliases(t *testing.T, usersFile string, aliasAOR ...string) {
	t.Helper()
	for i := 0; i+1 < len(aliasAOR); i += 2 {
		out, err := exec.Command(sipfedBin, "user", "alias", "add", "--users", usersFile, aliasAOR[i], aliasAOR[i+1]).CombinedOutput()
		if err != nil {
			t.Fatalf("sipfed user alias add %s %s: %v\n%s", aliasAOR[i], aliasAOR[i+1], err, out)
		}
	}
}

// TestBaresipDialsNumbers: carol@a.test, a baresip, dials what a person
// types, and the a.test proxy (--enum-suffix e164.test, the tree served
// by the lab DNS) routes it:
//   - extension: "1001" (baresip sends sip:1001@a.test), an alias of
//     alice@a.test, rings alice's `sipfed phone answer`, which sees 1001
//     dialled in the To; audio flows both ways between the phones.
//   - number: "+81312345678" (sip:+81312345678@a.test), which ENUM maps
//     to sip:bob@b.test: the call crosses to the b.test proxy and bob's
//     `sipfed phone answer` gets it, audio both ways.
//   - tel URI: SIPp, as carol with digest authentication, sends an INVITE
//     for tel:+81312345678, which reaches bob the same way.
func TestBaresipDialsNumbers(t *testing.T) {
	testenv.Need(t, "baresip")
	f := startFederation(t, fedOptions{
		aArgs:    []string{"--enum-suffix", "e164.test"},
		aUsers:   []string{"carol@a.test", "pw-carol"},
		aAliases: []string{"1001@a.test", "alice@a.test"},
		zones:    map[string]string{"e164.test": e164Zone},
	})
	for _, c := range []struct {
		name, dial, callee, password string
		uri                          string // what baresip makes of dial: its Request-URI and To
	}{
		{"extension", "1001", "alice@a.test", "pw-alice", "sip:1001@a.test"},
		{"number", "+81312345678", "bob@b.test", "pw-bob", "sip:+81312345678@a.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := filepath.Join(t.TempDir(), "callee.wav")
			callee := runPhone(t, c.password, "--aor", c.callee, "--dns", f.dns, "--record", rec, "--max-calls", "1", "answer")
			callee.wait(t, "registered", 10*time.Second)
			sipPort := testenv.FreePorts(t, 2)
			carol := startPhoneAt(t, phoneHost{trace: true}, "carol", sipPort, 10000+sipPort%500*20,
				fmt.Sprintf(`<sip:carol@a.test>;auth_pass=pw-carol;outbound="sip:%s;transport=udp";regint=300;audio_codecs=PCMU`, f.a.addr()), 30)
			carol.waitRegistered(t, 10*time.Second, f.logs)
			carol.command(t, "dial", c.dial)
			if _, ok := carol.waitFor(15*time.Second, carol.event("CALL_ESTABLISHED")); !ok {
				t.Fatalf("carol dialled %q: the call did not connect\n--- baresip:\n%s\n--- %s:\n%s\n%s", c.dial, carol.dump(), c.callee, callee.dump(), f.logs())
			}
			// 6 s: baresip prints its RTP summary only once RTCP came in
			// (see checkBaresipCall).
			time.Sleep(6 * time.Second)
			carol.command(t, "hangup", "")
			if err := callee.exit(t, 10*time.Second); err != nil {
				t.Fatalf("%s: %v\n%s", c.callee, err, callee.dump())
			}
			// baresip -s prints every message it sends.
			if !strings.Contains(carol.out.String(), "INVITE "+c.uri+" SIP/2.0") {
				t.Errorf("baresip sent no INVITE %s\n%s", c.uri, carol.dump())
			}
			ringing := callee.wait(t, "ringing", 0)
			t.Logf("carol dialled %q (INVITE %s): %s rang for %v", c.dial, c.uri, c.callee, ringing["to"])
			if ringing["to"] != c.uri {
				t.Errorf("%s's ringing event has to %v; want %s, what carol dialled", c.callee, ringing["to"], c.uri)
			}
			checkBaresipCall(t, callee, carol, rec, f.logs)
		})
	}
	t.Run("tel URI", func(t *testing.T) {
		bob := runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", f.dns, "--max-calls", "1", "answer")
		bob.wait(t, "registered", 10*time.Second)
		inf := filepath.Join(t.TempDir(), "carol.csv")
		writeFile(t, inf, "SEQUENTIAL\ncarol;pw-carol;a.test;tel:+81312345678\n")
		msgs := filepath.Join(t.TempDir(), "msg.log")
		out, err := sipp(t, f.a.addr(), "uac_call_uri.xml", inf, "-m", "1", "-trace_msg", "-message_file", msgs)
		if ok, failed := testenv.SIPpCounts(out); err != nil || ok != 1 || failed != 0 {
			trace, _ := os.ReadFile(msgs)
			t.Fatalf("SIPp INVITE tel:+81312345678: %v, %d ok, %d failed\n%s\n--- messages:\n%s\n--- bob:\n%s\n%s", err, ok, failed, tail(out, 3000), tail(string(trace), 6000), bob.dump(), f.logs())
		}
		if err := bob.exit(t, 10*time.Second); err != nil {
			t.Fatalf("bob: %v\n%s", err, bob.dump())
		}
		ringing := bob.wait(t, "ringing", 0)
		t.Logf("SIPp sent tel:+81312345678: bob@b.test rang for %v", ringing["to"])
		if ringing["to"] != "tel:+81312345678" {
			t.Errorf("bob's ringing event has to %v; want tel:+81312345678, what SIPp sent", ringing["to"])
		}
	})
}
