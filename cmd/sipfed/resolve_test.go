package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/resolver"
)

// TestDNSAndResolveCommands runs `sipfed dns` on the lab zones and checks
// `sipfed resolve` against it: the targets in order with their records,
// --json, a clear error for a name that does not resolve, and a clean exit
// of the DNS server on SIGTERM.
func TestDNSAndResolveCommands(t *testing.T) {
	root := testenv.RepoRoot(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dnsOut := &testenv.Buffer{}
	e := &env{stdout: dnsOut, stderr: dnsOut, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, e, []string{"dns", "--listen", addr,
			"--zone", filepath.Join(root, "deploy/lab/a.test.zone"), "--zone", filepath.Join(root, "deploy/lab/b.test.zone")})
	}()
	if err := testenv.WaitTCP(addr, 5*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, dnsOut)
	}
	if !strings.Contains(dnsOut.String(), "production domains publish") {
		t.Errorf("sipfed dns does not say it is a lab server:\n%s", dnsOut)
	}

	resolve := func(args ...string) (int, string) {
		out := &testenv.Buffer{}
		e := &env{stdout: out, stderr: out, getenv: func(string) string { return "" }}
		return run(context.Background(), e, append([]string{"resolve"}, args...)), out.String()
	}
	code, out := resolve("sip:bob@b.test", "--dns", addr)
	if code != 0 || !strings.Contains(out, "1. tcp  127.0.0.1:5062") || !strings.Contains(out, "2. udp  127.0.0.1:5062") || !strings.Contains(out, `"SIP+D2T"`) {
		t.Fatalf("resolve: exit %d\n%s", code, out)
	}
	code, out = resolve("--json", "--dns", addr, "sip:bob@a.test")
	var targets []struct {
		Transport string   `json:"transport"`
		IP        string   `json:"ip"`
		Port      int      `json:"port"`
		Records   []string `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &targets); code != 0 || err != nil || len(targets) != 2 || targets[0].Transport != "tcp" || targets[0].Port != 5061 {
		t.Fatalf("resolve --json: exit %d, %v\n%s", code, err, out)
	}
	code, out = resolve("--dns", addr, "sip:bob@nowhere.test")
	if code != 1 || !strings.Contains(out, "nowhere.test") {
		t.Fatalf("unknown domain: exit %d\n%s", code, out)
	}
	if code, _ := resolve(); code != 2 {
		t.Fatalf("resolve without a URI: exit %d, want 2", code)
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("sipfed dns exited %d\n%s", code, dnsOut)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sipfed dns did not stop")
	}
}

// enumTestZone holds an ENUM tree, e164.enum.test, and the SIP domain its
// good record points at.
const enumTestZone = `$ORIGIN enum.test.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
@ IN NS ns
ns IN A 127.0.0.1
_sip._udp IN SRV 10 0 5072 sip
sip IN A 127.0.0.1
8.7.6.5.4.3.2.1.3.1.8.e164 IN NAPTR 10 50 "u" "E2U+mailto" "!^.*$!mailto:bob@enum.test!" .
8.7.6.5.4.3.2.1.3.1.8.e164 IN NAPTR 10 100 "u" "E2U+sip" "!^\\+81(.*)$!sip:\\1@enum.test!" .
1.0.0.0.0.0.0.0.3.1.8.e164 IN NAPTR 10 100 "u" "E2U+sip" "!^(.*$!sip:x@enum.test!" .
2.0.0.0.0.0.0.0.3.1.8.e164 IN NAPTR 10 100 "" "E2U+sip" "" 3.0.0.0.0.0.0.0.3.1.8.e164
3.0.0.0.0.0.0.0.3.1.8.e164 IN NAPTR 10 100 "" "E2U+sip" "" 2.0.0.0.0.0.0.0.3.1.8.e164
`

// startENUMLab serves enumTestZone on a loopback port until the test ends.
func startENUMLab(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "enum.test.zone")
	if err := os.WriteFile(f, []byte(enumTestZone), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := resolver.NewLabServer(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lab DNS: %v", err)
		}
	})
	return srv.Addr()
}

// TestResolveTelephoneNumber checks `sipfed resolve tel:+...`: the ENUM
// steps, the URI found and its RFC 3263 targets; --json; one clear line
// and exit 1 for a number without a usable record; exit 2 for what is no
// number.
func TestResolveTelephoneNumber(t *testing.T) {
	addr := startENUMLab(t)
	sfx := "e164.enum.test"

	for _, number := range []string{"tel:+81312345678", "+81-3-1234-5678", "TEL:+81312345678;ext=12"} {
		code, out, errOut := runCLI(t, nil, "resolve", "--dns", addr, "--enum-suffix", sfx, number)
		for _, want := range []string{
			"+81312345678: ENUM under e164.enum.test (DNS " + addr + ")",
			"    8.7.6.5.4.3.2.1.3.1.8.e164.enum.test NAPTR: 2 record(s)",
			`    skip 8.7.6.5.4.3.2.1.3.1.8.e164.enum.test. 60 IN NAPTR 10 50 "u" "E2U+mailto"`,
			`    use 8.7.6.5.4.3.2.1.3.1.8.e164.enum.test. 60 IN NAPTR 10 100 "u" "E2U+sip" "!^\\+81(.*)$!sip:\\1@enum.test!" .: sip:312345678@enum.test`,
			"+81312345678 is sip:312345678@enum.test",
			"sip:312345678@enum.test: 1 target(s), in the order to try",
			" 1. udp  127.0.0.1:5072",
			"_sip._udp.enum.test. 60 IN SRV 10 0 5072 sip.enum.test.",
		} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("resolve %s: exit %d, output lacks %q\n%s%s", number, code, want, out, errOut)
			}
		}
	}

	code, out, errOut := runCLI(t, nil, "resolve", "--json", "--dns", addr, "--enum-suffix", sfx, "tel:+81312345678")
	var got struct {
		ENUM struct {
			Number string   `json:"number"`
			URI    string   `json:"uri"`
			Record string   `json:"record"`
			Steps  []string `json:"steps"`
		} `json:"enum"`
		Targets []struct {
			Transport string `json:"transport"`
			IP        string `json:"ip"`
			Port      int    `json:"port"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("resolve --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	if got.ENUM.Number != "+81312345678" || got.ENUM.URI != "sip:312345678@enum.test" || !strings.Contains(got.ENUM.Record, `"E2U+sip"`) ||
		len(got.ENUM.Steps) != 3 || len(got.Targets) != 1 || got.Targets[0].Transport != "udp" || got.Targets[0].Port != 5072 {
		t.Errorf("resolve --json: %+v", got)
	}

	for _, c := range []struct{ number, want string }{
		{"tel:+81399999999", "sipfed resolve: resolver: ENUM +81399999999: nothing under e164.enum.test: no E2U+sip record"},
		{"tel:+81300000001", "sipfed resolve: resolver: ENUM +81300000001 under e164.enum.test: 1.0.0.0.0.0.0.0.3.1.8.e164.enum.test NAPTR 10 100: NAPTR regexp"},
		{"tel:+81300000002", "leads back to 2.0.0.0.0.0.0.0.3.1.8.e164.enum.test: ENUM loop"},
	} {
		code, out, errOut := runCLI(t, nil, "resolve", "--dns", addr, "--enum-suffix", sfx, c.number)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("resolve %s: exit %d, stderr %q; want exit 1 and one line with %q", c.number, code, errOut, c.want)
		}
		if !strings.Contains(out, "ENUM under e164.enum.test") || strings.Contains(out, "target(s)") {
			t.Errorf("resolve %s: stdout should hold the ENUM steps only:\n%s", c.number, out)
		}
	}

	// The default tree is e164.arpa, which the lab server refuses.
	code, out, errOut = runCLI(t, nil, "resolve", "--dns", addr, "tel:+81312345678")
	if code != 1 || !strings.Contains(out, "ENUM under e164.arpa") || !strings.Contains(errOut, "8.7.6.5.4.3.2.1.3.1.8.e164.arpa NAPTR: REFUSED") {
		t.Errorf("default suffix: exit %d\n%s%s", code, out, errOut)
	}

	for _, args := range [][]string{
		{"tel:12345"},
		{"tel:+81-3-abcd"},
		{"+1234567890123456"},
		{"tel:"},
		{"--enum-suffix", "bad..tree", "tel:+81312345678"},
	} {
		code, out, errOut := runCLI(t, nil, append([]string{"resolve", "--dns", addr}, args...)...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "sipfed resolve: ") {
			t.Errorf("resolve %q: exit %d, stdout %q, stderr %q; want a usage error", args, code, out, errOut)
		}
	}

	code, out, _ = runCLI(t, nil, "resolve", "--help")
	if code != 0 || !strings.Contains(out, "tel:+81312345678") || !strings.Contains(out, "--enum-suffix tree") {
		t.Errorf("resolve --help: exit %d\n%s", code, out)
	}
}
