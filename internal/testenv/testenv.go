// Package testenv starts the real things tests talk to (redis-server, DNS
// servers, SIP peers) on loopback, and decides what a missing tool means:
// a loud skip on a laptop, a failure when CI is set.
package testenv

import (
	"bufio"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Required reports whether tools must be present: true when CI or
// SIPFED_INTEROP is set to anything but "" or "0".
func Required() bool {
	for _, k := range []string{"CI", "SIPFED_INTEROP"} {
		if v := os.Getenv(k); v != "" && v != "0" && v != "false" {
			return true
		}
	}
	return false
}

// Need returns the path of the executable name. When it is missing the
// test fails if Required, and is skipped with a loud reason otherwise.
func Need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found in PATH (install it with `make deps`)", name)
	if Required() {
		t.Fatalf("%s; CI requires it", msg)
	}
	t.Skipf("SKIPPING: %s", msg)
	return ""
}

// FreePort returns a port on 127.0.0.1 that was free for both UDP and TCP
// a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)
}

// FreePorts returns the first of n consecutive ports on 127.0.0.1 that
// were free for both UDP and TCP: baresip, for one, takes its SIP port and
// the next one (for TLS).
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	return freePorts(t, n)
}

func freePorts(t testing.TB, n int) int {
	t.Helper()
	// Below the kernel's ephemeral range, so that no socket bound to port
	// 0 (an RTP socket, an outgoing connection, another test package's
	// server) can take the port between this check and its use; and
	// handed out in turn from a random start, so that two calls in one
	// process never return the same port before it is bound (a free port
	// is only free until someone binds it).
	hi := ephemeralLow() - 1
	lo := hi - 2500
	portsMu.Lock()
	defer portsMu.Unlock()
	if nextPort == 0 {
		nextPort = lo + mathrand.IntN(hi-lo)
	}
	for i := 0; i < 200; i++ {
		if nextPort+n > hi {
			nextPort = lo
		}
		port := nextPort
		nextPort += n
		ok := true
		for p := port; p < port+n && ok; p++ {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			tl, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			u, err := net.ListenPacket("udp", addr)
			tl.Close()
			if err != nil {
				ok = false
				break
			}
			u.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("testenv: no %d free consecutive ports", n)
	return 0
}

// The next port freePorts tries; 0 before the first call.
var (
	portsMu  sync.Mutex
	nextPort int
)

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), 32768 when unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 5000 {
				return n
			}
		}
	}
	return 32768
}

// Redis is a redis-server a test started.
type Redis struct {
	Addr string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	dir  string
	args []string
}

// URL returns the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr }

// StartRedis starts redis-server on a free loopback port, without
// persistence, and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := Need(t, "redis-server")
	port := FreePort(t)
	dir := t.TempDir()
	r := &Redis{
		Addr: "127.0.0.1:" + strconv.Itoa(port),
		dir:  dir,
		args: []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"},
	}
	r.start(t, bin)
	t.Cleanup(r.kill)
	return r
}

func (r *Redis) start(t testing.TB, bin string) {
	t.Helper()
	r.cmd = exec.Command(bin, r.args...)
	r.cmd.Stdout = nil
	r.cmd.Stderr = nil
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	if err := WaitTCP(r.Addr, 10*time.Second); err != nil {
		t.Fatalf("testenv: redis-server: %v", err)
	}
	// Wait until it answers PING: the port opens before loading finishes.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(r.Addr) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("testenv: redis-server on %s does not answer PING", r.Addr)
}

func (r *Redis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// Stop stops the server (to test what happens when Redis goes away).
func (r *Redis) Stop() { r.kill() }

// Restart starts the server again on the same port, empty.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.kill()
	r.start(t, Need(t, "redis-server"))
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// WaitTCP waits until addr accepts TCP connections.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RepoRoot returns the module root (the folder holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the test's folder")
		}
		dir = parent
	}
}
