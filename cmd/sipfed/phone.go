package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sipfed/sipfed/endpoint"
)

const phoneUsage = `Usage: sipfed phone --aor USER@DOMAIN [flags] register | call URI | answer

A softphone for one account. It registers with its domain's proxy (the
one --proxy names, or the one DNS gives for the domain, RFC 3263), and
sends and receives the media itself (audio, and video with --video),
straight to and from the other phone.

  register     stay registered until interrupted
  call URI     call URI (bob@b.example, sip:bob@b.example, or a user of
               our domain), talk for --duration, hang up
  answer       stay registered and answer calls, until interrupted or
               --max-calls calls have ended

The password comes from stdin (--password-stdin) or SIPFED_PASSWORD,
never from the command line. Exit status: 0 when the call (or the
registration) happened, 1 with a one-line reason otherwise, 2 for a
command-line mistake.`

// runPhone is `sipfed phone`.
func runPhone(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "phone", phoneUsage)
	var (
		cfg           endpoint.Config
		passwordStdin bool
		jsonOut       bool
		duration      time.Duration
		maxCalls      int
		digits        string
		calls         int
		rate          float64
		ringTimeout   time.Duration
		holdAt        time.Duration
		holdFor       time.Duration
		dns           = newListFlag()
		codecs        = newListFlag()
	)
	fs.StringVar(&cfg.AOR, "aor", "", "the account, `user@domain` (required)")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin (else SIPFED_PASSWORD)")
	fs.StringVar(&cfg.Proxy, "proxy", "", "outbound proxy `host:port` (default: the domain's, found through DNS)")
	fs.Var(dns, "dns", "DNS `server` (host[:port]) for finding the proxy (repeatable; default: /etc/resolv.conf)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "local SIP `ip:port`; RTP uses the same address")
	fs.StringVar(&cfg.Transport, "transport", "udp", "SIP transport: udp or tcp")
	fs.Var(codecs, "codecs", "codecs offered and accepted, in order: pcmu, pcma, opus, vp8 (default: pcmu,pcma; opus with an .ogg --play; vp8 with --video or --record-video)")
	fs.StringVar(&cfg.Play, "play", "", "`file` sent as the audio: WAV (G.711) or Ogg/Opus, sent as it is (default: a 440 Hz tone)")
	fs.StringVar(&cfg.Record, "record", "", "`file` the received audio is written to: .wav for G.711, .ogg for Opus (several calls: file-2.wav…)")
	fs.StringVar(&cfg.Video, "video", "", "IVF `file` of VP8 frames sent as the video")
	fs.StringVar(&cfg.RecordVideo, "record-video", "", "IVF `file` the received VP8 video is written to")
	fs.StringVar(&digits, "dtmf", "", "`digits` sent (RFC 4733) one second into each call")
	fs.DurationVar(&duration, "duration", 10*time.Second, "call: how long to talk before hanging up")
	fs.DurationVar(&ringTimeout, "ring-timeout", 60*time.Second, "call: give up (CANCEL) when nobody answered within this long")
	fs.DurationVar(&holdAt, "hold-at", 0, "call: put the call on hold this long after it is answered (re-INVITE sendonly; 0: never)")
	fs.DurationVar(&holdFor, "hold-for", 2*time.Second, "call: how long the call stays on hold before it is resumed")
	fs.IntVar(&calls, "calls", 1, "call: how many calls to place (load), each lasting --duration")
	fs.Float64Var(&rate, "rate", 10, "call: new calls per second when --calls is more than 1")
	fs.IntVar(&maxCalls, "max-calls", 0, "answer: exit after this many calls have ended (0: never)")
	fs.DurationVar(&cfg.AnswerDelay, "answer-delay", 0, "answer: how long to ring before answering")
	fs.BoolVar(&cfg.Reject, "reject", false, "answer: reject every call with 486 Busy Here")
	fs.IntVar(&cfg.MaxIncoming, "max-incoming", endpoint.DefaultMaxIncoming, "answer: incoming calls ringing or in progress at once; more get 486 Busy Here")
	fs.BoolVar(&cfg.Echo, "echo", false, "answer: send every call's audio back to the caller (an echo test service)")
	fs.DurationVar(&cfg.MediaTimeout, "media-timeout", 30*time.Second, "end a call after this long without RTP from the peer (0: never)")
	fs.DurationVar(&cfg.Expires, "expires", 300*time.Second, "registration interval asked of the registrar")
	fs.BoolVar(&jsonOut, "json", false, "print one JSON object per event and line instead of text")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if cfg.AOR == "" {
		return usagef("--aor is required, e.g. --aor alice@a.example")
	}
	if len(pos) == 0 {
		return usagef("want register, call URI or answer")
	}
	mode := pos[0]
	switch {
	case mode == "call" && len(pos) != 2:
		return usagef("call wants one URI, e.g. call bob@b.example")
	case mode != "call" && len(pos) != 1:
		return usagef("unexpected arguments %q", pos[1:])
	case mode != "register" && mode != "call" && mode != "answer":
		return usagef("unknown action %q: want register, call URI or answer", mode)
	}
	if duration <= 0 || maxCalls < 0 || calls < 1 || rate <= 0 || ringTimeout <= 0 {
		return usagef("--duration, --calls and --rate must be positive and --max-calls not negative")
	}
	if cfg.MediaTimeout == 0 {
		cfg.MediaTimeout = -1
	}
	cfg.DNS, cfg.Codecs = dns.vals, codecs.vals
	if passwordStdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the password: %w", err)
		}
		cfg.Password = strings.TrimRight(line, "\r\n")
	} else {
		cfg.Password = e.getenv("SIPFED_PASSWORD")
	}
	if cfg.Password == "" {
		return usagef("no password: use --password-stdin or set SIPFED_PASSWORD")
	}

	out := &eventPrinter{w: e.stdout, json: jsonOut}
	ended := make(chan endpoint.Event, 16)
	cfg.Events = func(ev endpoint.Event) {
		out.print(ev)
		if ev.Event == "hangup" {
			select {
			case ended <- ev:
			default:
			}
		}
	}
	p, err := endpoint.New(cfg)
	if err != nil {
		return usageError{err}
	}
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Start(startCtx); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(cctx)
	}()
	if mode == "call" {
		return phoneCalls(ctx, p, pos[1], calls, rate, callPlan{duration, ringTimeout, digits, hold{holdAt, holdFor}})
	}
	first := make(chan error, 1)
	go p.KeepRegistered(ctx, first)
	select {
	case err := <-first:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return nil
	}
	if mode == "register" {
		<-ctx.Done()
		return nil
	}
	if digits != "" {
		p.OnAnswered(func(c *endpoint.Call) {
			go func() {
				time.Sleep(time.Second)
				c.SendDTMF(ctx, digits)
			}()
		})
	}
	for n := 0; maxCalls == 0 || n < maxCalls; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-ended:
		}
	}
	return nil
}

// phoneCalls places n calls at rate a second, each like phoneCall, and
// fails when any failed.
func phoneCalls(ctx context.Context, p *endpoint.Phone, uri string, n int, rate float64, plan callPlan) error {
	if n == 1 {
		return phoneCall(ctx, p, uri, plan)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				i = n
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := phoneCall(ctx, p, uri, plan); err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d calls failed; the first: %s", len(failed), n, failed[0])
	}
	return nil
}

// hold is when a call is put on hold, after it is answered, and for how
// long; at 0: never.
type hold struct{ after, length time.Duration }

// callPlan is what each call does: talk for duration, give up ringing
// after ring, send digits, go on hold.
type callPlan struct {
	duration, ring time.Duration
	digits         string
	hold           hold
}

// phoneCall places one call, talks for the plan's duration and hangs up.
func phoneCall(ctx context.Context, p *endpoint.Phone, uri string, plan callPlan) error {
	d, digits, h := plan.duration, plan.digits, plan.hold
	dialCtx, cancel := context.WithTimeout(ctx, plan.ring)
	defer cancel()
	call, err := p.Dial(dialCtx, uri)
	if err != nil {
		var se *endpoint.StatusError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("call %s: %d %s", uri, se.Code, se.Reason)
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return fmt.Errorf("call %s: no answer within %v (--ring-timeout)", uri, plan.ring)
		}
		return fmt.Errorf("call %s: %w", uri, err)
	}
	if digits != "" {
		go func() {
			select {
			case <-time.After(time.Second):
				call.SendDTMF(ctx, digits)
			case <-call.Done():
			}
		}()
	}
	holdErr := make(chan error, 1)
	if h.after > 0 {
		go func() {
			select {
			case <-time.After(h.after):
			case <-call.Done():
				return
			}
			if err := call.Hold(ctx); err != nil {
				holdErr <- fmt.Errorf("call %s: hold: %w", uri, err)
				return
			}
			select {
			case <-time.After(h.length):
			case <-call.Done():
				return
			}
			if err := call.Resume(ctx); err != nil {
				holdErr <- fmt.Errorf("call %s: resume: %w", uri, err)
			}
		}()
	}
	select {
	case <-time.After(d):
		call.Hangup(context.Background())
	case <-call.Done():
	case <-ctx.Done():
		call.Hangup(context.Background())
	}
	<-call.Done()
	select {
	case err := <-holdErr:
		return err
	default:
	}
	if r := call.Result(); r.Reason == "media-timeout" {
		return fmt.Errorf("call %s: no media from the other phone for the media timeout", uri)
	}
	return nil
}

// eventPrinter prints events as JSON lines or as text for a person.
type eventPrinter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func (p *eventPrinter) print(ev endpoint.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		b, _ := json.Marshal(ev)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	switch ev.Event {
	case "registered":
		fmt.Fprintf(p.w, "registered %s for %d s through %s\n", ev.AOR, ev.Expires, ev.Proxy)
	case "ringing":
		if ev.To != "" {
			fmt.Fprintf(p.w, "ringing (%s %s, for %s)\n", ev.Direction, ev.Peer, ev.To)
			break
		}
		fmt.Fprintf(p.w, "ringing (%s %s)\n", ev.Direction, ev.Peer)
	case "answered":
		fmt.Fprintf(p.w, "answered (%s %s), call %s\n", ev.Direction, ev.Peer, ev.CallID)
	case "dtmf":
		fmt.Fprintf(p.w, "dtmf %s\n", ev.Digit)
	case "hangup":
		fmt.Fprintf(p.w, "hangup (%s) after %.1f s\n", ev.Reason, ev.Duration)
		for _, s := range ev.Streams {
			fmt.Fprintf(p.w, "  %s %s: %s ↔ %s, sent %d packets, received %d, lost %d, jitter %.1f ms, rtt %.1f ms, MOS %.2f\n",
				s.Kind, s.Codec, s.Local, s.Remote, s.PacketsSent, s.PacketsReceived, s.Lost, s.JitterMs, s.RTTMs, s.MOS)
		}
	case "held", "resumed":
		fmt.Fprintf(p.w, "%s (by %s)\n", ev.Event, ev.Reason)
	case "error":
		fmt.Fprintf(p.w, "error: %s\n", ev.Error)
	default:
		fmt.Fprintf(p.w, "%s\n", ev.Event)
	}
}
