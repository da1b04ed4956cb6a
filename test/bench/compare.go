package main

// -mode compare: sipfed and Kamailio 5.6 measured side by side in one
// sitting. For each workload both servers run at once (on their own
// ports, each with its own SIPp client port and, for calls, its own SIPp
// callee), and every rate is run against both, one right after the other,
// the order swapped at every rate, so that machine drift (a CI job, a
// thermal limit) hits both. A server that failed at a rate is not run at
// the higher ones; the workload ends when both have failed or the rates
// run out.
//
// Workloads:
//   - register: REGISTER with digest auth (401, then 200), 2000 users;
//     sipfed with its memory store, Kamailio with usrloc in memory
//     (db_mode 0) and auth_db on a db_text subscriber table of HA1s
//     (deploy/kamailio/kamailio.cfg.tmpl).
//   - call1: alice@a.test calls bob@a.test through one proxy with proxy
//     auth (INVITE, 407, ACK, INVITE with credentials, 180, 200, ACK, BYE),
//     the callee a SIPp UAS registered at the proxy
//     (deploy/kamailio/proxy.cfg.tmpl for Kamailio).
//   - register-redis: as register, bindings in Redis: sipfed --store
//     redis://, Kamailio usrloc db_mode 3 (DB only) through db_redis. Each
//     server has its own redis-server, whose CPU time counts as the
//     server's. Credentials stay in a local file for both (sipfed's users
//     file, Kamailio's db_text), so only the location store differs from
//     register.
//
// Before measuring, each server must refuse wrong passwords and accept
// the right ones (the baseline must really authenticate).

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type compareConfig struct {
	sipfed, kamailio string
	children, shm    int
	workloads        string
	rates, callRates string
	seconds          int
	out              string
	quick            bool
}

// servers are always in this order: index 0 sipfed, 1 Kamailio.
var serverNames = [2]string{"sipfed", "Kamailio"}

// workload describes one comparison.
type workload struct {
	Key         string `json:"key"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Unit        string `json:"unit"`
	Requests    int    `json:"requests_per_call"` // requests the client sends per call (for CPU per request)
	sc          scenario
	inf         string // SIPp injection file
}

// point is one SIPp run of one server at one rate.
type point struct {
	Rate      int     `json:"rate"`
	Run       bool    `json:"run"` // false: skipped, the server had failed at a lower rate
	OK        int     `json:"ok"`
	Failed    int     `json:"failed"`
	Completed bool    `json:"completed"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Done      float64 `json:"done_per_s"`
	CPU       float64 `json:"cpu_us_per_call"`
	Busy      float64 `json:"host_busy_pct"` // whole machine, during the run
	Load      float64 `json:"loadavg1"`      // 1-minute load average after the run
	Exited    bool    `json:"exited,omitempty"`
}

// good reports that the server passed at this rate: every call succeeded
// and it kept up (keptUp).
func (p point) good() bool {
	return p.Run && p.Failed == 0 && p.Completed && p.OK > 0 && !p.Exited && keptUp(p.Rate, p.Done)
}

// keptUp reports that calls completed at no less than 90 % of the offered
// rate: a server that answers every call but only after a growing queue
// (seconds of p99) has not sustained that rate, though nothing failed.
func keptUp(offered int, done float64) bool { return done >= 0.9*float64(offered) }

type workloadResult struct {
	workload
	Rates   []int       `json:"rates"`
	Seconds int         `json:"seconds_per_rate"`
	Points  [2][]point  `json:"points"` // [server][rate index]
	Servers [2]string   `json:"servers"`
	Notes   []string    `json:"notes,omitempty"`
	Summary summaryData `json:"summary"`
}

// summaryData is what results.md's summary table shows.
type summaryData struct {
	Best       [2]int `json:"highest_rate_0_failures"` // 0: none
	Common     int    `json:"common_rate"`             // highest rate both passed (0: none)
	P50, P99   [2]float64
	CPU        [2]float64
	Done       [2]float64
	HaveCommon bool
}

// a running server under test.
type running struct {
	addr     string
	pids     []int // CPU time counted: these processes and their children
	sippPort int   // the SIPp client's port, the same for every rate
}

func runCompare(cfg compareConfig) error {
	for _, t := range []string{"sipp", cfg.kamailio, cfg.sipfed} {
		if _, err := exec.LookPath(t); err != nil {
			if _, err2 := os.Stat(t); err2 != nil {
				return fmt.Errorf("%s missing (scripts/bench-kamailio.sh installs Kamailio; make build builds sipfed): %v", t, err)
			}
		}
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	meta := machineInfo(cfg)
	fmt.Printf("sipfed vs Kamailio, %s\n%s\n", meta.Date, meta.Machine)
	var results []*workloadResult
	var failed []string
	for _, key := range strings.Split(cfg.workloads, ",") {
		wr, err := compareWorkload(cfg, strings.TrimSpace(key))
		if wr != nil {
			results = append(results, wr)
			printSummary(os.Stdout, wr)
		}
		if err != nil {
			// A workload that cannot run (e.g. db_redis missing) does not
			// stop the others; the run fails at the end.
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", key, err)
			failed = append(failed, fmt.Sprintf("%s: %v", key, err))
		}
		// Write after every workload: a long run interrupted later keeps
		// what it measured.
		if len(results) > 0 {
			meta.Errors = failed
			meta.LoadEnd = loadavgs()
			if err := writeReport(cfg.out, meta, results); err != nil {
				return err
			}
		}
	}
	if len(results) > 0 {
		abs, _ := filepath.Abs(cfg.out)
		fmt.Printf("\nwrote %s/results.md, results.json and %d SVG charts\n", abs, len(results))
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d workload(s) failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("rate %q", f)
		}
		out = append(out, r)
	}
	return out, nil
}

func compareWorkload(cfg compareConfig, key string) (*workloadResult, error) {
	work, err := os.MkdirTemp("", "sipfed-bench-compare")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// The servers' logs (errors only, unless one crashed) end up next to
	// the results, after the servers stopped.
	defer func() {
		for _, name := range []string{"sipfed", "kamailio"} {
			if data, err := os.ReadFile(filepath.Join(work, name+".log")); err == nil {
				os.WriteFile(filepath.Join(cfg.out, key+"-"+name+".log"), data, 0o644)
			}
		}
	}()
	var procs []*exec.Cmd
	defer func() { stopAll(procs) }()
	start := func(logName, name string, args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(name, args...)
		// Output to a log in the work dir: Kamailio and redis-server
		// are chatty; shown when something goes wrong.
		f, err := os.Create(filepath.Join(work, logName+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f.Close()
		procs = append(procs, cmd)
		return cmd, nil
	}
	logTail := func(logName string) string {
		data, _ := os.ReadFile(filepath.Join(work, logName+".log"))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		return strings.Join(lines[max(0, len(lines)-20):], "\n")
	}

	w := workload{Key: key}
	var rateList string
	switch key {
	case "register":
		w.Title = "REGISTER with digest auth, memory store"
		w.Description = "SIPp REGISTER, 401, REGISTER with credentials, 200, 2000 users; sipfed memory store; Kamailio usrloc in memory (db_mode 0), auth_db on a db_text subscriber table of HA1s."
		w.Unit, w.Requests, w.sc, rateList = "REGISTER/s", 2, registerScenario, cfg.rates
	case "register-redis":
		w.Title = "REGISTER with digest auth, bindings in Redis"
		w.Description = "As register, bindings in Redis (one redis-server 7 per server, its CPU counted as the server's): sipfed --store redis://; Kamailio usrloc db_mode 3 (DB only) through db_redis. Credentials from a local file for both."
		w.Unit, w.Requests, w.sc, rateList = "REGISTER/s", 2, registerScenario, cfg.rates
	case "call1":
		w.Title = "Call through one proxy with proxy auth"
		w.Description = "SIPp INVITE, 407, ACK, INVITE with credentials, 180, 200, ACK, BYE, 200 through one proxy to a SIPp UAS registered there as bob; response time = setup (first INVITE to 200). Kamailio: registrar + proxy_authorize + record_route + lookup + t_relay (tm)."
		w.Unit, w.Requests, w.sc, rateList = "calls/s", 5, callScenario, cfg.callRates
	default:
		return nil, fmt.Errorf("unknown workload %q (register, call1, register-redis)", key)
	}
	rates, err := parseRates(rateList)
	if err != nil {
		return nil, err
	}
	wr := &workloadResult{workload: w, Rates: rates, Seconds: cfg.seconds, Servers: serverNames}
	for i := range wr.Points {
		wr.Points[i] = make([]point, len(rates))
		for j, r := range rates {
			wr.Points[i][j].Rate = r
		}
	}

	// The same users and passwords for both servers.
	const users = 2000
	names := []string{"alice", "bob"}
	for i := 1; i <= 20; i++ {
		names = append(names, fmt.Sprintf("chk%02d", i)) // authCheck's
	}
	for i := 1; i <= users; i++ {
		names = append(names, fmt.Sprintf("u%04d", i))
	}
	userFile := filepath.Join(work, "users.txt")
	{
		var pw strings.Builder
		args := []string{"user", "add", "--users", userFile, "--password-stdin"}
		for _, n := range names {
			args = append(args, n+"@a.test")
			pw.WriteString("pw-" + n + "\n")
		}
		add := exec.Command(cfg.sipfed, args...)
		add.Stdin = strings.NewReader(pw.String())
		if out, err := add.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("user add: %v: %s", err, out)
		}
	}
	dbDir := filepath.Join(work, "db")
	if err := writeDBText(dbDir, "a.test", names); err != nil {
		return nil, err
	}
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	if key == "call1" {
		csv.WriteString("alice;pw-alice;a.test;bob;a.test\n")
	} else {
		for i := 1; i <= users; i++ {
			fmt.Fprintf(&csv, "u%04d;pw-u%04d;a.test\n", i, i)
		}
	}
	w.inf = filepath.Join(work, "clients.csv")
	wr.workload.inf = w.inf
	if err := os.WriteFile(w.inf, []byte(csv.String()), 0o600); err != nil {
		return nil, err
	}

	var srv [2]running
	if key == "register-redis" {
		for i := range srv {
			port := freePort()
			cmd, err := start(fmt.Sprintf("redis%d", i), "redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
				"--save", "", "--appendonly", "no", "--dir", work)
			if err != nil {
				return wr, err
			}
			if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				return wr, err
			}
			srv[i].pids = append(srv[i].pids, cmd.Process.Pid)
			srv[i].addr = fmt.Sprintf("redis://127.0.0.1:%d", port) // replaced below by the SIP address
		}
	}

	// sipfed.
	{
		port := freePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// SIPp sends from one address: no per-source rate limit; no DNS
		// (one domain), as phone.go.
		args := []string{"serve", "--domain", "a.test", "--listen", "udp:" + addr, "--listen", "tcp:" + addr,
			"--log-level", "error", "--min-expires", "1", "--pike-rate", "0", "--dns", "127.0.0.1:1", "--users", userFile}
		if key == "register-redis" {
			args = append(args, "--store", srv[0].addr)
		}
		cmd, err := start("sipfed", cfg.sipfed, args...)
		if err != nil {
			return wr, err
		}
		if err := waitTCP(addr); err != nil {
			return wr, fmt.Errorf("sipfed: %v\n%s", err, logTail("sipfed"))
		}
		srv[0].addr = addr
		srv[0].pids = append(srv[0].pids, cmd.Process.Pid)
	}

	// Kamailio.
	{
		port := freePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		tmpl := "deploy/kamailio/kamailio.cfg.tmpl"
		if key == "call1" {
			tmpl = "deploy/kamailio/proxy.cfg.tmpl"
		}
		data, err := os.ReadFile(tmpl)
		if err != nil {
			return wr, err
		}
		secret := make([]byte, 16)
		rand.Read(secret)
		redisURL := "redis://127.0.0.1:1/0"
		if key == "register-redis" {
			redisURL = srv[1].addr + "/0"
		}
		conf := strings.NewReplacer("@PORT@", strconv.Itoa(port), "@DBDIR@", dbDir, "@CHILDREN@", strconv.Itoa(cfg.children),
			"@SECRET@", hex.EncodeToString(secret), "@REDISURL@", redisURL).Replace(string(data))
		cfgFile := filepath.Join(work, "kamailio.cfg")
		if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
			return wr, err
		}
		runDir := filepath.Join(work, "kamailio-run")
		os.MkdirAll(runDir, 0o755)
		// -DD: foreground (the workers are still forked); -E: log to
		// stderr; -m: shared memory for tm's transactions at high rates.
		args := []string{"-f", cfgFile, "-DD", "-E", "-Y", runDir, "-m", strconv.Itoa(cfg.shm), "-M", "8"}
		if key == "register-redis" {
			args = append(args, "-A", "WITH_REDIS")
		}
		check := exec.Command(cfg.kamailio, append([]string{"-c"}, args...)...)
		if out, err := check.CombinedOutput(); err != nil {
			return wr, fmt.Errorf("kamailio -c: %v\n%s", err, out)
		}
		cmd, err := start("kamailio", cfg.kamailio, args...)
		if err != nil {
			return wr, err
		}
		if err := waitOptions(addr, cmd, 10*time.Second); err != nil {
			return wr, fmt.Errorf("kamailio: %v\n%s", err, logTail("kamailio"))
		}
		srv[1].addr = addr
		srv[1].pids = append(srv[1].pids, cmd.Process.Pid)
	}
	for i := range srv {
		srv[i].sippPort = freePort()
	}

	// Calls: a SIPp UAS per server, registered there as bob.
	if key == "call1" {
		uas, err := filepath.Abs("test/interop/testdata/uas_answer.xml")
		if err != nil {
			return wr, err
		}
		for i := range srv {
			port := freePort()
			if _, err := start(fmt.Sprintf("uas%d", i), "sipp", "-sf", uas, "-i", "127.0.0.1", "-p", strconv.Itoa(port),
				"-buff_size", "4194304", "-nostdin", "-timeout", "3600s"); err != nil {
				return wr, err
			}
			time.Sleep(300 * time.Millisecond)
			reg := filepath.Join(work, fmt.Sprintf("bob%d.csv", i))
			os.WriteFile(reg, []byte(fmt.Sprintf("SEQUENTIAL\nbob;pw-bob;a.test;%d\n", port)), 0o600)
			if r, err := sippRun(work, "register_contact.xml", srv[i].addr, reg, 1, 1); err != nil || r.ok != 1 {
				return wr, fmt.Errorf("registering the SIPp UAS as bob@a.test at %s: %v (%d ok)", serverNames[i], err, r.ok)
			}
		}
	}

	// Both must authenticate for real.
	for i := range srv {
		if err := authCheck(work, w, srv[i].addr); err != nil {
			return wr, fmt.Errorf("%s: %v", serverNames[i], err)
		}
	}
	fmt.Printf("\n== %s (%s) ==\n%s\nSIPp 3.6 over UDP on loopback, %d s per rate; %s and %s alternate at every rate; auth checked: wrong passwords refused, right ones accepted\n",
		w.Title, key, w.Description, cfg.seconds, serverNames[0], serverNames[1])
	fmt.Printf("%-9s %7s %7s %7s %7s %7s %8s %9s %7s\n", "server", "rate/s", "ok", "failed", "p50 ms", "p99 ms", "done/s", "cpu µs", "busy %")

	var dead [2]bool
	for j, rate := range rates {
		order := []int{0, 1}
		if j%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			if dead[i] {
				continue
			}
			for _, p := range srv[i].pids {
				if !alive(p) {
					return wr, fmt.Errorf("%s exited during the run\n%s", serverNames[i], logTail(map[int]string{0: "sipfed", 1: "kamailio"}[i]))
				}
			}
			cpu0 := treeCPUSeconds(srv[i].pids...)
			busy0 := hostCPU()
			r, err := sippRunFrom(work, w.sc.file, srv[i].addr, w.inf, rate, cfg.seconds, srv[i].sippPort)
			if err != nil {
				return wr, fmt.Errorf("%s at %d/s: %v", serverNames[i], rate, err)
			}
			pt := point{Rate: rate, Run: true, OK: r.ok, Failed: r.fail, Completed: r.completed, P50: r.p50, P99: r.p99, Done: r.sent, Busy: hostCPU().busySince(busy0), Load: loadavg()}
			for _, p := range srv[i].pids {
				if !alive(p) {
					pt.Exited = true
				}
			}
			if n := r.ok + r.fail; n > 0 && !pt.Exited {
				pt.CPU = (treeCPUSeconds(srv[i].pids...) - cpu0) / float64(n) * 1e6
			}
			if pt.Exited {
				fmt.Printf("%s EXITED during the run at %d %s; its log: %s\n", serverNames[i], rate, w.Unit,
					filepath.Join(cfg.out, key+"-"+strings.ToLower(serverNames[i])+".log"))
				wr.Notes = append(wr.Notes, fmt.Sprintf("%s exited (crashed) during the run at %d %s; see %s-%s.log.", serverNames[i], rate, w.Unit, key, strings.ToLower(serverNames[i])))
			}
			wr.Points[i][j] = pt
			fmt.Printf("%-9s %7d %7d %7d %7s %7s %8.0f %9.0f %7.0f\n", serverNames[i], rate, pt.OK, pt.Failed, ms(pt.P50), ms(pt.P99), pt.Done, pt.CPU, pt.Busy)
			if !pt.good() {
				dead[i] = true
			}
			// Let retransmissions and transactions of this run end
			// before the other server's run.
			time.Sleep(time.Second)
		}
		if dead[0] && dead[1] {
			break
		}
	}
	summarize(wr)
	return wr, nil
}

// authCheck: right passwords must be accepted and wrong ones refused
// (every call fails: the answer to the credentials is a 401/407 again).
// The wrong ones are tried for users of their own (chkNN, not in the
// measured runs) from 127.0.0.2, so that sipfed's ban of sources and users
// that fail to authenticate cannot touch the measured runs.
func authCheck(work string, w workload, addr string) error {
	data, err := os.ReadFile(w.inf)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")[1:]
	n := min(20, len(lines))
	if w.sc == callScenario {
		n = 5
	}
	var good, bad strings.Builder
	good.WriteString("SEQUENTIAL\n")
	bad.WriteString("SEQUENTIAL\n")
	// 5 wrong ones: under sipfed's default ban threshold (10 failures from
	// a source), so that each is answered rather than dropped.
	const nbad = 5
	for i := 0; i < n; i++ {
		l := lines[i%len(lines)]
		good.WriteString(l + "\n")
		if i < nbad {
			f := strings.Split(l, ";")
			f[0], f[1] = fmt.Sprintf("chk%02d", i+1), "wrong-"+f[1]
			bad.WriteString(strings.Join(f, ";") + "\n")
		}
	}
	for _, c := range []struct {
		name, csv, ip string
		ok, fail      int
	}{{"right passwords", good.String(), "127.0.0.1", n, 0}, {"wrong passwords", bad.String(), "127.0.0.2", 0, nbad}} {
		f := filepath.Join(work, "authcheck.csv")
		if err := os.WriteFile(f, []byte(c.csv), 0o600); err != nil {
			return err
		}
		r, err := sippRunOpts(work, w.sc.file, addr, f, c.ok+c.fail, 1, 0, c.ip)
		if err != nil && r.ok+r.fail == 0 {
			return fmt.Errorf("auth check: %v", err)
		}
		if r.ok != c.ok || r.fail != c.fail {
			return fmt.Errorf("auth check with %s: want %d ok/%d failed, got %d/%d", c.name, c.ok, c.fail, r.ok, r.fail)
		}
	}
	return nil
}

// writeDBText writes Kamailio's db_text version and subscriber tables:
// HA1 (and HA1b) per user, the plaintext column left empty.
func writeDBText(dir, domain string, users []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The version table tells auth_db the subscriber schema version (7 in
	// 5.6, as /usr/share/kamailio/dbtext/kamailio/version).
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte("table_name(string) table_version(int)\nsubscriber:7\n"), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	// ",null" on password, unlike the packaged schema: only HA1 is stored.
	b.WriteString("id(int,auto) username(string) domain(string) password(string,null) ha1(string) ha1b(string)\n")
	for i, u := range users {
		pw := "pw-" + u
		ha1 := md5.Sum([]byte(u + ":" + domain + ":" + pw))
		ha1b := md5.Sum([]byte(u + "@" + domain + ":" + domain + ":" + pw))
		fmt.Fprintf(&b, "%d:%s:%s::%s:%s\n", i+1, u, domain, hex.EncodeToString(ha1[:]), hex.EncodeToString(ha1b[:]))
	}
	return os.WriteFile(filepath.Join(dir, "subscriber"), []byte(b.String()), 0o644)
}

// waitOptions waits until the UDP server at addr answers OPTIONS 200.
func waitOptions(addr string, cmd *exec.Cmd, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(cmd.Process.Pid) {
			return errors.New("exited")
		}
		if optionsPing(addr) == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer to OPTIONS at %s", addr)
}

func optionsPing(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	lp := c.LocalAddr().(*net.UDPAddr).Port
	msg := fmt.Sprintf("OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%[1]d;branch=z9hG4bK-ping%[1]d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:ping@a.test>;tag=%[1]d\r\nTo: <sip:a.test>\r\n"+
		"Call-ID: ping-%[1]d@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", lp)
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		return fmt.Errorf("answer %q", strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
	}
	return nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// cpuTimes is the machine's CPU time from /proc/stat, in ticks.
type cpuTimes struct{ busy, total int64 }

func hostCPU() cpuTimes {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan()
	fields := strings.Fields(s.Text()) // cpu user nice system idle iowait irq softirq steal ...
	var t cpuTimes
	for i, v := range fields[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest times are already in user
			break
		}
		t.total += n
		if i != 3 && i != 4 {
			t.busy += n
		}
	}
	return t
}

// busySince is the share of the machine's CPU time that was busy since
// t0, in percent (100 = every core busy).
func (t cpuTimes) busySince(t0 cpuTimes) float64 {
	if t.total == t0.total {
		return 0
	}
	return float64(t.busy-t0.busy) / float64(t.total-t0.total) * 100
}

// loadavgs is the 1, 5 and 15 minute load averages.
func loadavgs() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}

func loadavg() float64 {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// summarize fills in the summary: each server's highest rate with 0
// failures (below its first failing rate) and, at the highest rate both
// passed, p50, p99 and CPU per call.
func summarize(wr *workloadResult) {
	s := &wr.Summary
	for i := range wr.Points {
		for _, p := range wr.Points[i] {
			if !p.good() {
				break
			}
			s.Best[i] = p.Rate
		}
	}
	for j := range wr.Rates {
		if wr.Points[0][j].good() && wr.Points[1][j].good() {
			s.Common, s.HaveCommon = wr.Rates[j], true
			for i := range wr.Points {
				p := wr.Points[i][j]
				s.P50[i], s.P99[i], s.CPU[i], s.Done[i] = p.P50, p.P99, p.CPU, p.Done
			}
		} else {
			break
		}
	}
}

// meta is the run's stamp in results.md.
type meta struct {
	Date     string   `json:"date"`
	Machine  string   `json:"machine"`
	CPU      string   `json:"cpu"`
	Cores    int      `json:"cores"`
	Versions string   `json:"versions"`
	Load     string   `json:"loadavg_at_start"`
	LoadEnd  string   `json:"loadavg_at_end"`
	Quick    bool     `json:"quick"`
	Errors   []string `json:"errors,omitempty"`
	Kamailio string   `json:"kamailio_settings"`
}

func machineInfo(cfg compareConfig) meta {
	m := meta{Date: time.Now().Format("2006-01-02 15:04:05 MST"), Cores: runtime.NumCPU(), Quick: cfg.quick}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	host, _ := os.Hostname()
	m.Machine = fmt.Sprintf("%s, %d cores, Linux %s, host %s", m.CPU, m.Cores, strings.TrimSpace(string(kernel)), host)
	m.Load = loadavgs()
	first := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				return l
			}
		}
		return "?"
	}
	m.Versions = fmt.Sprintf("%s; %s; %s", first(cfg.sipfed, "--version"), first(cfg.kamailio, "-v"), first("sipp", "-v"))
	m.Kamailio = fmt.Sprintf("%d UDP workers (children), -m %d MB shared memory, -M 8 MB private", cfg.children, cfg.shm)
	return m
}
