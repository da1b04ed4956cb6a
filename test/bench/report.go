package main

// The report of -mode compare: results.md (per workload the table of
// every rate for both servers, then the summary with ratios), results.json
// (the same numbers) and one SVG chart per workload (p99, log scale,
// against the offered rate), written by hand: no dependency.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

func writeReport(dir string, m meta, results []*workloadResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# sipfed vs Kamailio\n\n")
	fmt.Fprintf(&b, "- Date: %s\n- Machine: %s\n- Load average (1, 5, 15 min) at start: %s; at end: %s\n- Versions: %s\n- Kamailio: %s\n",
		m.Date, m.Machine, m.Load, m.LoadEnd, m.Versions, m.Kamailio)
	if m.Quick {
		b.WriteString("- **Quick run** (BENCH_QUICK=1): 2 short rates per workload, to check the run works; not figures to quote.\n")
	}
	b.WriteString("- Method: `go run ./test/bench -mode compare` (`make bench`). Both servers run at once on loopback; at every rate SIPp runs " +
		"against one then the other (the order swapped at every rate), the same scenario, users and rate. SIPp (client and callee) runs on the same " +
		"machine and shares its cores with the server. A server passes a rate when no call failed and calls completed at 90 % of the offered rate or more " +
		"(done/s); one that does not pass is not run at higher ones.\n")
	b.WriteString("- Columns: p50/p99 from SIPp's per-call response times (`-trace_rtt`; whole ms, quantised to about 4 ms on loopback; `<1` is under 1 ms); " +
		"CPU = server user+system CPU time (from /proc, in 10 ms ticks, Kamailio's main process and all its workers, plus the server's redis-server for register-redis) " +
		"per call; busy = the whole machine's CPU use during the run, SIPp and any other load included (100 % = every core busy): a high figure at a low rate means something else (e.g. a CI job) was running.\n")
	for _, e := range m.Errors {
		fmt.Fprintf(&b, "- **Failed workload**: %s\n", strings.ReplaceAll(e, "\n", " "))
	}
	for _, wr := range results {
		fmt.Fprintf(&b, "\n## %s (`%s`)\n\n%s %d s per rate.\n\n![p99 against offered rate](%s.svg)\n\n", wr.Title, wr.Key, wr.Description, wr.Seconds, wr.Key)
		writeTable(&b, wr)
		b.WriteString("\n")
		for _, n := range wr.Notes {
			fmt.Fprintf(&b, "**Note:** %s\n\n", n)
		}
		writeSummary(&b, wr)
		if err := os.WriteFile(filepath.Join(dir, wr.Key+".svg"), []byte(chartSVG(wr, m)), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	data, err := json.MarshalIndent(struct {
		Meta      meta              `json:"meta"`
		Workloads []*workloadResult `json:"workloads"`
	}{m, results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644)
}

// replot rewrites results.md and the SVG charts in dir from its
// results.json (-mode replot), e.g. after a change to the report.
func replot(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var r struct {
		Meta      meta              `json:"meta"`
		Workloads []*workloadResult `json:"workloads"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	return writeReport(dir, r.Meta, r.Workloads)
}

func cell(p point, f func(point) string) string {
	if !p.Run {
		return "–"
	}
	return f(p)
}

func writeTable(w io.Writer, wr *workloadResult) {
	fmt.Fprintf(w, "| offered %s | sipfed ok | sipfed failed | sipfed p50 ms | sipfed p99 ms | sipfed CPU µs/call | Kamailio ok | Kamailio failed | Kamailio p50 ms | Kamailio p99 ms | Kamailio CPU µs/call | busy %% (sipfed / Kamailio run) |\n", wr.Unit)
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for j, rate := range wr.Rates {
		a, k := wr.Points[0][j], wr.Points[1][j]
		if !a.Run && !k.Run {
			continue
		}
		row := []string{fmt.Sprint(rate)}
		for _, p := range []point{a, k} {
			row = append(row,
				cell(p, func(p point) string { return fmt.Sprint(p.OK) }),
				cell(p, func(p point) string {
					s := fmt.Sprint(p.Failed)
					if !p.Completed {
						s += " (timed out)"
					}
					if p.Exited {
						s += " (server exited)"
					}
					if p.Completed && !keptUp(p.Rate, p.Done) {
						s += fmt.Sprintf(" (fell behind: %.0f/s)", p.Done)
					}
					if p.Failed > 0 || !p.Completed || !keptUp(p.Rate, p.Done) {
						s = "**" + s + "**"
					}
					return s
				}),
				cell(p, func(p point) string { return ms(p.P50) }),
				cell(p, func(p point) string { return ms(p.P99) }),
				cell(p, func(p point) string {
					if p.Exited {
						return "?"
					}
					return fmt.Sprintf("%.0f", p.CPU)
				}))
		}
		row = append(row, cell(a, func(p point) string { return fmt.Sprintf("%.0f", p.Busy) })+" / "+cell(k, func(p point) string { return fmt.Sprintf("%.0f", p.Busy) }))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func writeSummary(w io.Writer, wr *workloadResult) {
	s := wr.Summary
	best := func(i int) string {
		if s.Best[i] == 0 {
			return "none (failed at the lowest rate)"
		}
		top := ""
		if s.Best[i] == wr.Rates[len(wr.Rates)-1] {
			top = " (top rate tried, no failure)"
		}
		return fmt.Sprintf("%d %s%s", s.Best[i], wr.Unit, top)
	}
	fmt.Fprintf(w, "| | sipfed | Kamailio | sipfed / Kamailio |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(w, "| highest rate with 0 failures | %s | %s | %s |\n", best(0), best(1), ratio(float64(s.Best[0]), float64(s.Best[1])))
	if !s.HaveCommon {
		fmt.Fprintf(w, "\nNo rate passed with 0 failures on both servers: no common rate to compare CPU and latency at.\n")
		return
	}
	at := fmt.Sprintf(" at %d %s (highest rate both passed)", s.Common, wr.Unit)
	fmt.Fprintf(w, "| p50 ms%s | %s | %s | %s |\n", at, ms(s.P50[0]), ms(s.P50[1]), ratio(s.P50[0], s.P50[1]))
	fmt.Fprintf(w, "| p99 ms%s | %s | %s | %s |\n", at, ms(s.P99[0]), ms(s.P99[1]), ratio(s.P99[0], s.P99[1]))
	fmt.Fprintf(w, "| CPU µs per call%s | %.0f | %.0f | %s |\n", at, s.CPU[0], s.CPU[1], ratio(s.CPU[0], s.CPU[1]))
	fmt.Fprintf(w, "| CPU µs per SIP request (%d client requests per call)%s | %.0f | %.0f | %s |\n", wr.Requests, at,
		s.CPU[0]/float64(wr.Requests), s.CPU[1]/float64(wr.Requests), ratio(s.CPU[0], s.CPU[1]))
}

// printSummary prints the workload's table and summary (Markdown) to out.
func printSummary(out io.Writer, wr *workloadResult) {
	fmt.Fprintf(out, "\n%s (%s):\n\n", wr.Title, wr.Key)
	writeTable(out, wr)
	fmt.Fprintln(out)
	writeSummary(out, wr)
}

// chartSVG draws p99 (log scale) against the offered rate, one line per
// server; a run with failures is a hollow marker with a cross, and the
// line to it dashed.
func chartSVG(wr *workloadResult, m meta) string {
	const W, H = 760.0, 460.0
	const left, right, top, bottom = 70.0, 170.0, 56.0, 60.0
	pw, ph := W-left-right, H-top-bottom
	colors := [2]string{"#1f77b4", "#d62728"}

	maxRate := 0
	for _, r := range wr.Rates {
		maxRate = max(maxRate, r)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range wr.Points {
		for _, p := range wr.Points[i] {
			if p.Run {
				v := math.Max(p.P99, 1)
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	ylo := math.Pow(10, math.Floor(math.Log10(lo)))
	yhi := math.Pow(10, math.Ceil(math.Log10(hi)))
	if yhi <= ylo {
		yhi = ylo * 10
	}
	x := func(rate int) float64 { return left + float64(rate)/float64(maxRate)*pw }
	y := func(v float64) float64 {
		v = math.Max(v, 1)
		return top + ph - (math.Log10(v)-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))*ph
	}
	esc := func(s string) string {
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="white"/>
<text x="%.0f" y="22" font-size="15" font-weight="bold">%s: p99, sipfed vs Kamailio</text>
<text x="%.0f" y="40" font-size="11" fill="#555">%s · %s · %d s per rate</text>
`, W, H, W, H, left, esc(wr.Title), left, esc(m.Date), esc(m.Machine), wr.Seconds)
	// Grid and y axis (decades, with 2 and 5 between).
	for d := ylo; d <= yhi*1.0001; d *= 10 {
		for _, k := range []float64{1, 2, 5} {
			v := d * k
			if v > yhi*1.0001 {
				break
			}
			stroke, label := "#eee", ""
			if k == 1 {
				stroke = "#ccc"
			}
			label = trimFloat(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, y(v), left+pw, y(v), stroke)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y(v)+4, label)
		}
	}
	// x ticks at the rates tried, from 0.
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">0</text>`+"\n", left, top+ph+16)
	lastLabel := left
	for _, r := range wr.Rates {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x(r), top, x(r), top+ph)
		if x(r)-lastLabel >= 34 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%d</text>`+"\n", x(r), top+ph+16, r)
			lastLabel = x(r)
		}
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered rate (%s)</text>`+"\n", left+pw/2, H-18, esc(wr.Unit))
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">p99 ms (log scale; under 1 ms drawn at 1)</text>`+"\n", top+ph/2)

	for i := range wr.Points {
		c := colors[i]
		var prevX, prevY float64
		have := false
		for _, p := range wr.Points[i] {
			if !p.Run {
				continue
			}
			px, py := x(p.Rate), y(p.P99)
			if have {
				dash := ""
				if !p.good() {
					dash = ` stroke-dasharray="5 4"`
				}
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", prevX, prevY, px, py, c, dash)
			}
			title := fmt.Sprintf("%s %d %s: p50 %s ms, p99 %s ms, %d ok, %d failed", serverNames[i], p.Rate, wr.Unit, ms(p.P50), ms(p.P99), p.OK, p.Failed)
			if p.good() {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s</title></circle>`+"\n", px, py, c, esc(title))
			} else {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="white" stroke="%s" stroke-width="2"><title>%s</title></circle>`+"\n", px, py, c, esc(title))
				fmt.Fprintf(&b, `<path d="M%.1f %.1fl6 6m0 -6l-6 6" stroke="%s" stroke-width="1.5"/>`+"\n", px-3, py-3, c)
			}
			prevX, prevY, have = px, py, true
		}
	}
	// Legend.
	lx, ly := left+pw+16, top+10
	for i, name := range serverNames {
		best := "none"
		if wr.Summary.Best[i] > 0 {
			best = fmt.Sprint(wr.Summary.Best[i])
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/><circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n",
			lx, ly+float64(i)*40, lx+24, ly+float64(i)*40, colors[i], lx+12, ly+float64(i)*40, colors[i])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+30, ly+float64(i)*40+4, name)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#555">max 0-fail: %s</text>`+"\n", lx+30, ly+float64(i)*40+18, best)
	}
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="white" stroke="#555" stroke-width="2"/><path d="M%.1f %.1fl6 6m0 -6l-6 6" stroke="#555" stroke-width="1.5"/>`+"\n",
		lx+12, ly+90, lx+9, ly+87)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10">run with failures</text>`+"\n", lx+30, ly+94)
	b.WriteString("</svg>\n")
	return b.String()
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
