package resolver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// labZone is served by both the lab server and knotd: one case of RFC 3263
// per subdomain.
const labZone = `$ORIGIN lab.test.
$TTL 60
@ IN SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 30
@ IN NS ns
ns IN A 127.0.0.1

; NAPTR -> SRV -> A/AAAA; the U record and SIPS (unless we speak TLS) are skipped.
chain IN NAPTR 1 10 "U" "E2U+sip" "!^.*$!sip:x@y.test!" .
chain IN NAPTR 5 10 "S" "SIPS+D2T" "" _sips._tcp.chain
chain IN NAPTR 20 10 "S" "SIP+D2U" "" _sip._udp.chain
chain IN NAPTR 10 10 "S" "SIP+D2T" "" _sip._tcp.chain
_sip._tcp.chain IN SRV 10 0 5070 sip1.chain
_sip._udp.chain IN SRV 10 0 5071 sip1.chain
_sips._tcp.chain IN SRV 10 0 5072 sip1.chain
sip1.chain IN A 127.0.0.11
sip1.chain IN AAAA ::11

; No NAPTR: SRV for each transport.
_sip._udp.srvonly IN SRV 10 0 5080 host.srvonly
_sip._tcp.srvonly IN SRV 10 0 5081 host.srvonly
host.srvonly IN A 127.0.0.12

; No NAPTR, no SRV: A on the default port.
aonly IN A 127.0.0.13

; NAPTR only for a transport we do not speak: SRV instead.
naptrtls IN NAPTR 10 10 "S" "SIPS+D2T" "" _sips._tcp.naptrtls
_sip._udp.naptrtls IN SRV 10 0 5090 aonly

; Priorities.
_sip._udp.prio IN SRV 20 0 5002 p20.prio
_sip._udp.prio IN SRV 10 0 5001 p10.prio
_sip._udp.prio IN SRV 30 0 5003 p30.prio
p10.prio IN A 127.0.0.21
p20.prio IN A 127.0.0.22
p30.prio IN A 127.0.0.23

; Weights inside one priority.
_sip._udp.weights IN SRV 10 70 5001 w70.weights
_sip._udp.weights IN SRV 10 30 5002 w30.weights
w70.weights IN A 127.0.0.31
w30.weights IN A 127.0.0.32
_sip._udp.zero IN SRV 10 10 5001 w10.zero
_sip._udp.zero IN SRV 10 0 5002 w0.zero
w10.zero IN A 127.0.0.33
w0.zero IN A 127.0.0.34

; "." : no service here.
_sip._udp.dot IN SRV 0 0 0 .
_sip._tcp.dot IN SRV 0 0 0 .

; CNAME on the way to the address.
_sip._udp.alias IN SRV 10 0 5060 www.alias
www.alias IN CNAME real.alias
real.alias IN A 127.0.0.40
`

// bigZone holds more address records than fit in a UDP answer.
func bigZone() string {
	var sb strings.Builder
	sb.WriteString("$ORIGIN big.test.\n$TTL 60\n@ IN SOA ns.big.test. hostmaster.big.test. 1 3600 600 86400 30\n@ IN NS ns\nns IN A 127.0.0.1\n")
	for i := range 150 {
		fmt.Fprintf(&sb, "many IN A 10.0.%d.%d\n", i/250, i%250+1)
	}
	return sb.String()
}

// writeZones writes origin.zone files and returns their paths.
func writeZones(t testing.TB, dir string, zones map[string]string) []string {
	t.Helper()
	var files []string
	for origin, text := range zones {
		f := filepath.Join(dir, origin+".zone")
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// lab is a LabServer a test started, with a count of the queries it saw.
type lab struct {
	*LabServer
	dir   string
	mu    sync.Mutex
	seen  map[string]int // "name TYPE net" → count
	delay time.Duration
}

func (l *lab) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) == 1 {
		q := req.Question[0]
		l.mu.Lock()
		l.seen[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]+" "+w.RemoteAddr().Network()]++
		d := l.delay
		l.mu.Unlock()
		time.Sleep(d)
	}
	l.LabServer.ServeDNS(w, req)
}

// count returns how many queries for name and type (any network) came in.
func (l *lab) count(name, qtype string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, v := range l.seen {
		if strings.HasPrefix(k, name+" "+qtype+" ") {
			n += v
		}
	}
	return n
}

// rewrite replaces a zone file and reloads.
func (l *lab) rewrite(t testing.TB, origin, text string) {
	t.Helper()
	writeZones(t, l.dir, map[string]string{origin: text})
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
}

// startLab serves zones on a loopback port until the test ends.
func startLab(t testing.TB, zones map[string]string) *lab {
	t.Helper()
	dir := t.TempDir()
	s, err := NewLabServer(writeZones(t, dir, zones)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l := &lab{LabServer: s, dir: dir, seen: map[string]int{}}
	s.udp.Handler, s.tcp.Handler = l, l
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lab server: %v", err)
		}
	})
	return l
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newResolver(t testing.TB, addr string, opts ...Option) *Resolver {
	t.Helper()
	r, err := New(append([]Option{WithServers([]string{addr}), WithTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func uri(t testing.TB, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

// brief renders targets as "udp 127.0.0.1:5060" lines.
func brief(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Transport+" "+t.AddrPort().String())
	}
	return out
}

// deadUpstream is a UDP socket that never answers.
func deadUpstream(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}
