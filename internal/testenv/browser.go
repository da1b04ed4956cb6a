package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sipfed/sipfed/media/file"
)

// BrowserOptions configure a Chromium that Chromium starts. The zero value
// is usable: every field has a default.
type BrowserOptions struct {
	// ToneHz is the frequency of the sine wave that getUserMedia's fake
	// microphone plays (default 440). Give two browsers of one test
	// different tones to tell who hears whom.
	ToneHz float64
	// ToneLevel is the amplitude of the tone, 0 to 1 of full scale
	// (default 0.5, about -6 dBFS).
	ToneLevel float64
	// Width and Height are the size of the fake camera's frames
	// (default 320x240; both must be even). A receiver that decodes
	// frames of this size proves that the file, not Chromium's built-in
	// 640x480 pattern, is the camera.
	Width, Height int
	// FPS is the fake camera's frame rate (default 15).
	FPS int
	// Timeout bounds each call into the browser: starting it, opening a
	// page, one Eval (default 20s). WaitFor has its own timeout.
	Timeout time.Duration
	// Flags are extra command-line flags ("name" → true or a string);
	// false removes a default flag.
	Flags map[string]any
}

func (o *BrowserOptions) defaults() {
	if o.ToneHz == 0 {
		o.ToneHz = 440
	}
	if o.ToneLevel == 0 {
		o.ToneLevel = 0.5
	}
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 320, 240
	}
	if o.FPS == 0 {
		o.FPS = 15
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
}

// Browser is a headless Chromium process a test started, with a fake
// microphone and camera that play files the harness generated. Each
// Browser is a process of its own, so a test can run several that call
// each other.
type Browser struct {
	Opts    BrowserOptions // with the defaults filled in
	Exec    string         // the chromium executable
	WAV     string         // the fake microphone: ToneHz, 48 kHz mono, 10 s, looped by Chromium
	Y4M     string         // the fake camera: Width x Height at FPS, 2 s, looped
	DataDir string         // the profile (--user-data-dir)
	PID     int            // the browser process

	ctx    context.Context // the chromedp context of the browser (its first tab)
	cancel context.CancelFunc
	out    *Buffer // Chromium's stdout and stderr
}

// Chromium starts a headless Chromium with the default BrowserOptions
// (a 440 Hz tone, a 320x240 camera). See ChromiumWith.
func Chromium(t testing.TB) *Browser {
	t.Helper()
	return ChromiumWith(t, BrowserOptions{})
}

// ChromiumWith starts a headless Chromium (/usr/bin/chromium, or
// chromium on PATH) whose getUserMedia grants the microphone and camera
// without asking and plays a tone and a moving picture generated into
// t.TempDir(). A missing Chromium skips the test loudly, or fails it when
// Required. The browser, and every process it started, is killed when the
// test ends; on failure its output is logged.
func ChromiumWith(t testing.TB, opts BrowserOptions) *Browser {
	t.Helper()
	opts.defaults()
	execPath := "/usr/bin/chromium"
	if _, err := os.Stat(execPath); err != nil {
		execPath = Need(t, "chromium")
	}
	dir := t.TempDir()
	b := &Browser{
		Opts:    opts,
		Exec:    execPath,
		WAV:     filepath.Join(dir, "tone.wav"),
		Y4M:     filepath.Join(dir, "clip.y4m"),
		DataDir: filepath.Join(dir, "profile"),
		out:     new(Buffer),
	}
	if err := writeToneWAV(b.WAV, opts.ToneHz, opts.ToneLevel, 48000, 10*time.Second); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := writeY4M(b.Y4M, opts.Width, opts.Height, opts.FPS, 2*opts.FPS); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Mkdir(b.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}

	flags := []struct {
		name  string
		value any
	}{
		{"headless", true},
		{"no-sandbox", true},
		{"disable-gpu", true},
		{"disable-dev-shm-usage", true},
		{"use-fake-ui-for-media-stream", true},
		{"use-fake-device-for-media-stream", true},
		{"use-file-for-fake-audio-capture", b.WAV},
		{"use-file-for-fake-video-capture", b.Y4M},
		{"autoplay-policy", "no-user-gesture-required"},
		{"disable-features", "WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints"},
		{"disable-background-networking", true},
		{"disable-component-update", true},
		{"disable-sync", true},
		{"disable-default-apps", true},
		{"disable-extensions", true},
		{"disable-breakpad", true},
		{"disable-client-side-phishing-detection", true},
		{"disable-background-timer-throttling", true},
		{"disable-backgrounding-occluded-windows", true},
		{"disable-renderer-backgrounding", true},
		{"metrics-recording-only", true},
		{"no-default-browser-check", true},
		{"no-first-run", true},
		{"disable-quic", true},
		{"password-store", "basic"},
		{"use-mock-keychain", true},
		{"user-data-dir", b.DataDir},
	}
	aopts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(execPath), chromedp.CombinedOutput(b.out)}
	for _, f := range flags {
		if v, ok := opts.Flags[f.name]; ok {
			f.value = v
		}
		aopts = append(aopts, chromedp.Flag(f.name, f.value))
	}
	for name, v := range opts.Flags {
		aopts = append(aopts, chromedp.Flag(name, v))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), aopts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(b.logf), chromedp.WithErrorf(b.logf))
	b.ctx = ctx
	b.cancel = func() { cancel(); acancel() }
	t.Cleanup(func() { b.close(t) })

	// The first Run starts the browser, and the browser lives as long as
	// the context of that call, so it has no deadline: a timer kills the
	// browser instead if it does not come up in time.
	start := time.Now()
	timer := time.AfterFunc(opts.Timeout, b.cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() && err == nil {
		err = errors.New("timed out")
	}
	if err != nil {
		t.Fatalf("testenv: start chromium (after %v): %v\n%s", time.Since(start).Round(time.Millisecond), err, tail(b.out.String(), 60))
	}
	if p := chromedp.FromContext(ctx).Browser.Process(); p != nil {
		b.PID = p.Pid
	}
	return b
}

// logf records chromedp's own complaints with the browser's output.
func (b *Browser) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "chromedp: "+format+"\n", args...)
}

// Output returns what Chromium wrote to stdout and stderr so far.
func (b *Browser) Output() string { return b.out.String() }

// close kills the browser and every process left that uses its profile,
// and fails the test if one survives.
func (b *Browser) close(t testing.TB) {
	t.Helper()
	if t.Failed() {
		t.Logf("testenv: output of chromium %d (without D-Bus complaints):\n%s", b.PID, tail(b.out.String(), 60))
	}
	// Closing the browser gracefully lets it end its children itself;
	// killing it leaves them to the init process to reap.
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	chromedp.Cancel(ctx)
	cancel()
	b.cancel()
	// The renderers, the GPU and network processes and the zygote can
	// outlive the browser process for a moment. Chromium passes
	// --user-data-dir to each of them, and the directory is this test's.
	deadline := time.Now().Add(5 * time.Second)
	for quiet := 0; quiet < 3; time.Sleep(20 * time.Millisecond) {
		pids := ProcessesWith("--user-data-dir=" + b.DataDir)
		if len(pids) == 0 {
			quiet++
			continue
		}
		quiet = 0
		if time.Now().After(deadline) {
			t.Errorf("testenv: chromium processes %v survive the test", pids)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ProcessesWith returns the processes (Linux, from /proc) that have arg as
// one argument of their command line.
func ProcessesWith(arg string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			// A zombie (state Z) is dead already, waiting for its parent.
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		for _, a := range bytes.Split(cmdline, []byte{0}) {
			if string(a) == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// Page is a tab of a Browser.
type Page struct {
	b      *Browser
	URL    string
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	console []string
}

// Open opens url in a new tab and waits until it has loaded. The tab
// closes when the test ends; if the test failed, its console is logged.
func (b *Browser) Open(t testing.TB, url string) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{b: b, URL: url, ctx: ctx, cancel: cancel}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: console of %s (chromium %d):\n%s", url, b.PID, strings.Join(p.Console(), "\n"))
		}
		cancel()
	})

	// Console makes the tab, and the tab lives as long as the context of
	// that first call: the timer closes it instead of a deadline.
	timer := time.AfterFunc(b.Opts.Timeout, cancel)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			line := m.String()
			if m.URL != "" {
				line = fmt.Sprintf("%s (%s:%d)", line, m.URL, m.Line+1)
			}
			p.mu.Lock()
			p.console = append(p.console, line)
			p.mu.Unlock()
		}
	}()
	if !timer.Stop() {
		t.Fatalf("testenv: chromium %d: opening a tab timed out after %v", b.PID, b.Opts.Timeout)
	}
	cctx, ccancel := context.WithTimeout(ctx, b.Opts.Timeout)
	defer ccancel()
	if err := chromedp.Do(cctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("testenv: chromium %d: open %s: %v", b.PID, url, err)
	}
	return p
}

// Console returns the page's console messages and uncaught exceptions so
// far, one a line ("log: text (url:line)").
func (p *Page) Console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.console...)
}

// eval evaluates js, awaiting a promise it returns, and returns the
// result as JSON (nil for undefined).
func (p *Page) eval(ctx context.Context, js string) ([]byte, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
}

// Eval evaluates the JavaScript expression js in the page, awaits the
// promise it returns, if any, and decodes the result into out (a pointer,
// or nil to ignore the result). An exception, a rejected promise or a
// timeout fails the test with the error and the console.
func (p *Page) Eval(t testing.TB, js string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.b.Opts.Timeout)
	defer cancel()
	res, err := p.eval(ctx, js)
	if err != nil {
		t.Fatalf("testenv: eval %s: %v\nconsole:\n%s", short(js), err, strings.Join(p.Console(), "\n"))
	}
	if out == nil {
		return
	}
	if res == nil {
		t.Fatalf("testenv: eval %s: the result is undefined", short(js))
	}
	if err := json.Unmarshal(res, out); err != nil {
		t.Fatalf("testenv: eval %s: decode %s: %v", short(js), short(string(res)), err)
	}
}

// WaitFor evaluates the JavaScript expression cond every 100 ms until it
// is truthy (a promise is awaited; an exception counts as false), and
// fails the test with the last value and the console when timeout passes.
func (p *Page) WaitFor(t testing.TB, cond string, timeout time.Duration) {
	t.Helper()
	js := "(async () => { const v = await (" + cond + "\n); " +
		"let s; try { s = JSON.stringify(v); } catch (e) { s = String(v); } " +
		"return {ok: !!v, v: s === undefined ? String(v) : s}; })()"
	deadline := time.Now().Add(timeout)
	last := "(not evaluated)"
	for {
		ctx, cancel := context.WithDeadline(p.ctx, deadline)
		res, err := p.eval(ctx, js)
		cancel()
		var r struct {
			OK bool
			V  string
		}
		switch {
		case err != nil && p.ctx.Err() != nil:
			t.Fatalf("testenv: wait for %s: the tab is gone: %v\nconsole:\n%s", short(cond), err, strings.Join(p.Console(), "\n"))
		case err != nil:
			last = err.Error()
		case json.Unmarshal(res, &r) != nil:
			last = string(res)
		case r.OK:
			return
		default:
			last = r.V
		}
		if time.Now().Add(100 * time.Millisecond).After(deadline) {
			t.Fatalf("testenv: %s still false after %v; last value: %s\nconsole:\n%s", short(cond), timeout, last, strings.Join(p.Console(), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// tail returns the last lines of Chromium's output, without its
// complaints about the D-Bus it cannot reach in a container.
func tail(s string, lines int) string {
	var l []string
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if !strings.Contains(line, "dbus/") {
			l = append(l, line)
		}
	}
	if len(l) > lines {
		l = append([]string{"…"}, l[len(l)-lines:]...)
	}
	return strings.Join(l, "\n")
}

// writeToneWAV writes a 16-bit mono WAV at rate holding a sine wave of
// freq Hz at level (0 to 1 of full scale) lasting d. A whole number of
// periods fits in the file when freq*d is an integer, so that the loop
// Chromium plays has no click.
func writeToneWAV(path string, freq, level float64, rate int, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := file.NewWAVWriter(f, rate)
	if err != nil {
		return err
	}
	n := int(d.Seconds() * float64(rate))
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(math.Round(level * math.MaxInt16 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	if err := w.Write(pcm); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// writeY4M writes a YUV4MPEG2 clip (4:2:0) of frames frames of w x h at
// fps: a colour gradient that scrolls with a white square that moves, so
// that a video encoder has real work on every frame.
func writeY4M(path string, w, h, fps, frames int) error {
	if w%2 != 0 || h%2 != 0 {
		return fmt.Errorf("y4m: %dx%d: the size must be even", w, h)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n", w, h, fps)
	y := make([]byte, w*h)
	u := make([]byte, w*h/4)
	v := make([]byte, w*h/4)
	sq := h / 4
	for n := 0; n < frames; n++ {
		shift := n * 8
		sx := (n * (w - sq)) / max(frames-1, 1)
		sy := (h - sq) / 2
		for r := 0; r < h; r++ {
			for c := 0; c < w; c++ {
				val := byte(16 + (c+r+shift)%220)
				if c >= sx && c < sx+sq && r >= sy && r < sy+sq {
					val = 235
				}
				y[r*w+c] = val
			}
		}
		for r := 0; r < h/2; r++ {
			for c := 0; c < w/2; c++ {
				u[r*w/2+c] = byte(64 + (c*2+shift)%128)
				v[r*w/2+c] = byte(64 + (r*2+shift)%128)
			}
		}
		bw.WriteString("FRAME\n")
		bw.Write(y)
		bw.Write(u)
		bw.Write(v)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
