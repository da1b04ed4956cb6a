// Command bench drives SIPp against `sipfed serve` at rising rates and
// reports, per store, the highest rate with 0 failed calls and its p99
// response time. It starts and stops everything it uses (sipfed,
// redis-server, SIPp), all on loopback, each run bounded in count and time.
//
//	go run ./test/bench [-rates 500,1000,...] [-seconds 5]
//
// With -target it starts nothing and measures the SIP server already
// listening there instead (see scripts/bench-kamailio.sh), under -label.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	rates := flag.String("rates", "250,500,1000,1500,2000,3000,4000,5000", "REGISTER `rates` per second to try, in order")
	seconds := flag.Int("seconds", 5, "length of each run in `seconds`")
	bin := flag.String("sipfed", "bin/sipfed", "sipfed `binary`")
	stores := flag.String("stores", "memory,redis", "stores to measure")
	target := flag.String("target", "", "measure the SIP server at UDP `host:port` instead of sipfed; it must accept users u0001…u2000@a.test with passwords pw-uNNNN")
	label := flag.String("label", "external", "name of -target in the results")
	flag.Parse()
	if err := run(*bin, *stores, *rates, *seconds, *target, *label); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	rate      int
	ok, fail  int
	p50, p99  float64
	completed bool
}

func run(bin, stores, rates string, seconds int, target, label string) error {
	work, err := os.MkdirTemp("", "sipfed-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	const users = 2000
	inf := filepath.Join(work, "users.csv")
	var csv, pw strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	var aors []string
	for i := 1; i <= users; i++ {
		u := fmt.Sprintf("u%04d", i)
		fmt.Fprintf(&csv, "%s;pw-%s;a.test\n", u, u)
		fmt.Fprintf(&pw, "pw-%s\n", u)
		aors = append(aors, u+"@a.test")
	}
	if err := os.WriteFile(inf, []byte(csv.String()), 0o600); err != nil {
		return err
	}
	fmt.Printf("REGISTER with digest auth (401 + 200 per call), SIPp 3.6 over UDP on loopback, %d s per rate, %d users\n", seconds, users)
	fmt.Printf("%-8s %8s %8s %8s %10s %10s\n", "store", "rate/s", "ok", "failed", "p50 ms", "p99 ms")
	if target != "" {
		return measure(work, label, target, inf, rates, seconds)
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
		add.Stdin = strings.NewReader(pw.String())
		if out, err := add.CombinedOutput(); err != nil {
			return fmt.Errorf("user add: %v: %s", err, out)
		}
		port := freePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		srv := exec.Command(bin, append([]string{"serve", "--domain", "a.test", "--listen", "udp:" + addr, "--log-level", "error", "--min-expires", "1"}, serveArgs...)...)
		srv.Stderr = os.Stderr
		if err := srv.Start(); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		if err := measure(work, store, addr, inf, rates, seconds); err != nil {
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
func measure(work, label, addr, inf, rates string, seconds int) error {
	best := result{}
	for _, rs := range strings.Split(rates, ",") {
		rate, err := strconv.Atoi(rs)
		if err != nil {
			return fmt.Errorf("rate %q: %w", rs, err)
		}
		r, err := sippRun(work, addr, inf, rate, seconds)
		if err != nil {
			return err
		}
		fmt.Printf("%-8s %8d %8d %8d %10.1f %10.1f\n", label, rate, r.ok, r.fail, r.p50, r.p99)
		if r.fail > 0 || !r.completed {
			break
		}
		best = r
	}
	fmt.Printf("RESULT %s: highest rate with 0 failures %d REGISTER/s, p99 %.1f ms\n", label, best.rate, best.p99)
	return nil
}

// sippRun sends rate×seconds registrations at rate per second and reads
// SIPp's counters and per-call response times.
func sippRun(work, addr, inf string, rate, seconds int) (result, error) {
	dir, err := os.MkdirTemp(work, "run")
	if err != nil {
		return result{}, err
	}
	n := rate * seconds
	// SIPp runs in dir, so the scenario path must not be relative.
	scenario, err := filepath.Abs("test/interop/testdata/register.xml")
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+40)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", addr, "-sf", scenario, "-inf", inf,
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort()), "-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-rp", "1000",
		"-l", strconv.Itoa(rate*2), "-buff_size", "4194304", "-timeout", strconv.Itoa(seconds+30)+"s",
		"-recv_timeout", "5000", "-nostdin", "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return result{}, fmt.Errorf("sipp: %v: %s", err, out)
	}
	r := result{rate: rate, completed: ctx.Err() == nil}
	r.ok, r.fail = counters(string(out))
	if r.ok+r.fail == 0 {
		return r, fmt.Errorf("sipp made no call: %s", out)
	}
	times, err := rtts(dir)
	if err != nil {
		return r, err
	}
	if len(times) > 0 {
		sort.Float64s(times)
		r.p50 = times[len(times)/2]
		r.p99 = times[min(len(times)-1, len(times)*99/100)]
	}
	return r, nil
}

func counters(out string) (ok, failed int) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.FieldsFunc(line, func(r rune) bool { return r == '|' || r == ' ' })
		if len(f) < 3 {
			continue
		}
		n, _ := strconv.Atoi(f[len(f)-1])
		switch {
		case strings.Contains(line, "Successful call"):
			ok = n
		case strings.Contains(line, "Failed call"):
			failed = n
		}
	}
	return ok, failed
}

// rtts reads the response times (ms) from SIPp's *_rtt.csv.
func rtts(dir string) ([]float64, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	var out []float64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			cols := strings.Split(line, ";")
			if len(cols) < 3 {
				continue
			}
			v, err := strconv.ParseFloat(cols[2], 64)
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
