package auth

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/sipcore"
)

// Server verifies digest credentials (RFC 7616, RFC 8760, RFC 3261 §22).
// It is safe for concurrent use.
type Server struct {
	creds    CredentialStore
	macs     *macPool
	nc       *ncTracker
	shared   *sharedNC // WithSharedNonceCounts; nil: nc alone
	sharedC  goredis.UniversalClient
	lifetime time.Duration
	offer    []algorithm
	legacyUA []string
	now      func() time.Time
	log      *slog.Logger
	guard    *Guard
}

// Option configures a Server.
type Option func(*Server)

// DefaultNonceLifetime is how long a nonce is accepted unless
// WithNonceLifetime says otherwise.
const DefaultNonceLifetime = 5 * time.Minute

// maxTracked bounds each generation of the nonce-count tracker.
const maxTracked = 1 << 17

// RetryAfter is the Retry-After, in seconds, of the 503 sent when the
// credential store is unavailable.
const RetryAfter = 5

// WithNonceLifetime sets how long a nonce is accepted; an older one is
// answered with a fresh challenge carrying stale=true. The default is
// DefaultNonceLifetime.
func WithNonceLifetime(d time.Duration) Option { return func(s *Server) { s.lifetime = d } }

// WithClock sets the clock (time.Now by default); tests use it to age
// nonces.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithSharedNonceCounts keeps the nonce counts in Redis (client c), so
// that an Authorization replayed to another node of the domain is
// refused there too; see sharedNC. Without it each node tracks the counts
// it saw.
func WithSharedNonceCounts(c goredis.UniversalClient) Option {
	return func(s *Server) { s.sharedC = c }
}

// WithLogger sets the logger (slog.Default by default).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithGuard makes the server record every failed authentication in g and
// refuse requests from the sources g has banned, with 403 and no digest
// work. Without it (the default) failures are only answered.
func WithGuard(g *Guard) Option { return func(s *Server) { s.guard = g } }

// WithAlgorithms sets the digest algorithms offered, most preferred first
// ("MD5", "SHA-256"); unknown names are ignored (see CheckAlgorithms). The
// default is MD5 then SHA-256: many clients (SIPp, JsSIP, older phones)
// read only the first challenge and know only MD5, while clients that
// follow RFC 8760 pick the best algorithm they support from all of them.
func WithAlgorithms(names ...string) Option {
	return func(s *Server) {
		var offer []algorithm
		for _, n := range names {
			if a, ok := parseAlgorithm(n); ok && n != "" {
				offer = append(offer, a)
			}
		}
		if len(offer) > 0 {
			s.offer = offer
		}
	}
}

// WithMD5OnlyAgents names clients, by User-Agent prefix, that get a lone
// MD5 challenge when MD5 is offered. Some clients fail on the first
// challenge they do not understand rather than picking one they do:
// baresip 1.x (libre) gives up with ENOSYS on a SHA-256 challenge. The
// default is DefaultMD5OnlyAgents.
func WithMD5OnlyAgents(prefixes ...string) Option {
	return func(s *Server) { s.legacyUA = prefixes }
}

// DefaultMD5OnlyAgents are the User-Agent prefixes of clients known to
// fail when offered SHA-256 beside MD5: baresip 1.x gives up with ENOSYS;
// JsSIP 3.13 and SIP.js 0.21 take the last challenge and abort on any
// algorithm but MD5.
var DefaultMD5OnlyAgents = []string{"baresip v0.", "baresip v1.", "JsSIP", "SIP.js"}

// md5Only reports whether req comes from a client that must see MD5 alone.
func (s *Server) md5Only(req *sip.Request) bool {
	if len(s.legacyUA) == 0 || !s.offers(algMD5) || len(s.offer) == 1 {
		return false
	}
	h := req.GetHeader("User-Agent")
	if h == nil {
		return false
	}
	ua := h.Value()
	for _, p := range s.legacyUA {
		if p != "" && strings.HasPrefix(ua, p) {
			return true
		}
	}
	return false
}

// CheckAlgorithms reports an error unless names is a non-empty list of
// distinct algorithms the server offers ("MD5", "SHA-256").
func CheckAlgorithms(names []string) error {
	seen := map[algorithm]bool{}
	for _, n := range names {
		a, ok := parseAlgorithm(n)
		if !ok || n == "" {
			return fmt.Errorf("%w: digest algorithm %q (want MD5 or SHA-256)", ErrUnsupported, clip(n))
		}
		if seen[a] {
			return fmt.Errorf("%w: digest algorithm %q given twice", ErrUnsupported, clip(n))
		}
		seen[a] = true
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: no digest algorithm", ErrUnsupported)
	}
	return nil
}

// NewServer returns a Server that looks users up in creds and signs nonces
// with secret, which every node of a domain must share.
func NewServer(creds CredentialStore, secret []byte, opts ...Option) *Server {
	s := &Server{creds: creds, macs: newMACPool(secret), lifetime: DefaultNonceLifetime, offer: []algorithm{algMD5, algSHA256}, legacyUA: DefaultMD5OnlyAgents, now: time.Now, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	s.nc = newNCTracker(s.lifetime, maxTracked)
	if s.sharedC != nil {
		s.shared = newSharedNC(s.sharedC, s.nc, s.lifetime, s.log)
	}
	return s
}

// Authenticate checks req's Authorization header (Proxy-Authorization when
// proxy is true) for realm and returns the authenticated digest username,
// the user part of the AOR. Otherwise it returns a *sipcore.StatusError:
// 401 (407 when proxy) with a SHA-256 and an MD5 challenge, stale=true when
// the digest was right but the nonce expired or its count was replayed;
// 400 for a garbled header or a digest uri other than the Request-URI; 503
// with Retry-After when the credential store is unavailable; 403 when the
// request's source is banned by the server's Guard (WithGuard), which
// counts each wrong response and unknown user. An unknown user and a wrong
// password get the same answer.
func (s *Server) Authenticate(ctx context.Context, req *sip.Request, realm string, proxy bool) (string, error) {
	src := sourceIP(req)
	if s.guard != nil {
		if src.IsValid() && s.guard.Refuse(src) {
			return "", &sipcore.StatusError{Code: 403, Reason: "Forbidden", Err: fmt.Errorf("%w: %s", ErrBanned, src)}
		}
	}
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	var c credentials
	found := false
	var garbled error
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), name) {
			continue
		}
		cc, err := parseAuthorization(h.Value())
		if errors.Is(err, errNotDigest) {
			continue
		}
		if err != nil {
			garbled = err
			continue
		}
		if strings.EqualFold(cc.realm, realm) {
			c, found = cc, true
			break
		}
	}
	if !found {
		if garbled != nil {
			return "", &sipcore.StatusError{Code: 400, Reason: "Bad Request", Err: garbled}
		}
		return "", s.challenge(req, realm, proxy, false, ErrNoCredentials)
	}

	alg, ok := parseAlgorithm(c.algorithm)
	if !ok || !s.offers(alg) || !strings.EqualFold(c.qop, "auth") {
		return "", s.challenge(req, realm, proxy, false, fmt.Errorf("%w: algorithm=%q qop=%q", ErrUnsupported, clip(c.algorithm), clip(c.qop)))
	}
	if err := checkURI(c.uri); err != nil {
		return "", &sipcore.StatusError{Code: 400, Reason: "Bad Request", Err: err}
	}
	now := s.now()
	key, issued, err := s.macs.check(c.nonce, realm, src, now)
	if err != nil {
		return "", s.challenge(req, realm, proxy, false, err)
	}
	// An old nonce gets a new challenge before its answer is judged: only
	// answers to fresh challenges count as failures.
	if now.Sub(issued) > s.lifetime {
		return "", s.challenge(req, realm, proxy, true, fmt.Errorf("%w: issued %v ago", ErrStaleNonce, now.Sub(issued).Round(time.Second)))
	}

	cred, err := s.creds.Lookup(ctx, c.username, realm)
	var ha1 string
	switch {
	case err == nil:
		ha1 = cred.HA1MD5
		if alg == algSHA256 {
			ha1 = cred.HA1SHA256
		}
	case errors.Is(err, ErrUnknownUser):
	case errors.Is(err, ErrUnavailable):
		return "", (&sipcore.StatusError{Code: 503, Reason: "Service Unavailable", Err: err}).
			With(sip.NewHeader("Retry-After", strconv.Itoa(RetryAfter)))
	default:
		return "", &sipcore.StatusError{Code: 500, Reason: "Server Internal Error", Err: err}
	}
	if len(ha1) != alg.hexLen() {
		// Unknown user, or no hash for this algorithm: spend the same
		// work as for a known one and answer as for a wrong password.
		ha1 = dummyHA1[:alg.hexLen()]
		err = ErrUnknownUser
	}
	var buf [2 * sha256.Size]byte
	want := alg.response(buf[:0], ha1, string(req.Method), &c)
	if !equalHexFold(want, c.response) || err != nil {
		if err == nil {
			err = ErrWrongPassword
		}
		if src.IsValid() && s.guard != nil {
			s.guard.Fail(src, c.username+"@"+realm, errors.Is(err, ErrWrongPassword), err)
		}
		return "", s.challenge(req, realm, proxy, false, fmt.Errorf("user %q: %w", clip(c.username), err))
	}

	nc, _ := strconv.ParseUint(c.nc, 16, 32)
	var forced bool
	if s.shared != nil {
		_, err = s.shared.use(ctx, c.username, realm, key, issued, uint32(nc), now)
	} else {
		forced, err = s.nc.use(key, issued, uint32(nc), now)
	}
	if forced {
		s.log.Warn("auth: nonce-count tracker full, dropped older nonces early; raise capacity or shorten the nonce lifetime", "max", maxTracked)
	}
	if err != nil {
		return "", s.challenge(req, realm, proxy, true, err)
	}
	return c.username, nil
}

// sourceIP returns the address req came from, or the zero Addr.
func sourceIP(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

func (s *Server) offers(a algorithm) bool {
	for _, o := range s.offer {
		if o == a {
			return true
		}
	}
	return false
}

// challenge returns a 401 (407 when proxy) carrying a fresh nonce in one
// challenge per offered algorithm, most preferred first (RFC 8760 §2.4).
func (s *Server) challenge(req *sip.Request, realm string, proxy, stale bool, cause error) *sipcore.StatusError {
	code, reason, name := 401, "Unauthorized", "WWW-Authenticate"
	if proxy {
		code, reason, name = 407, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	var b strings.Builder
	b.WriteString(`Digest realm="`)
	for i := 0; i < len(realm); i++ {
		if c := realm[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
			b.WriteByte(c)
		} else if c >= ' ' && c != 0x7f {
			b.WriteByte(c)
		}
	}
	b.WriteString(`", nonce="`)
	b.WriteString(s.macs.newNonce(s.now(), realm, sourceIP(req)))
	b.WriteString(`", qop="auth"`)
	if stale {
		b.WriteString(", stale=true")
	}
	b.WriteString(", algorithm=")
	v := b.String()
	se := &sipcore.StatusError{Code: code, Reason: reason, Err: cause}
	if s.md5Only(req) {
		se.Headers = append(se.Headers, sip.NewHeader(name, v+algMD5.String()))
		return se
	}
	for _, a := range s.offer {
		se.Headers = append(se.Headers, sip.NewHeader(name, v+a.String()))
	}
	return se
}

// algorithm is a digest algorithm the server offers.
type algorithm uint8

const (
	algMD5 algorithm = iota
	algSHA256
)

// dummyHA1 stands in for the hash of an unknown user.
const dummyHA1 = "0000000000000000000000000000000000000000000000000000000000000000"

// parseAlgorithm maps the algorithm parameter; absent means MD5 (RFC 7616
// §3.3). The -sess variants are not offered.
func parseAlgorithm(s string) (algorithm, bool) {
	switch {
	case s == "" || strings.EqualFold(s, "MD5"):
		return algMD5, true
	case strings.EqualFold(s, "SHA-256"):
		return algSHA256, true
	}
	return 0, false
}

func (a algorithm) String() string {
	if a == algSHA256 {
		return "SHA-256"
	}
	return "MD5"
}

func (a algorithm) hexLen() int {
	if a == algSHA256 {
		return 2 * sha256.Size
	}
	return 2 * md5.Size
}

// hexSum appends the lower-case hex digest of data to dst.
func (a algorithm) hexSum(dst, data []byte) []byte {
	if a == algSHA256 {
		h := sha256.Sum256(data)
		return hex.AppendEncode(dst, h[:])
	}
	h := md5.Sum(data)
	return hex.AppendEncode(dst, h[:])
}

// response appends the expected request-digest for qop=auth to dst
// (RFC 7616 §3.4.1): KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" H(A2)),
// A2 = method ":" uri.
func (a algorithm) response(dst []byte, ha1, method string, c *credentials) []byte {
	var scratch [512]byte
	b := append(append(append(scratch[:0], method...), ':'), c.uri...)
	var ha2 [2 * sha256.Size]byte
	h2 := a.hexSum(ha2[:0], b)
	b = append(append(scratch[:0], ha1...), ':')
	b = append(append(b, c.nonce...), ':')
	b = append(append(b, c.nc...), ':')
	b = append(append(b, c.cnonce...), ':')
	b = append(append(b, c.qop...), ':')
	b = append(b, h2...)
	return a.hexSum(dst, b)
}

// equalHexFold compares the lower-case hex want with the client's hex
// got, ignoring case, in time that depends only on the lengths.
func equalHexFold(want []byte, got string) bool {
	if len(got) != len(want) {
		return false
	}
	var lower [2 * sha256.Size]byte
	for i := 0; i < len(got); i++ {
		c := got[i]
		if c >= 'A' && c <= 'F' {
			c |= 0x20
		}
		lower[i] = c
	}
	return subtle.ConstantTimeCompare(want, lower[:len(got)]) == 1
}

// checkURI checks that the digest uri is a SIP URI with a host. It is not
// compared with the Request-URI: clients differ there (SIPp puts the
// server's address, proxies may rewrite the Request-URI), the uri is
// covered by the response hash, and replays are stopped by the nonce count.
func checkURI(uri string) error {
	u := uriPool.Get().(*sip.Uri)
	defer uriPool.Put(u)
	*u = sip.Uri{}
	if err := sip.ParseUri(uri, u); err != nil {
		return fmt.Errorf("%w: uri %q: %v", ErrMalformed, clip(uri), err)
	}
	if u.Host == "" && !(strings.EqualFold(u.Scheme, "tel") && u.Raw() != "") {
		// A tel: Request-URI (a number dialled, RFC 3966) is the one
		// kind without a host.
		return fmt.Errorf("%w: uri %q has no host", ErrMalformed, clip(uri))
	}
	return nil
}

// uriPool saves an allocation per request in checkURI.
var uriPool = sync.Pool{New: func() any { return new(sip.Uri) }}
