package interop

import (
	"fmt"
	"net"
	"time"

	"github.com/sipfed/sipfed/deploy/lab"
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
	var c net.Conn
	err := lab.InNetns(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	})
	return c, err
}
