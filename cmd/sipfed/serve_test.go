package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// startServe runs `sipfed serve` in-process on free ports; cancel stops it
// as SIGTERM does, and the returned channel yields the exit status.
func startServe(t *testing.T, extra ...string) (sipAddr, httpAddr string, cancel func(), exit <-chan int, log *testenv.Buffer) {
	t.Helper()
	sipAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	users := filepath.Join(t.TempDir(), "users.txt")
	log = &testenv.Buffer{}
	e := &env{stdin: strings.NewReader(""), stdout: log, stderr: log, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan int, 1)
	args := append([]string{"serve", "--domain", "a.test", "--listen", "udp:" + sipAddr, "--listen", "tcp:" + sipAddr, "--http", httpAddr, "--users", users}, extra...)
	go func() { ch <- run(ctx, e, args) }()
	if err := testenv.WaitTCP(httpAddr, 10*time.Second); err != nil {
		cancel()
		t.Fatalf("serve did not start: %v\n%s", err, log)
	}
	t.Cleanup(cancel)
	return sipAddr, httpAddr, cancel, ch, log
}

// exchange sends one UDP datagram and returns the first line of the answer.
func exchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "LOCAL", local), "\n", "\r\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to\n%s\n: %v", msg, err)
	}
	first, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return first
}

func request(method, ruri string, headers ...string) string {
	h := map[string]string{
		"Via":     "SIP/2.0/UDP LOCAL;branch=z9hG4bK-" + fmt.Sprint(time.Now().UnixNano()) + ";rport",
		"From":    "<sip:alice@a.test>;tag=1",
		"To":      "<sip:alice@a.test>",
		"Call-ID": fmt.Sprint("c", time.Now().UnixNano()),
		"CSeq":    "1 " + method,
	}
	var extra []string
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		if _, ok := h[k]; ok {
			h[k] = v
			continue
		}
		extra = append(extra, kv)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\n", method, ruri)
	for _, k := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
		if h[k] != "-" {
			fmt.Fprintf(&b, "%s: %s\n", k, h[k])
		}
	}
	for _, kv := range extra {
		b.WriteString(kv + "\n")
	}
	b.WriteString("Max-Forwards: 70\nContent-Length: 0\n\n")
	return b.String()
}

// TestServeOptionsHealthMetricsAndDrain checks OPTIONS → 200, /healthz,
// /metrics in Prometheus text, and a clean exit 0 on SIGTERM.
func TestServeOptionsHealthMetricsAndDrain(t *testing.T) {
	sipAddr, httpAddr, cancel, exit, log := startServe(t)
	if got := exchange(t, sipAddr, request("OPTIONS", "sip:a.test")); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS: %q", got)
	}
	body := get(t, "http://"+httpAddr+"/healthz")
	if strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %q", body)
	}
	metrics := get(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{`sipfed_sip_requests_total{method="OPTIONS"} 1`, `sipfed_sip_responses_total{class="2xx",method="OPTIONS"} 1`, "go_goroutines", "process_cpu_seconds_total", "# TYPE sipfed_uptime_seconds gauge"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM\n%s", code, log)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestServeBadInputOverTheWire sends malformed requests as datagrams: each
// gets a 400 whose reason says what is wrong, and the server keeps serving.
func TestServeBadInputOverTheWire(t *testing.T) {
	sipAddr, _, _, _, _ := startServe(t)
	for _, c := range []struct {
		msg, want string
	}{
		{request("REGISTER", "sip:a.test", "To: <sip:alice@a.test", "Contact: <sip:alice@LOCAL>"), "SIP/2.0 400 Malformed To header"},
		{request("REGISTER", "sip:a.test", "From: -", "Contact: <sip:alice@LOCAL>"), "SIP/2.0 400 Missing From header"},
		{request("REGISTER", "sip:a.test", "Contact: <sip:alice@LOCAL"), "SIP/2.0 400 Malformed Contact header"},
		{request("REGISTER", "sip:a.test", "CSeq: -"), "SIP/2.0 400 Missing CSeq header"}, // the unparsable CSeq is dropped by the parser
		{request("REGISTER", "sip:b.test", "Contact: <sip:alice@LOCAL>"), "SIP/2.0 404 Domain b.test not served here"},
		{request("REGISTER", "sip:a.test", "Contact: <sip:alice@LOCAL>"), "SIP/2.0 401 Unauthorized"},
		{request("OPTIONS", "sip:a.test"), "SIP/2.0 200 OK"},
	} {
		if got := exchange(t, sipAddr, c.msg); got != c.want {
			t.Errorf("%s\n got %q, want %q", c.msg, got, c.want)
		}
	}
}

// TestServeFlagsEnvAndConfig checks where serve's settings come from:
// flags after positional arguments, SIPFED_* variables and --config keys,
// flags winning over both, and clear messages for mistakes.
func TestServeFlagsEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipfed.yaml")
	if err := os.WriteFile(cfg, []byte("domain: [a.test, b.test]\nstore: memory\nmax-contacts: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		return map[string]string{"SIPFED_MAX_CONTACTS": "7", "SIPFED_LOG_LEVEL": "debug"}[k]
	}}
	fs := newFlagSet(e, "serve", "usage")
	fs.withConfig()
	domains := newListFlag()
	fs.Var(domains, "domain", "")
	store := fs.String("store", "x", "")
	maxContacts := fs.Int("max-contacts", 10, "")
	level := fs.String("log-level", "info", "")
	users := fs.String("users", "users.txt", "")
	pos, err := fs.parse(e, []string{"arg1", "--config", cfg, "arg2", "--users", "u.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pos, ",") != "arg1,arg2" || *users != "u.txt" {
		t.Fatalf("positionals %q, users %q", pos, *users)
	}
	if strings.Join(domains.vals, ",") != "a.test,b.test" || *store != "memory" {
		t.Fatalf("from config: domains %q store %q", domains.vals, *store)
	}
	if *maxContacts != 7 || *level != "debug" {
		t.Fatalf("environment should win over config: max-contacts %d, log-level %q", *maxContacts, *level)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--help"}, 0, "Usage: sipfed serve"},
		{[]string{"serve"}, 2, "--domain is required"},
		{[]string{"serve", "--domain", "a.test", "--listen", "sctp:1.2.3.4:5"}, 2, "want udp:, tcp:, tls:, ws: or wss:HOST:PORT"},
		{[]string{"serve", "--domain", "a.test", "--digest-algorithms", "SHA-512"}, 2, "--digest-algorithms"},
		{[]string{"serve", "--domain", "a.test", "--min-expires", "0"}, 2, "--min-expires"},
		{[]string{"serve", "--domain", "a.test", "--config", filepath.Join(dir, "missing.yaml")}, 1, "config"},
		{[]string{"serve", "--domain", "a.test", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	} {
		var out testenv.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
		if code := run(context.Background(), e, c.args); code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("%q: exit %d, want %d with %q\n%s", c.args, code, c.code, c.want, out.String())
		}
	}
}

// TestListFlagsTakeCommas checks that a repeatable flag takes a comma list
// on the command line and in the config file, as in the environment, and
// that user commands read --config too.
func TestListFlagsTakeCommas(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("transport: udp, tcp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fs := newFlagSet(e, "x", "")
	fs.withConfig()
	domains, transports := newListFlag(), newListFlag("ws")
	fs.Var(domains, "domain", "")
	fs.Var(transports, "transport", "")
	if _, err := fs.parse(e, []string{"--domain", "c.test,d.test", "--domain", "e.test", "--config", cfg}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(domains.vals, " ") != "c.test d.test e.test" || strings.Join(transports.vals, " ") != "udp tcp" {
		t.Fatalf("domains %q, transports %q", domains.vals, transports.vals)
	}

	users := filepath.Join(dir, "users.txt")
	ucfg := filepath.Join(dir, "u.yaml")
	if err := os.WriteFile(ucfg, []byte("users: "+users+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runUserCLI(t, "pw\n", "add", "--config", ucfg, "--password-stdin", "zed@a.test"); code != 0 {
		t.Fatalf("user add --config: exit %d: %s", code, stderr)
	}
	if code, out, _ := runUserCLI(t, "", "list", "--config", ucfg); code != 0 || strings.TrimSpace(out) != "zed@a.test" {
		t.Fatalf("user list --config: exit %d: %q", code, out)
	}
}

// TestServeEnvValuesReachConfigWhole: a Sentinel URL with a host list in
// SIPFED_STORE and a secret with a comma in SIPFED_SECRET reach the
// server's Config as given; list flags still take comma lists.
func TestServeEnvValuesReachConfigWhole(t *testing.T) {
	vars := map[string]string{
		"SIPFED_STORE":  "redis+sentinel://h1:26379,h2:26379/mymaster",
		"SIPFED_SECRET": "a,b",
		"SIPFED_DOMAIN": "a.test,b.test",
		"SIPFED_DNS":    "127.0.0.1:53,127.0.0.2:53",
	}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return vars[k] }}
	cfg, _, err := serveConfig(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != vars["SIPFED_STORE"] || cfg.Secret != "a,b" {
		t.Errorf("store %q secret %q", cfg.Store, cfg.Secret)
	}
	if strings.Join(cfg.Domains, " ") != "a.test b.test" || len(cfg.DNS) != 2 {
		t.Errorf("domains %q dns %q", cfg.Domains, cfg.DNS)
	}
}
