package interop

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/bridge/webphone"
	"github.com/sipfed/sipfed/internal/testenv"
)

// Browsers as SIP users: the web phone (JsSIP in headless Chromium, with
// a fake microphone playing a 440 Hz tone and a fake camera) registers
// as carol@a.test over a.test's ws: listener, and calls or is called by
// `sipfed phone` as bob@b.test; a.test's bridge joins the browser's
// WebRTC media to bob's plain RTP.

// webLab is the two-domain lab with a ws: listener and the web phone on
// a.test, and carol@a.test and dave@a.test for browsers.
type webLab struct {
	*federation
	http string // a.test's --http address: /phone/, /metrics
	ws   int
}

// needWebPhone skips a test when the web phone was not built into this
// binary (`make web`), loudly, and fails it when tools are required (CI).
func needWebPhone(t *testing.T) {
	t.Helper()
	if !webphone.Built() {
		if testenv.Required() {
			t.Fatal("the web phone is not built into this test binary: run `make web` first")
		}
		t.Skip("the web phone is not built: run `make web` (needs Node.js and npm)")
	}
}

func startWebLab(t *testing.T) *webLab {
	t.Helper()
	needWebPhone(t)
	ports := testenv.FreePorts(t, 2)
	l := &webLab{http: "127.0.0.1:" + strconv.Itoa(ports), ws: ports + 1}
	l.federation = startFederation(t, fedOptions{
		aArgs:  []string{"--listen", fmt.Sprintf("ws:127.0.0.1:%d", l.ws), "--http", l.http, "--media-address", "127.0.0.1", "--media-timeout", "5s"},
		aUsers: []string{"carol@a.test", "pw-carol", "dave@a.test", "pw-dave"},
	})
	if err := testenv.WaitTCP(l.http, 10*time.Second); err != nil {
		t.Fatalf("a.test's http: %v\n%s", err, l.logs())
	}
	return l
}

// browserPhone opens the web phone in a new Chromium and registers user.
func (l *webLab) browserPhone(t *testing.T, user string, opts testenv.BrowserOptions, query string) *testenv.Page {
	t.Helper()
	b := testenv.ChromiumWith(t, opts)
	p := b.Open(t, "http://"+l.http+"/phone/?"+query)
	p.WaitFor(t, "window.sipfedPhone && sipfedPhone.ready", 10*time.Second)
	var state string
	p.Eval(t, fmt.Sprintf(`sipfedPhone.register({uri: %q, password: %q}).catch(e => 'failed: ' + e.message)`, user+"@a.test", "pw-"+user), &state)
	if state != "registered" {
		t.Log(l.logs())
		t.Fatalf("%s: register: %q", user, state)
	}
	return p
}

// metric reads one value from a.test's /metrics.
func (l *webLab) metric(t *testing.T, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + l.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

type browserStats struct {
	AudioIn struct {
		PacketsReceived float64
		AudioLevel      float64
		Codec           string
	}
	AudioOut struct {
		PacketsSent float64
		Codec       string
	}
	VideoIn struct {
		FramesDecoded float64
		FrameWidth    float64
		Codec         string
	}
	SelectedPair *struct {
		Local, Remote struct {
			Address string
			Port    float64
		}
	}
}

func stats(t *testing.T, p *testenv.Page) browserStats {
	t.Helper()
	var st browserStats
	p.Eval(t, "sipfedPhone.stats()", &st)
	return st
}

// TestBrowserCallsSipfedPhone: carol's browser calls bob@b.test, a
// `sipfed phone` (plain RTP, another domain). The browser decodes bob's
// audio (above silence) and video; bob's recording holds the browser's
// tone; a keypad digit reaches bob as RFC 4733 DTMF; hold and resume
// work; the bridge closes when the call ends.
func TestBrowserCallsSipfedPhone(t *testing.T) {
	l := startWebLab(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "bob.wav")
	clip, err := filepath.Abs("../../media/file/testdata/clip-vp8.ivf")
	if err != nil {
		t.Fatal(err)
	}
	bob := runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", l.dns, "--record", rec, "--video", clip, "--max-calls", "1", "answer")
	bob.wait(t, "registered", 10*time.Second)
	carol := l.browserPhone(t, "carol", testenv.BrowserOptions{}, "processing=0")

	carol.Eval(t, "sipfedPhone.call('bob@b.test', {video: true})", nil)
	carol.WaitFor(t, "sipfedPhone.state === 'in-call'", 15*time.Second)
	carol.WaitFor(t, "sipfedPhone.stats().then(s => s.audioIn.packetsReceived > 50 && s.audioIn.audioLevel > 0.01 && s.videoIn.framesDecoded > 0)", 15*time.Second)
	st := stats(t, carol)
	t.Logf("carol: %+v", st)
	if !strings.EqualFold(st.AudioIn.Codec, "PCMU") {
		t.Errorf("carol receives %q, want PCMU (the codec bob took; nothing is transcoded)", st.AudioIn.Codec)
	}
	if n := l.metric(t, "sipfed_bridge_sessions"); n != 1 {
		t.Errorf("bridge sessions: %v, want 1", n)
	}

	carol.Eval(t, "sipfedPhone.dtmf('5'), true", nil)
	time.Sleep(time.Second)
	carol.Eval(t, "sipfedPhone.hold()", nil)
	bob.wait(t, "held", 5*time.Second)
	carol.Eval(t, "sipfedPhone.unhold()", nil)
	bob.wait(t, "resumed", 5*time.Second)
	carol.WaitFor(t, "sipfedPhone.state === 'in-call'", 5*time.Second)
	time.Sleep(time.Second)

	carol.Eval(t, "sipfedPhone.hangup()", nil)
	if err := bob.exit(t, 10*time.Second); err != nil {
		t.Fatalf("bob: %v\n%s\n%s", err, bob.dump(), l.logs())
	}
	bs := stream(t, bob.wait(t, "hangup", 0))
	t.Logf("bob: %v", bs)
	if n, _ := bs["packets_received"].(float64); n < 100 {
		t.Errorf("bob received %v packets from the browser, want ≥ 100", bs["packets_received"])
	}
	if got := bob.digits(); got != "5" {
		t.Errorf("bob got DTMF %q, want 5", got)
	}
	// Half a second before the digit (a keypad digit replaces the audio
	// while it lasts) and the hold.
	if snr := recordedToneSNR(t, rec, 0.4, 0.9); snr < 10 {
		t.Errorf("bob's recording of the browser: 440 Hz at %.1f dB over the rest, want ≥ 10", snr)
	}
	waitMetric(t, l, "sipfed_bridge_sessions", 0)
}

func waitMetric(t *testing.T, l *webLab, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.metric(t, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s stays %v, want %v\n%s", name, l.metric(t, name), want, l.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSipfedPhoneCallsBrowser: bob@b.test (`sipfed phone`, plain RTP)
// calls carol@a.test, whose page rings and answers: media flows both
// ways, bob's recording holds the browser's tone; bob puts the browser on
// hold and resumes.
func TestSipfedPhoneCallsBrowser(t *testing.T) {
	l := startWebLab(t)
	carol := l.browserPhone(t, "carol", testenv.BrowserOptions{}, "processing=0")
	rec := filepath.Join(t.TempDir(), "bob.wav")
	bob := runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", l.dns, "--duration", "4s", "--record", rec,
		"--hold-at", "2.5s", "--hold-for", "1s", "call", "carol@a.test")
	carol.WaitFor(t, "sipfedPhone.state === 'incoming'", 15*time.Second)
	var from string
	carol.Eval(t, "sipfedPhone.incoming", &from)
	if !strings.Contains(from, "bob@b.test") {
		t.Errorf("the page shows a call from %q, want bob@b.test", from)
	}
	carol.Eval(t, "sipfedPhone.answer({video: false})", nil)
	carol.WaitFor(t, "sipfedPhone.stats().then(s => s.audioIn.packetsReceived > 50 && s.audioIn.audioLevel > 0.01)", 15*time.Second)
	if err := bob.exit(t, 20*time.Second); err != nil {
		t.Fatalf("bob: %v\n%s\n%s", err, bob.dump(), l.logs())
	}
	carol.WaitFor(t, "sipfedPhone.state === 'ended'", 10*time.Second)
	bs := stream(t, bob.wait(t, "hangup", 0))
	t.Logf("bob: %v", bs)
	if n, _ := bs["packets_received"].(float64); n < 100 {
		t.Errorf("bob received %v packets from the browser, want ≥ 100", bs["packets_received"])
	}
	// Before bob's hold (2.5 s into the call; the recording can start a
	// little before the call does).
	if snr := recordedToneSNR(t, rec, 0.5, 1.8); snr < 10 {
		t.Errorf("bob's recording of the browser: 440 Hz at %.1f dB over the rest, want ≥ 10", snr)
	}
	// bob's hold and resume (re-INVITEs through the bridge) were
	// answered by the browser.
	bob.wait(t, "held", 0)
	bob.wait(t, "resumed", 0)
	waitMetric(t, l, "sipfed_bridge_sessions", 0)
}

// TestBrowserCallsBrowser: carol and dave, two browsers of a.test, call
// each other: their media goes directly between them (ICE between the
// two browsers) and the bridge carries none of it.
func TestBrowserCallsBrowser(t *testing.T) {
	l := startWebLab(t)
	carol := l.browserPhone(t, "carol", testenv.BrowserOptions{ToneHz: 440}, "processing=0")
	dave := l.browserPhone(t, "dave", testenv.BrowserOptions{ToneHz: 1000, Width: 352, Height: 288}, "processing=0&autoanswer=1")
	carol.Eval(t, "sipfedPhone.call('dave', {video: true})", nil)
	carol.WaitFor(t, "sipfedPhone.state === 'in-call'", 15*time.Second)
	for _, p := range []*testenv.Page{carol, dave} {
		p.WaitFor(t, "sipfedPhone.stats().then(s => s.audioIn.packetsReceived > 50 && s.audioIn.audioLevel > 0.01 && s.videoIn.framesDecoded > 10)", 15*time.Second)
	}
	cs, ds := stats(t, carol), stats(t, dave)
	t.Logf("carol: %+v", cs)
	t.Logf("dave:  %+v", ds)
	if cs.VideoIn.FrameWidth != 352 || ds.VideoIn.FrameWidth != 320 {
		t.Errorf("frame widths: carol sees %v, dave %v; want each other's camera (352, 320)", cs.VideoIn.FrameWidth, ds.VideoIn.FrameWidth)
	}
	if cs.SelectedPair == nil || ds.SelectedPair == nil {
		t.Fatal("no selected ICE pair")
	}
	if cs.SelectedPair.Remote.Port != ds.SelectedPair.Local.Port || ds.SelectedPair.Remote.Port != cs.SelectedPair.Local.Port {
		t.Errorf("ICE pairs: carol %v, dave %v; want each the other's local candidate", cs.SelectedPair, ds.SelectedPair)
	}
	if n := l.metric(t, "sipfed_bridge_packets_total"); n != 0 {
		t.Errorf("the bridge passed %v packets of a browser-to-browser call, want 0", n)
	}
	if n := l.metric(t, "sipfed_bridge_sessions"); n != 0 {
		t.Errorf("bridge sessions %v during a browser-to-browser call, want 0", n)
	}
	carol.Eval(t, "sipfedPhone.hangup()", nil)
	dave.WaitFor(t, "sipfedPhone.state === 'ended'", 10*time.Second)
}

// TestSIPjsCallsSipfedPhone: SIP.js (the minimal page /phone/sipjs.html)
// registers and completes a bridged call to bob@b.test as JsSIP does.
func TestSIPjsCallsSipfedPhone(t *testing.T) {
	l := startWebLab(t)
	bob := runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", l.dns, "--max-calls", "1", "answer")
	bob.wait(t, "registered", 10*time.Second)
	b := testenv.Chromium(t)
	p := b.Open(t, "http://"+l.http+"/phone/sipjs.html")
	p.WaitFor(t, "window.sipfedPhone && sipfedPhone.ready", 10*time.Second)
	var state string
	p.Eval(t, `sipfedPhone.register({uri: 'dave@a.test', password: 'pw-dave', ws: 'ws://127.0.0.1:`+strconv.Itoa(l.ws)+`'}).catch(e => 'failed: ' + e.message)`, &state)
	if state != "registered" {
		t.Fatalf("SIP.js register: %q\n%s", state, l.logs())
	}
	p.Eval(t, "sipfedPhone.call('bob@b.test'), true", nil)
	p.WaitFor(t, "sipfedPhone.state === 'in-call'", 15*time.Second)
	p.WaitFor(t, "sipfedPhone.stats().then(s => s.audioIn.packetsReceived > 50 && s.audioIn.audioLevel > 0.01)", 15*time.Second)
	time.Sleep(time.Second)
	p.Eval(t, "sipfedPhone.hangup()", nil)
	if err := bob.exit(t, 10*time.Second); err != nil {
		t.Fatalf("bob: %v\n%s\n%s", err, bob.dump(), l.logs())
	}
	if n, _ := stream(t, bob.wait(t, "hangup", 0))["packets_received"].(float64); n < 50 {
		t.Errorf("bob received %v packets from SIP.js, want ≥ 50", n)
	}
}

// TestBrowserCallsLeaveNothingBehind: 20 bridged calls in a row, then
// the a.test server has as many goroutines and open descriptors (sockets,
// UDP ports) as after the first; a browser that vanishes mid-call is
// cleaned up by the media timeout.
func TestBrowserCallsLeaveNothingBehind(t *testing.T) {
	l := startWebLab(t)
	carol := l.browserPhone(t, "carol", testenv.BrowserOptions{}, "autoanswer=1&video=0")
	call := func() {
		t.Helper()
		bob := runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", l.dns, "--duration", "300ms", "call", "carol@a.test")
		if err := bob.exit(t, 20*time.Second); err != nil {
			t.Fatalf("bob: %v\n%s\n%s", err, bob.dump(), l.logs())
		}
		waitMetric(t, l, "sipfed_bridge_sessions", 0)
	}
	call()
	time.Sleep(time.Second)
	g0, fd0 := l.metric(t, "go_goroutines"), l.metric(t, "process_open_fds")
	for range 20 {
		call()
	}
	var calls float64
	carol.Eval(t, "sipfedPhone.callsEnded", &calls)
	if calls != 21 {
		t.Errorf("the page ended %v calls, want 21", calls)
	}
	// An INVITE client transaction lingers 64*T1 (32 s) after its 2xx to
	// absorb retransmissions (RFC 6026): its goroutine is gone after that.
	deadline := time.Now().Add(45 * time.Second)
	for {
		g, fd := l.metric(t, "go_goroutines"), l.metric(t, "process_open_fds")
		if g <= g0+2 && fd <= fd0 {
			t.Logf("after 20 calls: %v goroutines (%v after the first), %v descriptors (%v)", g, g0, fd, fd0)
			break
		}
		if time.Now().After(deadline) {
			res, err := http.Get("http://" + l.http + "/debug/pprof/goroutine?debug=1")
			var dump []byte
			if err == nil {
				dump, _ = io.ReadAll(res.Body)
				res.Body.Close()
			}
			t.Fatalf("after 20 calls: %v goroutines (%v after the first), %v descriptors (%v)\n%s", g, g0, fd, fd0, dump)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A browser that vanishes mid-call (its process killed: no BYE): its
	// bridge ends by the media timeout (5 s here) although bob keeps
	// sending, because the browser stops answering ICE consent checks.
	db := testenv.Chromium(t)
	dave := db.Open(t, "http://"+l.http+"/phone/?autoanswer=1&video=0")
	dave.WaitFor(t, "window.sipfedPhone && sipfedPhone.ready", 10*time.Second)
	var state string
	dave.Eval(t, `sipfedPhone.register({uri: 'dave@a.test', password: 'pw-dave'})`, &state)
	runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", l.dns, "--duration", "30s", "call", "dave@a.test")
	dave.WaitFor(t, "sipfedPhone.state === 'in-call'", 15*time.Second)
	waitMetric(t, l, "sipfed_bridge_sessions", 1)
	if err := syscall.Kill(db.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitMetric(t, l, "sipfed_bridge_sessions", 0)
	t.Logf("the bridge of the vanished browser closed after %v", time.Since(start).Round(100*time.Millisecond))
}

// TestCanceledCallToBrowser: bob's call rings carol's page and is
// CANCELed (bob's ring timeout): the bridge made for the ringing branch
// is gone and the page is back to idle.
func TestCanceledCallToBrowser(t *testing.T) {
	l := startWebLab(t)
	carol := l.browserPhone(t, "carol", testenv.BrowserOptions{}, "")
	bob := runPhone(t, "pw-bob", "--aor", "bob@b.test", "--dns", l.dns, "--ring-timeout", "2s", "call", "carol@a.test")
	carol.WaitFor(t, "sipfedPhone.state === 'incoming'", 15*time.Second)
	if n := l.metric(t, "sipfed_bridge_sessions"); n != 1 {
		t.Errorf("bridge sessions while ringing: %v, want 1", n)
	}
	bob.exit(t, 15*time.Second)
	carol.WaitFor(t, "sipfedPhone.state !== 'incoming'", 10*time.Second)
	waitMetric(t, l, "sipfed_bridge_sessions", 0)
}

// TestDemoBrowserCallsEcho: what `make run` tells a person to do works:
// in `sipfed demo`, the web phone signs in as carol@a.test and calls
// echo@b.test (a plain RTP phone of another domain sending back what it
// gets, through a.test's bridge), and hears its own tone.
func TestDemoBrowserCallsEcho(t *testing.T) {
	needWebPhone(t)
	ports := testenv.FreePorts(t, 5)
	p := func(i int) string { return strconv.Itoa(ports + i) }
	demo := exec.Command(sipfedBin, "demo", "--duration", "1s", "--dns-port", p(0), "--a-port", p(1), "--b-port", p(2), "--web-port", p(3), "--ws-port", p(4))
	out := &testenv.Buffer{}
	demo.Stdout, demo.Stderr = out, out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { demo.Process.Kill(); demo.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "The two domains stay up") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not come up:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b := testenv.Chromium(t)
	page := b.Open(t, "http://127.0.0.1:"+p(3)+"/phone/?processing=0&video=0")
	page.WaitFor(t, "window.sipfedPhone && sipfedPhone.ready", 10*time.Second)
	var state string
	page.Eval(t, `sipfedPhone.register({uri: 'carol@a.test', password: 'carol-pw'}).catch(e => 'failed: ' + e.message)`, &state)
	if state != "registered" {
		t.Fatalf("register: %q\n%s", state, out)
	}
	page.Eval(t, "sipfedPhone.call('echo@b.test', {video: false})", nil)
	page.WaitFor(t, "sipfedPhone.state === 'in-call'", 15*time.Second)
	page.WaitFor(t, "sipfedPhone.stats().then(s => s.audioIn.packetsReceived > 50 && s.audioIn.audioLevel > 0.01)", 15*time.Second)
	page.Eval(t, "sipfedPhone.hangup()", nil)
}
