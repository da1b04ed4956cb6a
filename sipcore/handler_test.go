package sipcore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// recTx records the responses a handler sends.
type recTx struct {
	sip.ServerTransaction // nil: only Respond is used
	mu                    sync.Mutex
	got                   []*sip.Response
}

func (r *recTx) Respond(res *sip.Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, res)
	return nil
}

func (r *recTx) codes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, res := range r.got {
		out = append(out, res.StatusCode)
	}
	return out
}

func parseReq(t *testing.T, method string) *sip.Request {
	t.Helper()
	msg, err := NewParser().ParseSIP([]byte(method + " sip:bob@a.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:bob@a.test>\r\nCall-ID: c\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

type observed struct {
	status  int
	elapsed time.Duration
}

type obs struct {
	mu  sync.Mutex
	got []observed
}

func (o *obs) Observe(_ *sip.Request, status int, elapsed time.Duration) {
	o.mu.Lock()
	o.got = append(o.got, observed{status, elapsed})
	o.mu.Unlock()
}

// pipeline is the chain a server builds, around h.
func pipeline(h Handler, g *Gate, o Observer) func(*sip.Request, sip.ServerTransaction) {
	log := slog.New(slog.DiscardHandler)
	return Adapt(context.Background(), Deadlines{Other: 200 * time.Millisecond},
		Chain(h, Observe(o), Log(log), Respond(log), Drain(g), Recover(log)))
}

func TestPipelineTurnsErrorsIntoResponses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		h          HandlerFunc
		want       []int
		retryAfter bool
	}{
		{"status error", "MESSAGE", func(context.Context, *sip.Request, sip.ServerTransaction) error {
			return Errorf(404, "Not Found")
		}, []int{404}, false},
		{"plain error is 500", "MESSAGE", func(context.Context, *sip.Request, sip.ServerTransaction) error {
			return errors.New("boom")
		}, []int{500}, false},
		{"503 always has Retry-After", "MESSAGE", func(context.Context, *sip.Request, sip.ServerTransaction) error {
			return Errorf(503, "Busy")
		}, []int{503}, true},
		{"panic is 500", "MESSAGE", func(context.Context, *sip.Request, sip.ServerTransaction) error {
			panic("boom")
		}, []int{500}, false},
		{"deadline is 408", "MESSAGE", func(ctx context.Context, _ *sip.Request, _ sip.ServerTransaction) error {
			<-ctx.Done()
			return ctx.Err()
		}, []int{408}, false},
		{"no second answer after a final one", "MESSAGE", func(_ context.Context, req *sip.Request, tx sip.ServerTransaction) error {
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			return errors.New("late failure")
		}, []int{200}, false},
		{"ACK is never answered", "ACK", func(context.Context, *sip.Request, sip.ServerTransaction) error {
			return Errorf(403, "Relaying denied")
		}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &recTx{}
			o := &obs{}
			pipeline(tc.h, &Gate{}, o)(parseReq(t, tc.method), tx)
			got := tx.codes()
			if len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
				t.Fatalf("responses %v, want %v", got, tc.want)
			}
			if tc.retryAfter && tx.got[0].GetHeader("Retry-After") == nil {
				t.Error("503 without Retry-After")
			}
			if len(o.got) != 1 {
				t.Fatalf("observed %d times, want once", len(o.got))
			}
			want := 0
			if len(tc.want) > 0 {
				want = tc.want[0]
			}
			if o.got[0].status != want {
				t.Errorf("observed status %d, want %d", o.got[0].status, want)
			}
		})
	}
}

// TestDrainRefusesNewRequestsAndWaitsForOthers: a closed gate answers new
// requests 503 with Retry-After, and Wait returns once the request in
// progress is done.
func TestDrainRefusesNewRequestsAndWaitsForOthers(t *testing.T) {
	g := &Gate{}
	release := make(chan struct{})
	started := make(chan struct{})
	slow := pipeline(HandlerFunc(func(_ context.Context, req *sip.Request, tx sip.ServerTransaction) error {
		close(started)
		<-release
		return tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	}), g, &obs{})
	inFlight := &recTx{}
	done := make(chan struct{})
	go func() { slow(parseReq(t, "MESSAGE"), inFlight); close(done) }()
	<-started
	g.Close()

	late := &recTx{}
	slow(parseReq(t, "OPTIONS"), late)
	if c := late.codes(); len(c) != 1 || c[0] != 503 || late.got[0].GetHeader("Retry-After") == nil {
		t.Fatalf("request after Close: %v, want 503 with Retry-After", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx); err == nil {
		t.Fatal("Wait returned while a request was in progress")
	}
	close(release)
	<-done
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := inFlight.codes(); len(c) != 1 || c[0] != 200 {
		t.Fatalf("request in progress got %v, want 200", c)
	}
}

// TestShutdownCancelsRequestContexts: cancelling the base context reaches
// a handler in progress, which is answered 503 (shutting down).
func TestShutdownCancelsRequestContexts(t *testing.T) {
	base, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	started := make(chan struct{})
	h := Adapt(base, Deadlines{}, Chain(HandlerFunc(func(ctx context.Context, _ *sip.Request, _ sip.ServerTransaction) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}), Respond(log)))
	tx := &recTx{}
	done := make(chan struct{})
	go func() { h(parseReq(t, "MESSAGE"), tx); close(done) }()
	<-started
	cancel()
	<-done
	if c := tx.codes(); len(c) != 1 || c[0] != 503 {
		t.Fatalf("got %v, want 503", c)
	}
}

func TestSameUser(t *testing.T) {
	for _, tc := range []struct {
		auth, user, domain string
		want               bool
	}{
		{"alice", "alice", "a.test", true},
		{"alice@a.test", "alice", "a.test", true},
		{"alice@A.TEST", "alice", "a.test", true},
		{"alice@b.test", "alice", "a.test", false},
		{"alic", "alice", "a.test", false},
		{"bob", "alice", "a.test", false},
		{"alice@a.testx", "alice", "a.test", false},
	} {
		if got := SameUser(tc.auth, tc.user, tc.domain); got != tc.want {
			t.Errorf("SameUser(%q, %q, %q) = %v", tc.auth, tc.user, tc.domain, got)
		}
	}
}

func TestOptionTags(t *testing.T) {
	req := parseReq(t, "INVITE")
	req.AppendHeader(sip.NewHeader("Require", "Path, 100rel"))
	req.AppendHeader(sip.NewHeader("Require", "timer"))
	req.AppendHeader(sip.NewHeader("Supported", "path"))
	if got := Unsupported(req, "Require", "path", "timer"); len(got) != 1 || got[0] != "100rel" {
		t.Errorf("Unsupported = %q", got)
	}
	if !Supports(req, "path") || Supports(req, "gruu") {
		t.Error("Supports")
	}
	if DefaultPort("TLS") != 5061 || DefaultPort("udp") != 5060 || PortOr(5080, "tls") != 5080 {
		t.Error("DefaultPort")
	}
}

type nopObserver struct{}

func (nopObserver) Observe(*sip.Request, int, time.Duration) {}

// BenchmarkPipeline measures what the middleware chain adds to every
// request: the request context with its deadline, the transaction
// wrapper, drain, recovery, error → response, observing and debug logging
// (off).
func BenchmarkPipeline(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	h := Adapt(context.Background(), Deadlines{}, Chain(HandlerFunc(func(_ context.Context, req *sip.Request, tx sip.ServerTransaction) error {
		return nil
	}), Observe(nopObserver{}), Log(log), Respond(log), Drain(&Gate{}), Recover(log)))
	req := parseReqB(b)
	tx := &recTx{}
	b.ReportAllocs()
	for b.Loop() {
		h(req, tx)
	}
}

func parseReqB(b *testing.B) *sip.Request {
	msg, err := NewParser().ParseSIP([]byte("REGISTER sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	return msg.(*sip.Request)
}
