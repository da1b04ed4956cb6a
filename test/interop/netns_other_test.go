//go:build !linux

package interop

import (
	"errors"
	"net"
	"time"
)

// dialInNetns needs Linux network namespaces.
func dialInNetns(ns, addr string, timeout time.Duration) (net.Conn, error) {
	return nil, errors.New("network namespaces are Linux only")
}
