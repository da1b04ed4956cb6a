package endpoint_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/endpoint"
	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/media/file"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/server"
)

// lab is two domains served in-process, a.test (alice, carol) and b.test
// (bob), found through a lab DNS server as real domains are.
type lab struct {
	dns  string
	a, b *server.Server
}

func startLab(t *testing.T) *lab {
	t.Helper()
	dir := t.TempDir()
	zone := func(domain string, port int) string {
		path := filepath.Join(dir, domain+".zone")
		text := fmt.Sprintf("$ORIGIN %[1]s.\n$TTL 1\n@ IN SOA ns.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 1\n"+
			"@ IN NAPTR 10 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.%[1]s.\n_sip._udp IN SRV 10 10 %[2]d sip.%[1]s.\nsip IN A 127.0.0.1\n", domain, port)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dns := serveDNS(t, zone("a.test", 1), zone("b.test", 1))
	l := &lab{dns: dns.Addr()}
	l.a = startDomain(t, "a.test", l.dns, "alice", "carol")
	l.b = startDomain(t, "b.test", l.dns, "bob")
	zone("a.test", l.a.Addr("udp").(*net.UDPAddr).Port)
	zone("b.test", l.b.Addr("udp").(*net.UDPAddr).Port)
	if err := dns.Reload(); err != nil {
		t.Fatal(err)
	}
	return l
}

// serveDNS serves zone files on a loopback port until the test ends.
func serveDNS(t *testing.T, files ...string) *resolver.LabServer {
	t.Helper()
	dns, err := resolver.NewLabServer(files...)
	if err != nil {
		t.Fatal(err)
	}
	if err := dns.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go dns.Serve(ctx)
	return dns
}

func startDomain(t *testing.T, domain, dns string, users ...string) *server.Server {
	t.Helper()
	return startDomainAlgs(t, domain, dns, nil, users...)
}

// startDomainAlgs is startDomain offering the digest algorithms algs
// (nil: the default, MD5 and SHA-256).
func startDomainAlgs(t *testing.T, domain, dns string, algs []string, users ...string) *server.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), domain+".users")
	f, err := auth.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := f.Add(context.Background(), u+"@"+domain, "pw-"+u); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{Domains: []string{domain}, Users: path, DNS: []string{dns}, DigestAlgorithms: algs,
		Listen: []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return srv
}

// events records a phone's events.
type events struct {
	mu  sync.Mutex
	all []endpoint.Event
}

func (e *events) add(ev endpoint.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) find(name string) (endpoint.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if ev.Event == name {
			return ev, true
		}
	}
	return endpoint.Event{}, false
}

func (e *events) wait(t *testing.T, name string, timeout time.Duration) endpoint.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ev, ok := e.find(name); ok {
			return ev
		}
		if time.Now().After(deadline) {
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("no %q event within %v; got %+v", name, timeout, e.all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *events) digits() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s strings.Builder
	for _, ev := range e.all {
		if ev.Event == "dtmf" {
			s.WriteString(ev.Digit)
		}
	}
	return s.String()
}

// startPhone starts and registers a phone; proxy "" finds it through the
// lab DNS.
func startPhone(t *testing.T, l *lab, aor, password, proxy string, mod func(*endpoint.Config)) (*endpoint.Phone, *events) {
	t.Helper()
	ev := &events{}
	cfg := endpoint.Config{AOR: aor, Password: password, Proxy: proxy, DNS: []string{l.dns}, Events: ev.add, MediaTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	p := newPhone(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Register(ctx); err != nil {
		t.Fatalf("%s: register: %v", aor, err)
	}
	return p, ev
}

// newPhone makes and starts a phone (not registered), closed when the
// test ends.
func newPhone(t *testing.T, cfg endpoint.Config) *endpoint.Phone {
	t.Helper()
	p, err := endpoint.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// TestCallAcrossDomains: alice@a.test (proxy found through DNS) calls
// bob@b.test; bob's phone answers, records alice's 440 Hz tone, gets the
// DTMF digits in order; alice hangs up and both sides' statistics name
// the other phone, not a proxy, as the remote media address.
func TestCallAcrossDomains(t *testing.T) {
	l := startLab(t)
	rec := filepath.Join(t.TempDir(), "bob.wav")
	_, bobEv := startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) { c.Record = rec })
	alice, aliceEv := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
	if got, want := alice.Proxy().Port, uint16(l.a.Addr("udp").(*net.UDPAddr).Port); got != want {
		t.Fatalf("alice found her proxy at port %d, want a.test's %d", got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	aliceEv.wait(t, "answered", time.Second)
	bobEv.wait(t, "answered", 2*time.Second)
	time.Sleep(time.Second)
	if err := call.SendDTMF(ctx, "1#9"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	call.Hangup(ctx)
	aliceHang := call.Result()
	bobHang := bobEv.wait(t, "hangup", 5*time.Second)
	if bobHang.Reason != "remote" || aliceHang.Reason != "local" {
		t.Errorf("hangup reasons: alice %q, bob %q", aliceHang.Reason, bobHang.Reason)
	}
	if got := bobEv.digits(); got != "1#9" {
		t.Errorf("bob got DTMF %q, want 1#9", got)
	}
	if len(aliceHang.Streams) != 1 || len(bobHang.Streams) != 1 {
		t.Fatalf("streams: alice %+v, bob %+v", aliceHang.Streams, bobHang.Streams)
	}
	as, bs := aliceHang.Streams[0], bobHang.Streams[0]
	t.Logf("alice: %+v", as)
	t.Logf("bob:   %+v", bs)
	if as.Remote != bs.Local || bs.Remote != as.Local {
		t.Errorf("media peers: alice %s → %s, bob %s → %s; want each other", as.Local, as.Remote, bs.Local, bs.Remote)
	}
	for _, s := range []endpoint.StreamStats{as, bs} {
		for _, proxy := range []net.Addr{l.a.Addr("udp"), l.b.Addr("udp")} {
			if s.Remote == proxy.String() {
				t.Errorf("media went to a proxy: %s", s.Remote)
			}
		}
		if s.PacketsReceived < 50 || s.PacketsSent < 50 || s.Codec != "PCMU" || s.MOS < 4 {
			t.Errorf("stream %+v: want ≥ 50 packets each way of PCMU, MOS ≥ 4", s)
		}
	}
	pcm := testenv.ReadWAV(t, rec)
	if len(pcm) < 8000 {
		t.Fatalf("bob's recording holds %d samples, want ≥ 1 s", len(pcm))
	}
	// The first second, before the DTMF (during which no audio is sent,
	// and the recording fills the gap).
	if snr := testenv.ToneSNR(pcm[800:8000], 440, 8000); snr < 10 {
		t.Errorf("bob's recording: 440 Hz at %.1f dB over the rest, want ≥ 10", snr)
	}
}

// TestCallFailures: each way a call can fail ends with a clear status,
// never a hang.
func TestCallFailures(t *testing.T) {
	l := startLab(t)
	alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
	startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) { c.Reject = true })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, c := range []struct {
		target string
		code   int
	}{
		{"nobody@b.test", 404},
		{"carol@a.test", 480}, // exists, not registered
		{"bob@b.test", 486},   // rejects
	} {
		_, err := alice.Dial(ctx, c.target)
		var se *endpoint.StatusError
		if !errors.As(err, &se) || se.Code != c.code {
			t.Errorf("call %s: %v, want %d", c.target, err, c.code)
		}
	}

	wrong := newPhone(t, endpoint.Config{AOR: "carol@a.test", Password: "nope", DNS: []string{l.dns}})
	_, err := wrong.Register(ctx)
	var se *endpoint.StatusError
	if !errors.As(err, &se) || (se.Code != 401 && se.Code != 403) {
		t.Errorf("register with a wrong password: %v, want 401 or 403", err)
	}
}

// TestEchoService: a call to a phone with Echo set gets its own audio
// back: the caller's recording holds its own 440 Hz tone. It rang first.
func TestEchoService(t *testing.T) {
	l := startLab(t)
	startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) { c.Echo = true; c.AnswerDelay = 200 * time.Millisecond })
	rec := filepath.Join(t.TempDir(), "alice.wav")
	alice, aliceEv := startPhone(t, l, "alice@a.test", "pw-alice", "", func(c *endpoint.Config) { c.Record = rec })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	aliceEv.wait(t, "ringing", 0)
	time.Sleep(1500 * time.Millisecond)
	call.Hangup(ctx)
	if s := call.Result().Streams; len(s) != 1 || s[0].PacketsReceived < 50 {
		t.Fatalf("alice's streams: %+v", s)
	}
	pcm := testenv.ReadWAV(t, rec)
	n := min(len(pcm), 8000)
	if snr := testenv.ToneSNR(pcm[800:n], 440, 8000); snr < 10 {
		t.Errorf("the echo: 440 Hz at %.1f dB over the rest, want ≥ 10", snr)
	}
}

// TestBadInputs: each ends with a clear error, never a hang: no common
// codec (488), a domain that does not exist, a file that is not WAV, a
// callee that never answers (the caller gives up and CANCELs), and a
// callee that sends no RTP (the media timeout ends the call).
func TestBadInputs(t *testing.T) {
	l := startLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("no common codec", func(t *testing.T) {
		startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) { c.Codecs = []string{"pcma"} })
		alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", "", func(c *endpoint.Config) { c.Codecs = []string{"pcmu"} })
		_, err := alice.Dial(ctx, "bob@b.test")
		var se *endpoint.StatusError
		if !errors.As(err, &se) || se.Code != 488 {
			t.Fatalf("PCMU to a PCMA-only phone: %v, want 488", err)
		}
	})
	t.Run("unknown domain", func(t *testing.T) {
		alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
		start := time.Now()
		_, err := alice.Dial(ctx, "bob@nowhere.test")
		var se *endpoint.StatusError
		if !errors.As(err, &se) || (se.Code != 404 && se.Code != 503) || time.Since(start) > 10*time.Second {
			t.Fatalf("a domain not in DNS: %v after %v, want 404 or 503 at once", err, time.Since(start))
		}
	})
	t.Run("not a WAV file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "tone.wav")
		os.WriteFile(bad, []byte("this is not audio"), 0o600)
		for _, play := range []string{bad, filepath.Join(t.TempDir(), "missing.wav")} {
			if _, err := endpoint.New(endpoint.Config{AOR: "alice@a.test", Play: play}); err == nil {
				t.Errorf("--play %s accepted", play)
			}
		}
	})
	t.Run("never answers", func(t *testing.T) {
		_, bobEv := startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) { c.AnswerDelay = time.Minute })
		alice, aliceEv := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
		// alice gives up once bob's phone rings (not after a fixed time,
		// which on a loaded machine may fall while her INVITE is still on
		// its way, where the CANCEL can overtake it).
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		dialed := make(chan error, 1)
		go func() {
			_, err := alice.Dial(dctx, "bob@b.test")
			dialed <- err
		}()
		bobEv.wait(t, "ringing", 5*time.Second)
		dcancel()
		dialErr := <-dialed
		if dialErr == nil {
			t.Fatal("a call nobody answered connected")
		}
		t.Cleanup(func() {
			if t.Failed() {
				aliceEv.mu.Lock()
				defer aliceEv.mu.Unlock()
				t.Logf("alice's Dial: %v; her events: %+v", dialErr, aliceEv.all)
			}
		})
		if ev := bobEv.wait(t, "hangup", 5*time.Second); ev.Reason != "canceled" {
			t.Fatalf("bob's side: %+v, want canceled", ev)
		}
	})
	t.Run("no RTP", func(t *testing.T) {
		silent := startSilentPhone(t, l, "bob@b.test", "pw-bob")
		defer silent()
		alice, aliceEv := startPhone(t, l, "alice@a.test", "pw-alice", "", func(c *endpoint.Config) { c.MediaTimeout = time.Second })
		call, err := alice.Dial(ctx, "bob@b.test")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-call.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a call without RTP did not end")
		}
		if ev := aliceEv.wait(t, "hangup", 0); ev.Reason != "media-timeout" {
			t.Fatalf("hangup %+v, want media-timeout", ev)
		}
	})
}

// startSilentPhone registers aor with a user agent that answers every
// INVITE with an SDP naming a port where nothing is sent from, and
// answers BYE: a peer that sends no RTP.
func startSilentPhone(t *testing.T, l *lab, aor, password string) func() {
	t.Helper()
	return startScriptedPhone(t, l, aor, password, func(req *sip.Request, tx sip.ServerTransaction, contact *sip.ContactHeader) {
		tx.Respond(sdpResponse(req, 200, 9, contact))
		<-tx.Done()
	})
}

// sdpResponse is a response to req with an SDP offering PCMU at
// 127.0.0.1:port, and contact.
func sdpResponse(req *sip.Request, code, port int, contact *sip.ContactHeader) *sip.Response {
	body := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n", port)
	res := sip.NewResponseFromRequest(req, code, map[int]string{183: "Session Progress", 200: "OK"}[code], []byte(body))
	res.To().Params.Add("tag", "scripted")
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(contact)
	return res
}

// startScriptedPhone registers aor with a user agent whose INVITEs
// onInvite answers (contact is its Contact); ACK and BYE are answered.
func startScriptedPhone(t *testing.T, l *lab, aor, password string, onInvite func(*sip.Request, sip.ServerTransaction, *sip.ContactHeader)) func() {
	t.Helper()
	user, domain, _ := strings.Cut(aor, "@")
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(domain))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: port}}
	client, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port), sipgo.WithClientConnectionAddr(pc.LocalAddr().String()))
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) { onInvite(req, tx, contact) })
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go srv.ServeUDP(pc)
	time.Sleep(50 * time.Millisecond)
	target := l.b.Addr("udp").String()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: domain}})
	req.AppendHeader(contact)
	req.SetDestination(target)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	if err == nil && res.StatusCode == 401 {
		res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: password})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("scripted phone: REGISTER: %v %v", res, err)
	}
	return func() { ua.Close(); pc.Close() }
}

// TestHoldAndResume: the caller puts the call on hold and takes it off,
// then the callee does; both sides report held and resumed, no audio
// flows while on hold, and a media timeout shorter than the hold does
// not end the call.
func TestHoldAndResume(t *testing.T) {
	l := startLab(t)
	short := func(c *endpoint.Config) { c.MediaTimeout = 700 * time.Millisecond }
	bob, bobEv := startPhone(t, l, "bob@b.test", "pw-bob", "", short)
	alice, aliceEv := startPhone(t, l, "alice@a.test", "pw-alice", "", short)
	var bobCall *endpoint.Call
	answered := make(chan *endpoint.Call, 1)
	bob.OnAnswered(func(c *endpoint.Call) { answered <- c })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case bobCall = <-answered:
	case <-time.After(3 * time.Second):
		t.Fatal("bob's call not answered")
	}
	count := func(ev *events, name string) int {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		n := 0
		for _, e := range ev.all {
			if e.Event == name {
				n++
			}
		}
		return n
	}
	for i, holder := range []*endpoint.Call{call, bobCall} {
		time.Sleep(300 * time.Millisecond)
		if err := holder.Hold(ctx); err != nil {
			t.Fatalf("hold %d: %v", i, err)
		}
		time.Sleep(1500 * time.Millisecond) // longer than the media timeout
		select {
		case <-call.Done():
			t.Fatalf("the call ended on hold: %+v", call.Result())
		default:
		}
		if err := holder.Resume(ctx); err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
		for _, ev := range []*events{aliceEv, bobEv} {
			// The side that answered the re-INVITE reports once it has.
			deadline := time.Now().Add(2 * time.Second)
			for (count(ev, "held") != i+1 || count(ev, "resumed") != i+1) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if count(ev, "held") != i+1 || count(ev, "resumed") != i+1 {
				t.Fatalf("after hold and resume %d: %d held, %d resumed events", i, count(ev, "held"), count(ev, "resumed"))
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	call.Hangup(ctx)
	st := call.Result().Streams[0]
	// 0.3 + 0.3 + 0.5 s of talk at 50 packets a second, give or take;
	// 3 s on hold would add 150.
	if st.PacketsSent > 110 || st.PacketsReceived > 110 || st.PacketsReceived < 30 {
		t.Errorf("alice's stream %+v: want about 55 packets each way, nothing while on hold", st)
	}
}

// TestCallOverTCP: both phones register and call over TCP (outbound
// proxies given); the callee is reached over its own connection.
func TestCallOverTCP(t *testing.T) {
	l := startLab(t)
	tcp := func(c *endpoint.Config) { c.Transport = "tcp" }
	startPhone(t, l, "bob@b.test", "pw-bob", l.b.Addr("tcp").String(), tcp)
	alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", l.a.Addr("tcp").String(), tcp)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	call.Hangup(ctx)
	if s := call.Result().Streams; len(s) != 1 || s[0].PacketsReceived < 30 {
		t.Fatalf("streams %+v", s)
	}
}

// TestOpusAndVP8: alice sends Opus packets from an Ogg file and VP8
// frames from an IVF file; bob records both. Bob's IVF holds every frame
// of the clip, byte for byte, and his Ogg file every Opus packet sent.
func TestOpusAndVP8(t *testing.T) {
	l := startLab(t)
	dir := t.TempDir()
	clip, tone := "../media/file/testdata/clip-vp8.ivf", "../media/file/testdata/tone-opus.ogg"
	recVideo, recAudio := filepath.Join(dir, "bob.ivf"), filepath.Join(dir, "bob.ogg")
	_, bobEv := startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) {
		c.Codecs = []string{"opus", "vp8"}
		c.Play = tone
		c.Record, c.RecordVideo = recAudio, recVideo
	})
	alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", "", func(c *endpoint.Config) {
		c.Play, c.Video = tone, clip
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the clip lasts 2 s, the tone 1 s
	call.Hangup(ctx)
	bobEnd := bobEv.wait(t, "hangup", 5*time.Second)
	var kinds []string
	for _, s := range call.Result().Streams {
		kinds = append(kinds, s.Kind+"/"+s.Codec)
	}
	if strings.Join(kinds, ",") != "audio/opus,video/VP8" {
		t.Fatalf("alice's streams %v, want audio/opus and video/VP8", kinds)
	}
	t.Logf("alice: %+v", call.Result().Streams)
	t.Logf("bob:   %+v", bobEnd.Streams)

	sent := testenv.IVFFrameHashes(t, clip)
	got := testenv.IVFFrameHashes(t, recVideo)
	if len(got) != len(sent) {
		t.Fatalf("bob recorded %d frames, the clip has %d", len(got), len(sent))
	}
	for i := range sent {
		if sent[i] != got[i] {
			t.Fatalf("frame %d differs", i)
		}
	}
	f, err := os.Open(recAudio)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := file.NewOpusReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacket(); err != nil {
			break
		}
		n++
	}
	if audio := call.Result().Streams[0]; n < 45 || uint64(n) != audio.PacketsSent {
		t.Fatalf("bob's Ogg holds %d Opus packets; alice sent %d (1 s is 50)", n, audio.PacketsSent)
	}
}

// TestRegisterSHA256: a registrar that offers SHA-256 only (RFC 8760)
// registers the phone, and so does one that offers MD5 only.
func TestRegisterSHA256(t *testing.T) {
	for _, alg := range []string{"SHA-256", "MD5"} {
		t.Run(alg, func(t *testing.T) {
			srv := startDomainAlgs(t, "c.test", "127.0.0.1:1", []string{alg}, "carol")
			p := newPhone(t, endpoint.Config{AOR: "carol@c.test", Password: "pw-carol", Proxy: srv.Addr("udp").String()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if granted, err := p.Register(ctx); err != nil || granted <= 0 {
				t.Fatalf("register with %s: %v %v", alg, granted, err)
			}
		})
	}
}

// TestRegistrationRetriesUntilTheRegistrarComesBack: a phone whose
// registrar is down reports the error and retries with back-off; once
// the registrar is up it registers without being told.
func TestRegistrationRetriesUntilTheRegistrarComesBack(t *testing.T) {
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ev := &events{}
	p := newPhone(t, endpoint.Config{AOR: "carol@c.test", Password: "pw-carol", Proxy: addr, Transport: "tcp", Events: ev.add})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go p.KeepRegistered(ctx, nil)
	ev.wait(t, "error", 5*time.Second)

	path := filepath.Join(t.TempDir(), "c.users")
	f, err := auth.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Add(ctx, "carol@c.test", "pw-carol")
	srv, err := server.New(server.Config{Domains: []string{"c.test"}, Users: path, DNS: []string{"127.0.0.1:1"},
		Listen: []string{"udp:" + addr, "tcp:" + addr}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	reg := ev.wait(t, "registered", 10*time.Second)
	if reg.Expires <= 0 {
		t.Fatalf("registered event %+v", reg)
	}
	// The registrar goes away first: closing the phone (which
	// unregisters) must not wait long for it.
	srv.Shutdown(ctx)
	start := time.Now()
	p.Close(ctx)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("closing the phone took %v with its registrar gone", d)
	}
}

// TestINFODTMF: DTMF sent as SIP INFO (application/dtmf-relay, as many
// PBXs send it) in a call is reported like RFC 4733 digits; an INFO
// outside any call gets 481 and reports nothing.
func TestINFODTMF(t *testing.T) {
	l := startLab(t)
	bob, bobEv := startPhone(t, l, "bob@b.test", "pw-bob", "", nil)
	alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	defer call.Hangup(ctx)
	bobEv.wait(t, "answered", 2*time.Second)
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	info := func(callID, digit string) int {
		req := sip.NewRequest(sip.INFO, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: int(bob.Addr().Port())})
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.test"}, Params: sip.NewParams()})
		req.From().Params.Add("tag", "a1")
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "b.test"}, Params: sip.NewParams()})
		req.To().Params.Add("tag", "b1")
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(&cid)
		req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
		req.SetBody([]byte("Signal=" + digit + "\r\nDuration=160\r\n"))
		req.SetDestination(bob.Addr().String())
		res, err := client.Do(ctx, req)
		if err != nil {
			t.Fatalf("INFO: %v", err)
		}
		return res.StatusCode
	}
	// Outside any call of bob's: refused, and no digit reported.
	if code := info("made-up@elsewhere", "7"); code != 481 {
		t.Fatalf("INFO outside a call: %d, want 481", code)
	}
	for _, d := range []string{"5", "#"} {
		if code := info(call.ID, d); code != 200 {
			t.Fatalf("INFO in the call: %d", code)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for bobEv.digits() != "5#" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := bobEv.digits(); got != "5#" {
		t.Fatalf("digits %q, want 5#", got)
	}
}

// TestIncomingCallLimit: a phone that already has MaxIncoming calls
// answers the next INVITE 486 at once, allocating nothing for it; the
// call it has is unharmed.
func TestIncomingCallLimit(t *testing.T) {
	l := startLab(t)
	_, bobEv := startPhone(t, l, "bob@b.test", "pw-bob", "", func(c *endpoint.Config) { c.MaxIncoming = 1 })
	alice, _ := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Hangup(ctx)
	bobEv.wait(t, "answered", 2*time.Second)
	_, err = alice.Dial(ctx, "bob@b.test")
	var se *endpoint.StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("a second call to a phone limited to one: %v, want 486", err)
	}
	select {
	case <-first.Done():
		t.Fatal("the first call ended")
	default:
	}
}

// TestEarlyMedia: a callee that answers 183 with SDP and only later 200
// (an announcement, a ringback from a PBX) gets the caller's RTP while
// it rings, and the call goes on when it answers.
func TestEarlyMedia(t *testing.T) {
	l := startLab(t)
	media, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	mport := media.LocalAddr().(*net.UDPAddr).Port
	early := make(chan int, 1)
	stop := startScriptedPhone(t, l, "bob@b.test", "pw-bob", func(req *sip.Request, tx sip.ServerTransaction, contact *sip.ContactHeader) {
		tx.Respond(sdpResponse(req, 183, mport, contact))
		// Count what arrives while ringing.
		n := 0
		buf := make([]byte, 1500)
		deadline := time.Now().Add(600 * time.Millisecond)
		for time.Now().Before(deadline) {
			media.SetReadDeadline(deadline)
			if _, _, err := media.ReadFrom(buf); err == nil {
				n++
			}
		}
		early <- n
		tx.Respond(sdpResponse(req, 200, mport, contact))
		<-tx.Done()
	})
	defer stop()
	alice, aliceEv := startPhone(t, l, "alice@a.test", "pw-alice", "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := alice.Dial(ctx, "bob@b.test")
	if err != nil {
		t.Fatal(err)
	}
	defer call.Hangup(ctx)
	if n := <-early; n < 15 {
		t.Fatalf("%d RTP packets reached the callee while it rang, want about 30 (600 ms)", n)
	}
	if ev := aliceEv.wait(t, "ringing", 0); ev.Reason != "early-media" {
		t.Errorf("ringing event %+v, want early-media", ev)
	}
	aliceEv.wait(t, "answered", time.Second)
}
