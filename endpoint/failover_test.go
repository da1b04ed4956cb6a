package endpoint_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sipfed/sipfed/endpoint"
)

// failoverLab is a.test served by two nodes behind SRV records that list
// a dead address first: a closed TCP port (connections refused) and a
// UDP socket that never answers.
type failoverLab struct {
	dns    string
	a1, a2 interface{ Addr(string) net.Addr }
	stop1  func()
}

func startFailoverLab(t *testing.T) *failoverLab {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadTCP := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	deadUDP := silent.LocalAddr().(*net.UDPAddr).Port

	dir := t.TempDir()
	path := filepath.Join(dir, "a.test.zone")
	write := func(a1udp, a1tcp, a2udp, a2tcp int) {
		text := fmt.Sprintf(`$ORIGIN a.test.
$TTL 1
@ IN SOA ns.a.test. hostmaster.a.test. 1 3600 600 86400 1
@ IN NAPTR 10 10 "S" "SIP+D2U" "" _sip._udp.a.test.
@ IN NAPTR 20 10 "S" "SIP+D2T" "" _sip._tcp.a.test.
_sip._udp IN SRV 10 10 %d dead.a.test.
_sip._udp IN SRV 20 10 %d a1.a.test.
_sip._udp IN SRV 30 10 %d a2.a.test.
_sip._tcp IN SRV 10 10 %d dead.a.test.
_sip._tcp IN SRV 20 10 %d a1.a.test.
_sip._tcp IN SRV 30 10 %d a2.a.test.
dead IN A 127.0.0.1
a1 IN A 127.0.0.1
a2 IN A 127.0.0.1
`, deadUDP, a1udp, a2udp, deadTCP, a1tcp, a2tcp)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 1, 1, 1)
	dns := serveDNS(t, path)
	l := &failoverLab{dns: dns.Addr()}
	a1 := startDomain(t, "a.test", l.dns, "alice", "carol")
	a2 := startDomain(t, "a.test", l.dns, "alice", "carol")
	l.a1, l.a2 = a1, a2
	l.stop1 = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a1.Shutdown(ctx)
	}
	port := func(s interface{ Addr(string) net.Addr }, tr string) int {
		if tr == "udp" {
			return s.Addr(tr).(*net.UDPAddr).Port
		}
		return s.Addr(tr).(*net.TCPAddr).Port
	}
	write(port(a1, "udp"), port(a1, "tcp"), port(a2, "udp"), port(a2, "tcp"))
	if err := dns.Reload(); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPhoneFailsOverToTheNextProxy: the phone's own domain lists a dead
// proxy first; over TCP (connection refused) and over UDP (no answer
// within the attempt timeout) the REGISTER goes to the next SRV target
// (RFC 3263 §4.3). When the node holding a TCP phone's registration goes
// away, the closed connection is noticed and the phone registers through
// the next node at once, not at its next refresh.
func TestPhoneFailsOverToTheNextProxy(t *testing.T) {
	l := startFailoverLab(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			p := newPhone(t, endpoint.Config{AOR: "alice@a.test", Password: "pw-alice", DNS: []string{l.dns}, Transport: tr,
				Log: slog.New(slog.DiscardHandler)})
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if _, err := p.Register(ctx); err != nil {
				t.Fatalf("register: %v", err)
			}
			if got, want := int(p.Proxy().Port), portOf(l.a1.Addr(tr)); got != want {
				t.Fatalf("registered through port %d, want a1's %d (the second SRV target)", got, want)
			}
		})
	}

	ev := &events{}
	p := newPhone(t, endpoint.Config{AOR: "carol@a.test", Password: "pw-carol", DNS: []string{l.dns}, Transport: "tcp",
		Expires: time.Hour, Events: ev.add, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go p.KeepRegistered(ctx, first)
	if err := <-first; err != nil {
		t.Fatalf("register: %v", err)
	}
	l.stop1()
	deadline := time.Now().Add(10 * time.Second)
	for registrations(ev) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a1 went away and the phone did not register again within 10 s (through %s); events %+v", p.Proxy(), ev.all)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, want := int(p.Proxy().Port), portOf(l.a2.Addr("tcp")); got != want {
		t.Fatalf("registered again through port %d, want a2's %d", got, want)
	}
}

func registrations(e *events) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Event == "registered" {
			n++
		}
	}
	return n
}

func portOf(a net.Addr) int {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.Port
	case *net.TCPAddr:
		return a.Port
	}
	return 0
}

// TestPhoneDialFailsOverASilentProxy: a phone over UDP whose first proxy
// takes datagrams and never answers (a machine gone, not a process)
// dials: after the attempt timeout with no 100 Trying the INVITE goes to
// the next SRV target, and the call is answered.
func TestPhoneDialFailsOverASilentProxy(t *testing.T) {
	l := startFailoverLab(t)
	alice := newPhone(t, endpoint.Config{AOR: "alice@a.test", Password: "pw-alice", DNS: []string{l.dns}, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := alice.Register(ctx); err != nil {
		t.Fatalf("alice: register: %v", err)
	}
	carol := newPhone(t, endpoint.Config{AOR: "carol@a.test", Password: "pw-carol", DNS: []string{l.dns}, Log: slog.New(slog.DiscardHandler)})
	if got := int(carol.Proxy().Port); got == portOf(l.a1.Addr("udp")) {
		t.Fatalf("carol starts with a1 as her proxy; want the silent first target")
	}
	start := time.Now()
	call, err := carol.Dial(ctx, "alice@a.test")
	if err != nil {
		t.Fatalf("dial through a silent first proxy: %v", err)
	}
	t.Logf("answered after %v through %s", time.Since(start).Round(time.Millisecond), carol.Proxy())
	if got, want := int(carol.Proxy().Port), portOf(l.a1.Addr("udp")); got != want {
		t.Errorf("the call went through port %d; want a1's %d", got, want)
	}
	call.Hangup(ctx)
}
