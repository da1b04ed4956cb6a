package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/location/memory"
	"github.com/sipfed/sipfed/proxy"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// domain is a.test's proxy running in-process on a loopback UDP port.
type domain struct {
	addr  string
	store *memory.Store
	users *auth.FileStore
}

func startProxy(t testing.TB, opts ...proxy.Option) *domain {
	t.Helper()
	return startProxyDNS(t, "", opts...)
}

// startProxyDNS starts the proxy with a lab DNS server holding zone (the
// text of a zone file for a.test, with PORT standing for the proxy's port).
func startProxyDNS(t testing.TB, zone string, opts ...proxy.Option) *domain {
	t.Helper()
	return startProxyAt(t, "127.0.0.1", zone, opts...)
}

// startProxyAt is startProxyDNS with the proxy listening on host (an IP
// address: "127.0.0.1", "::1").
func startProxyAt(t testing.TB, host, zone string, opts ...proxy.Option) *domain {
	t.Helper()
	ctx := context.Background()
	users, err := auth.OpenFile(filepath.Join(t.TempDir(), "users.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := users.Add(ctx, u+"@a.test", u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	port := testenv.FreePort(t)
	dnsAddr := "127.0.0.1:1"
	if zone != "" {
		file := filepath.Join(t.TempDir(), "a.test.zone")
		if err := os.WriteFile(file, []byte(strings.ReplaceAll(zone, "PORT", strconv.Itoa(port))), 0o600); err != nil {
			t.Fatal(err)
		}
		lab, err := resolver.NewLabServer(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := lab.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		lctx, stop := context.WithCancel(context.Background())
		go lab.Serve(lctx)
		t.Cleanup(stop)
		dnsAddr = lab.Addr()
	}
	res, err := resolver.New(resolver.WithServers([]string{dnsAddr}), resolver.WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var px *proxy.Proxy
	ua, err := sipgo.NewUA(sipgo.WithUserAgentParser(sipcore.NewParser()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) { px.HandleStrayResponse(r) })))
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	authSrv := auth.NewServer(users, []byte("secret"))
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("SIPFED_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		opts = append(opts, proxy.WithLogger(log))
	}
	px = proxy.New([]string{"a.test"}, store, authSrv, users, res, client,
		[]proxy.Listener{{Transport: "udp", Host: host, Port: port}, {Transport: "tcp", Host: host, Port: port}}, opts...)
	srv.OnNoRoute(sipcore.Adapt(context.Background(), sipcore.Deadlines{}, sipcore.Chain(px, sipcore.Respond(log), sipcore.Recover(log))))
	serveAt(t, ua, srv, host, port)
	return &domain{addr: addr, store: store, users: users}
}

// newPhone makes a user agent and server for a test phone or caller.
func newPhone(t testing.TB) (*sipgo.UserAgent, *sipgo.Server) {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	return ua, srv
}

// serve runs srv on UDP and TCP at 127.0.0.1:port until the test ends.
func serve(t testing.TB, ua *sipgo.UserAgent, srv *sipgo.Server, port int) {
	t.Helper()
	serveAt(t, ua, srv, "127.0.0.1", port)
}

func serveAt(t testing.TB, ua *sipgo.UserAgent, srv *sipgo.Server, host string, port int) {
	t.Helper()
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(conn)
	go srv.ServeTCP(ln)
	t.Cleanup(func() { conn.Close(); ln.Close(); ua.Close() })
}

// bind registers a device of aor at contact directly in the store.
func (d *domain) bind(t testing.TB, aor, contact string, q int) {
	t.Helper()
	b := location.Binding{AOR: aor, Contact: contact, Q: q, Expires: time.Now().Add(time.Hour)}
	if _, err := d.store.Update(context.Background(), aor, location.Update{CallID: contact, CSeq: 1, Now: time.Now(), Set: []location.Binding{b}}); err != nil {
		t.Fatal(err)
	}
}

// bindNAT registers a device of aor behind NAT: its Contact is private,
// and it is reached over UDP at received, where it registered from.
func (d *domain) bindNAT(t testing.TB, aor, contact, received string) {
	t.Helper()
	b := location.Binding{AOR: aor, Contact: contact, Q: 1000, Expires: time.Now().Add(time.Hour), Received: received, Transport: "udp", NAT: true}
	if _, err := d.store.Update(context.Background(), aor, location.Update{CallID: contact, CSeq: 1, Now: time.Now(), Set: []location.Binding{b}}); err != nil {
		t.Fatal(err)
	}
}

// device is a phone on loopback whose INVITE behaviour a test chooses.
type device struct {
	contact  string
	invites  atomic.Int32
	canceled atomic.Int32
}

type behaviour struct {
	ring   bool          // send 180
	answer time.Duration // answer 200 after this (0: never)
	final  int           // or answer this final status at once after ringing
}

func startDevice(t testing.TB, user string, b behaviour) *device {
	t.Helper()
	ua, srv := newPhone(t)
	port := testenv.FreePort(t)
	d := &device{contact: fmt.Sprintf("sip:%s@127.0.0.1:%d", user, port)}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		d.invites.Add(1)
		tx.OnCancel(func(*sip.Request) { d.canceled.Add(1) })
		if b.ring {
			tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		}
		if b.final != 0 {
			tx.Respond(sip.NewResponseFromRequest(req, b.final, "Final", nil))
			return
		}
		if b.answer > 0 {
			select {
			case <-time.After(b.answer):
				res := sip.NewResponseFromRequest(req, 200, "OK", []byte("v=0\r\n"))
				res.AppendHeader(sip.NewHeader("Contact", "<"+d.contact+">"))
				tx.Respond(res)
				return
			case <-tx.Done():
				return
			}
		}
		<-tx.Done()
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	serve(t, ua, srv, port)
	return d
}

// caller sends requests to the proxy as a phone would.
type caller struct {
	t      testing.TB
	client *sipgo.Client
	proxy  string
	port   int
}

func newCaller(t testing.TB, proxyAddr string) *caller {
	t.Helper()
	ua, srv := newPhone(t)
	port := testenv.FreePort(t)
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ua, srv, port)
	return &caller{t: t, client: client, proxy: proxyAddr, port: port}
}

// request builds method from → to, sent to the proxy.
func (c *caller) request(method sip.RequestMethod, from, to string, extra ...sip.Header) *sip.Request {
	var ruri sip.Uri
	if err := sip.ParseUri("sip:"+to, &ruri); err != nil {
		c.t.Fatal(err)
	}
	req := sip.NewRequest(method, ruri)
	var fromURI sip.Uri
	sip.ParseUri("sip:"+from, &fromURI)
	fh := &sip.FromHeader{Address: fromURI}
	fh.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: ruri})
	req.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<sip:%s@127.0.0.1:%d>", strings.Split(from, "@")[0], c.port)))
	for _, h := range extra {
		req.AppendHeader(h)
	}
	if method == sip.INVITE {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody([]byte("v=0\r\n"))
	}
	req.SetDestination(c.proxy)
	req.SetTransport("UDP")
	return req
}

// do sends req and returns the final response and the provisional codes.
func (c *caller) do(req *sip.Request, timeout time.Duration) (*sip.Response, []int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tx, err := c.client.TransactionRequest(ctx, req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer tx.Terminate()
	var prov []int
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode < 200 {
				prov = append(prov, res.StatusCode)
				continue
			}
			return res, prov
		case <-tx.Done():
			c.t.Fatalf("%s: no final response: %v", req.Method, tx.Err())
		case <-ctx.Done():
			c.t.Fatalf("%s: no final response within %v", req.Method, timeout)
		}
	}
}

func wantCode(t testing.TB, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, code)
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRFC3261_16_7_ForkFirst2xxCancelsOthers: two devices of equal q ring
// in parallel; one answers, the other gets CANCEL.
func TestRFC3261_16_7_ForkFirst2xxCancelsOthers(t *testing.T) {
	d := startProxy(t)
	answers := startDevice(t, "bob", behaviour{ring: true, answer: 300 * time.Millisecond})
	rings := startDevice(t, "bob", behaviour{ring: true})
	d.bind(t, "bob@a.test", answers.contact, 1000)
	d.bind(t, "bob@a.test", rings.contact, 1000)
	c := newCaller(t, d.addr)
	res, prov := c.do(c.request(sip.INVITE, "carol@c.test", "bob@a.test"), 10*time.Second)
	wantCode(t, res, 200)
	if !containsInt(prov, 180) {
		t.Errorf("180 not relayed: %v", prov)
	}
	if rr := res.GetHeaders("Record-Route"); len(rr) != 1 || !strings.Contains(rr[0].Value(), d.addr) {
		t.Errorf("Record-Route in 200: %v", rr)
	}
	eventually(t, "CANCEL at the ringing device", func() bool { return rings.canceled.Load() == 1 })
	if answers.invites.Load() != 1 || rings.invites.Load() != 1 {
		t.Fatalf("invites: %d, %d", answers.invites.Load(), rings.invites.Load())
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestRFC3261_16_7_BusyAndNoAnswerGive486: one device busy, the other
// rings until Timer C; the caller gets the busy.
func TestRFC3261_16_7_BusyAndNoAnswerGive486(t *testing.T) {
	d := startProxy(t, proxy.WithTimerC(time.Second))
	busy := startDevice(t, "bob", behaviour{ring: true, final: 486})
	rings := startDevice(t, "bob", behaviour{ring: true})
	d.bind(t, "bob@a.test", busy.contact, 1000)
	d.bind(t, "bob@a.test", rings.contact, 1000)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.INVITE, "carol@c.test", "bob@a.test"), 15*time.Second)
	wantCode(t, res, 486)
	// The caller is answered when Timer C fires; the CANCEL runs on.
	eventually(t, "Timer C's CANCEL at the ringing device", func() bool { return rings.canceled.Load() == 1 })
}

// TestRFC3261_16_6_TimerC408: a device that never answers, not even 180,
// ends with 408 when Timer C fires.
func TestRFC3261_16_6_TimerC408(t *testing.T) {
	d := startProxy(t, proxy.WithTimerC(time.Second))
	mute := startDevice(t, "bob", behaviour{})
	d.bind(t, "bob@a.test", mute.contact, 1000)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.INVITE, "carol@c.test", "bob@a.test"), 15*time.Second)
	wantCode(t, res, 408)
}

// TestRFC3261_16_5_SequentialQGroups: the q=1.0 device is busy, so the
// q=0.5 device is tried next and answers.
func TestRFC3261_16_5_SequentialQGroups(t *testing.T) {
	d := startProxy(t)
	first := startDevice(t, "bob", behaviour{final: 486})
	second := startDevice(t, "bob", behaviour{ring: true, answer: 100 * time.Millisecond})
	d.bind(t, "bob@a.test", first.contact, 1000)
	d.bind(t, "bob@a.test", second.contact, 500)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.INVITE, "carol@c.test", "bob@a.test"), 10*time.Second)
	wantCode(t, res, 200)
	if first.invites.Load() != 1 || second.invites.Load() != 1 {
		t.Fatalf("invites %d then %d", first.invites.Load(), second.invites.Load())
	}
}

// TestRFC3261_16_10_UpstreamCancelCancelsEveryBranch: the caller CANCELs
// while two devices ring; both get CANCEL and the caller gets 487.
func TestRFC3261_16_10_UpstreamCancelCancelsEveryBranch(t *testing.T) {
	d := startProxy(t)
	one := startDevice(t, "bob", behaviour{ring: true})
	two := startDevice(t, "bob", behaviour{ring: true})
	d.bind(t, "bob@a.test", one.contact, 1000)
	d.bind(t, "bob@a.test", two.contact, 1000)
	c := newCaller(t, d.addr)
	inv := c.request(sip.INVITE, "carol@c.test", "bob@a.test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := c.client.TransactionRequest(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	for res := range tx.Responses() {
		if res.StatusCode == 180 {
			break
		}
	}
	cancelReq := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancelReq.AppendHeader(sip.HeaderClone(inv.Via()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.From()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.To()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancelReq.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	cancelReq.AppendHeader(&mf)
	cancelReq.SetDestination(d.addr)
	cancelReq.SetTransport("UDP")
	cres, _ := c.do(cancelReq, 5*time.Second)
	wantCode(t, cres, 200)
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode < 200 {
				continue
			}
			wantCode(t, res, 487)
			eventually(t, "CANCEL at both devices", func() bool { return one.canceled.Load() == 1 && two.canceled.Load() == 1 })
			return
		case <-ctx.Done():
			t.Fatal("no 487 after CANCEL")
		}
	}
}

// TestRFC3261_16_3_TooManyHops483 and loop detection 482.
func TestRFC3261_16_3_TooManyHops483(t *testing.T) {
	d := startProxy(t)
	c := newCaller(t, d.addr)
	mf := sip.MaxForwardsHeader(0)
	req := c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", &mf)
	res, _ := c.do(req, 5*time.Second)
	wantCode(t, res, 483)
}

// TestRFC3261_16_3_LoopDetected482: bob's device is bob's own address,
// which DNS resolves back to this proxy; the request returns unchanged.
func TestRFC3261_16_3_LoopDetected482(t *testing.T) {
	d := startProxyDNS(t, `$ORIGIN a.test.
$TTL 60
@ IN SOA ns.a.test. host.a.test. 1 3600 600 86400 60
@ IN NS ns.a.test.
ns IN A 127.0.0.1
_sip._udp IN SRV 10 10 PORT sip.a.test.
sip IN A 127.0.0.1
`)
	d.bind(t, "bob@a.test", "sip:bob@a.test", 1000)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test"), 10*time.Second)
	wantCode(t, res, 482)
}

// TestProxyRequire420: we support no proxy extension.
func TestProxyRequire420(t *testing.T) {
	d := startProxy(t)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", sip.NewHeader("Proxy-Require", "foo")), 5*time.Second)
	wantCode(t, res, 420)
	if h := res.GetHeader("Unsupported"); h == nil || h.Value() != "foo" {
		t.Fatalf("Unsupported: %v", h)
	}
}

// TestLocalCallerChallenged407 and a spoofed From: a user of ours must
// authenticate, and only as the From user.
func TestLocalCallerChallenged407(t *testing.T) {
	d := startProxy(t)
	bob := startDevice(t, "bob", behaviour{answer: 50 * time.Millisecond})
	d.bind(t, "bob@a.test", bob.contact, 1000)
	c := newCaller(t, d.addr)
	req := c.request(sip.INVITE, "alice@a.test", "bob@a.test")
	res, _ := c.do(req, 5*time.Second)
	wantCode(t, res, 407)
	if res.GetHeader("Proxy-Authenticate") == nil {
		t.Fatal("407 without Proxy-Authenticate")
	}
	ok, err := c.client.DoDigestAuth(context.Background(), req, res, sipgo.DigestAuth{Username: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, ok, 200)

	// carol's credentials with alice's From: spoofing.
	spoof := c.request(sip.INVITE, "alice@a.test", "bob@a.test")
	res, _ = c.do(spoof, 5*time.Second)
	wantCode(t, res, 407)
	res, err = c.client.DoDigestAuth(context.Background(), spoof, res, sipgo.DigestAuth{Username: "carol", Password: "carol-pw"})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, res, 403)
}

// TestNoOpenRelay403: a request neither for our domain nor from a user of
// ours is refused.
func TestNoOpenRelay403(t *testing.T) {
	d := startProxy(t)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.INVITE, "carol@c.test", "dave@d.test"), 5*time.Second)
	wantCode(t, res, 403)
}

// TestNoRelayThroughPreloadedRoute: a request from another domain to one
// of our users, with a Route to somewhere else, is not relayed there.
func TestNoRelayThroughPreloadedRoute(t *testing.T) {
	d := startProxy(t)
	victim := startRecorder(t)
	c := newCaller(t, d.addr)
	route := sip.NewHeader("Route", fmt.Sprintf("<sip:127.0.0.1:%d;lr>", victim.port))
	res, _ := c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", route), 5*time.Second)
	wantCode(t, res, 403)
	if got := victim.got(); len(got) != 0 {
		t.Fatalf("relayed to the Route: %v", got)
	}
}

// TestUnknownUser404AndKnownUserOffline480.
func TestUnknownUser404AndKnownUserOffline480(t *testing.T) {
	d := startProxy(t)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.MESSAGE, "carol@c.test", "nobody@a.test"), 5*time.Second)
	wantCode(t, res, 404)
	res, _ = c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test"), 5*time.Second)
	wantCode(t, res, 480)
}

// TestSDPUntouched: the body reaches the device byte for byte.
func TestSDPUntouched(t *testing.T) {
	d := startProxy(t)
	phone := startRecorder(t)
	d.bind(t, "bob@a.test", fmt.Sprintf("sip:bob@127.0.0.1:%d", phone.port), 1000)
	c := newCaller(t, d.addr)
	body := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	req := c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(body))
	res, _ := c.do(req, 5*time.Second)
	wantCode(t, res, 200)
	phone.mu.Lock()
	defer phone.mu.Unlock()
	if len(phone.bodies) != 1 || phone.bodies[0] != body {
		t.Fatalf("body changed:\n%q\n%q", phone.bodies, body)
	}
}

// recorder is a phone that answers MESSAGE 200 on UDP and TCP at one port
// and notes the transport, body and Max-Forwards of each.
type recorder struct {
	port        int
	mu          sync.Mutex
	transports  []string
	bodies      []string
	maxForwards []uint32
	ua          *sipgo.UserAgent
	client      *sipgo.Client
}

func startRecorder(t testing.TB) *recorder {
	t.Helper()
	ua, srv := newPhone(t)
	r := &recorder{port: testenv.FreePort(t), ua: ua}
	var err error
	if r.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(r.port)); err != nil {
		t.Fatal(err)
	}
	srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
		r.mu.Lock()
		r.transports = append(r.transports, req.Transport())
		r.bodies = append(r.bodies, string(req.Body()))
		if mf := req.MaxForwards(); mf != nil {
			r.maxForwards = append(r.maxForwards, mf.Val())
		}
		r.mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	serve(t, ua, srv, r.port)
	return r
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.transports...)
}

// TestRFC3261_16_6_3_EachForkOneHopLess: every branch of a fork carries
// Max-Forwards one below the request's, however many branches there are.
func TestRFC3261_16_6_3_EachForkOneHopLess(t *testing.T) {
	d := startProxy(t)
	phones := []*recorder{startRecorder(t), startRecorder(t), startRecorder(t)}
	for _, ph := range phones {
		d.bind(t, "bob@a.test", fmt.Sprintf("sip:bob@127.0.0.1:%d", ph.port), 1000)
	}
	c := newCaller(t, d.addr)
	mf := sip.MaxForwardsHeader(30)
	res, _ := c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", &mf), 5*time.Second)
	wantCode(t, res, 200)
	for i, ph := range phones {
		eventually(t, "the MESSAGE at every phone", func() bool { return len(ph.got()) == 1 })
		ph.mu.Lock()
		got := ph.maxForwards
		ph.mu.Unlock()
		if len(got) != 1 || got[0] != 29 {
			t.Errorf("phone %d got Max-Forwards %v, want [29]", i, got)
		}
	}
}

// TestRFC3261_18_1_1_LargeRequestGoesOverTCP: a MESSAGE too large for UDP
// to a UDP contact is sent over TCP to the same address.
func TestRFC3261_18_1_1_LargeRequestGoesOverTCP(t *testing.T) {
	d := startProxy(t)
	phone := startRecorder(t)
	d.bind(t, "bob@a.test", fmt.Sprintf("sip:bob@127.0.0.1:%d", phone.port), 1000)
	c := newCaller(t, d.addr)
	req := c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", sip.NewHeader("Content-Type", "text/plain"))
	req.SetTransport("TCP")
	req.SetBody([]byte(strings.Repeat("x", 2000)))
	res, _ := c.do(req, 10*time.Second)
	wantCode(t, res, 200)
	if got := phone.got(); len(got) != 1 || got[0] != "TCP" {
		t.Fatalf("phone got the MESSAGE over %v, want TCP", got)
	}
	small := c.request(sip.MESSAGE, "carol@c.test", "bob@a.test")
	res, _ = c.do(small, 10*time.Second)
	wantCode(t, res, 200)
	if got := phone.got(); len(got) != 2 || got[1] != "UDP" {
		t.Fatalf("small MESSAGE went over %v, want UDP", got)
	}
}

// TestRFC5626_ReachedOverItsRegistrationFlow: a device registered over TCP
// (its Contact unreachable) is reached over the connection it opened, found
// by its source address.
func TestRFC5626_ReachedOverItsRegistrationFlow(t *testing.T) {
	d := startProxy(t)
	phone := startRecorder(t)
	// The phone opens its flow to the proxy (as its REGISTER would).
	opt := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "a.test"})
	opt.SetDestination(d.addr)
	opt.SetTransport("TCP")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := phone.client.Do(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, res, 200)
	// The flow's source address as the proxy saw it: the phone's side of
	// its only TCP connection.
	src := tcpPeerOf(t, phone.port, d.addr)
	b := location.Binding{AOR: "bob@a.test", Contact: "sip:bob@10.255.255.1:5060", Q: 1000, Expires: time.Now().Add(time.Hour),
		Received: src, Transport: "tcp", NAT: true}
	if _, err := d.store.Update(ctx, "bob@a.test", location.Update{CallID: "x", CSeq: 1, Now: time.Now(), Set: []location.Binding{b}}); err != nil {
		t.Fatal(err)
	}
	c := newCaller(t, d.addr)
	res, _ = c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test"), 10*time.Second)
	wantCode(t, res, 200)
	if got := phone.got(); len(got) != 1 || got[0] != "TCP" {
		t.Fatalf("phone got %v, want one MESSAGE over its TCP flow", got)
	}
}

// tcpPeerOf finds the local address of the established TCP connection from
// a process-local socket to remote, reading /proc/net/tcp.
func tcpPeerOf(t testing.TB, _ int, remote string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatalf("/proc/net/tcp: %v", err)
	}
	_, rport, _ := net.SplitHostPort(remote)
	want := fmt.Sprintf("0100007F:%04X", mustAtoi(t, rport))
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != want || f[3] != "01" {
			continue
		}
		host, port, _ := strings.Cut(f[1], ":")
		if host != "0100007F" {
			continue
		}
		p, _ := strconv.ParseInt(port, 16, 32)
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	t.Fatalf("no established TCP connection to %s", remote)
	return ""
}

func mustAtoi(t testing.TB, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRFC5658_TwoRecordRoutesWhenTransportChanges: a call that comes in
// over UDP and leaves over TCP is record-routed twice, once per side.
func TestRFC5658_TwoRecordRoutesWhenTransportChanges(t *testing.T) {
	d := startProxy(t)
	bob := startDevice(t, "bob", behaviour{answer: 10 * time.Millisecond})
	d.bind(t, "bob@a.test", bob.contact+";transport=tcp", 1000)
	c := newCaller(t, d.addr)
	res, _ := c.do(c.request(sip.INVITE, "carol@c.test", "bob@a.test"), 10*time.Second)
	wantCode(t, res, 200)
	var rr []string
	for _, h := range res.GetHeaders("Record-Route") {
		rr = append(rr, h.Value())
	}
	if len(rr) != 2 || !strings.Contains(rr[0], "transport=tcp") || !strings.Contains(rr[1], "transport=udp") {
		t.Fatalf("Record-Route %q, want the TCP side then the UDP side", rr)
	}
}

// TestRFC3261_16_7_Every2xxRelayed: two devices answer at the same time;
// the caller receives both 200s (two dialogs), not only the first.
func TestRFC3261_16_7_Every2xxRelayed(t *testing.T) {
	d := startProxy(t)
	one := startDevice(t, "bob", behaviour{answer: 200 * time.Millisecond})
	two := startDevice(t, "bob", behaviour{answer: 200 * time.Millisecond})
	d.bind(t, "bob@a.test", one.contact, 1000)
	d.bind(t, "bob@a.test", two.contact, 1000)
	c := newCaller(t, d.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := c.client.TransactionRequest(ctx, c.request(sip.INVITE, "carol@c.test", "bob@a.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	var mu sync.Mutex
	tags := map[string]bool{}
	note := func(res *sip.Response) {
		if res.IsSuccess() {
			tag, _ := res.To().Params.Get("tag")
			mu.Lock()
			tags[tag] = true
			mu.Unlock()
		}
	}
	tx.OnRetransmission(func(res *sip.Response) { note(res) })
	for res := range tx.Responses() {
		note(res)
		if res.StatusCode >= 200 {
			break
		}
	}
	eventually(t, "a 200 from each device", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tags) == 2
	})
}

// udpPhone answers MESSAGE 200 on UDP only (no TCP listener, as many
// phones) and notes the size of each it got.
func udpPhone(t *testing.T) (addr string, sizes func() []int) {
	t.Helper()
	ua, srv := newPhone(t)
	var mu sync.Mutex
	var got []int
	srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
		mu.Lock()
		got = append(got, len(req.Body()))
		mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	// A port below the ephemeral range: a test may listen on its TCP twin.
	conn, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(conn)
	t.Cleanup(func() { conn.Close(); ua.Close() })
	return conn.LocalAddr().String(), func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), got...)
	}
}

// TestRFC3261_18_1_1_LargeRequestFallsBackToUDP: a 3 kB request to a
// device that listens on UDP only is tried over TCP, refused, and sent over
// UDP.
func TestRFC3261_18_1_1_LargeRequestFallsBackToUDP(t *testing.T) {
	d := startProxy(t)
	addr, sizes := udpPhone(t)
	d.bind(t, "bob@a.test", "sip:bob@"+addr, 1000)
	c := newCaller(t, d.addr)
	req := c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", sip.NewHeader("Content-Type", "text/plain"))
	req.SetTransport("TCP")
	req.SetBody([]byte(strings.Repeat("x", 3000)))
	res, _ := c.do(req, 10*time.Second)
	wantCode(t, res, 200)
	if got := sizes(); len(got) != 1 || got[0] != 3000 {
		t.Fatalf("phone got %v", got)
	}
}

// TestRFC5626_LargeRequestKeepsTheNATFlow: a device behind NAT registered
// over UDP gets a large request over its UDP flow, never over a new TCP
// connection to its private Contact.
func TestRFC5626_LargeRequestKeepsTheNATFlow(t *testing.T) {
	d := startProxy(t)
	addr, sizes := udpPhone(t)
	// A TCP listener on the flow's address: the proxy must not use it.
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	b := location.Binding{AOR: "bob@a.test", Contact: "sip:bob@10.0.0.7:5060", Q: 1000, Expires: time.Now().Add(time.Hour),
		NAT: true, Received: addr, Transport: "udp", CallID: "nat", CSeq: 1}
	if _, err := d.store.Update(context.Background(), "bob@a.test", location.Update{CallID: "nat", CSeq: 1, Now: time.Now(), Set: []location.Binding{b}}); err != nil {
		t.Fatal(err)
	}
	c := newCaller(t, d.addr)
	req := c.request(sip.MESSAGE, "carol@c.test", "bob@a.test", sip.NewHeader("Content-Type", "text/plain"))
	req.SetTransport("TCP")
	req.SetBody([]byte(strings.Repeat("y", 3000)))
	res, _ := c.do(req, 10*time.Second)
	wantCode(t, res, 200)
	if got := sizes(); len(got) != 1 || got[0] != 3000 {
		t.Fatalf("phone got %v", got)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the proxy opened %d TCP connections to the NAT flow's address", n)
	}
}

// TestDialogTokenOnlyForItsTargets: a caller from another domain who got
// a real dialog's Record-Route token can use it to reach the callee (BYE
// through the route set), but not to send a request anywhere else.
func TestDialogTokenOnlyForItsTargets(t *testing.T) {
	d := startProxy(t)
	bob := startDevice(t, "bob", behaviour{answer: time.Millisecond})
	d.bind(t, "bob@a.test", bob.contact, 1000)
	c := newCaller(t, d.addr)
	inv := c.request(sip.INVITE, "eve@c.test", "bob@a.test")
	res, _ := c.do(inv, 5*time.Second)
	wantCode(t, res, 200)
	rr, ok := res.GetHeader("Record-Route").(*sip.RecordRouteHeader)
	if !ok || !rr.Address.UriParams.Has("sf") {
		t.Fatalf("200 without our signed Record-Route: %v", res.GetHeader("Record-Route"))
	}
	inDialog := func(method sip.RequestMethod, target string) *sip.Request {
		var ruri sip.Uri
		if err := sip.ParseUri(target, &ruri); err != nil {
			t.Fatal(err)
		}
		r := sip.NewRequest(method, ruri)
		r.AppendHeader(sip.HeaderClone(inv.From()))
		r.AppendHeader(sip.HeaderClone(res.To()))
		r.AppendHeader(sip.HeaderClone(inv.CallID()))
		r.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: method})
		r.AppendHeader(&sip.RouteHeader{Address: rr.Address})
		r.SetDestination(d.addr)
		r.SetTransport("UDP")
		return r
	}
	victim := startRecorder(t)
	fraud, _ := c.do(inDialog(sip.MESSAGE, fmt.Sprintf("sip:+19005551234@127.0.0.1:%d", victim.port)), 5*time.Second)
	wantCode(t, fraud, 403)
	time.Sleep(100 * time.Millisecond)
	if got := victim.got(); len(got) != 0 {
		t.Fatalf("a replayed token sent %d requests elsewhere", len(got))
	}
	bye, _ := c.do(inDialog(sip.BYE, bob.contact), 5*time.Second)
	wantCode(t, bye, 200)
}
