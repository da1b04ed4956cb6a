package registrar_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/location/memory"
	"github.com/sipfed/sipfed/registrar"
	"github.com/sipfed/sipfed/sipcore"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	reg   *registrar.Registrar
	store location.Store
	now   atomic.Pointer[time.Time]
	cseq  uint32
}

func newFixture(t *testing.T, opts ...registrar.Option) *fixture {
	t.Helper()
	ctx := context.Background()
	users, err := auth.OpenFile(filepath.Join(t.TempDir(), "users.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ aor, pw string }{{"alice@a.example", "alice-pw"}, {"bob@a.example", "bob-pw"}} {
		if err := users.Add(ctx, u.aor, u.pw); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t}
	f.now.Store(&t0)
	clock := func() time.Time { return *f.now.Load() }
	f.store = memory.New(memory.WithClock(clock))
	t.Cleanup(func() { f.store.Close() })
	srv := auth.NewServer(users, []byte("test-secret"), auth.WithClock(clock))
	opts = append([]registrar.Option{registrar.WithClock(clock), registrar.WithNodeID("node1")}, opts...)
	f.reg = registrar.New([]string{"a.example"}, f.store, srv, opts...)
	return f
}

func (f *fixture) advance(d time.Duration) {
	n := f.now.Load().Add(d)
	f.now.Store(&n)
}

// parse builds a request from raw header lines as a UDP client at
// 192.0.2.10:5062 would send it.
func parse(t *testing.T, raw string) *sip.Request {
	t.Helper()
	raw = strings.ReplaceAll(strings.TrimLeft(raw, "\n"), "\n", "\r\n")
	msg, err := sipcore.NewParser().ParseSIP([]byte(raw + "\r\n"))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	req := msg.(*sip.Request)
	req.SetSource("192.0.2.10:5062")
	req.SetTransport("UDP")
	return req
}

// register builds a REGISTER for to with extra header lines, the fixture's
// own Call-ID and the next CSeq.
func (f *fixture) register(to string, extra ...string) string {
	f.cseq++
	return registerRaw(f.cseq, to, extra...)
}

func registerRaw(cseq uint32, to string, extra ...string) string {
	return fmt.Sprintf(`REGISTER sip:a.example SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-%d
Max-Forwards: 70
From: <sip:%s>;tag=f1
To: <sip:%s>
Call-ID: call-1@192.0.2.10
CSeq: %d REGISTER
%s
Content-Length: 0
`, cseq, to, to, cseq, strings.Join(extra, "\n"))
}

// send runs raw through the registrar without credentials.
func (f *fixture) send(raw string) (*sip.Response, *sipcore.StatusError) {
	f.t.Helper()
	res, err := f.reg.Register(context.Background(), parse(f.t, raw))
	if err != nil {
		return nil, sipcore.AsStatus(err)
	}
	return res, nil
}

// auth sends raw, answers the 401 with user's credentials (SHA-256
// challenge unless md5), and returns the outcome.
func (f *fixture) auth(raw, user, pw string, md5 bool) (*sip.Response, *sipcore.StatusError) {
	f.t.Helper()
	_, se := f.send(raw)
	if se == nil || se.Code != 401 {
		f.t.Fatalf("first REGISTER: want 401, got %v", se)
	}
	chal := challenge(f.t, se, md5)
	req := parse(f.t, raw)
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.example", Count: 1, Username: user, Password: pw})
	if err != nil {
		f.t.Fatal(err)
	}
	req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	res, err := f.reg.Register(context.Background(), req)
	if err != nil {
		return nil, sipcore.AsStatus(err)
	}
	return res, nil
}

func challenge(t *testing.T, se *sipcore.StatusError, md5 bool) *digest.Challenge {
	t.Helper()
	for _, h := range se.Headers {
		if !strings.EqualFold(h.Name(), "WWW-Authenticate") {
			continue
		}
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatalf("challenge %q: %v", h.Value(), err)
		}
		if strings.EqualFold(c.Algorithm, "MD5") == md5 {
			return c
		}
	}
	t.Fatalf("no suitable challenge in %v", se.Headers)
	return nil
}

func contacts(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func wantStatus(t *testing.T, se *sipcore.StatusError, code int) {
	t.Helper()
	if se == nil {
		t.Fatalf("want %d, got 200", code)
	}
	if se.Code != code {
		t.Fatalf("want %d, got %d %s", code, se.Code, se.Reason)
	}
}

func TestRFC3261_10_3_Step1_DomainNotOurs404(t *testing.T) {
	f := newFixture(t)
	raw := strings.Replace(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>"), "sip:a.example SIP/2.0", "sip:elsewhere.example SIP/2.0", 1)
	_, se := f.send(raw)
	wantStatus(t, se, 404)
}

func TestRFC3261_10_3_Step2_UnsupportedRequire420(t *testing.T) {
	f := newFixture(t)
	_, se := f.send(f.register("alice@a.example", "Require: gruu, path", "Contact: <sip:alice@192.0.2.10:5062>"))
	wantStatus(t, se, 420)
	if got := headerValue(se, "Unsupported"); got != "gruu" {
		t.Fatalf("Unsupported = %q, want gruu", got)
	}
}

func headerValue(se *sipcore.StatusError, name string) string {
	for _, h := range se.Headers {
		if strings.EqualFold(h.Name(), name) {
			return h.Value()
		}
	}
	return ""
}

func TestRFC3261_10_3_Step3_ChallengeOffersMD5AndSHA256(t *testing.T) {
	f := newFixture(t)
	_, se := f.send(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>"))
	wantStatus(t, se, 401)
	var algs []string
	for _, h := range se.Headers {
		if strings.EqualFold(h.Name(), "WWW-Authenticate") {
			c, err := digest.ParseChallenge(h.Value())
			if err != nil {
				t.Fatal(err)
			}
			if c.Realm != "a.example" || !c.SupportsQOP("auth") {
				t.Errorf("challenge %q: want realm a.example and qop auth", h.Value())
			}
			algs = append(algs, strings.ToUpper(c.Algorithm))
		}
	}
	if strings.Join(algs, ",") != "MD5,SHA-256" {
		t.Fatalf("challenges %v, want MD5 then SHA-256", algs)
	}
}

func TestRFC3261_10_3_Step3_BothAlgorithmsRegister(t *testing.T) {
	for _, md5 := range []bool{false, true} {
		f := newFixture(t)
		res, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>"), "alice", "alice-pw", md5)
		if se != nil {
			t.Fatalf("md5=%v: %v", md5, se)
		}
		if got := contacts(res); len(got) != 1 || got[0] != "<sip:alice@192.0.2.10:5062>;expires=3600" {
			t.Fatalf("md5=%v: contacts %q", md5, got)
		}
	}
}

func TestRFC3261_10_3_Step3_WrongPasswordLooksLikeUnknownUser(t *testing.T) {
	f := newFixture(t)
	_, wrong := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>"), "alice", "not-it", false)
	_, unknown := f.auth(f.register("mallory@a.example", "Contact: <sip:m@192.0.2.10:5062>"), "mallory", "whatever", false)
	if wrong == nil || unknown == nil {
		t.Fatal("a wrong password or an unknown user was accepted")
	}
	if wrong.Code != unknown.Code || wrong.Reason != unknown.Reason || len(wrong.Headers) != len(unknown.Headers) {
		t.Fatalf("answers differ: wrong password %d %q %d headers, unknown user %d %q %d headers",
			wrong.Code, wrong.Reason, len(wrong.Headers), unknown.Code, unknown.Reason, len(unknown.Headers))
	}
	if b, _ := f.store.Lookup(context.Background(), "alice@a.example"); len(b) != 0 {
		t.Fatalf("binding stored after a wrong password: %v", b)
	}
}

func TestRFC3261_10_3_Step5_OnlyOwnAOR403(t *testing.T) {
	f := newFixture(t)
	_, se := f.auth(f.register("alice@a.example", "Contact: <sip:bob@192.0.2.10:5062>"), "bob", "bob-pw", false)
	wantStatus(t, se, 403)
}

func TestRFC3261_10_3_Step5_ToInAnotherDomain404(t *testing.T) {
	f := newFixture(t)
	_, se := f.auth(f.register("alice@b.example", "Contact: <sip:alice@192.0.2.10:5062>"), "alice", "alice-pw", false)
	wantStatus(t, se, 404)
}

func TestRFC3261_10_3_Step6_ExpiresParamOverHeaderOverDefault(t *testing.T) {
	f := newFixture(t)
	res, se := f.auth(f.register("alice@a.example",
		"Expires: 600",
		"Contact: <sip:alice@192.0.2.10:1>;expires=120, <sip:alice@192.0.2.10:2>"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	got := strings.Join(contacts(res), " | ")
	for _, want := range []string{"<sip:alice@192.0.2.10:1>;expires=120", "<sip:alice@192.0.2.10:2>;expires=600"} {
		if !strings.Contains(got, want) {
			t.Fatalf("contacts %q lack %q", got, want)
		}
	}
	res, se = f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:3>"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	if got := strings.Join(contacts(res), " | "); !strings.Contains(got, "<sip:alice@192.0.2.10:3>;expires=3600") {
		t.Fatalf("default expires: contacts %q", got)
	}
}

func TestRFC3261_10_3_Step6_BelowMinExpires423(t *testing.T) {
	f := newFixture(t)
	_, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>;expires=30"), "alice", "alice-pw", false)
	wantStatus(t, se, 423)
	if got := headerValue(se, "Min-Expires"); got != "60" {
		t.Fatalf("Min-Expires = %q, want 60", got)
	}
}

func TestRFC3261_10_3_Step6_AboveMaxExpiresClamped(t *testing.T) {
	f := newFixture(t, registrar.WithExpires(60, 1800, 900))
	res, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>;expires=99999"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	if got := contacts(res); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=1800") {
		t.Fatalf("contacts %q, want expires clamped to 1800", got)
	}
}

// TestRFC3261_20_10_MalformedExpiresLenient: a malformed expires value
// is read as the default (RFC 3261 §20.10, §20.19) and one beyond 2^32-1
// as the largest, clamped to the maximum; neither is a 400.
func TestRFC3261_20_10_MalformedExpiresLenient(t *testing.T) {
	f := newFixture(t, registrar.WithExpires(60, 1800, 900))
	for _, c := range []struct{ header, param, want string }{
		{"Expires: 0.5", "", ";expires=900"},
		{"Expires: later", "", ";expires=900"},
		{"Expires: 99999999999999999999", "", ";expires=1800"},
		{"", ";expires=soon", ";expires=900"},
		{"", ";expires=-5", ";expires=900"},
		{"Expires: 120", ";expires=1.5", ";expires=120"},
		{"", ";expires=4294967296", ";expires=1800"},
	} {
		extra := []string{"Contact: <sip:alice@192.0.2.10:5062>" + c.param}
		if c.header != "" {
			extra = append(extra, c.header)
		}
		res, se := f.auth(f.register("alice@a.example", extra...), "alice", "alice-pw", false)
		if se != nil {
			t.Fatalf("%q %q: %v", c.header, c.param, se)
		}
		if got := contacts(res); len(got) != 1 || !strings.HasSuffix(got[0], c.want) {
			t.Errorf("%q %q: contacts %q, want %s", c.header, c.param, got, c.want)
		}
	}
}

func TestRFC3261_10_3_Step6_WildcardWithExpiresZeroRemovesAll(t *testing.T) {
	f := newFixture(t)
	if _, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:1>, <sip:alice@192.0.2.10:2>"), "alice", "alice-pw", false); se != nil {
		t.Fatal(se)
	}
	res, se := f.auth(f.register("alice@a.example", "Expires: 0", "Contact: *"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	if got := contacts(res); len(got) != 0 {
		t.Fatalf("contacts after Contact: * = %q", got)
	}
	if b, _ := f.store.Lookup(context.Background(), "alice@a.example"); len(b) != 0 {
		t.Fatalf("store still holds %v", b)
	}
}

func TestRFC3261_10_3_Step6_WildcardMisuse400(t *testing.T) {
	for name, extra := range map[string][]string{
		"no Expires":         {"Contact: *"},
		"Expires not zero":   {"Expires: 60", "Contact: *"},
		"with other Contact": {"Expires: 0", "Contact: *", "Contact: <sip:alice@192.0.2.10:1>"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			_, se := f.auth(f.register("alice@a.example", extra...), "alice", "alice-pw", false)
			wantStatus(t, se, 400)
		})
	}
}

func TestRFC3261_10_3_Step7_ExpiresZeroRemovesOneBinding(t *testing.T) {
	f := newFixture(t)
	if _, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:1>, <sip:alice@192.0.2.10:2>"), "alice", "alice-pw", false); se != nil {
		t.Fatal(se)
	}
	res, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:1>;expires=0"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	if got := contacts(res); len(got) != 1 || !strings.HasPrefix(got[0], "<sip:alice@192.0.2.10:2>") {
		t.Fatalf("contacts %q, want only :2", got)
	}
}

func TestRFC3261_10_3_Step7_SameCallIDNotHigherCSeqRejected(t *testing.T) {
	f := newFixture(t)
	raw := f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>")
	if _, se := f.auth(raw, "alice", "alice-pw", false); se != nil {
		t.Fatal(se)
	}
	// The same REGISTER again (same Call-ID, same CSeq): out of order.
	_, se := f.auth(raw, "alice", "alice-pw", false)
	wantStatus(t, se, 400)
}

func TestRFC3261_10_3_Step8_OKListsEveryBindingWithRemainingExpires(t *testing.T) {
	f := newFixture(t)
	if _, se := f.auth(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10:1>;q=0.5;expires=600"), "alice", "alice-pw", false); se != nil {
		t.Fatal(se)
	}
	f.advance(100 * time.Second)
	// A query (no Contact) lists what is bound, with the time left.
	res, se := f.auth(f.register("alice@a.example"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	if got := contacts(res); len(got) != 1 || got[0] != "<sip:alice@192.0.2.10:1>;expires=500;q=0.5" {
		t.Fatalf("contacts %q", got)
	}
	f.advance(600 * time.Second)
	res, _ = f.auth(f.register("alice@a.example"), "alice", "alice-pw", false)
	if got := contacts(res); len(got) != 0 {
		t.Fatalf("expired binding listed: %q", got)
	}
}

func TestMaxContactsPerAOR403(t *testing.T) {
	f := newFixture(t, registrar.WithMaxContacts(2))
	_, se := f.auth(f.register("alice@a.example", "Contact: <sip:a@192.0.2.10:1>, <sip:a@192.0.2.10:2>, <sip:a@192.0.2.10:3>"), "alice", "alice-pw", false)
	wantStatus(t, se, 403)
}

func TestRFC3581_SourceAddressAndTransportStored(t *testing.T) {
	f := newFixture(t)
	if _, se := f.auth(f.register("alice@a.example", "User-Agent: phone/1.0", `Contact: <sip:alice@10.0.0.5:5060>;+sip.instance="<urn:uuid:abc>";reg-id=1`), "alice", "alice-pw", false); se != nil {
		t.Fatal(se)
	}
	b, err := f.store.Lookup(context.Background(), "alice@a.example")
	if err != nil || len(b) != 1 {
		t.Fatalf("lookup: %v %v", b, err)
	}
	got := b[0]
	if got.Received != "192.0.2.10:5062" || got.Transport != "udp" || got.InstanceID != "urn:uuid:abc" || got.RegID != 1 || got.UserAgent != "phone/1.0" || got.NodeID != "node1" {
		t.Fatalf("binding %+v", got)
	}
}

func TestRFC3327_PathStoredAndReturned(t *testing.T) {
	f := newFixture(t)
	res, se := f.auth(f.register("alice@a.example", "Supported: path", "Path: <sip:edge1.a.example;lr>", "Path: <sip:edge2.a.example;lr>", "Contact: <sip:alice@10.0.0.5>"), "alice", "alice-pw", false)
	if se != nil {
		t.Fatal(se)
	}
	var paths []string
	for _, h := range res.GetHeaders("Path") {
		paths = append(paths, h.Value())
	}
	if strings.Join(paths, ",") != "<sip:edge1.a.example;lr>,<sip:edge2.a.example;lr>" {
		t.Fatalf("Path in 200: %q", paths)
	}
	if h := res.GetHeader("Supported"); h == nil || !strings.Contains(h.Value(), "path") {
		t.Fatal("200 lacks Supported: path")
	}
	b, _ := f.store.Lookup(context.Background(), "alice@a.example")
	if len(b) != 1 || len(b[0].Path) != 2 {
		t.Fatalf("stored Path: %+v", b)
	}
}

func TestBadInput400(t *testing.T) {
	const base = `REGISTER sip:a.example SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-x
From: <sip:alice@a.example>;tag=f1
To: <sip:alice@a.example>
Call-ID: c1
CSeq: 1 REGISTER
Contact: <sip:alice@192.0.2.10>
Content-Length: 0
`
	cases := []struct{ name, from, to, reason string }{
		{"missing To", "To: <sip:alice@a.example>\n", "", "Missing To"},
		{"garbled To", "To: <sip:alice@a.example>", "To: <sip:alice@a.example", "Malformed To"},
		{"missing From", "From: <sip:alice@a.example>;tag=f1\n", "", "Missing From"},
		{"garbled From", "From: <sip:alice@a.example>;tag=f1", "From: <<<", "Malformed From"},
		{"missing Call-ID", "Call-ID: c1\n", "", "Missing Call-ID"},
		{"garbled Contact", "Contact: <sip:alice@192.0.2.10>", "Contact: <sip:alice@192.0.2.10", "Malformed Contact"},
		{"CSeq method mismatch", "CSeq: 1 REGISTER", "CSeq: 1 INVITE", "CSeq method"},
		{"q out of range", "Contact: <sip:alice@192.0.2.10>", "Contact: <sip:alice@192.0.2.10>;q=2", "q parameter"},
		{"tel contact", "Contact: <sip:alice@192.0.2.10>", "Contact: <tel:+15551234>", "sip: or sips:"},
		{"control character", "Call-ID: c1", "Call-ID: c1\x01", "Control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			raw := strings.Replace(base, c.from, c.to, 1)
			if raw == base {
				t.Fatalf("case does not change the request")
			}
			// Malformed requests are answered before authentication;
			// bad Contacts after it (RFC 3261 §10.3 steps 3 and 6).
			_, se := f.send(raw)
			if se != nil && se.Code == 401 {
				_, se = f.auth(raw, "alice", "alice-pw", false)
			}
			wantStatus(t, se, 400)
			if !strings.Contains(se.Reason, c.reason) {
				t.Fatalf("reason %q does not say %q", se.Reason, c.reason)
			}
			if strings.ContainsAny(se.Reason, "\r\n") {
				t.Fatalf("reason %q carries CR/LF", se.Reason)
			}
		})
	}
}

// TestStoreUnavailable503 checks the mapping of a store outage to 503 with
// Retry-After.
func TestStoreUnavailable503(t *testing.T) {
	f := newFixture(t)
	f.reg = registrar.New([]string{"a.example"}, downStore{}, authOnly{})
	_, se := f.send(f.register("alice@a.example", "Contact: <sip:alice@192.0.2.10>"))
	wantStatus(t, se, 503)
	if headerValue(se, "Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

// downStore is a store whose backend is gone, as location/redis reports it.
type downStore struct{}

func (downStore) Update(context.Context, string, location.Update) ([]location.Binding, error) {
	return nil, fmt.Errorf("redis: dial: %w", location.ErrUnavailable)
}
func (downStore) Lookup(context.Context, string) ([]location.Binding, error) {
	return nil, fmt.Errorf("redis: dial: %w", location.ErrUnavailable)
}
func (downStore) Close() error { return nil }

// authOnly accepts alice.
type authOnly struct{}

func (authOnly) Authenticate(context.Context, *sip.Request, string, bool) (string, error) {
	return "alice", nil
}

func FuzzRegister(f *testing.F) {
	f.Add(registerRaw(1, "alice@a.example", "Contact: <sip:alice@192.0.2.10:5062>;expires=60;q=0.1"))
	f.Add(registerRaw(2, "alice@a.example", "Expires: 0", "Contact: *"))
	f.Add(registerRaw(3, "alice@a.example", `Contact: "A, B" <sip:a@h>;+sip.instance="<urn:x>";reg-id=9, <sip:b@h>`))
	f.Fuzz(func(t *testing.T, raw string) {
		msg, err := sipcore.NewParser().ParseSIP([]byte(raw))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		reg := registrar.New([]string{"a.example"}, memory.New(), authOnly{})
		res, err := reg.Register(context.Background(), req)
		if err != nil {
			var se *sipcore.StatusError
			if !errors.As(err, &se) || se.Code < 400 || strings.ContainsAny(se.Reason, "\r\n") {
				t.Fatalf("error %v", err)
			}
			_ = sipcore.Response(req, err).String()
			return
		}
		_ = res.String()
	})
}

// TestRFC3581_NATDetection checks when a binding is marked to be reached
// over its source flow instead of its Contact.
func TestRFC3581_NATDetection(t *testing.T) {
	for _, c := range []struct {
		name, via, contact string
		nat                bool
	}{
		{"public contact, Via is the source", "192.0.2.10:5062", "<sip:alice@192.0.2.10:5062>", false},
		{"contact elsewhere, Via is the source", "192.0.2.10:5062", "<sip:alice@192.0.2.99:5070>", false},
		{"Via differs from the source", "10.0.0.5:5060", "<sip:alice@10.0.0.5:5060>", true},
		{"private contact", "192.0.2.10:5062", "<sip:alice@10.0.0.5:5060>", true},
		{"CGNAT contact", "192.0.2.10:5062", "<sip:alice@100.64.1.2:5060>", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			raw := strings.Replace(f.register("alice@a.example", "Contact: "+c.contact), "SIP/2.0/UDP 192.0.2.10:5062", "SIP/2.0/UDP "+c.via, 1)
			if _, se := f.auth(raw, "alice", "alice-pw", false); se != nil {
				t.Fatal(se)
			}
			b, _ := f.store.Lookup(context.Background(), "alice@a.example")
			if len(b) != 1 || b[0].NAT != c.nat {
				t.Fatalf("bindings %+v, want NAT=%v", b, c.nat)
			}
		})
	}
}
