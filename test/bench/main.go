// Command bench drives SIPp against `sipfed serve` at rising rates and
// reports the highest rate with 0 failed calls and its p99 response time.
// It starts and stops everything it uses (sipfed, its lab DNS,
// redis-server, SIPp), all on loopback, each run bounded in count and time.
//
//	go run ./test/bench [-mode register,call1,call2] [-rates 500,1000,...] [-call-rates 100,200,...] [-seconds 5]
//	go run ./test/bench -mode compare [-workloads register,call1,register-redis] [-out bench-results] [-quick]
//
// Modes:
//   - compare: sipfed and Kamailio 5.6 side by side in one sitting, with
//     the same SIPp scenarios, users and rates, alternating between the
//     two at every rate (see compare.go); writes results.md, results.json
//     and one SVG chart per workload to -out.
//   - replot: rewrites results.md and the charts in -out from its
//     results.json.
//   - register: REGISTER with digest auth, per store (-stores).
//   - call1: call setup through one proxy: alice@a.test calls bob@a.test
//     (INVITE, 407, ACK, INVITE with credentials, 180, 200, ACK, BYE, 200),
//     the callee a SIPp UAS registered at a.test.
//   - call2: the same call to bob@b.test through two federated proxies,
//     a.test finding b.test through `sipfed dns` (RFC 3263).
//   - cluster: REGISTER spread over three nodes of a.test sharing a Redis
//     Cluster (three masters, three replicas), one SIPp per node.
//
// For calls, the response time is the setup time: first INVITE sent to 200
// received, including the 407 round trip.
//
// With -target it starts nothing and measures the SIP server already
// listening there instead (REGISTER only; see scripts/bench-kamailio.sh),
// under -label.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

func main() {
	rates := flag.String("rates", "250,500,1000,1500,2000,3000,4000,5000", "REGISTER `rates` per second to try, in order")
	seconds := flag.Int("seconds", 5, "length of each run in `seconds`")
	bin := flag.String("sipfed", "bin/sipfed", "sipfed `binary`")
	stores := flag.String("stores", "memory,redis", "stores to measure")
	target := flag.String("target", "", "measure the SIP server at UDP `host:port` instead of sipfed; it must accept users u0001…u2000@a.test with passwords pw-uNNNN")
	label := flag.String("label", "external", "name of -target in the results")
	modes := flag.String("mode", "register", "what to measure, comma-separated: register, call1 (one proxy), call2 (two federated proxies), cluster (REGISTER spread over three nodes on a Redis Cluster), phone (one sipfed phone echoing many calls), soak (REGISTER at -soak-rate for -soak-for, heap and goroutines sampled), compare (sipfed and Kamailio side by side)")
	phoneCalls := flag.Int("phone-calls", 200, "calls the phone holds at once (phone)")
	flag.StringVar(&procName, "proc", "sipfed", "`name` of the server processes whose CPU time is reported per call (summed over all of them)")
	callRates := flag.String("call-rates", "100,250,500,1000,1500,2000,2500,3000", "call `rates` per second to try, in order (call1, call2)")
	workloads := flag.String("workloads", "register,call1,register-redis", "what -mode compare measures, comma-separated: register (memory), call1 (one proxy), register-redis")
	out := flag.String("out", "bench-results", "`directory` for -mode compare's results.md, results.json and SVG charts")
	quick := flag.Bool("quick", false, "2 short rates per workload, 2 s each (unless -rates, -call-rates or -seconds are given), to check the whole run works")
	kamailio := flag.String("kamailio", "kamailio", "Kamailio `binary` (-mode compare)")
	kamChildren := flag.Int("kamailio-children", 4, "Kamailio UDP worker `processes` (-mode compare)")
	kamShm := flag.Int("kamailio-shm", 1024, "Kamailio shared memory in `MB` (-mode compare)")
	soakRate := flag.Int("soak-rate", 10000, "REGISTER `rate` per second of -mode soak")
	soakFor := flag.Duration("soak-for", 5*time.Minute, "how long -mode soak keeps the load on")
	flag.StringVar(&profileDir, "profile", "", "write a CPU profile of each sipfed server for each rate into `directory` (register, call1, call2), e.g. for default.pgo")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rates"] {
			*rates = "200,500"
		}
		if !set["call-rates"] {
			*callRates = "20,50"
		}
		if !set["seconds"] {
			*seconds = 2
		}
		if !set["phone-calls"] {
			*phoneCalls = 20
		}
	}
	for _, mode := range strings.Split(*modes, ",") {
		var err error
		switch mode {
		case "register":
			err = run(*bin, *stores, *rates, *seconds, *target, *label)
		case "cluster":
			err = runCluster(*bin, *rates, *seconds)
		case "call1", "call2":
			if *target != "" {
				err = errors.New("-target measures REGISTER only")
				break
			}
			hops := 1
			if mode == "call2" {
				hops = 2
			}
			err = runCalls(*bin, hops, *callRates, *seconds)
		case "phone":
			err = runPhoneLoad(*bin, *phoneCalls, 40)
		case "soak":
			d := *soakFor
			if *quick {
				d = 30 * time.Second
			}
			err = soak(*bin, *out, *soakRate, d, 10*time.Second)
		case "replot":
			err = replot(*out)
		case "compare":
			err = runCompare(compareConfig{
				sipfed: *bin, kamailio: *kamailio, children: *kamChildren, shm: *kamShm,
				workloads: *workloads, rates: *rates, callRates: *callRates, seconds: *seconds, out: *out, quick: *quick,
			})
		default:
			err = fmt.Errorf("unknown -mode %q", mode)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

// scenario is a SIPp client scenario and what its calls are called.
type scenario struct {
	file string // under test/interop/testdata
	unit string // in the RESULT line, e.g. "REGISTER/s"
}

var (
	registerScenario = scenario{"register.xml", "REGISTER/s"}
	callScenario     = scenario{"uac_call.xml", "calls/s"}
)

type result struct {
	rate      int
	ok, fail  int
	p50, p99  float64
	completed bool
	sent      float64 // calls per second SIPp completed, start to finish of its run
	cpu       float64 // server CPU µs per call
	why       string  // SIPp's failure counters, when some calls failed
	times     []float64
}

// procName names the server processes whose CPU time is measured.
var procName string

// header is the column line of every table.
const header = "%-8s %8s %8s %8s %10s %10s %9s %10s\n"

func printHeader(first string) {
	fmt.Printf(header, first, "rate/s", "ok", "failed", "p50 ms", "p99 ms", "done/s", "cpu µs")
}

// cpuSample is the user and system CPU time of every process named name,
// by pid, from /proc (clock ticks of 10 ms).
func cpuSample(name string) map[int]int64 {
	return procCPUTicks(func(_, _ int, comm string) bool { return comm == name })
}

// cpuSince is the CPU time in seconds that the processes of now spent
// since before: a process that has ended since (a server of an earlier
// run, still exiting when before was taken) does not count, so the
// figure cannot go negative.
func cpuSince(before, now map[int]int64) float64 {
	var ticks int64
	for pid, t := range now {
		ticks += t - before[pid]
	}
	return float64(ticks) / 100
}

// treeCPUSeconds sums the user and system CPU time of the processes pids
// and of their children (Kamailio's workers are children of its main
// process), so that other servers running on the machine do not count.
func treeCPUSeconds(pids ...int) float64 {
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	return procCPUSeconds(func(pid, ppid int, _ string) bool { return want[pid] || want[ppid] })
}

// procCPUSeconds sums the user and system CPU time, from /proc (clock
// ticks of 10 ms), of the processes that match says to count.
func procCPUSeconds(match func(pid, ppid int, comm string) bool) float64 {
	var ticks int64
	for _, t := range procCPUTicks(match) {
		ticks += t
	}
	return float64(ticks) / 100
}

// procCPUTicks is the user and system CPU time in clock ticks, by pid, of
// the processes that match says to count.
func procCPUTicks(match func(pid, ppid int, comm string) bool) map[int]int64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	ticks := map[int]int64{}
	for _, f := range dirs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(data)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 13 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(fields[1])
		if !match(pid, ppid, s[open+1:close]) {
			continue
		}
		u, _ := strconv.ParseInt(fields[11], 10, 64)
		k, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks[pid] = u + k
	}
	return ticks
}

// registerUsers writes the SIPp injection file of the REGISTER
// scenarios (users u0001…u2000@a.test, passwords pw-uNNNN) into work and
// returns it with the AORs and their passwords, one per line, for `user
// add --password-stdin`.
func registerUsers(work string) (inf string, aors []string, passwords string, err error) {
	const users = 2000
	inf = filepath.Join(work, "users.csv")
	var csv, pw strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := 1; i <= users; i++ {
		u := fmt.Sprintf("u%04d", i)
		fmt.Fprintf(&csv, "%s;pw-%s;a.test\n", u, u)
		fmt.Fprintf(&pw, "pw-%s\n", u)
		aors = append(aors, u+"@a.test")
	}
	return inf, aors, pw.String(), os.WriteFile(inf, []byte(csv.String()), 0o600)
}

func run(bin, stores, rates string, seconds int, target, label string) error {
	work, err := os.MkdirTemp("", "sipfed-bench")
	if err != nil {
		return err
	}
	defer func() {
		if os.Getenv("BENCH_KEEP") == "" {
			os.RemoveAll(work)
		} else {
			fmt.Println("kept", work)
		}
	}()
	inf, aors, pw, err := registerUsers(work)
	if err != nil {
		return err
	}
	fmt.Printf("REGISTER with digest auth (401 + 200 per call), SIPp 3.6 over UDP on loopback, %d s per rate, %d users\n", seconds, len(aors))
	printHeader("store")
	if target != "" {
		return measure(work, registerScenario, label, target, inf, rates, seconds)
	}
	for _, store := range strings.Split(stores, ",") {
		var serveArgs, userArgs []string
		var redisCmd *exec.Cmd
		switch store {
		case "memory":
			f := filepath.Join(work, "users.txt")
			serveArgs = []string{"--users", f}
			userArgs = []string{"--users", f}
		case "redis":
			port := freePort()
			redisCmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", work)
			if err := redisCmd.Start(); err != nil {
				return fmt.Errorf("redis-server: %w", err)
			}
			if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				return err
			}
			url := fmt.Sprintf("redis://127.0.0.1:%d", port)
			serveArgs = []string{"--store", url, "--users", "redis"}
			userArgs = []string{"--store", url}
		default:
			return fmt.Errorf("unknown store %q", store)
		}
		add := exec.Command(bin, append(append([]string{"user", "add", "--password-stdin"}, userArgs...), aors...)...)
		add.Stdin = strings.NewReader(pw)
		if out, err := add.CombinedOutput(); err != nil {
			return fmt.Errorf("user add: %v: %s", err, out)
		}
		port := freePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// SIPp sends from one address: no per-source rate limit.
		profileAddrs = nil // one server per store, one after the other
		srv := exec.Command(bin, append(append([]string{"serve", "--domain", "a.test", "--listen", "udp:" + addr, "--log-level", "error", "--min-expires", "1", "--pike-rate", "0"}, serveArgs...), profileFlags()...)...)
		srv.Stderr = os.Stderr
		if err := srv.Start(); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		if err := measure(work, registerScenario, store, addr, inf, rates, seconds); err != nil {
			srv.Process.Kill()
			return err
		}
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
		if redisCmd != nil {
			redisCmd.Process.Kill()
			redisCmd.Wait()
		}
	}
	return nil
}

// measure runs SIPp against addr at each rate in turn until one has
// failures, printing a row per rate and the RESULT line under label.
func measure(work string, sc scenario, label, addr, inf, rates string, seconds int) error {
	return measureSpread(work, sc, label, []string{addr}, []string{inf}, rates, seconds)
}

// measureSpread is measure with the load spread evenly over several
// servers (addrs[i] gets its users from infs[i]), one SIPp each, all at
// once; the row sums their calls and merges their response times.
func measureSpread(work string, sc scenario, label string, addrs, infs []string, rates string, seconds int) error {
	best := result{}
	for _, rs := range strings.Split(rates, ",") {
		rate, err := strconv.Atoi(rs)
		if err != nil {
			return fmt.Errorf("rate %q: %w", rs, err)
		}
		cpu0 := cpuSample(procName)
		prof := profile(fmt.Sprintf("%s-%d", label, rate), seconds)
		r, err := sippRunSpread(work, sc.file, addrs, infs, rate, seconds)
		if err := prof(); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		if n := r.ok + r.fail; n > 0 {
			r.cpu = cpuSince(cpu0, cpuSample(procName)) / float64(n) * 1e6
		}
		fmt.Printf("%-8s %8d %8d %8d %10s %10s %9.0f %10.0f\n", label, rate, r.ok, r.fail, ms(r.p50), ms(r.p99), r.sent, r.cpu)
		if r.why != "" {
			fmt.Printf("         SIPp: %s\n", r.why)
		}
		if r.fail > 0 || !r.completed || !keptUp(rate, r.sent) {
			break
		}
		best = r
	}
	if best.rate == 0 {
		fmt.Printf("RESULT %s: no rate without failures\n", label)
		return nil
	}
	fmt.Printf("RESULT %s: highest rate with 0 failures %d %s, p99 %s ms\n", label, best.rate, sc.unit, ms(best.p99))
	return nil
}

// profileDir is -profile; profileAddrs are the --http addresses of the
// servers being profiled, one per profileFlags.
var (
	profileDir   string
	profileAddrs []string
)

// profileFlags returns the flags that open the pprof endpoint of each
// server a run starts, when -profile is set.
func profileFlags() []string {
	if profileDir == "" {
		return nil
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	profileAddrs = append(profileAddrs, addr)
	return []string{"--http", addr}
}

// profile starts taking a CPU profile of every server for most of a run
// of seconds and returns a function that waits for them and writes them
// to profileDir/name.pprof (the first server; name-2.pprof and so on for
// the others, e.g. b.test's proxy in call2). Without -profile it does
// nothing.
func profile(name string, seconds int) func() error {
	d := max(seconds-1, 1)
	done := make(chan error, len(profileAddrs))
	for i, addr := range profileAddrs {
		file := name + ".pprof"
		if i > 0 {
			file = fmt.Sprintf("%s-%d.pprof", name, i+1)
		}
		go func() {
			time.Sleep(500 * time.Millisecond)
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, d))
			if err != nil {
				done <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				done <- fmt.Errorf("profile: %s", resp.Status)
				return
			}
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				err = os.MkdirAll(profileDir, 0o755)
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(profileDir, file), b, 0o644)
			}
			done <- err
		}()
	}
	return func() error {
		var first error
		for range profileAddrs {
			if err := <-done; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

// ms formats a SIPp response time: SIPp counts whole milliseconds, so 0
// means under one.
func ms(v float64) string {
	if v < 1 {
		return "<1"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// sippRun runs rate×seconds calls of the client scenario at rate per
// second and reads SIPp's counters and per-call response times.
func sippRun(work, file, addr, inf string, rate, seconds int) (result, error) {
	return sippRunFrom(work, file, addr, inf, rate, seconds, 0)
}

// sippRunFrom is sippRun with SIPp on UDP port (0: any free one).
func sippRunFrom(work, file, addr, inf string, rate, seconds, port int) (result, error) {
	return sippRunOpts(work, file, addr, inf, rate, seconds, port, "127.0.0.1")
}

// sippRunOpts is sippRunFrom with SIPp on address ip.
func sippRunOpts(work, file, addr, inf string, rate, seconds, port int, ip string) (result, error) {
	if port == 0 {
		port = freePort()
	}
	dir, err := os.MkdirTemp(work, "run")
	if err != nil {
		return result{}, err
	}
	n := rate * seconds
	// SIPp runs in dir, so the scenario path must not be relative.
	scenario, err := filepath.Abs(filepath.Join("test/interop/testdata", file))
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+40)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", addr, "-sf", scenario, "-inf", inf,
		"-i", ip, "-p", strconv.Itoa(port), "-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-rp", "1000",
		"-l", strconv.Itoa(rate*2), "-buff_size", "4194304", "-timeout", strconv.Itoa(seconds+30)+"s",
		"-recv_timeout", "5000", "-nostdin", "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1", "-trace_err")
	cmd.Dir = dir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return result{}, fmt.Errorf("sipp: %v: %s", err, out)
	}
	r := result{rate: rate, completed: ctx.Err() == nil}
	r.ok, r.fail = testenv.SIPpCounts(string(out))
	r.sent = float64(r.ok+r.fail) / elapsed.Seconds()
	if r.ok+r.fail == 0 {
		return r, fmt.Errorf("sipp made no call: %s", out)
	}
	if r.fail > 0 {
		r.why = failReasons(dir)
	}
	times, err := rtts(dir)
	if err != nil {
		return r, err
	}
	r.times = times
	r.percentiles()
	return r, nil
}

// percentiles sets p50 and p99 from times.
func (r *result) percentiles() {
	if len(r.times) > 0 {
		sort.Float64s(r.times)
		r.p50 = r.times[len(r.times)/2]
		r.p99 = r.times[min(len(r.times)-1, len(r.times)*99/100)]
	}
}

// sippRunSpread runs one SIPp per server at once, rate spread evenly, and
// merges their results.
func sippRunSpread(work, file string, addrs, infs []string, rate, seconds int) (result, error) {
	if len(addrs) == 1 {
		return sippRun(work, file, addrs[0], infs[0], rate, seconds)
	}
	rs := make([]result, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i := range addrs {
		wg.Go(func() { rs[i], errs[i] = sippRun(work, file, addrs[i], infs[i], rate/len(addrs), seconds) })
	}
	wg.Wait()
	all := result{rate: rate, completed: true}
	var whys []string
	for i, r := range rs {
		if errs[i] != nil {
			return all, errs[i]
		}
		all.ok += r.ok
		all.fail += r.fail
		all.sent += r.sent
		all.completed = all.completed && r.completed
		all.times = append(all.times, r.times...)
		if r.why != "" {
			whys = append(whys, fmt.Sprintf("server %d: %s", i+1, r.why))
		}
	}
	all.why = strings.Join(whys, "; ")
	all.percentiles()
	return all, nil
}

// failReasons sums SIPp's Failed* counters (the cumulative columns of
// its -trace_stat file) that are not zero: "FailedMaxUDPRetrans=12 …".
func failReasons(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "*_.csv"))
	if len(files) == 0 {
		return ""
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return ""
	}
	names, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
	var out []string
	for i, name := range names {
		if strings.HasPrefix(name, "Failed") && strings.HasSuffix(name, "(C)") && i < len(last) && last[i] != "0" {
			out = append(out, strings.TrimSuffix(name, "(C)")+"="+last[i])
		}
	}
	// The unexpected messages, by status line (SIPp's error log quotes
	// each one after the line that says it aborted the call).
	if logs, _ := filepath.Glob(filepath.Join(dir, "*_errors.log")); len(logs) > 0 {
		if data, err := os.ReadFile(logs[0]); err == nil {
			seen := map[string]int{}
			for _, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "SIP/2.0 ") {
					seen[line]++
				}
			}
			for l, n := range seen {
				out = append(out, fmt.Sprintf("%q×%d", l, n))
			}
		}
	}
	return strings.Join(out, " ")
}

// rtts reads the response times (ms) from SIPp's *_rtt.csv, whose
// columns are Date_ms;response_time_ms;rtd_no (the column is found by its
// name: the third one is the timer's name or number, not a time).
func rtts(dir string) ([]float64, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	var out []float64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		lines := strings.Split(string(data), "\n")
		col := -1
		for i, name := range strings.Split(strings.TrimSpace(lines[0]), ";") {
			if name == "response_time_ms" {
				col = i
			}
		}
		if col < 0 {
			return nil, fmt.Errorf("%s: no response_time_ms column in %q", f, lines[0])
		}
		for _, line := range lines[1:] {
			cols := strings.Split(line, ";")
			if len(cols) <= col {
				continue
			}
			v, err := strconv.ParseFloat(cols[col], 64)
			if err == nil {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitTCP(addr string) error {
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening", addr)
}

// runCalls measures call setup through one proxy (hops 1: alice@a.test →
// bob@a.test) or two federated proxies (hops 2: alice@a.test → bob@b.test,
// b.test found through the lab DNS). The callee is one SIPp UAS
// (uas_answer.xml) whose address is registered as bob's contact.
func runCalls(bin string, hops int, rates string, seconds int) error {
	work, err := os.MkdirTemp("", "sipfed-bench-calls")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var procs []*exec.Cmd
	defer func() { stopAll(procs) }()
	start := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		procs = append(procs, cmd)
		return nil
	}
	pa, pb, pdns := freePort(), freePort(), freePort()
	zones := map[string]int{"a.test": pa, "b.test": pb}
	dnsArgs := []string{"dns", "--listen", fmt.Sprintf("127.0.0.1:%d", pdns)}
	for domain, port := range zones {
		f := filepath.Join(work, domain+".zone")
		if err := os.WriteFile(f, []byte(labZone(domain, port)), 0o600); err != nil {
			return err
		}
		dnsArgs = append(dnsArgs, "--zone", f)
	}
	if err := start(bin, dnsArgs...); err != nil {
		return err
	}
	if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", pdns)); err != nil {
		return err
	}
	users := map[string][]string{
		"a.test": {"alice@a.test", "pw-alice", "bob@a.test", "pw-bob"},
		"b.test": {"bob@b.test", "pw-bob"},
	}
	callee := "a.test"
	domains := []string{"a.test"}
	if hops == 2 {
		callee = "b.test"
		domains = append(domains, "b.test")
	}
	for _, domain := range domains {
		file := filepath.Join(work, domain+"-users.txt")
		args := []string{"user", "add", "--users", file, "--password-stdin"}
		var pw strings.Builder
		for i := 0; i < len(users[domain]); i += 2 {
			args = append(args, users[domain][i])
			pw.WriteString(users[domain][i+1] + "\n")
		}
		add := exec.Command(bin, args...)
		add.Stdin = strings.NewReader(pw.String())
		if out, err := add.CombinedOutput(); err != nil {
			return fmt.Errorf("user add: %v: %s", err, out)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", zones[domain])
		if err := start(bin, append([]string{"serve", "--domain", domain, "--listen", "udp:" + addr, "--listen", "tcp:" + addr,
			"--dns", fmt.Sprintf("127.0.0.1:%d", pdns), "--users", file, "--log-level", "error", "--pike-rate", "0"}, profileFlags()...)...); err != nil {
			return err
		}
		if err := waitTCP(addr); err != nil {
			return err
		}
	}

	// The callee: one SIPp UAS for every rate, stopped at the end.
	uasPort := freePort()
	uasScenario, err := filepath.Abs("test/interop/testdata/uas_answer.xml")
	if err != nil {
		return err
	}
	if err := start("sipp", "-sf", uasScenario, "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort),
		"-buff_size", "4194304", "-nostdin", "-timeout", "3600s"); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	reg := filepath.Join(work, "bob.csv")
	if err := os.WriteFile(reg, []byte(fmt.Sprintf("SEQUENTIAL\nbob;pw-bob;%s;%d\n", callee, uasPort)), 0o600); err != nil {
		return err
	}
	if r, err := sippRun(work, "register_contact.xml", fmt.Sprintf("127.0.0.1:%d", zones[callee]), reg, 1, 1); err != nil || r.ok != 1 {
		return fmt.Errorf("registering the SIPp UAS as bob@%s: %v (%d ok)", callee, err, r.ok)
	}

	inf := filepath.Join(work, "alice.csv")
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\nalice;pw-alice;a.test;bob;"+callee+"\n"), 0o600); err != nil {
		return err
	}
	label := "call1"
	what := "one proxy (alice@a.test → bob@a.test)"
	if hops == 2 {
		label = "call2"
		what = "two federated proxies (alice@a.test → a.test → DNS → b.test → bob@b.test)"
	}
	fmt.Printf("\nCall setup through %s: INVITE, 407, ACK, INVITE with credentials, 180, 200 (setup time), ACK, BYE, 200; SIPp 3.6 over UDP on loopback, %d s per rate, memory store\n", what, seconds)
	printHeader("path")
	return measure(work, callScenario, label, fmt.Sprintf("127.0.0.1:%d", pa), inf, rates, seconds)
}

// labZone is the RFC 3263 zone of a lab domain whose proxy listens on
// 127.0.0.1:port (UDP and TCP), the shape of deploy/lab/*.zone.
func labZone(domain string, port int) string {
	return fmt.Sprintf(`$ORIGIN %[1]s.
$TTL 300
@ IN SOA ns.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 60
@ IN NS ns.%[1]s.
ns IN A 127.0.0.1
@ IN NAPTR 10 10 "S" "SIP+D2T" "" _sip._tcp.%[1]s.
@ IN NAPTR 20 10 "S" "SIP+D2U" "" _sip._udp.%[1]s.
_sip._tcp IN SRV 10 10 %[2]d sip.%[1]s.
_sip._udp IN SRV 10 10 %[2]d sip.%[1]s.
sip IN A 127.0.0.1
`, domain, port)
}

// stopAll stops the processes a run started: SIGTERM (SIPp, which has
// nothing to save, is killed), then a kill after 10 s.
func stopAll(procs []*exec.Cmd) {
	for _, p := range procs {
		if filepath.Base(p.Path) == "sipp" {
			p.Process.Kill()
		} else {
			p.Process.Signal(syscall.SIGTERM)
		}
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}
