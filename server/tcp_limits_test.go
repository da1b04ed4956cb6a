package server_test

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/server"
)

// TestTCPLimitsFromConfig checks that Config's TCP limits apply to every
// TCP listener and that /metrics sums the listeners: a third connection
// from one source is closed at once, and silent connections are closed
// after TCPIdleTimeout.
func TestTCPLimitsFromConfig(t *testing.T) {
	second := "127.0.0.2:" + strconv.Itoa(testenv.FreePort(t))
	s := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), HTTP: "127.0.0.1:0", DNS: []string{"127.0.0.1:1"},
		Listen:          []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tcp:" + second},
		TCPMaxPerSource: 2, TCPIdleTimeout: 500 * time.Millisecond})
	metricsURL := "http://" + s.HTTPAddr().String() + "/metrics"
	first := s.Addr("tcp").String()
	var conns []net.Conn
	for _, addr := range []string{first, first, first, second} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	closed := func(c net.Conn, wait time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	if !closed(conns[2], time.Second) || closed(conns[0], 50*time.Millisecond) || closed(conns[3], 50*time.Millisecond) {
		t.Fatal("want the third connection to the first listener closed, the others open")
	}
	m := get(t, metricsURL)
	for _, want := range []string{"sipfed_tcp_connections 3\n", `sipfed_tcp_refused_total{reason="max_per_source"} 1` + "\n", `sipfed_tcp_refused_total{reason="descriptors"} 0` + "\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(m, "sipfed_tcp"))
		}
	}
	for _, c := range []net.Conn{conns[0], conns[1], conns[3]} {
		if !closed(c, 2*time.Second) {
			t.Fatal("an idle connection was not closed")
		}
	}
	time.Sleep(50 * time.Millisecond)
	m = get(t, metricsURL)
	for _, want := range []string{"sipfed_tcp_connections 0\n", "sipfed_tcp_idle_closed_total 3\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(m, "sipfed_tcp"))
		}
	}
}
