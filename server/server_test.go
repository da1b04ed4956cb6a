package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/server"
)

// usersFile writes a users file with user@domain / user-pw for each user.
func usersFile(t *testing.T, domain string, users ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), domain+".users")
	f, err := auth.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := f.Add(context.Background(), u+"@"+domain, u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func testLogger() *slog.Logger {
	if os.Getenv("SIPFED_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start makes and serves a server on free loopback ports; the test's end
// shuts it down.
func start(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv
}

func newClient(t *testing.T, name string) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startPhone runs a phone for user@domain on a UDP port of its own with
// the handlers setup installs, and registers it at s.
func startPhone(t *testing.T, s *server.Server, user, domain string, setup func(*sipgo.Server)) {
	t.Helper()
	pc := serveUDP(t, setup)
	c := newClient(t, user+"-phone")
	reg := request(sip.REGISTER, user+"@"+domain, user+"@"+domain, s.Addr("udp"))
	reg.Recipient = sip.Uri{Scheme: "sip", Host: domain}
	reg.AppendHeader(sip.NewHeader("Contact", "<sip:"+user+"@"+pc.LocalAddr().String()+">"))
	if res := do(t, c, reg, user); res.StatusCode != 200 {
		t.Fatalf("REGISTER %s@%s: %d %s", user, domain, res.StatusCode, res.Reason)
	}
}

// serveUDP serves a SIP endpoint with the handlers setup installs on a
// loopback UDP port of its own, until the test ends.
func serveUDP(t *testing.T, setup func(*sipgo.Server)) net.PacketConn {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	setup(srv)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(pc)
	return pc
}

// messagePhone is a setup for startPhone: MESSAGE answered 200 and
// counted in got.
func messagePhone(got *atomic.Int32) func(*sipgo.Server) {
	return func(phone *sipgo.Server) {
		phone.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			got.Add(1)
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	}
}

func request(method sip.RequestMethod, from, to string, dest net.Addr) *sip.Request {
	var ruri sip.Uri
	sip.ParseUri("sip:"+to, &ruri)
	req := sip.NewRequest(method, ruri)
	var fu, tu sip.Uri
	sip.ParseUri("sip:"+from, &fu)
	sip.ParseUri("sip:"+to, &tu)
	fh := &sip.FromHeader{Address: fu, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: tu, Params: sip.NewParams()})
	req.SetDestination(dest.String())
	return req
}

// do sends req and answers a digest challenge as user.
func do(t *testing.T, c *sipgo.Client, req *sip.Request, user string) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		res, err = c.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: user + "-pw"})
		if err != nil {
			t.Fatalf("%s with credentials: %v", req.Method, err)
		}
	}
	return res
}

// TestTwoDomainsInOneProcess runs a.test and b.test as two servers of one
// process, found through a lab DNS server: bob registers at b.test, and
// alice's MESSAGE crosses a.test, DNS and b.test to reach bob's phone.
func TestTwoDomainsInOneProcess(t *testing.T) {
	dir := t.TempDir()
	zoneA, zoneB := filepath.Join(dir, "a.test.zone"), filepath.Join(dir, "b.test.zone")
	writeZone(t, zoneA, "a.test", 1)
	writeZone(t, zoneB, "b.test", 1)
	lab := startLabDNS(t, zoneA, zoneB)

	a := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), DNS: []string{lab.Addr()}, HTTP: "127.0.0.1:0"})
	b := start(t, server.Config{Domains: []string{"b.test"}, Users: usersFile(t, "b.test", "bob"), DNS: []string{lab.Addr()}, HTTP: "127.0.0.1:0"})
	writeZone(t, zoneA, "a.test", a.Addr("udp").(*net.UDPAddr).Port)
	writeZone(t, zoneB, "b.test", b.Addr("udp").(*net.UDPAddr).Port)
	if err := lab.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.Addr("udp").(*net.UDPAddr).Port != a.Addr("tcp").(*net.TCPAddr).Port {
		t.Errorf("udp and tcp got different ports: %v %v", a.Addr("udp"), a.Addr("tcp"))
	}

	// Bob's phone answers MESSAGE.
	var got atomic.Int32
	startPhone(t, b, "bob", "b.test", messagePhone(&got))

	alice := newClient(t, "alice-phone")
	msg := request(sip.MESSAGE, "alice@a.test", "bob@b.test", a.Addr("udp"))
	msg.SetBody([]byte("hello"))
	msg.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	if res := do(t, alice, msg, "alice"); res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %d %s", res.StatusCode, res.Reason)
	}
	if got.Load() != 1 {
		t.Fatalf("bob's phone got %d MESSAGEs, want 1", got.Load())
	}
	// Each server counts its own requests.
	for name, s := range map[string]*server.Server{"a": a, "b": b} {
		body := get(t, "http://"+s.HTTPAddr().String()+"/metrics")
		want := map[string]string{"a": `sipfed_sip_requests_total{method="MESSAGE"} 2`, "b": `sipfed_sip_requests_total{method="REGISTER"} 2`}[name]
		if !strings.Contains(body, want) {
			t.Errorf("server %s: /metrics lacks %s", name, want)
		}
	}
}

// writeZone writes the zone of domain with one target, 127.0.0.1:port
// over UDP.
func writeZone(t *testing.T, path, domain string, port int) {
	t.Helper()
	writeZoneFor(t, path, domain, "SIP+D2U", "_sip._udp", port)
}

// writeZoneFor writes the zone of domain with one target, 127.0.0.1:port,
// found through NAPTR service (SIP+D2U, SIPS+D2T) and SRV srv (_sip._udp,
// _sips._tcp).
func writeZoneFor(t *testing.T, path, domain, service, srv string, port int) {
	t.Helper()
	zone := fmt.Sprintf(`$ORIGIN %[1]s.
$TTL 1
@ IN SOA ns.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 1
@ IN NAPTR 10 10 "S" "%[3]s" "" %[4]s.%[1]s.
%[4]s IN SRV 10 10 %[2]d sip.%[1]s.
sip IN A 127.0.0.1
`, domain, port, service, srv)
	if err := os.WriteFile(path, []byte(zone), 0o600); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMadeUpMethodsLeaveMetricsBounded sends 10,000 requests with
// made-up methods over UDP: each is answered, and /metrics keeps one
// "other" series instead of growing by one per method.
func TestMadeUpMethodsLeaveMetricsBounded(t *testing.T) {
	// One source, as fast as answers come: far over the per-source rate
	// limit, which this test is not about.
	s := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), HTTP: "127.0.0.1:0", DNS: []string{"127.0.0.1:1"}, PikeRate: -1})
	metricsURL := "http://" + s.HTTPAddr().String() + "/metrics"
	before := len(get(t, metricsURL))
	conn, err := net.Dial("udp", s.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	buf := make([]byte, 4096)
	const n = 10000
	answered := 0
	for i := 0; i < n; i++ {
		m := fmt.Sprintf("XM%d", i)
		msg := fmt.Sprintf("%s sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-m%d\r\nFrom: <sip:x@c.test>;tag=1\r\nTo: <sip:a.test>\r\nCall-ID: m%d\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", m, local, i, i, m)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(buf); err == nil {
			answered++
		}
	}
	if answered < n*99/100 {
		t.Fatalf("%d of %d made-up requests answered", answered, n)
	}
	// A request is counted once its handler returns, just after its
	// answer went out.
	want := fmt.Sprintf(`sipfed_sip_requests_total{method="other"} %d`, n)
	body := get(t, metricsURL)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(body, want) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		body = get(t, metricsURL)
	}
	if strings.Contains(body, `method="XM`) {
		t.Fatal("a made-up method became a label value")
	}
	if !strings.Contains(body, want) {
		t.Errorf("/metrics does not count %d requests as other:\n%s", n, grep(body, "other"))
	}
	if grown := len(body) - before; grown > 400 {
		t.Errorf("/metrics grew by %d bytes", grown)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRFC3261_16_2_TryingBeforeSlowDNS checks that an INVITE to another
// domain gets 100 Trying at once, while the DNS look-up for that domain
// is still waiting for a server that takes 2 s to answer.
func TestRFC3261_16_2_TryingBeforeSlowDNS(t *testing.T) {
	const delay = 2 * time.Second
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(delay)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
	})}
	go slow.ActivateAndServe()
	defer slow.Shutdown()

	s := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), DNS: []string{pc.LocalAddr().String()}})
	c := newClient(t, "alice-phone")
	inv := request(sip.INVITE, "alice@a.test", "bob@slow.test", s.Addr("udp"))
	inv.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:9>"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Do(ctx, inv)
	if err != nil || res.StatusCode != 407 {
		t.Fatalf("first INVITE: %v %v", res, err)
	}
	sent := time.Now()
	tx, err := c.TransactionDigestAuth(ctx, inv, res, sipgo.DigestAuth{Username: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	var first *sip.Response
	var firstAt time.Duration
	select {
	case first = <-tx.Responses():
		firstAt = time.Since(sent)
	case <-tx.Done():
		t.Fatalf("transaction ended: %v", tx.Err())
	}
	if first.StatusCode != 100 {
		t.Fatalf("first response %d %s, want 100 Trying", first.StatusCode, first.Reason)
	}
	// Generous for a loaded machine, and far below the DNS delay (and the
	// resolver's own 2 s timeout).
	if firstAt >= delay/4 {
		t.Fatalf("100 Trying came after %v: it waited for DNS (answering after %v)", firstAt, delay)
	}
	// The look-up then fails: the call gets a final answer all the same.
	for {
		select {
		case r := <-tx.Responses():
			if r.StatusCode >= 200 {
				if r.StatusCode != 404 && r.StatusCode != 503 {
					t.Errorf("final %d %s, want 404 or 503", r.StatusCode, r.Reason)
				}
				return
			}
		case <-tx.Done():
			t.Fatalf("no final response: %v", tx.Err())
		}
	}
}

// TestShutdownCancelsRingingCall: on Shutdown, a call still ringing when
// the drain time is over is CANCELed towards the callee and answered 487
// to the caller, and Shutdown says that it had to cut it short.
func TestShutdownCancelsRingingCall(t *testing.T) {
	s, err := server.New(server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice", "bob"),
		Listen: []string{"udp:127.0.0.1:0"}, DNS: []string{"127.0.0.1:1"}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()

	// Bob's phone rings and never answers.
	cancelled := make(chan struct{})
	startPhone(t, s, "bob", "a.test", func(phone *sipgo.Server) {
		phone.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			tx.OnCancel(func(*sip.Request) { close(cancelled) })
			tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
			<-tx.Done()
		})
	})

	alice := newClient(t, "alice-phone")
	inv := request(sip.INVITE, "alice@a.test", "bob@a.test", s.Addr("udp"))
	inv.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:9>"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := alice.Do(ctx, inv)
	if err != nil || res.StatusCode != 407 {
		t.Fatalf("first INVITE: %v %v", res, err)
	}
	tx, err := alice.TransactionDigestAuth(ctx, inv, res, sipgo.DigestAuth{Username: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	waitFor := func(want int) {
		t.Helper()
		for {
			select {
			case r := <-tx.Responses():
				if r.StatusCode == want {
					return
				}
				if r.StatusCode >= 200 {
					t.Fatalf("got %d %s, want %d", r.StatusCode, r.Reason, want)
				}
			case <-tx.Done():
				t.Fatalf("transaction ended before %d: %v", want, tx.Err())
			}
		}
	}
	waitFor(180)

	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(sctx) }()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the ringing phone got no CANCEL")
	}
	waitFor(487)
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the drain deadline", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// TestNewReportsBadConfigAndBusyPort: a Config that cannot work wraps
// ErrConfig (the command line's exit 2); a port in use is a plain error.
func TestNewReportsBadConfigAndBusyPort(t *testing.T) {
	for _, cfg := range []server.Config{
		{},
		{Domains: []string{"a test"}},
		{Domains: []string{"a.test"}, Listen: []string{"sctp:127.0.0.1:0"}},
		{Domains: []string{"a.test"}, Listen: []string{"udp:0.0.0.0:0"}},
		{Domains: []string{"a.test"}, TimerC: time.Millisecond},
		{Domains: []string{"a.test"}, MinExpires: 100, MaxExpires: 50},
		{Domains: []string{"a.test"}, Users: "redis"},
		{Domains: []string{"a.test"}, DigestAlgorithms: []string{"SHA-512"}},
		{Domains: []string{"a.test"}, Store: "mysql://x"},
	} {
		if _, err := server.New(cfg); !errors.Is(err, server.ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = server.New(server.Config{Domains: []string{"a.test"}, Users: filepath.Join(t.TempDir(), "u"), Listen: []string{"udp:" + busy.LocalAddr().String()}})
	if err == nil || errors.Is(err, server.ErrConfig) || strings.Count(err.Error(), "listen udp") != 1 {
		t.Errorf("busy port: %v, want one 'listen udp' error that is not ErrConfig", err)
	}
}

// startLabDNS serves the zone files on a loopback port until the test
// ends.
func startLabDNS(t *testing.T, files ...string) *resolver.LabServer {
	t.Helper()
	lab, err := resolver.NewLabServer(files...)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go lab.Serve(ctx)
	return lab
}
