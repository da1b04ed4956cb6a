package interop

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// dialInNetns connects over TCP to addr as seen from inside the named
// network namespace (ip netns), retrying until timeout: the socket is
// made inside the namespace and stays there, while this process and its
// other threads stay in their own.
func dialInNetns(ns, addr string, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := dialInNetnsOnce(ns, addr)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dial %s in netns %s: %w", addr, ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialInNetnsOnce(ns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A goroutine of its own, locked to its thread while the thread is
		// in the other namespace. If the thread cannot go back, it stays
		// locked and the runtime ends it with the goroutine.
		runtime.LockOSThread()
		back := true
		defer func() {
			if back {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("own netns: %w", err)}
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(filepath.Join("/var/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("netns %s: %w", ns, err)}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		back = unix.Setns(orig, unix.CLONE_NEWNET) == nil
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
