package server_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/server"
)

// enumZone is a private ENUM tree: +81312345678 is bob@b.test, +81300000006
// alice@a.test; then a regular expression that does not compile, two
// non-terminal records in a loop, two numbers that map to each other.
const enumZone = `$ORIGIN e164.test.
$TTL 1
@ IN SOA ns.e164.test. hostmaster.e164.test. 1 3600 600 86400 1
8.7.6.5.4.3.2.1.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^\\+81(312345678)$!sip:bob@b.test;n=\\1!" .
6.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:alice@a.test!" .
1.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^(.*$!sip:x@b.test!" .
2.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" 3.0.0.0.0.0.0.0.3.1.8.e164.test.
3.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" 2.0.0.0.0.0.0.0.3.1.8.e164.test.
4.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:+81300000005@a.test;user=phone!" .
5.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:+81300000004@a.test;user=phone!" .
`

// recorder is a phone (or gateway) that answers MESSAGE 200 and keeps
// the Request-URI and To of each.
type recorder struct {
	mu  sync.Mutex
	got []string // "RURI | To"
}

func (r *recorder) setup(phone *sipgo.Server) {
	phone.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
		r.mu.Lock()
		r.got = append(r.got, req.Recipient.String()+" | "+req.To().Address.String())
		r.mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestNumbers: aliases (extensions) and ENUM between two domains, with a
// real DNS server (sipfed's lab server) holding an ENUM zone.
func TestNumbers(t *testing.T) {
	dir := t.TempDir()
	zoneA, zoneB, zoneE := filepath.Join(dir, "a.test.zone"), filepath.Join(dir, "b.test.zone"), filepath.Join(dir, "e164.test.zone")
	writeZone(t, zoneA, "a.test", 1)
	writeZone(t, zoneB, "b.test", 1)
	// A device reached straight from an ENUM record whose URI has a
	// method and a header, which a Request-URI must not carry.
	direct := &recorder{}
	directAddr := serveRecorder(t, direct)
	zone := enumZone + `7.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:x@` + directAddr + `;method=BYE?Route=%3Csip:evil.test;lr%3E!" .` + "\n"
	if err := os.WriteFile(zoneE, []byte(zone), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := startLabDNS(t, zoneA, zoneB, zoneE)

	// A gateway for the numbers ENUM does not know.
	gw := &recorder{}
	gwAddr := serveRecorder(t, gw)

	usersA := usersFile(t, "a.test", "alice", "carol")
	f, err := auth.OpenFile(usersA)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.AddAlias(context.Background(), "1001@a.test", "alice@a.test"); err != nil {
		t.Fatal(err)
	}
	a := start(t, server.Config{Domains: []string{"a.test"}, Users: usersA, DNS: []string{lab.Addr()}, ENUMSuffixes: []string{"e164.test"}})
	b := start(t, server.Config{Domains: []string{"b.test"}, Users: usersFile(t, "b.test", "bob"), DNS: []string{lab.Addr()}})
	writeZone(t, zoneA, "a.test", a.Addr("udp").(*net.UDPAddr).Port)
	writeZone(t, zoneB, "b.test", b.Addr("udp").(*net.UDPAddr).Port)
	if err := lab.Reload(); err != nil {
		t.Fatal(err)
	}
	// The same domain with a gateway for numbers without a record.
	aGW := start(t, server.Config{Domains: []string{"a.test"}, Users: usersA, DNS: []string{lab.Addr()}, ENUMSuffixes: []string{"e164.test"},
		ENUMFallback: "sip:" + gwAddr})

	alice, bob := &recorder{}, &recorder{}
	startPhone(t, a, "alice", "a.test", alice.setup)
	startPhone(t, b, "bob", "b.test", bob.setup)

	carol := newClient(t, "carol-phone")
	message := func(to string, dest net.Addr, from, user string) *sip.Response {
		t.Helper()
		var ruri sip.Uri
		if n, ok := strings.CutPrefix(to, "tel:"); ok {
			// sipgo's digest takes the Request-URI's User and Host for
			// its uri=, which a parsed tel: URI does not fill: one made
			// this way prints the same on the wire and in the digest.
			ruri = sip.Uri{Scheme: "tel", Host: n}
		} else if err := sip.ParseUri(to, &ruri); err != nil {
			t.Fatal(err)
		}
		req := request(sip.MESSAGE, from, "x@a.test", dest)
		req.Recipient = ruri
		req.ReplaceHeader(&sip.ToHeader{Address: ruri, Params: sip.NewParams()})
		req.SetBody([]byte("hello"))
		req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
		return do(t, carol, req, user)
	}
	for _, c := range []struct {
		name, to string
		phone    *recorder
		want     string // the Request-URI and To the phone got
	}{
		// A Request-URI has no method and no headers: the record's are dropped.
		{"ENUM URI with a method and a Route", "tel:+81300000007", direct, "sip:x@" + directAddr + " | tel:+81300000007"},
		{"extension", "sip:1001@a.test", alice, "| sip:1001@a.test"},
		{"extension as a number", "sip:1001@a.test;user=phone", alice, "| sip:1001@a.test;user=phone"},
		{"tel URI through ENUM", "tel:+81312345678", bob, "| tel:+81312345678"},
		{"number of our domain's through ENUM", "sip:+81-3-1234-5678@a.test;user=phone", bob, "| sip:+81-3-1234-5678@a.test;user=phone"},
		{"number mapped to a user of ours", "tel:+81300000006", alice, "| tel:+81300000006"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if res := message(c.to, a.Addr("udp"), "carol@a.test", "carol"); res.StatusCode != 200 {
				t.Fatalf("MESSAGE %s: %d %s", c.to, res.StatusCode, res.Reason)
			}
			got := c.phone.take()
			if len(got) != 1 || !strings.Contains(got[0], c.want) {
				t.Errorf("MESSAGE %s: the phone got %q; want one with %q", c.to, got, c.want)
			}
		})
	}
	for _, c := range []struct {
		name, to string
		want     int
	}{
		{"bad regular expression", "tel:+81300000001", 502},
		{"non-terminal records in a loop", "tel:+81300000002", 482},
		{"numbers that map to each other", "sip:+81300000004@a.test;user=phone", 482},
		{"no record", "tel:+81399999999", 404},
		{"not a number", "tel:1234", 404},
		{"nobody", "sip:2002@a.test", 404},
		// user=phone makes a number of digits, never a name of dots.
		{"a name as a telephone number", "sip:a.l.i.c.e@a.test;user=phone", 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := message(c.to, a.Addr("udp"), "carol@a.test", "carol")
			if res.StatusCode != c.want {
				t.Errorf("MESSAGE %s: %d %s; want %d", c.to, res.StatusCode, res.Reason, c.want)
			}
			t.Logf("MESSAGE %s: %d %s", c.to, res.StatusCode, res.Reason)
		})
	}

	t.Run("ENUM is for users of ours", func(t *testing.T) {
		// bob, of b.test, asks a.test to look a number up: no.
		if res := message("sip:+81312345678@a.test;user=phone", a.Addr("udp"), "bob@b.test", "bob"); res.StatusCode != 404 {
			t.Errorf("a number at a.test from b.test: %d %s; want 404", res.StatusCode, res.Reason)
		}
		if res := message("tel:+81312345678", a.Addr("udp"), "bob@b.test", "bob"); res.StatusCode != 403 {
			t.Errorf("a tel: URI at a.test from b.test: %d %s; want 403", res.StatusCode, res.Reason)
		}
		// An alias is an address like any other: reachable from anywhere.
		if res := message("sip:1001@a.test", a.Addr("udp"), "bob@b.test", "bob"); res.StatusCode != 200 {
			t.Errorf("1001@a.test from b.test: %d %s; want 200", res.StatusCode, res.Reason)
		}
		alice.take()
	})

	t.Run("fallback", func(t *testing.T) {
		if res := message("tel:+81399999999", aGW.Addr("udp"), "carol@a.test", "carol"); res.StatusCode != 200 {
			t.Fatalf("MESSAGE to a number without a record, with a fallback: %d %s", res.StatusCode, res.Reason)
		}
		got := gw.take()
		if want := "sip:+81399999999@" + gwAddr + ";user=phone | tel:+81399999999"; len(got) != 1 || got[0] != want {
			t.Errorf("the gateway got %q; want %q", got, want)
		}
	})

	t.Run("the gateway is reached through the fallback only", func(t *testing.T) {
		// carol forwards her calls to a premium number at the gateway by
		// registering it as her Contact; mallory of b.test calls her.
		c := newClient(t, "carol-forwarding")
		reg := request(sip.REGISTER, "carol@a.test", "carol@a.test", aGW.Addr("udp"))
		reg.Recipient = sip.Uri{Scheme: "sip", Host: "a.test"}
		reg.AppendHeader(sip.NewHeader("Contact", "<sip:+19005551234@"+gwAddr+";user=phone>"))
		if res := do(t, c, reg, "carol"); res.StatusCode != 200 {
			t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
		}
		if res := message("sip:carol@a.test", aGW.Addr("udp"), "mallory@b.test", "mallory"); res.StatusCode != 403 {
			t.Errorf("mallory → carol, registered at the gateway: %d %s; want 403", res.StatusCode, res.Reason)
		}
		// Nor does a user of ours dial the gateway directly.
		if res := message("sip:+19005551234@"+gwAddr+";user=phone", aGW.Addr("udp"), "carol@a.test", "carol"); res.StatusCode != 403 {
			t.Errorf("carol → the gateway directly: %d %s; want 403", res.StatusCode, res.Reason)
		}
		if got := gw.take(); len(got) != 0 {
			t.Errorf("the gateway got %q", got)
		}
	})

	t.Run("DNS that never answers", func(t *testing.T) {
		// The ENUM tree's server takes the queries and says nothing: the
		// request gets 504 once the look-ups' budget is spent, not a hang.
		silent, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		aSilent := start(t, server.Config{Domains: []string{"a.test"}, Users: usersA, DNS: []string{silent.LocalAddr().String()}, ENUMSuffixes: []string{"e164.test"}})
		if res := message("tel:+81312345678", aSilent.Addr("udp"), "carol@a.test", "carol"); res.StatusCode != 504 {
			t.Errorf("a number whose ENUM server is silent: %d %s; want 504", res.StatusCode, res.Reason)
		}
	})

	t.Run("REGISTER of an alias", func(t *testing.T) {
		c := newClient(t, "alice-again")
		reg := request(sip.REGISTER, "1001@a.test", "1001@a.test", a.Addr("udp"))
		reg.Recipient = sip.Uri{Scheme: "sip", Host: "a.test"}
		reg.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:9>"))
		res := do(t, c, reg, "alice")
		if res.StatusCode != 403 || !strings.Contains(res.Reason, "alias") {
			t.Errorf("REGISTER 1001@a.test as alice: %d %s; want 403 naming the alias", res.StatusCode, res.Reason)
		}
	})
}

// serveRecorder serves r on a UDP port of its own and returns its address.
func serveRecorder(t *testing.T, r *recorder) string {
	t.Helper()
	return serveUDP(t, r.setup).LocalAddr().String()
}
