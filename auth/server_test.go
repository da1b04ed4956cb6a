package auth

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/sipcore"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// mapStore is a CredentialStore for tests.
type mapStore map[string]Credential

func (m mapStore) Lookup(_ context.Context, user, realm string) (Credential, error) {
	if c, ok := m[user+"@"+realm]; ok {
		return c, nil
	}
	return Credential{}, ErrUnknownUser
}

// failStore is a CredentialStore that always returns err.
type failStore struct{ err error }

func (f failStore) Lookup(context.Context, string, string) (Credential, error) {
	return Credential{}, f.err
}

// Helpers below compute digests the way a client does, with crypto/md5
// and crypto/sha256 directly, independently of the code under test.
func md5hex(s string) string    { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
func sha256hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// client holds what a UA knows to answer a challenge.
type client struct {
	user, realm, password, alg string
}

// answer returns the Authorization value for the given challenge fields.
func (c client) answer(method, uri, nonce, nc, cnonce string) string {
	h := md5hex
	if strings.EqualFold(c.alg, "SHA-256") {
		h = sha256hex
	}
	ha1 := h(c.user + ":" + c.realm + ":" + c.password)
	ha2 := h(method + ":" + uri)
	resp := h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	v := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", cnonce="%s", qop=auth, nc=%s`,
		c.user, c.realm, nonce, uri, resp, cnonce, nc)
	if c.alg != "" {
		v += ", algorithm=" + c.alg
	}
	return v
}

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func register(t testing.TB, ruri string, authz ...string) *sip.Request {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.REGISTER, u)
	for _, a := range authz {
		req.AppendHeader(sip.NewHeader("Authorization", a))
	}
	return req
}

func users() mapStore {
	return mapStore{
		"alice@a.example": NewCredential("alice", "a.example", "alice-secret"),
		"bob@a.example":   NewCredential("bob", "a.example", "bob-secret"),
	}
}

func statusOf(t testing.TB, err error) *sipcore.StatusError {
	t.Helper()
	var se *sipcore.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *sipcore.StatusError", err)
	}
	return se
}

var nonceParam = regexp.MustCompile(`nonce="([^"]*)"`)

// challengeNonce returns the nonce of the first challenge in err.
func challengeNonce(t testing.TB, err error) string {
	t.Helper()
	se := statusOf(t, err)
	if len(se.Headers) == 0 {
		t.Fatalf("%v: no challenge", err)
	}
	m := nonceParam.FindStringSubmatch(se.Headers[0].Value())
	if m == nil {
		t.Fatalf("no nonce in %q", se.Headers[0].Value())
	}
	return m[1]
}

// fetchNonce sends a REGISTER without credentials and returns the nonce of
// the challenge.
func fetchNonce(t testing.TB, s *Server) string {
	t.Helper()
	_, err := s.Authenticate(context.Background(), register(t, "sip:a.example"), "a.example", false)
	return challengeNonce(t, err)
}

// fetchNonceFrom gets a challenge as a client at src (host:port) would:
// a nonce is good only from the address it was sent to.
func fetchNonceFrom(t testing.TB, s *Server, src string) string {
	t.Helper()
	req := register(t, "sip:a.example")
	req.SetSource(src)
	_, err := s.Authenticate(context.Background(), req, "a.example", false)
	return challengeNonce(t, err)
}

// TestRFC7616Section391Vectors checks the request-digest against the
// examples of RFC 7616 §3.9.1 (MD5 and SHA-256).
func TestRFC7616Section391Vectors(t *testing.T) {
	c := credentials{
		username: "Mufasa", realm: "http-auth@example.org", uri: "/dir/index.html", qop: "auth", nc: "00000001",
		nonce:  "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
		cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
	}
	cred := NewCredential("Mufasa", "http-auth@example.org", "Circle of Life")
	for _, tc := range []struct {
		alg       algorithm
		ha1, want string
	}{
		{algMD5, cred.HA1MD5, "8ca523f5e9506fed4657c9700eebdbec"},
		{algSHA256, cred.HA1SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		if got := string(tc.alg.response(nil, tc.ha1, "GET", &c)); got != tc.want {
			t.Errorf("alg %d: response %s, RFC says %s", tc.alg, got, tc.want)
		}
	}
	// The test's own client agrees with the RFC too.
	cl := client{user: "Mufasa", realm: "http-auth@example.org", password: "Circle of Life", alg: "SHA-256"}
	if a := cl.answer("GET", c.uri, c.nonce, c.nc, c.cnonce); !strings.Contains(a, `response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"`) {
		t.Errorf("test client: %s", a)
	}
}

// TestRFC8760SHA256AndMD5Accepted checks that a client may answer with
// either algorithm, and that an absent algorithm means MD5 (RFC 7616 §3.3).
func TestRFC8760SHA256AndMD5Accepted(t *testing.T) {
	for _, alg := range []string{"SHA-256", "MD5", "", "sha-256", "md5"} {
		t.Run("alg="+alg, func(t *testing.T) {
			s := NewServer(users(), testSecret)
			nonce := fetchNonce(t, s)
			c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: alg}
			req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "abc"))
			user, err := s.Authenticate(context.Background(), req, "a.example", false)
			if err != nil || user != "alice" {
				t.Fatalf("Authenticate = %q, %v; want alice", user, err)
			}
		})
	}
}

// TestRFC8760ChallengeMD5ThenSHA256 checks the default challenge: 401
// with WWW-Authenticate (407 with Proxy-Authenticate for a proxy), MD5
// first, then SHA-256, qop="auth", one nonce.
func TestRFC8760ChallengeMD5ThenSHA256(t *testing.T) {
	for _, tc := range []struct {
		proxy  bool
		code   int
		header string
	}{
		{false, 401, "WWW-Authenticate"},
		{true, 407, "Proxy-Authenticate"},
	} {
		s := NewServer(users(), testSecret)
		_, err := s.Authenticate(context.Background(), register(t, "sip:a.example"), "a.example", tc.proxy)
		se := statusOf(t, err)
		if se.Code != tc.code || !errors.Is(err, ErrNoCredentials) || len(se.Headers) != 2 {
			t.Fatalf("proxy=%v: got %v with %d headers", tc.proxy, err, len(se.Headers))
		}
		nonce := challengeNonce(t, err)
		for i, alg := range []string{"MD5", "SHA-256"} {
			h := se.Headers[i]
			want := `Digest realm="a.example", nonce="` + nonce + `", qop="auth", algorithm=` + alg
			if h.Name() != tc.header || h.Value() != want {
				t.Errorf("header %d: %s: %s\nwant %s: %s", i, h.Name(), h.Value(), tc.header, want)
			}
		}
	}
}

// TestProxyAuthorizationIsRead checks that proxy=true reads
// Proxy-Authorization, not Authorization.
func TestProxyAuthorizationIsRead(t *testing.T) {
	s := NewServer(users(), testSecret)
	_, err := s.Authenticate(context.Background(), register(t, "sip:a.example"), "a.example", true)
	nonce := challengeNonce(t, err)
	c := client{user: "bob", realm: "a.example", password: "bob-secret", alg: "SHA-256"}
	req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "x"))
	if _, err := s.Authenticate(context.Background(), req, "a.example", true); statusOf(t, err).Code != 407 {
		t.Fatalf("Authorization accepted for a proxy: %v", err)
	}
	req = register(t, "sip:a.example")
	req.AppendHeader(sip.NewHeader("Proxy-Authorization", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "x")))
	if user, err := s.Authenticate(context.Background(), req, "a.example", true); err != nil || user != "bob" {
		t.Fatalf("Authenticate = %q, %v", user, err)
	}
}

// TestUnknownUserAndWrongPasswordAnswerAlike checks that users cannot be
// enumerated: same status, same header names, same challenge shape.
func TestUnknownUserAndWrongPasswordAnswerAlike(t *testing.T) {
	s := NewServer(users(), testSecret)
	shape := func(c client) string {
		nonce := fetchNonce(t, s)
		req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"))
		_, err := s.Authenticate(context.Background(), req, "a.example", false)
		se := statusOf(t, err)
		out := fmt.Sprintf("%d %s", se.Code, se.Reason)
		for _, h := range se.Headers {
			out += "\n" + h.Name() + ": " + nonceParam.ReplaceAllString(h.Value(), `nonce="N"`)
		}
		return out
	}
	for _, alg := range []string{"SHA-256", "MD5"} {
		wrong := shape(client{user: "alice", realm: "a.example", password: "guess", alg: alg})
		unknown := shape(client{user: "mallory", realm: "a.example", password: "guess", alg: alg})
		fullAOR := shape(client{user: "alice@a.example", realm: "a.example", password: "alice-secret", alg: alg})
		if wrong != unknown || wrong != fullAOR || !strings.HasPrefix(wrong, "401 ") {
			t.Errorf("%s: wrong password:\n%s\nunknown user:\n%s\nfull AOR as username:\n%s", alg, wrong, unknown, fullAOR)
		}
	}
}

// TestRFC7616StaleNonce checks stale=true on an expired nonce with a right
// digest, and a plain challenge when the digest is wrong too (§3.3: stale
// only "if the request-digest was valid").
func TestRFC7616StaleNonce(t *testing.T) {
	clk := newClock()
	s := NewServer(users(), testSecret, WithClock(clk.now), WithNonceLifetime(time.Minute))
	for _, tc := range []struct {
		password string
		stale    bool
	}{
		{"alice-secret", true},
		// An old nonce is refreshed before its answer is judged, so a
		// wrong password is not counted against the source either.
		{"guess", true},
	} {
		nonce := fetchNonce(t, s)
		clk.add(time.Minute + time.Second)
		c := client{user: "alice", realm: "a.example", password: tc.password, alg: "SHA-256"}
		req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"))
		_, err := s.Authenticate(context.Background(), req, "a.example", false)
		se := statusOf(t, err)
		for _, h := range se.Headers {
			if got := strings.Contains(h.Value(), "stale=true"); got != tc.stale || se.Code != 401 {
				t.Errorf("password %q: %d %s: stale=%v, want %v", tc.password, se.Code, h.Value(), got, tc.stale)
			}
		}
		if tc.stale && !errors.Is(err, ErrStaleNonce) {
			t.Errorf("cause %v, want ErrStaleNonce", err)
		}
	}
}

// TestNonceMustBeOurs checks that nonces from another secret or realm,
// altered, garbled or stamped in the future get a fresh challenge without
// stale.
func TestNonceMustBeOurs(t *testing.T) {
	clk := newClock()
	s := NewServer(users(), testSecret, WithClock(clk.now))
	other := NewServer(users(), []byte("another secret, another domain.."), WithClock(clk.now))
	good := fetchNonce(t, s)
	flipped := []byte(good)
	flipped[20] ^= 1
	if flipped[20] == '-' || flipped[20] == '_' || flipped[20] > 'z' {
		flipped[20] = 'A'
	}
	clk.add(time.Minute)
	future := fetchNonce(t, s)
	clk.add(-time.Minute)
	clkOther := newClock()
	sOtherRealm := NewServer(users(), testSecret, WithClock(clkOther.now))
	_, err := sOtherRealm.Authenticate(context.Background(), register(t, "sip:b.example"), "b.example", false)
	otherRealm := challengeNonce(t, err)

	for name, nonce := range map[string]string{
		"other secret": fetchNonce(t, other),
		"other realm":  otherRealm,
		"altered":      string(flipped),
		"garbled":      "not-a-nonce",
		"future":       future,
		"empty":        "",
	} {
		t.Run(name, func(t *testing.T) {
			c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "SHA-256"}
			req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"))
			_, err := s.Authenticate(context.Background(), req, "a.example", false)
			se := statusOf(t, err)
			if se.Code != 401 || !errors.Is(err, ErrBadNonce) || strings.Contains(se.Headers[0].Value(), "stale") {
				t.Fatalf("got %v, %q", err, se.Headers[0].Value())
			}
		})
	}
}

// TestRFC7616NonceCountReplayRejected checks that an nc not above the
// highest seen for the nonce is rejected, and a higher one accepted.
func TestRFC7616NonceCountReplayRejected(t *testing.T) {
	s := NewServer(users(), testSecret)
	nonce := fetchNonce(t, s)
	c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "MD5"}
	for i, tc := range []struct {
		nc string
		ok bool
	}{
		{"00000001", true},
		{"00000001", false},
		{"00000003", true},
		{"00000002", false},
		{"00000003", false},
		{"0000000A", true},
	} {
		req := register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, tc.nc, fmt.Sprint("c", i)))
		_, err := s.Authenticate(context.Background(), req, "a.example", false)
		if tc.ok != (err == nil) {
			t.Fatalf("step %d nc=%s: err %v, want ok=%v", i, tc.nc, err, tc.ok)
		}
		if !tc.ok && (!errors.Is(err, ErrReplay) || !strings.Contains(statusOf(t, err).Headers[0].Value(), "stale=true")) {
			t.Fatalf("step %d nc=%s: %v, want a stale=true challenge for a replay", i, tc.nc, err)
		}
	}
}

// TestRFC3261CredentialsPickedByRealm checks that among several
// Authorization headers the one for our realm is used, and that
// credentials for other realms only get a challenge.
func TestRFC3261CredentialsPickedByRealm(t *testing.T) {
	s := NewServer(users(), testSecret)
	nonce := fetchNonce(t, s)
	ours := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "SHA-256"}
	theirs := client{user: "alice", realm: "b.example", password: "alice-secret", alg: "SHA-256"}
	req := register(t, "sip:a.example",
		`Basic YWxpY2U6c2VjcmV0`,
		theirs.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"),
		ours.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"))
	if user, err := s.Authenticate(context.Background(), req, "a.example", false); err != nil || user != "alice" {
		t.Fatalf("Authenticate = %q, %v", user, err)
	}
	req = register(t, "sip:a.example", theirs.answer("REGISTER", "sip:a.example", nonce, "00000002", "c"))
	_, err := s.Authenticate(context.Background(), req, "a.example", false)
	if se := statusOf(t, err); se.Code != 401 || !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("wrong realm: %v", err)
	}
}

// TestGarbledAuthorizationIs400 checks that broken Digest credentials get
// 400, not a challenge.
func TestGarbledAuthorizationIs400(t *testing.T) {
	s := NewServer(users(), testSecret)
	resp := strings.Repeat("a", 32)
	for name, v := range map[string]string{
		"no params":        `Digest`,
		"unterminated":     `Digest username="alice, realm="a.example"`,
		"no comma":         `Digest username="alice" realm="a.example"`,
		"missing response": `Digest username="alice", realm="a.example", nonce="n", uri="sip:a.example"`,
		"repeated":         `Digest username="alice", username="bob", realm="a.example", nonce="n", uri="sip:a.example", response="` + resp + `"`,
		"bad nc":           `Digest username="alice", realm="a.example", nonce="n", uri="sip:a.example", response="` + resp + `", qop=auth, nc=1, cnonce="c"`,
		"qop without nc":   `Digest username="alice", realm="a.example", nonce="n", uri="sip:a.example", response="` + resp + `", qop=auth`,
		"response not hex": `Digest username="alice", realm="a.example", nonce="n", uri="sip:a.example", response="zz"`,
		"uri without host": `Digest username="alice", realm="a.example", nonce="n", uri="sip:", response="` + resp + `", qop=auth, nc=00000001, cnonce="c"`,
		"uri not a URI":    `Digest username="alice", realm="a.example", nonce="n", uri="garbage", response="` + resp + `", qop=auth, nc=00000001, cnonce="c"`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Authenticate(context.Background(), register(t, "sip:a.example", v), "a.example", false)
			if se := statusOf(t, err); se.Code != 400 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestRFC2069ResponseWithoutQopRejected checks that qop=auth is required:
// a response without qop, or with auth-int, is challenged again.
func TestRFC2069ResponseWithoutQopRejected(t *testing.T) {
	s := NewServer(users(), testSecret)
	nonce := fetchNonce(t, s)
	ha1 := md5hex("alice:a.example:alice-secret")
	rfc2069 := md5hex(ha1 + ":" + nonce + ":" + md5hex("REGISTER:sip:a.example"))
	c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "MD5"}
	for name, v := range map[string]string{
		"no qop":   fmt.Sprintf(`Digest username="alice", realm="a.example", nonce="%s", uri="sip:a.example", response="%s"`, nonce, rfc2069),
		"auth-int": strings.Replace(c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"), "qop=auth", "qop=auth-int", 1),
		"md5-sess": strings.Replace(c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c"), "algorithm=MD5", "algorithm=MD5-sess", 1),
	} {
		_, err := s.Authenticate(context.Background(), register(t, "sip:a.example", v), "a.example", false)
		if se := statusOf(t, err); se.Code != 401 || !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// TestRFC7616DigestURIMustParse checks the uri parameter: it must be a SIP
// URI with a host (400 otherwise), but need not equal the Request-URI,
// since SIPp puts the server's address there.
func TestRFC7616DigestURIMustParse(t *testing.T) {
	for _, tc := range []struct {
		ruri, uri string
		ok        bool
	}{
		{"sip:a.example", "sip:a.example", true},
		{"sip:a.example", "sip:A.Example:5060", true},
		{"sip:a.example", "sip:127.0.0.1:5070", true},
		{"sip:bob@a.example", "sip:carol@a.example", true},
		{"sip:a.example", "not a uri", false},
		{"sip:a.example", "sip:", false},
	} {
		s := NewServer(users(), testSecret)
		nonce := fetchNonce(t, s)
		c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "SHA-256"}
		_, err := s.Authenticate(context.Background(), register(t, tc.ruri, c.answer("REGISTER", tc.uri, nonce, "00000001", "c")), "a.example", false)
		if tc.ok && err != nil {
			t.Errorf("R-URI %s, uri %s: %v", tc.ruri, tc.uri, err)
		}
		if !tc.ok && (err == nil || statusOf(t, err).Code != 400 || !errors.Is(err, ErrMalformed)) {
			t.Errorf("R-URI %s, uri %s: got %v, want 400 malformed", tc.ruri, tc.uri, err)
		}
	}
}

// TestAlgorithmsOfferedInOrder checks WithAlgorithms: the challenges come
// in the configured order, and an algorithm not offered is re-challenged;
// and WithMD5OnlyAgents: baresip 1.x gets MD5 alone.
func TestAlgorithmsOfferedInOrder(t *testing.T) {
	s := NewServer(users(), testSecret, WithAlgorithms("SHA-256"))
	_, err := s.Authenticate(context.Background(), register(t, "sip:a.example"), "a.example", false)
	se := statusOf(t, err)
	if len(se.Headers) != 1 || !strings.HasSuffix(se.Headers[0].Value(), "algorithm=SHA-256") {
		t.Fatalf("SHA-256 only: challenges %v", se.Headers)
	}
	nonce := challengeNonce(t, err)
	c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "MD5"}
	_, err = s.Authenticate(context.Background(), register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c")), "a.example", false)
	if statusOf(t, err).Code != 401 {
		t.Fatalf("MD5 answer to a SHA-256-only server: %v, want 401", err)
	}
	legacy := register(t, "sip:a.example")
	legacy.AppendHeader(sip.NewHeader("User-Agent", "baresip v1.0.0 (x86_64/linux)"))
	_, err = NewServer(users(), testSecret).Authenticate(context.Background(), legacy, "a.example", false)
	if hs := statusOf(t, err).Headers; len(hs) != 1 || !strings.HasSuffix(hs[0].Value(), "algorithm=MD5") {
		t.Fatalf("baresip 1.x: challenges %v, want MD5 alone", hs)
	}
	for _, bad := range [][]string{nil, {"SHA-512"}, {"MD5", "md5"}, {""}} {
		if CheckAlgorithms(bad) == nil {
			t.Errorf("CheckAlgorithms(%q) accepted", bad)
		}
	}
	if err := CheckAlgorithms([]string{"SHA-256", "MD5"}); err != nil {
		t.Error(err)
	}
}

// TestStoreUnavailableIs503RetryAfter checks the answer when the
// credential store cannot be reached, and a 500 for other store errors.
func TestStoreUnavailableIs503RetryAfter(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("dial: %w", ErrUnavailable), 503},
		{errors.New("disk on fire"), 500},
	} {
		s := NewServer(failStore{tc.err}, testSecret)
		nonce := fetchNonce(t, s)
		c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "SHA-256"}
		_, err := s.Authenticate(context.Background(), register(t, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, "00000001", "c")), "a.example", false)
		se := statusOf(t, err)
		if se.Code != tc.code {
			t.Fatalf("store error %v: got %v", tc.err, err)
		}
		if tc.code == 503 && (len(se.Headers) != 1 || se.Headers[0].Name() != "Retry-After" || se.Headers[0].Value() != "5") {
			t.Fatalf("503 headers %v", se.Headers)
		}
	}
}

// TestNCTrackerFullStaysReplaySafe checks that a full tracker forgets
// older nonces by making them stale, never by accepting a replay.
func TestNCTrackerFullStaysReplaySafe(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tr := newNCTracker(time.Minute, 2)
	key := func(b byte) nonceKey { return nonceKey{b} }
	use := func(b byte, nc uint32) error { _, err := tr.use(key(b), now.Add(-time.Second), nc, now); return err }
	for _, b := range []byte{1, 2} {
		if err := use(b, 1); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(20 * time.Second)
	if forced, err := tr.use(key(3), now, 1, now); err != nil || !forced {
		t.Fatalf("third nonce: forced=%v err=%v", forced, err)
	}
	if err := use(1, 1); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after forced rotation: %v", err)
	}
	now = now.Add(20 * time.Second)
	tr.use(key(4), now, 1, now)
	tr.use(key(5), now, 1, now) // forces again: nonces 1 and 2 are forgotten
	if _, err := tr.use(key(1), now.Add(-41*time.Second), 1, now); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("forgotten nonce replayed: %v", err)
	}
	if _, err := tr.use(key(6), now, 1, now); err != nil {
		t.Fatalf("new nonce: %v", err)
	}
}

// TestNCTrackerSustainedRate checks that a tracker filling up again and
// again (a registrar answering more fresh nonces a second than it tracks
// per period) refuses no nonce issued since the last generation it
// dropped, and still catches replays: a stream of clients each using a
// nonce fetched a moment before, 50 times the tracker's size.
func TestNCTrackerSustainedRate(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tr := newNCTracker(5*time.Minute, 100)
	type used struct {
		k  nonceKey
		ts time.Time
	}
	var all []used
	forcedN := 0
	for i := range 5000 {
		var k nonceKey
		binary.BigEndian.PutUint64(k[:8], uint64(i))
		ts := now.Add(-time.Millisecond) // fetched a moment ago
		forced, err := tr.use(k, ts, 1, now)
		if err != nil {
			t.Fatalf("nonce %d, issued 1 ms before its use: %v", i, err)
		}
		if forced {
			forcedN++
		}
		all = append(all, used{k, ts})
		now = now.Add(50 * time.Microsecond)
	}
	if forcedN < 40 {
		t.Fatalf("the tracker filled %d times, want about 50", forcedN)
	}
	for _, i := range []int{0, 2500, 4999} { // forgotten, forgotten, tracked
		if _, err := tr.use(all[i].k, all[i].ts, 1, now); !errors.Is(err, ErrReplay) && !errors.Is(err, ErrStaleNonce) {
			t.Fatalf("replay of nonce %d accepted: %v", i, err)
		}
	}
	if _, err := tr.use(all[4999].k, all[4999].ts, 2, now); err != nil {
		t.Fatalf("the next count of a tracked nonce: %v", err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	path := b.TempDir() + "/users"
	fs, err := OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := fs.Add(context.Background(), fmt.Sprintf("user%d@a.example", i), "secret"); err != nil {
			b.Fatal(err)
		}
	}
	if err := fs.Add(context.Background(), "alice@a.example", "alice-secret"); err != nil {
		b.Fatal(err)
	}
	for _, alg := range []string{"SHA-256", "MD5"} {
		b.Run(alg, func(b *testing.B) {
			s := NewServer(fs, testSecret)
			// As received: the transport sets the source address.
			nonce := fetchNonceFrom(b, s, "192.0.2.10:5060")
			c := client{user: "alice", realm: "a.example", password: "alice-secret", alg: alg}
			reqs := make([]*sip.Request, b.N)
			for i := range reqs {
				reqs[i] = register(b, "sip:a.example", c.answer("REGISTER", "sip:a.example", nonce, fmt.Sprintf("%08x", i+1), "cnonce"))
				reqs[i].SetSource("192.0.2.10:5060")
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Authenticate(ctx, reqs[i], "a.example", false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNCTrackerFutureStampedNonce: a nonce stamped ahead of this node's
// clock (another node's runs fast, within maxSkew) does not make the
// tracker's floor pass now when it is forgotten: fresh nonces issued
// after it keep working, and its replay is still caught.
func TestNCTrackerFutureStampedNonce(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tr := newNCTracker(time.Minute, 2)
	key := func(b byte) nonceKey { return nonceKey{b} }
	future := now.Add(9 * time.Second)
	if _, err := tr.use(key(100), future, 1, now); err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // fills the tracker again and again
		now = now.Add(time.Second)
		if _, err := tr.use(key(byte(i)), now.Add(-time.Millisecond), 1, now); err != nil {
			t.Fatalf("fresh nonce %d, %v after the future-stamped one: %v", i, now.Sub(future.Add(-9*time.Second)), err)
		}
	}
	if _, err := tr.use(key(100), future, 1, now); !errors.Is(err, ErrReplay) && !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("replay of the future-stamped nonce: %v", err)
	}
}
