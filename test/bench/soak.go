package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// soak runs SIPp REGISTERs (with digest) at rate against one `sipfed
// serve` (memory store) for the whole duration, samples the server's heap,
// resident memory and goroutines from /metrics every interval, prints
// them, and draws them against time into dir/soak.svg: memory that grows
// with time, not with load, is a leak; heap that follows the rate is
// state kept per request (a finished transaction, a cached response).
func soak(bin, dir string, rate int, duration, interval time.Duration) error {
	work, err := os.MkdirTemp("", "sipfed-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	inf, aors, pw, err := registerUsers(work)
	if err != nil {
		return err
	}
	usersFile := filepath.Join(work, "users.txt")
	add := exec.Command(bin, append([]string{"user", "add", "--password-stdin", "--users", usersFile}, aors...)...)
	add.Stdin = strings.NewReader(pw)
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("user add: %v: %s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	srv := exec.Command(bin, "serve", "--domain", "a.test", "--listen", "udp:"+addr, "--http", httpAddr, "--users", usersFile,
		"--log-level", "error", "--min-expires", "1", "--pike-rate", "0")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	if err := waitTCP(httpAddr); err != nil {
		return err
	}

	type sample struct {
		at                    time.Duration
		heapMB, rssMB, gorout float64
	}
	var samples []sample
	take := func(at time.Duration) {
		m, err := scrape("http://" + httpAddr + "/metrics")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: metrics:", err)
			return
		}
		s := sample{at: at, heapMB: m["go_memstats_heap_alloc_bytes"] / 1e6, rssMB: m["process_resident_memory_bytes"] / 1e6, gorout: m["go_goroutines"]}
		samples = append(samples, s)
		fmt.Printf("%6.0f s  heap %7.1f MB  rss %7.1f MB  goroutines %6.0f\n", at.Seconds(), s.heapMB, s.rssMB, s.gorout)
	}
	fmt.Printf("soak: REGISTER with digest at %d/s for %v against sipfed (memory store, http://%s/metrics), sampled every %v\n", rate, duration, httpAddr, interval)
	start := time.Now()
	take(0)
	done := make(chan result, 1)
	errc := make(chan error, 1)
	go func() {
		r, err := sippRun(work, registerScenario.file, addr, inf, rate, int(duration.Seconds()))
		if err != nil {
			errc <- err
			return
		}
		done <- r
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var r result
loop:
	for {
		select {
		case <-tick.C:
			take(time.Since(start))
		case r = <-done:
			break loop
		case err := <-errc:
			return err
		}
	}
	take(time.Since(start))
	// After the load: what is left once the 5 s response cache and the
	// transactions have expired.
	time.Sleep(40 * time.Second)
	take(time.Since(start))
	fmt.Printf("RESULT soak: %d ok, %d failed, p99 %s ms; peak heap %.1f MB, peak goroutines %.0f\n",
		r.ok, r.fail, ms(r.p99), peak(samples, func(s sample) float64 { return s.heapMB }), peak(samples, func(s sample) float64 { return s.gorout }))

	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var xs, heap, rss, gor []float64
	for _, s := range samples {
		xs = append(xs, s.at.Seconds())
		heap = append(heap, s.heapMB)
		rss = append(rss, s.rssMB)
		gor = append(gor, s.gorout)
	}
	title := fmt.Sprintf("sipfed under %d REGISTER/s for %v (then idle): heap, RSS, goroutines", rate, duration)
	svg := lineChart(title, time.Now().UTC().Format("2006-01-02 15:04 MST"), xs,
		[]series{{"heap MB", "#1f77b4", heap}, {"RSS MB", "#2ca02c", rss}, {"goroutines", "#d62728", gor}})
	path := filepath.Join(dir, "soak.svg")
	if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", path)
	return nil
}

func peak[T any](xs []T, f func(T) float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, f(x))
	}
	return m
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

type series struct {
	name, color string
	ys          []float64
}

// lineChart draws series against xs (seconds), each on the same linear
// y axis from 0.
func lineChart(title, subtitle string, xs []float64, ss []series) string {
	const w, h, left, right, top, bottom = 760, 420, 70, 170, 60, 50
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	xmax, ymax := 1.0, 1.0
	for _, x := range xs {
		xmax = max(xmax, x)
	}
	for _, s := range ss {
		for _, y := range s.ys {
			ymax = max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return float64(left) + x/xmax*pw }
	py := func(y float64) float64 { return float64(top) + ph - y/ymax*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", left, xmlEscape(title))
	fmt.Fprintf(&b, `<text x="%d" y="42" fill="#555">%s</text>`+"\n", left, xmlEscape(subtitle))
	for i := 0; i <= 5; i++ {
		y := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, float64(left)+pw, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, trimFloat(y))
	}
	for i := 0; i <= 6; i++ {
		x := xmax * float64(i) / 6
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.0f</text>`+"\n", px(x), top+int(ph)+18, x)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">seconds</text>`+"\n", float64(left)+pw/2, h-10)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	for i, s := range ss {
		var pts []string
		for j, y := range s.ys {
			if j < len(xs) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[j]), py(y)))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		ly := top + 10 + i*22
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", w-right+14, w-right+34, ly, ly, s.color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", w-right+40, ly+4, xmlEscape(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := 1.0
	for p*10 < v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
