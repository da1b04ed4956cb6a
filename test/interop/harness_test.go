// Package interop runs sipfed against peers nobody here wrote: SIPp,
// baresip and redis-server, as separate processes on loopback.
package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

var sipfedBin string

func TestMain(m *testing.M) {
	bin, remove, err := testenv.BuildSipfed()
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	sipfedBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// server is a running `sipfed serve`.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *testenv.Buffer
	Port   int
	Domain string
	Host   string // the address it listens on; "" is 127.0.0.1
	args   []string
	done   chan error
}

// startServe runs `sipfed serve` for a.test on a free port with args added.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	return startDomain(t, "a.test", 0, args...)
}

// startDomain runs `sipfed serve --domain domain` on UDP and TCP
// 127.0.0.1:port (a free port when port is 0) with args added, and kills it
// when the test ends.
func startDomain(t *testing.T, domain string, port int, args ...string) *server {
	t.Helper()
	if port == 0 {
		port = testenv.FreePort(t)
	}
	s := &server{t: t, Port: port, Domain: domain, args: args}
	s.start()
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) start() {
	s.t.Helper()
	addr := s.addr()
	// SIPp sends every call from one address, at rates the per-source
	// limit (--pike-rate) is there to stop: off here, tested in
	// test/security.
	args := append([]string{"serve", "--domain", s.Domain, "--listen", "udp:" + addr, "--listen", "tcp:" + addr, "--log-level", "warn", "--pike-rate", "0"}, s.args...)
	s.cmd = exec.Command(sipfedBin, args...)
	s.out = &testenv.Buffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start sipfed: %v", err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
	if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
		s.t.Fatalf("sipfed serve did not start: %v\n%s", err, s.out)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0).
func (s *server) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.cmd = nil // exited: nothing left for the cleanup to kill
		if err != nil {
			s.t.Fatalf("sipfed serve exited with %v after SIGTERM\n%s", err, s.out)
		}
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
		s.t.Fatalf("sipfed serve did not exit within 15 s of SIGTERM\n%s", s.out)
	}
}

func (s *server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
}

func (s *server) addr() string {
	host := s.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(s.Port))
}

// addUsers creates users u0001…uNNNN@a.test with password pw-<user> through
// `sipfed user add`, in one users file or in Redis, and writes the SIPp
// injection file (user;password;domain).
func addUsers(t *testing.T, n int, target []string, injection string) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := 1; i <= n; i++ {
		user := fmt.Sprintf("u%04d", i)
		fmt.Fprintf(&csv, "%s;pw-%s;a.test\n", user, user)
	}
	if err := os.WriteFile(injection, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bulk: feed `user add` one process per user would be slow; the CLI
	// takes several AORs with --password-stdin reading one line each.
	var stdin strings.Builder
	args := append([]string{"user", "add"}, target...)
	args = append(args, "--password-stdin")
	for i := 1; i <= n; i++ {
		user := fmt.Sprintf("u%04d", i)
		args = append(args, user+"@a.test")
		fmt.Fprintf(&stdin, "pw-%s\n", user)
	}
	cmd := exec.Command(sipfedBin, args...)
	cmd.Stdin = strings.NewReader(stdin.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sipfed user add: %v\n%s", err, out)
	}
}

// sipp runs one bounded SIPp client scenario against the server and returns
// its output and exit error.
func sipp(t *testing.T, srv string, scenario, injection string, extra ...string) (string, error) {
	t.Helper()
	bin := testenv.Need(t, "sipp")
	dir := t.TempDir()
	args := []string{srv, "-sf", filepath.Join("testdata", scenario), "-inf", injection,
		"-i", "127.0.0.1", "-p", strconv.Itoa(testenv.FreePort(t)),
		"-timeout", "60s", "-recv_timeout", "5000", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "err.log"),
		"-trace_stat", "-stf", filepath.Join(dir, "stat.csv")}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = mustGetwd(t)
	out, err := cmd.CombinedOutput()
	errs, _ := os.ReadFile(filepath.Join(dir, "err.log"))
	return string(out) + "\n--- errors:\n" + tail(string(errs), 3000), err
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
