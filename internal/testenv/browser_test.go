package testenv

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// webrtcPage is the page the browser tests load. loopback() connects two
// RTCPeerConnections inside the page; offer(), answer() and accept() let
// Go carry the descriptions between two browsers (ICE without trickle).
// The remote stream plays in <audio>/<video> elements, and an
// AnalyserNode finds the loudest frequency of the received audio.
const webrtcPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>webrtc</title></head>
<body><audio id="a" autoplay></audio><video id="v" autoplay playsinline muted></video>
<script>
let local, pc, rx, analyser;

async function media() {
  local = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const s = local.getVideoTracks()[0].getSettings();
  console.log("local media", local.getTracks().map(t => t.kind + ":" + t.label).join(", "), s.width + "x" + s.height);
}

function newPC() {
  const p = new RTCPeerConnection();
  p.onconnectionstatechange = () => console.log("connection", p.connectionState);
  p.ontrack = e => play(e.streams[0]);
  return p;
}

function play(stream) {
  if (document.getElementById("a").srcObject === stream) return;
  document.getElementById("a").srcObject = stream;
  document.getElementById("v").srcObject = stream;
  const ctx = new AudioContext({sampleRate: 48000});
  analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.5;
  ctx.createMediaStreamSource(stream).connect(analyser);
  ctx.resume();
}

async function loopback() {
  await media();
  const a = newPC(), b = newPC();
  a.onicecandidate = e => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = e => e.candidate && a.addIceCandidate(e.candidate);
  local.getTracks().forEach(t => a.addTrack(t, local));
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  pc = a; rx = b;
}

function gathered(p) {
  if (p.iceGatheringState === "complete") return Promise.resolve();
  return new Promise(ok => p.addEventListener("icegatheringstatechange",
    () => p.iceGatheringState === "complete" && ok()));
}

async function offer() {
  await media();
  pc = rx = newPC();
  local.getTracks().forEach(t => pc.addTrack(t, local));
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
}

async function answer(sdp) {
  await media();
  pc = rx = newPC();
  local.getTracks().forEach(t => pc.addTrack(t, local));
  await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
}

async function accept(sdp) {
  await pc.setRemoteDescription({type: "answer", sdp});
}

async function stats() {
  const out = {};
  if (!rx) return out;
  const all = await rx.getStats();
  all.forEach(s => {
    if (s.type !== "inbound-rtp") return;
    const c = all.get(s.codecId);
    out[s.kind] = {packetsReceived: s.packetsReceived, audioLevel: s.audioLevel,
      totalSamplesReceived: s.totalSamplesReceived, framesDecoded: s.framesDecoded,
      frameWidth: s.frameWidth, frameHeight: s.frameHeight, codec: c ? c.mimeType : ""};
  });
  return out;
}

// peak returns the loudest frequency of the received audio and its level.
function peak() {
  if (!analyser) return {hz: 0, db: -Infinity};
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return {hz: best * analyser.context.sampleRate / analyser.fftSize, db: bins[best]};
}
</script></body></html>`

type inbound struct {
	PacketsReceived      int64   `json:"packetsReceived"`
	AudioLevel           float64 `json:"audioLevel"`
	TotalSamplesReceived int64   `json:"totalSamplesReceived"`
	FramesDecoded        int64   `json:"framesDecoded"`
	FrameWidth           int     `json:"frameWidth"`
	FrameHeight          int     `json:"frameHeight"`
	Codec                string  `json:"codec"`
}

type rtcStats struct {
	Audio *inbound `json:"audio"`
	Video *inbound `json:"video"`
}

func servePage(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(webrtcPage))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/webrtc.html" // http://127.0.0.1:PORT
}

// flowing waits until the page receives audio and video, and checks that
// they are the fake files of the sending browser: its tone (the loudest
// frequency, not Chromium's built-in beep) and its frame size (not the
// built-in 640x480 pattern).
func flowing(t *testing.T, p *Page, from BrowserOptions) {
	t.Helper()
	p.WaitFor(t, `stats().then(s => s.audio && s.audio.packetsReceived > 0 && s.audio.audioLevel > 0.01 &&
		s.video && s.video.framesDecoded > 0)`, 10*time.Second)
	var s rtcStats
	p.Eval(t, `stats()`, &s)
	t.Logf("audio %+v", *s.Audio)
	t.Logf("video %+v", *s.Video)
	if s.Audio.PacketsReceived <= 0 || s.Audio.AudioLevel <= 0.01 {
		t.Errorf("audio: packetsReceived %d, audioLevel %.3f; want > 0, > 0.01", s.Audio.PacketsReceived, s.Audio.AudioLevel)
	}
	if s.Video.FramesDecoded <= 0 || s.Video.FrameWidth != from.Width || s.Video.FrameHeight != from.Height {
		t.Errorf("video: framesDecoded %d, %dx%d; want > 0, %dx%d (the Y4M file)", s.Video.FramesDecoded,
			s.Video.FrameWidth, s.Video.FrameHeight, from.Width, from.Height)
	}
	// The analyser's bins are 48000/8192 ≈ 5.9 Hz wide.
	var pk struct{ Hz, DB float64 }
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.Eval(t, `peak()`, &pk)
		if math.Abs(pk.Hz-from.ToneHz) < 12 && pk.DB > -60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received audio peaks at %.1f Hz (%.1f dB), want the %.0f Hz tone of the WAV file\nconsole:\n%v",
				pk.Hz, pk.DB, from.ToneHz, p.Console())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("received tone peaks at %.1f Hz (%.1f dB); sent %.0f Hz", pk.Hz, pk.DB, from.ToneHz)
}

func TestBrowserLoopback(t *testing.T) {
	start := time.Now()
	b := Chromium(t)
	t.Logf("chromium %d up after %v", b.PID, time.Since(start).Round(time.Millisecond))
	p := b.Open(t, servePage(t))
	p.Eval(t, `loopback()`, nil)
	flowing(t, p, b.Opts)
	if st, err := os.Stat(b.Y4M); err != nil || st.Size() == 0 {
		t.Errorf("fake camera file: %v", err)
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

// TestBrowserTwoInstances runs two Chromium processes with different fake
// media, lets them call each other, and checks that each hears the other's
// tone and sees the other's frame size; then that no process is left.
func TestBrowserTwoInstances(t *testing.T) {
	start := time.Now()
	var dirs []string
	t.Run("call", func(t *testing.T) {
		a := ChromiumWith(t, BrowserOptions{ToneHz: 440})
		b := ChromiumWith(t, BrowserOptions{ToneHz: 1000, Width: 352, Height: 288})
		dirs = []string{a.DataDir, b.DataDir}
		t.Logf("chromium %d and %d up after %v", a.PID, b.PID, time.Since(start).Round(time.Millisecond))
		if a.PID == 0 || a.PID == b.PID {
			t.Fatalf("browser processes %d and %d: want two", a.PID, b.PID)
		}
		url := servePage(t)
		pa, pb := a.Open(t, url), b.Open(t, url)
		var offer, answer string
		pa.Eval(t, `offer()`, &offer)
		pb.Eval(t, `answer(`+strconv.Quote(offer)+`)`, &answer)
		pa.Eval(t, `accept(`+strconv.Quote(answer)+`)`, nil)
		flowing(t, pa, b.Opts)
		flowing(t, pb, a.Opts)
	})
	for _, d := range dirs {
		if pids := ProcessesWith("--user-data-dir=" + d); len(pids) > 0 {
			t.Errorf("processes %v of %s survive the test", pids, d)
		}
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

// TestBrowserConsole checks that a page's console and exceptions are
// collected, and what Eval and WaitFor say when they fail.
func TestBrowserConsole(t *testing.T) {
	b := Chromium(t)
	p := b.Open(t, servePage(t))
	p.Eval(t, `console.log("hello", 42); setTimeout(() => { throw new Error("boom") }, 0); 1`, nil)
	p.WaitFor(t, `true`, time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !(match(p.Console(), "log: hello 42") && match(p.Console(), "exception: Uncaught Error: boom")) {
		if time.Now().After(deadline) {
			t.Fatalf("console %q: want the log and the exception", p.Console())
		}
		time.Sleep(50 * time.Millisecond)
	}

	msg := fatal(t, func(tb testing.TB) { p.Eval(tb, `Promise.reject(new Error("nope"))`, nil) })
	if !strings.Contains(msg, "nope") || !strings.Contains(msg, "hello 42") {
		t.Errorf("Eval of a rejected promise failed with %q, want the error and the console", msg)
	}
	var n int
	p.Eval(t, `new Promise(ok => setTimeout(() => ok(7), 50))`, &n)
	if n != 7 {
		t.Errorf("Eval of a promise = %d, want 7", n)
	}
	msg = fatal(t, func(tb testing.TB) {
		p.WaitFor(tb, `document.title === "done"`, 300*time.Millisecond)
	})
	if !strings.Contains(msg, `still false after 300ms; last value: false`) {
		t.Errorf("WaitFor failed with %q", msg)
	}
	msg = fatal(t, func(tb testing.TB) { p.WaitFor(tb, `window.nothing.here`, 300*time.Millisecond) })
	if !strings.Contains(msg, "TypeError") || !strings.Contains(msg, "hello 42") {
		t.Errorf("WaitFor of a throwing condition failed with %q, want the last error and the console", msg)
	}
}

func match(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// failTB records the first Fatal of a harness call instead of failing
// the test.
type failTB struct {
	testing.TB
	msg string
}

func (f *failTB) Helper() {}
func (f *failTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *failTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

// fatal runs f and returns the message it failed with ("" if none).
func fatal(t *testing.T, f func(testing.TB)) string {
	ft := &failTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ft)
	}()
	<-done
	return ft.msg
}
