package resolver

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sipfed/sipfed/internal/testenv"
)

// chainCase is one RFC 3263 §4 path, checked against any server that
// serves labZone.
type chainCase struct {
	name    string
	uri     string
	opts    []Option
	want    []string // brief(targets)
	wantErr error
}

var chainCases = []chainCase{
	{name: "RFC3263_4.1_NAPTR_order_then_SRV_then_A_AAAA", uri: "sip:bob@chain.lab.test",
		want: []string{"tcp 127.0.0.11:5070", "tcp [::11]:5070", "udp 127.0.0.11:5071", "udp [::11]:5071"}},
	{name: "prefer_IPv6", uri: "sip:bob@chain.lab.test", opts: []Option{WithFamily(PreferIPv6)},
		want: []string{"tcp [::11]:5070", "tcp 127.0.0.11:5070", "udp [::11]:5071", "udp 127.0.0.11:5071"}},
	{name: "IPv4_only", uri: "sip:bob@chain.lab.test", opts: []Option{WithFamily(IPv4Only)},
		want: []string{"tcp 127.0.0.11:5070", "udp 127.0.0.11:5071"}},
	{name: "NAPTR_filtered_to_the_transports_we_speak", uri: "sip:bob@chain.lab.test", opts: []Option{WithTransports(UDP), WithFamily(IPv4Only)},
		want: []string{"udp 127.0.0.11:5071"}},
	{name: "sips_TLS_only", uri: "sips:bob@chain.lab.test", opts: []Option{WithTransports(UDP, TCP, TLS), WithFamily(IPv4Only)},
		want: []string{"tls 127.0.0.11:5072"}},
	{name: "sip_with_TLS_spoken_follows_SIPS_NAPTR_first", uri: "sip:bob@chain.lab.test", opts: []Option{WithTransports(UDP, TCP, TLS), WithFamily(IPv4Only)},
		want: []string{"tls 127.0.0.11:5072", "tcp 127.0.0.11:5070", "udp 127.0.0.11:5071"}},
	{name: "RFC3263_4.1_transport_param_SRV_for_that_transport", uri: "sip:bob@chain.lab.test;transport=udp", opts: []Option{WithFamily(IPv4Only)},
		want: []string{"udp 127.0.0.11:5071"}},
	{name: "transport_param_without_SRV_A_on_default_port", uri: "sip:bob@aonly.lab.test;transport=tcp",
		want: []string{"tcp 127.0.0.13:5060"}},
	{name: "RFC3263_4.2_explicit_port_A_AAAA_only", uri: "sip:bob@sip1.chain.lab.test:5099",
		want: []string{"udp 127.0.0.11:5099", "udp [::11]:5099"}},
	{name: "explicit_port_and_transport", uri: "sip:bob@sip1.chain.lab.test:5099;transport=TCP", opts: []Option{WithFamily(IPv6Only)},
		want: []string{"tcp [::11]:5099"}},
	{name: "maddr_wins_over_host", uri: "sip:bob@nothere.lab.test;maddr=aonly.lab.test",
		want: []string{"udp 127.0.0.13:5060"}},
	{name: "no_NAPTR_SRV_per_transport", uri: "sip:bob@srvonly.lab.test",
		want: []string{"udp 127.0.0.12:5080", "tcp 127.0.0.12:5081"}},
	{name: "no_NAPTR_SRV_in_our_transport_order", uri: "sip:bob@srvonly.lab.test", opts: []Option{WithTransports(TCP, UDP)},
		want: []string{"tcp 127.0.0.12:5081", "udp 127.0.0.12:5080"}},
	{name: "no_NAPTR_no_SRV_A_on_5060", uri: "sip:bob@aonly.lab.test",
		want: []string{"udp 127.0.0.13:5060"}},
	{name: "no_NAPTR_no_SRV_sips_A_on_5061", uri: "sips:bob@aonly.lab.test", opts: []Option{WithTransports(TLS)},
		want: []string{"tls 127.0.0.13:5061"}},
	{name: "NAPTR_only_for_transports_we_do_not_speak_falls_back_to_SRV", uri: "sip:bob@naptrtls.lab.test",
		want: []string{"udp 127.0.0.13:5090"}},
	{name: "RFC2782_priority_order", uri: "sip:bob@prio.lab.test",
		want: []string{"udp 127.0.0.21:5001", "udp 127.0.0.22:5002", "udp 127.0.0.23:5003"}},
	{name: "CNAME_followed", uri: "sip:bob@alias.lab.test",
		want: []string{"udp 127.0.0.40:5060"}},
	{name: "RFC2782_dot_target_no_service", uri: "sip:bob@dot.lab.test", wantErr: ErrNoService},
	{name: "NXDOMAIN", uri: "sip:bob@nothere.lab.test", wantErr: ErrNXDomain},
	{name: "numeric_IPv4", uri: "sip:bob@192.0.2.1", want: []string{"udp 192.0.2.1:5060"}},
	{name: "numeric_IPv6_port_transport", uri: "sip:bob@[2001:db8::1]:5070;transport=tcp", want: []string{"tcp [2001:db8::1]:5070"}},
	{name: "numeric_sips", uri: "sips:bob@192.0.2.1", opts: []Option{WithTransports(UDP, TLS)}, want: []string{"tls 192.0.2.1:5061"}},
	{name: "numeric_sips_without_TLS", uri: "sips:bob@192.0.2.1", wantErr: ErrUnsupported},
	{name: "sips_over_udp", uri: "sips:bob@chain.lab.test;transport=udp", wantErr: ErrUnsupported},
	{name: "transport_we_do_not_speak", uri: "sip:bob@chain.lab.test;transport=ws", wantErr: ErrUnsupported},
	{name: "tel_scheme", uri: "tel:+123", wantErr: ErrUnsupported},
}

func runChainCases(t *testing.T, addr string) {
	for _, c := range chainCases {
		t.Run(c.name, func(t *testing.T) {
			r := newResolver(t, addr, c.opts...)
			for pass := range 2 { // cold, then cached
				got, err := r.Resolve(context.Background(), uri(t, c.uri))
				if c.wantErr != nil {
					if !errors.Is(err, c.wantErr) {
						t.Fatalf("pass %d: Resolve(%s) = %v, %v; want error %v", pass, c.uri, brief(got), err, c.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("pass %d: Resolve(%s): %v", pass, c.uri, err)
				}
				if !slices.Equal(brief(got), c.want) {
					t.Fatalf("pass %d: Resolve(%s) =\n  %q\nwant\n  %q", pass, c.uri, brief(got), c.want)
				}
			}
		})
	}
}

func TestResolveLabServer(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	runChainCases(t, l.Addr())
}

func TestResolveKnot(t *testing.T) {
	addr := testenv.StartKnot(t, map[string]string{"lab.test": labZone})
	runChainCases(t, addr)
}

func TestTargetRecordsShowTheChain(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	r := newResolver(t, l.Addr(), WithFamily(IPv4Only))
	ts, err := r.Resolve(context.Background(), uri(t, "sip:bob@chain.lab.test"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`chain.lab.test. 60 IN NAPTR 10 10 "S" "SIP+D2T" "" _sip._tcp.chain.lab.test.`,
		`_sip._tcp.chain.lab.test. 60 IN SRV 10 0 5070 sip1.chain.lab.test.`,
		`sip1.chain.lab.test. 60 IN A 127.0.0.11`,
	}
	if !slices.Equal(ts[0].Records, want) {
		t.Errorf("records = %q\nwant %q", ts[0].Records, want)
	}
	if ts[0].Host != "sip1.chain.lab.test" {
		t.Errorf("host = %q", ts[0].Host)
	}
	ts, err = r.Resolve(context.Background(), uri(t, "sip:bob@alias.lab.test"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ts[0].Records, "\n"); !strings.Contains(got, "CNAME real.alias.lab.test.") {
		t.Errorf("records miss the CNAME:\n%s", got)
	}
}

func TestErrorsSayWhichNameFailedAndWhy(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	r := newResolver(t, l.Addr())
	_, err := r.Resolve(context.Background(), uri(t, "sip:bob@nothere.lab.test"))
	for _, want := range []string{"resolver: no targets for nothere.lab.test", "nothere.lab.test NAPTR: NXDOMAIN", "_sip._udp.nothere.lab.test SRV: NXDOMAIN", "nothere.lab.test A: NXDOMAIN"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	_, err = r.Resolve(context.Background(), uri(t, "sip:bob@dot.lab.test"))
	if want := `_sip._udp.dot.lab.test SRV: SRV target "."`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v does not say %q", err, want)
	}
	// The lab server refuses names outside its zones.
	_, err = r.Resolve(context.Background(), uri(t, "sip:bob@elsewhere.example"))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "resolver: elsewhere.example NAPTR: REFUSED by ") {
		t.Errorf("error %v, want REFUSED for elsewhere.example NAPTR", err)
	}
}

func TestServFail(t *testing.T) {
	srv := &dns.Server{Net: "udp", Addr: "127.0.0.1:0", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	r := newResolver(t, srv.PacketConn.LocalAddr().String())
	_, err := r.Resolve(context.Background(), uri(t, "sip:bob@b.test"))
	if !errors.Is(err, ErrServFail) || !strings.HasPrefix(err.Error(), "resolver: b.test NAPTR: SERVFAIL from 127.0.0.1:") {
		t.Errorf("error %v, want SERVFAIL for b.test NAPTR", err)
	}
}

func TestDeadUpstream(t *testing.T) {
	dead := deadUpstream(t)
	r := newResolver(t, dead, WithServers([]string{dead}), WithTimeout(100*time.Millisecond))
	_, err := r.Resolve(context.Background(), uri(t, "sip:bob@b.test"))
	if !errors.Is(err, ErrTimeout) || !strings.HasPrefix(err.Error(), "resolver: b.test NAPTR: timeout after 100ms asking "+dead) {
		t.Errorf("error %v, want a timeout for b.test NAPTR", err)
	}

	// The next upstream answers.
	l := startLab(t, map[string]string{"lab.test": labZone})
	r = newResolver(t, dead, WithServers([]string{dead, l.Addr()}), WithTimeout(100*time.Millisecond))
	got, err := r.Resolve(context.Background(), uri(t, "sip:bob@aonly.lab.test"))
	if err != nil || !slices.Equal(brief(got), []string{"udp 127.0.0.13:5060"}) {
		t.Errorf("with a live second upstream: %v, %v", brief(got), err)
	}
}

func TestCallerContextEndsTheWait(t *testing.T) {
	dead := deadUpstream(t)
	r := newResolver(t, dead, WithServers([]string{dead}), WithTimeout(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Resolve(ctx, uri(t, "sip:bob@b.test")); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	l := startLab(t, map[string]string{"big.test": bigZone()})
	r := newResolver(t, l.Addr(), WithFamily(IPv4Only))
	got, err := r.Resolve(context.Background(), uri(t, "sip:bob@many.big.test:5060"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 150 {
		t.Errorf("got %d targets, want 150", len(got))
	}
	l.mu.Lock()
	udp, tcp := l.seen["many.big.test. A udp"], l.seen["many.big.test. A tcp"]
	l.mu.Unlock()
	if udp != 1 || tcp != 1 {
		t.Errorf("queries: %d over UDP, %d over TCP; want 1 and 1", udp, tcp)
	}
}

func TestTruncatedAnswerRetriedOverTCPKnot(t *testing.T) {
	addr := testenv.StartKnot(t, map[string]string{"big.test": bigZone()})
	r := newResolver(t, addr, WithFamily(IPv4Only))
	got, err := r.Resolve(context.Background(), uri(t, "sip:bob@many.big.test:5060"))
	if err != nil || len(got) != 150 {
		t.Errorf("got %d targets, %v; want 150", len(got), err)
	}
}

func TestCacheHonoursTTL(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	clock := newFakeClock()
	r := newResolver(t, l.Addr(), WithClock(clock.now))
	u := uri(t, "sip:bob@aonly.lab.test")
	resolve := func() []string {
		t.Helper()
		got, err := r.Resolve(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		return brief(got)
	}
	if got := resolve(); !slices.Equal(got, []string{"udp 127.0.0.13:5060"}) {
		t.Fatalf("got %q", got)
	}
	l.rewrite(t, "lab.test", strings.Replace(labZone, "127.0.0.13", "127.0.0.99", 1))
	clock.advance(59 * time.Second) // the A record's TTL is 60
	if got := resolve(); !slices.Equal(got, []string{"udp 127.0.0.13:5060"}) {
		t.Errorf("before the TTL: got %q, want the cached answer", got)
	}
	if n := l.count("aonly.lab.test.", "A"); n != 1 {
		t.Errorf("%d A queries before the TTL, want 1", n)
	}
	clock.advance(2 * time.Second)
	if got := resolve(); !slices.Equal(got, []string{"udp 127.0.0.99:5060"}) {
		t.Errorf("after the TTL: got %q, want the new address", got)
	}
}

func TestNegativeCachingRFC2308(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	clock := newFakeClock()
	r := newResolver(t, l.Addr(), WithClock(clock.now))
	u := uri(t, "sip:bob@late.lab.test:5060")
	if _, err := r.Resolve(context.Background(), u); !errors.Is(err, ErrNXDomain) {
		t.Fatalf("error %v, want NXDOMAIN", err)
	}
	l.rewrite(t, "lab.test", labZone+"late IN A 127.0.0.50\n")
	// The SOA says TTL 60, MINIMUM 30: negative answers live 30 s.
	clock.advance(29 * time.Second)
	if _, err := r.Resolve(context.Background(), u); !errors.Is(err, ErrNXDomain) {
		t.Errorf("before the SOA minimum: error %v, want the cached NXDOMAIN", err)
	}
	if n := l.count("late.lab.test.", "A"); n != 1 {
		t.Errorf("%d A queries, want 1", n)
	}
	clock.advance(2 * time.Second)
	got, err := r.Resolve(context.Background(), u)
	if err != nil || !slices.Equal(brief(got), []string{"udp 127.0.0.50:5060"}) {
		t.Errorf("after the SOA minimum: %q, %v", brief(got), err)
	}
}

func TestConcurrentLookupsCollapsed(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	l.mu.Lock()
	l.delay = 50 * time.Millisecond // every query waits: concurrent askers overlap
	l.mu.Unlock()
	r := newResolver(t, l.Addr())
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := r.Resolve(context.Background(), uri(t, "sip:bob@chain.lab.test")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := l.count("chain.lab.test.", "NAPTR"); n != 1 {
		t.Errorf("%d NAPTR queries for 20 concurrent look-ups, want 1", n)
	}
}

func TestCacheCap(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	r := newResolver(t, l.Addr(), WithMaxEntries(3))
	for _, h := range []string{"aonly", "chain", "prio", "srvonly", "alias"} {
		if _, err := r.Resolve(context.Background(), uri(t, "sip:bob@"+h+".lab.test")); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.rrs) > 3 || len(r.plans) > 3 {
		t.Errorf("cache holds %d records and %d plans, cap 3", len(r.rrs), len(r.plans))
	}
}

func TestRFC3263_4_3_MarkDownMovesTargetLast(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	clock := newFakeClock()
	r := newResolver(t, l.Addr(), WithClock(clock.now))
	u := uri(t, "sip:bob@prio.lab.test")
	ts, err := r.Resolve(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	r.MarkDown(ts[0], 30*time.Second)
	got, _ := r.Resolve(context.Background(), u)
	if want := []string{"udp 127.0.0.22:5002", "udp 127.0.0.23:5003", "udp 127.0.0.21:5001"}; !slices.Equal(brief(got), want) {
		t.Errorf("with the first down: %q, want %q", brief(got), want)
	}
	r.MarkDown(ts[1], 30*time.Second)
	r.MarkDown(ts[2], 30*time.Second)
	got, _ = r.Resolve(context.Background(), u)
	if want := []string{"udp 127.0.0.21:5001", "udp 127.0.0.22:5002", "udp 127.0.0.23:5003"}; !slices.Equal(brief(got), want) {
		t.Errorf("all down: %q, want all of them in order %q", brief(got), want)
	}
	r.MarkDown(ts[1], time.Minute)
	clock.advance(31 * time.Second)
	got, _ = r.Resolve(context.Background(), u)
	if want := []string{"udp 127.0.0.21:5001", "udp 127.0.0.23:5003", "udp 127.0.0.22:5002"}; !slices.Equal(brief(got), want) {
		t.Errorf("after 31 s: %q, want %q", brief(got), want)
	}
}

// firstShare resolves uri n times and returns how often each address came
// first.
func firstShare(t *testing.T, r *Resolver, u string, n int) map[string]float64 {
	t.Helper()
	share := map[string]float64{}
	for range n {
		ts, err := r.Resolve(context.Background(), uri(t, u))
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 2 {
			t.Fatalf("%d targets, want 2", len(ts))
		}
		share[ts[0].AddrPort().String()] += 1 / float64(n)
	}
	return share
}

func TestRFC2782WeightedOrder(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	r := newResolver(t, l.Addr(), WithRand(rand.NewPCG(1, 2)))
	// Weights 70/30: the random number is uniform in 0..100, so 71 of its
	// 101 values pick the weight-70 record first.
	share := firstShare(t, r, "sip:bob@weights.lab.test", 20000)
	if s := share["127.0.0.31:5001"]; s < 0.68 || s > 0.73 {
		t.Errorf("weight 70 first in %.3f of draws, want 0.703 ± 0.02", s)
	}
	// Weight 0 goes first in the list, so it is picked first only when the
	// random number is 0: 1 in 11 for 0 and 10.
	share = firstShare(t, r, "sip:bob@zero.lab.test", 20000)
	if s := share["127.0.0.34:5002"]; s < 0.07 || s > 0.11 {
		t.Errorf("weight 0 first in %.3f of draws, want 0.091 ± 0.02", s)
	}
}

func TestRFC2782AllWeightsZero(t *testing.T) {
	// With every weight 0 the random number is always 0 and the list order
	// stands.
	r, _ := New(WithServers([]string{"127.0.0.1:1"}), WithRand(rand.NewPCG(3, 4)))
	mk := func(port uint16) entry { return entry{targets: []Target{{Port: port}}} }
	p := &plan{groups: []group{{entries: []entry{mk(1), mk(2), mk(3)}}}, n: 3}
	for range 100 {
		var ports []uint16
		for _, t := range r.order(p) {
			ports = append(ports, t.Port)
		}
		if !slices.Equal(ports, []uint16{1, 2, 3}) {
			t.Fatalf("order %v, want 1 2 3", ports)
		}
	}
}

func TestNewOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  Option
	}{
		{"no servers", WithServers(nil)},
		{"empty server", WithServers([]string{""})},
		{"zero timeout", WithTimeout(0)},
		{"zero entries", WithMaxEntries(0)},
		{"bad family", WithFamily(Family(9))},
		{"unknown transport", WithTransports("sctp")},
		{"no transports", WithTransports()},
	} {
		if _, err := New(c.opt); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	r, err := New(WithServers([]string{"127.0.0.1", "::1", "[::1]:5353", "192.0.2.1:53"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Servers(), []string{"127.0.0.1:53", "[::1]:53", "[::1]:5353", "192.0.2.1:53"}; !slices.Equal(got, want) {
		t.Errorf("servers %q, want %q", got, want)
	}
}
