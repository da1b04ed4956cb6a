package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InNetns runs f on a thread of its own switched into the named network
// namespace: sockets f makes stay in that namespace, while this process
// and its other threads stay in their own.
func InNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back := true
		defer func() {
			// A thread that could not go back stays locked, and the
			// runtime ends it with this goroutine.
			if back {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("lab: own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(filepath.Join("/var/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("lab: netns %s: %w", ns, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("lab: setns %s: %w", ns, err)
			return
		}
		err = f()
		back = unix.Setns(orig, unix.CLONE_NEWNET) == nil
		errc <- err
	}()
	return <-errc
}

// Dial connects to addr from inside host's namespace (network "tcp" or
// "udp"); the connection stays in that namespace.
func (l *Lab) Dial(ctx context.Context, host, network, addr string) (net.Conn, error) {
	h := l.Host(host)
	if h == nil {
		return nil, fmt.Errorf("lab: no host %q", host)
	}
	var c net.Conn
	err := InNetns(h.NS, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// waitTCP waits until addr accepts connections from host.
func (l *Lab) waitTCP(ctx context.Context, host, addr string) error {
	for {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := l.Dial(dctx, host, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s from %s: %w (last: %v)", addr, host, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// OptionsPing sends one OPTIONS over UDP from host to addr and returns the
// status line of the answer.
func (l *Lab) OptionsPing(ctx context.Context, host, addr, domain string) (string, error) {
	c, err := l.Dial(ctx, host, "udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	la := c.LocalAddr().(*net.UDPAddr)
	msg := fmt.Sprintf("OPTIONS sip:%[3]s SIP/2.0\r\nVia: SIP/2.0/UDP %[1]s;rport;branch=z9hG4bK-lab%[2]d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:lab@%[3]s>;tag=%[2]d\r\nTo: <sip:%[3]s>\r\n"+
		"Call-ID: lab-ping-%[2]d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", la.String(), time.Now().UnixNano(), domain)
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	if !strings.HasPrefix(line, "SIP/2.0 ") {
		return "", fmt.Errorf("lab: not a SIP answer: %q", line)
	}
	return line, nil
}

// waitSIP waits until the SIP server at addr answers an OPTIONS from host.
func (l *Lab) waitSIP(ctx context.Context, host, addr, domain string) error {
	for {
		_, err := l.OptionsPing(ctx, host, addr, domain)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: no SIP answer from %s: %w (last: %v)", addr, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// redisPing sends PING to the Redis at addr from host.
func (l *Lab) redisPing(ctx context.Context, host, addr string) error {
	c, err := l.Dial(ctx, host, "tcp", addr)
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
		return fmt.Errorf("lab: PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}
