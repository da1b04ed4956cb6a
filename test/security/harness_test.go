// Package security attacks a real `sipfed serve` over loopback, as anyone
// who finds a domain in DNS could: forged dialogs, floods, idle
// connections, password guessing, header injection. Every attack is
// bounded in count and time and targets only 127.0.0.0/8.
package security

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/internal/testenv"
)

var sipfedBin string

func TestMain(m *testing.M) {
	bin, remove, err := testenv.BuildSipfed()
	if err != nil {
		fmt.Fprintln(os.Stderr, "security:", err)
		os.Exit(1)
	}
	sipfedBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// target is a running `sipfed serve` for a.test on 127.0.0.1, UDP and TCP
// on Port, HTTP (metrics) on HTTPPort, with users alice/alice-pw and
// bob/bob-pw.
type target struct {
	t        *testing.T
	cmd      *exec.Cmd
	out      *testenv.Buffer
	Port     int
	HTTPPort int
	done     chan error
}

// Addr is the SIP address, host:port.
func (s *target) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// options for startTarget.
type options struct {
	ulimitN int      // RLIMIT_NOFILE for the server (0: inherited)
	args    []string // extra serve flags
	env     []string // extra environment
}

// startTarget runs the server and kills it when the test ends.
func startTarget(t *testing.T, o options) *target {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	f, err := auth.OpenFile(users)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := f.Add(context.Background(), u+"@a.test", u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	s := &target{t: t, Port: testenv.FreePort(t), HTTPPort: testenv.FreePort(t), out: &testenv.Buffer{}, done: make(chan error, 1)}
	args := append([]string{"serve", "--domain", "a.test", "--listen", "udp:" + s.Addr(), "--listen", "tcp:" + s.Addr(),
		"--http", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort), "--users", users, "--dns", "127.0.0.1:1", "--log-level", "info"}, o.args...)
	s.cmd = exec.Command(sipfedBin, args...)
	s.cmd.Env = append(os.Environ(), o.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if o.ulimitN > 0 {
		lim := syscall.Rlimit{Cur: uint64(o.ulimitN), Max: uint64(o.ulimitN)}
		if err := prlimitNOFILE(s.cmd.Process.Pid, &lim); err != nil {
			s.cmd.Process.Kill()
			t.Fatalf("prlimit: %v", err)
		}
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("sipfed serve output (last 4 kB):\n%s", tail(s.out.String(), 4096))
		}
	})
	if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", s.HTTPPort), 10*time.Second); err != nil {
		t.Fatalf("sipfed serve did not start: %v\n%s", err, s.out)
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// alive reports whether the process is still running.
func (s *target) alive() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return false
	default:
		return true
	}
}

// rssKB returns the server's resident set size in kB.
func (s *target) rssKB() int {
	s.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	s.t.Fatal("no VmRSS")
	return 0
}

// exchangeUDP sends raw (LF line ends are turned into CRLF; LOCAL stands
// for the sender's address) from local ("" for any loopback port) and
// returns the datagrams received, in order, until a final response or
// until wait has passed.
func exchangeUDP(t *testing.T, local, to, raw string, wait time.Duration) []string {
	t.Helper()
	var laddr *net.UDPAddr
	if local != "" {
		var err error
		if laddr, err = net.ResolveUDPAddr("udp", local); err != nil {
			t.Fatal(err)
		}
	}
	raddr, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.ReplaceAll(raw, "LOCAL", c.LocalAddr().String())
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 65536)
	deadline := time.Now().Add(wait)
	for {
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
		if statusOf(got[len(got)-1]) >= 200 {
			return got
		}
	}
}

// statusOf returns the status code of a response, or 0.
func statusOf(msg string) int {
	line, _, _ := strings.Cut(msg, "\r\n")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// finalOf returns the first final status among msgs, or 0.
func finalOf(msgs []string) int {
	for _, m := range msgs {
		if c := statusOf(m); c >= 200 {
			return c
		}
	}
	return 0
}

// udpSink is a UDP socket that counts what reaches it: a victim, or a
// callee that must not be reached.
type udpSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []string
}

func newSink(t *testing.T) *udpSink {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &udpSink{conn: c}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return s
}

func (s *udpSink) Addr() string { return s.conn.LocalAddr().String() }

func (s *udpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}
