package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/endpoint"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/server"
)

const demoUsage = `Usage: sipfed demo [--once] [--ip IP] [--dns-port N] [--a-port N] [--b-port N]

Runs the whole system on one machine: a lab DNS server for a.test and
b.test, one registrar and proxy per domain (memory stores), the users
alice@a.test, bob@b.test and echo@b.test (an echo service), and places
one call from alice to bob. It prints the way the call's signalling went
(through both proxies) next to the way its media went (phone to phone),
and the call's statistics. Then it stays up so that any softphone can
register to either domain and call, until Ctrl-C; --once exits after
the call.`

// The demo call's media, sent as the files have it (sipfed does not
// encode Opus or VP8); copies of media/file/testdata's files:
//   - demoVideo: 2 s of a 64×48 VP8 test pattern at 15 frames/s (30
//     frames, 2.4 kB). Remade with
//     ffmpeg -f lavfi -i testsrc=size=64x48:rate=15 -t 2 -c:v libvpx clip-vp8.ivf
//   - demoAudio: 1 s of a tone in Opus, 20 ms packets, several to an Ogg
//     page as opusenc writes them (16 kB). Remade with
//     ffmpeg -f lavfi -i sine=frequency=440:duration=1 -ar 48000 tone.wav && opusenc tone.wav tone-opus.ogg
var (
	//go:embed demomedia/clip-vp8.ivf
	demoVideo []byte
	//go:embed demomedia/tone-opus.ogg
	demoAudio []byte
)

// demo passwords: the demo runs on loopback, for trying things out.
var demoUsers = []struct{ aor, password string }{
	{"alice@a.test", "alice-pw"}, {"bob@b.test", "bob-pw"}, {"echo@b.test", "echo-pw"},
	{"carol@a.test", "carol-pw"}, {"dave@a.test", "dave-pw"}, // for browsers
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", demoUsage)
	once := fs.Bool("once", false, "exit after the call")
	ip := fs.String("ip", "127.0.0.1", "the `address` everything listens on")
	dnsPort := fs.Int("dns-port", 5353, "UDP and TCP `port` of the lab DNS server")
	aPort := fs.Int("a-port", 5061, "UDP and TCP `port` of a.test's proxy")
	bPort := fs.Int("b-port", 5062, "UDP and TCP `port` of b.test's proxy")
	talk := fs.Duration("duration", 3*time.Second, "how long the demo call lasts")
	webPort := fs.Int("web-port", 8080, "HTTP `port` of a.test's web phone (/phone/)")
	wsPort := fs.Int("ws-port", 5080, "SIP over WebSocket `port` of a.test's proxy, for browsers")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if net.ParseIP(*ip) == nil {
		return usagef("--ip %q: want an IP address", *ip)
	}
	for _, p := range []struct {
		port       int
		what, flag string
	}{{*dnsPort, "the lab DNS server", "--dns-port"}, {*aPort, "a.test's proxy", "--a-port"}, {*bPort, "b.test's proxy", "--b-port"},
		{*webPort, "the web phone", "--web-port"}, {*wsPort, "a.test's WebSocket listener", "--ws-port"}} {
		if err := portFree(*ip, p.port); err != nil {
			return fmt.Errorf("port %d (%s) is taken: choose another with %s (%v)", p.port, p.what, p.flag, err)
		}
	}
	dir, err := os.MkdirTemp("", "sipfed-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w := e.stdout
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// DNS: a.test and b.test, NAPTR → SRV → A, as deploy/lab has them.
	dnsAddr := net.JoinHostPort(*ip, strconv.Itoa(*dnsPort))
	var zones []string
	for _, d := range []struct {
		name string
		port int
	}{{"a.test", *aPort}, {"b.test", *bPort}} {
		f := filepath.Join(dir, d.name+".zone")
		if err := os.WriteFile(f, []byte(demoZone(d.name, *ip, d.port)), 0o600); err != nil {
			return err
		}
		zones = append(zones, f)
	}
	lab, err := resolver.NewLabServer(zones...)
	if err != nil {
		return err
	}
	if err := lab.Listen(dnsAddr); err != nil {
		return fmt.Errorf("lab DNS on %s: %w (choose another port with --dns-port)", dnsAddr, err)
	}
	dctx, stopDNS := context.WithCancel(context.Background())
	defer stopDNS()
	go lab.Serve(dctx)

	// The two domains.
	var servers []*server.Server
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range servers {
			s.Shutdown(sctx)
		}
	}()
	for _, d := range []struct {
		name string
		port int
	}{{"a.test", *aPort}, {"b.test", *bPort}} {
		users := filepath.Join(dir, d.name+".users")
		store, err := auth.OpenFile(users)
		if err != nil {
			return err
		}
		for _, u := range demoUsers {
			if strings.HasSuffix(u.aor, "@"+d.name) {
				if err := store.Add(ctx, u.aor, u.password); err != nil {
					return err
				}
			}
		}
		addr := net.JoinHostPort(*ip, strconv.Itoa(d.port))
		cfg := server.Config{Domains: []string{d.name}, Users: users, DNS: []string{dnsAddr},
			Listen: []string{"udp:" + addr, "tcp:" + addr}, Logger: logger, ServerHeader: "sipfed-demo"}
		if d.name == "a.test" {
			// Browsers: SIP over WebSocket, the web phone, the media bridge.
			cfg.Listen = append(cfg.Listen, "ws:"+net.JoinHostPort(*ip, strconv.Itoa(*wsPort)))
			cfg.HTTP = net.JoinHostPort(*ip, strconv.Itoa(*webPort))
		}
		s, err := server.New(cfg)
		if err != nil {
			return fmt.Errorf("%s's proxy on %s: %w", d.name, addr, err)
		}
		servers = append(servers, s)
		go s.Serve()
	}
	fmt.Fprintf(w, "lab DNS        %s  (a.test, b.test: NAPTR → SRV → A)\n", dnsAddr)
	fmt.Fprintf(w, "a.test proxy   %s:%d  (UDP, TCP)\n", *ip, *aPort)
	fmt.Fprintf(w, "b.test proxy   %s:%d  (UDP, TCP)\n", *ip, *bPort)
	webURL := "http://" + net.JoinHostPort(*ip, strconv.Itoa(*webPort)) + "/phone/"
	fmt.Fprintf(w, "web phone      %s  (a.test over ws://%s; sign in as carol@a.test, password carol-pw)\n", webURL, net.JoinHostPort(*ip, strconv.Itoa(*wsPort)))

	// The phones: each finds its proxy through the lab DNS; alice and bob
	// send the embedded Opus tone and VP8 clip.
	video, audio := filepath.Join(dir, "clip-vp8.ivf"), filepath.Join(dir, "tone-opus.ogg")
	if err := os.WriteFile(video, demoVideo, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(audio, demoAudio, 0o600); err != nil {
		return err
	}
	phone := func(aor, password string, mod func(*endpoint.Config)) (*endpoint.Phone, error) {
		cfg := endpoint.Config{AOR: aor, Password: password, DNS: []string{dnsAddr}, Listen: net.JoinHostPort(*ip, "0"), MediaTimeout: 10 * time.Second,
			Play: audio, Video: video}
		if mod != nil {
			mod(&cfg)
		}
		p, err := endpoint.New(cfg)
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := p.Start(sctx); err != nil {
			return nil, fmt.Errorf("%s: %w", aor, err)
		}
		if _, err := p.Register(sctx); err != nil {
			p.Close(sctx)
			return nil, fmt.Errorf("%s: %w", aor, err)
		}
		return p, nil
	}
	var phones []*endpoint.Phone
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, p := range phones {
			p.Close(cctx)
		}
	}()
	answered := make(chan *endpoint.Call, 1)
	bobHangup := make(chan endpoint.Event, 1)
	bob, err := phone("bob@b.test", "bob-pw", func(c *endpoint.Config) {
		c.Events = func(ev endpoint.Event) {
			if ev.Event == "hangup" {
				select {
				case bobHangup <- ev:
				default:
				}
			}
		}
	})
	if err != nil {
		return err
	}
	phones = append(phones, bob)
	bob.OnAnswered(func(c *endpoint.Call) {
		select {
		case answered <- c:
		default:
		}
	})
	echo, err := phone("echo@b.test", "echo-pw", func(c *endpoint.Config) {
		c.Echo, c.Play, c.Video, c.MediaTimeout = true, "", "", 60*time.Second
	})
	if err != nil {
		return err
	}
	phones = append(phones, echo)
	go echo.KeepRegistered(ctx, nil)
	alice, err := phone("alice@a.test", "alice-pw", nil)
	if err != nil {
		return err
	}
	phones = append(phones, alice)
	fmt.Fprintf(w, "phones         alice@a.test %s, bob@b.test %s, echo@b.test %s (registered)\n\n", alice.Addr(), bob.Addr(), echo.Addr())

	fmt.Fprintf(w, "alice@a.test calls bob@b.test…\n")
	dctx2, cancel := context.WithTimeout(ctx, 15*time.Second)
	call, err := alice.Dial(dctx2, "bob@b.test")
	cancel()
	if err != nil {
		return fmt.Errorf("the demo call: %w", err)
	}
	var bc *endpoint.Call
	select {
	case bc = <-answered:
	case <-time.After(5 * time.Second):
		return errors.New("the demo call: bob's phone did not answer")
	}
	printPaths(w, bc, alice, bob, *ip, *aPort, *bPort)
	select {
	case <-time.After(*talk):
	case <-ctx.Done():
	}
	call.Hangup(context.Background())
	var bobEnd endpoint.Event
	select {
	case bobEnd = <-bobHangup:
	case <-time.After(5 * time.Second):
	}
	fmt.Fprintf(w, "\ncall statistics (%.1f s)\n", call.Result().Duration)
	printStreams(w, "alice", call.Result())
	printStreams(w, "bob", bobEnd)
	if *once {
		return nil
	}
	fmt.Fprintf(w, `
The two domains stay up until Ctrl-C. Register any softphone:
  a.test: proxy %[1]s:%[2]d (UDP or TCP), user alice@a.test, password alice-pw
  b.test: proxy %[1]s:%[3]d (UDP or TCP), user bob@b.test, password bob-pw
and call echo@b.test (it sends your audio back), bob@b.test or alice@a.test.
In a browser: %[6]s — sign in as carol@a.test (carol-pw) or
dave@a.test (dave-pw) and call echo@b.test, or each other from two tabs.
With sipfed's own phone:
  echo alice-pw | %[5]s phone --aor alice@a.test --password-stdin --dns %[4]s call echo@b.test
DNS for both domains: %[4]s (%[5]s resolve --dns %[4]s sip:echo@b.test).
`, *ip, *aPort, *bPort, dnsAddr, selfName(), webURL)
	<-ctx.Done()
	fmt.Fprintln(w, "stopping")
	return nil
}

// selfName is how to run this binary again: its path as started
// ("./bin/sipfed" from make run), or "sipfed".
func selfName() string {
	if len(os.Args) > 0 && strings.Contains(filepath.Base(os.Args[0]), "sipfed") && !strings.HasSuffix(os.Args[0], ".test") {
		return os.Args[0]
	}
	return "sipfed"
}

// printPaths prints the hops of the call's INVITE next to its media path.
func printPaths(w io.Writer, bc *endpoint.Call, alice, bob *endpoint.Phone, ip string, aPort, bPort int) {
	name := func(hop string) string {
		_, addr, _ := strings.Cut(hop, ":")
		switch addr {
		case alice.Addr().String():
			return "alice's phone"
		case net.JoinHostPort(ip, strconv.Itoa(aPort)):
			return "a.test proxy"
		case net.JoinHostPort(ip, strconv.Itoa(bPort)):
			return "b.test proxy"
		}
		return "?"
	}
	fmt.Fprintf(w, "\nsignalling (the INVITE's Via, as bob's phone got it):\n")
	for _, hop := range bc.Path() {
		fmt.Fprintf(w, "  %-22s %s\n", hop, name(hop))
	}
	fmt.Fprintf(w, "  %-22s bob's phone\n", "udp:"+bob.Addr().String())
	fmt.Fprintf(w, "media (RTP, phone to phone):\n")
	for _, s := range bc.Media() {
		fmt.Fprintf(w, "  %-5s %-4s bob's phone %s ⇄ %s alice's phone: direct, no proxy in between\n", s.Kind, s.Codec, s.Local, s.Remote)
	}
}

func printStreams(w io.Writer, who string, ev endpoint.Event) {
	for _, s := range ev.Streams {
		mos := ""
		if s.MOS > 0 {
			mos = fmt.Sprintf(", MOS %.2f", s.MOS)
		}
		fmt.Fprintf(w, "  %-5s %-5s %-4s %s → %s  sent %d, received %d packets, lost %d, jitter %.1f ms%s\n",
			who, s.Kind, s.Codec, s.Local, s.Remote, s.PacketsSent, s.PacketsReceived, s.Lost, s.JitterMs, mos)
	}
}

// demoZone is a lab zone for domain: NAPTR for UDP and TCP, SRV to
// sip.DOMAIN at port, A ip.
func demoZone(domain, ip string, port int) string {
	return fmt.Sprintf(`$ORIGIN %[1]s.
$TTL 60
@ IN SOA ns.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 60
@ IN NS ns.%[1]s.
ns IN A %[2]s
@ IN NAPTR 10 10 "S" "SIP+D2U" "" _sip._udp.%[1]s.
@ IN NAPTR 20 10 "S" "SIP+D2T" "" _sip._tcp.%[1]s.
_sip._udp IN SRV 10 10 %[3]d sip.%[1]s.
_sip._tcp IN SRV 10 10 %[3]d sip.%[1]s.
sip IN A %[2]s
`, domain, ip, port)
}

// portFree reports whether UDP and TCP port are free on ip.
func portFree(ip string, port int) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	pc.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}
