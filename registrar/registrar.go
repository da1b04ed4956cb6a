// Package registrar implements a domain's SIP registrar: REGISTER per
// RFC 3261 §10.3, with Path (RFC 3327), the source flow of each binding
// (RFC 3581, RFC 5626) and digest authentication through an Authenticator.
//
// https://www.rfc-editor.org/rfc/rfc3261#section-10.3
package registrar

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/sipcore"
)

// Authenticator checks a request's digest credentials for realm and returns
// the authenticated user name, or a *sipcore.StatusError (401 challenge,
// 400, 503). auth.Server implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, req *sip.Request, realm string, proxy bool) (string, error)
}

// Registrar answers REGISTER requests for a set of domains.
type Registrar struct {
	domains        map[string]bool
	store          location.Store
	auth           Authenticator
	aliases        Aliases
	minExpires     int
	maxExpires     int
	defaultExpires int
	maxContacts    int
	retryAfter     int
	nodeID         string
	keepFlow       func(transport, source string, until time.Time)
	edgePath       func(transport, source string) string
	onChange       func(aor string)
	now            func() time.Time
	log            *slog.Logger
}

// Option configures a Registrar.
type Option func(*Registrar)

// WithExpires sets the minimum (423 below it), maximum (clamped) and default
// registration intervals in seconds. Defaults: 60, 3600, 3600.
func WithExpires(min, max, def int) Option {
	return func(r *Registrar) { r.minExpires, r.maxExpires, r.defaultExpires = min, max, def }
}

// WithMaxContacts bounds the bindings per AOR (403 beyond it); 0 is no
// bound. Default 10.
func WithMaxContacts(n int) Option { return func(r *Registrar) { r.maxContacts = n } }

// WithNodeID names this node in the bindings it writes.
func WithNodeID(id string) Option { return func(r *Registrar) { r.nodeID = id } }

// WithFlowKeeper gives the function told, after a REGISTER over a
// connection, to keep that connection (transport, source ip:port) open
// until the binding expires and a little more: the device can only be
// reached through it. The server's TCP and TLS listeners do it.
func WithFlowKeeper(f func(transport, source string, until time.Time)) Option {
	return func(r *Registrar) { r.keepFlow = f }
}

// flowGrace is how long a registered connection stays open after its
// binding's expiry, for a re-registration that comes a little late.
const flowGrace = 30 * time.Second

// WithEdgePath makes the registrar store, with a binding that must be
// reached over the flow it registered from (a connection, or a NAT) and
// whose REGISTER came with no Path, the Path f returns for that flow: the
// node that holds it, for the other nodes of the domain to route through
// (RFC 5626 §5; proxy.NodePath). The 200 echoes only the REGISTER's own
// Path.
func WithEdgePath(f func(transport, source string) string) Option {
	return func(r *Registrar) { r.edgePath = f }
}

// WithOnChange makes the registrar call f with the AOR after each
// REGISTER that added or refreshed bindings (the proxy's late forking).
func WithOnChange(f func(aor string)) Option { return func(r *Registrar) { r.onChange = f } }

// Aliases finds the user an alias of the domain stands for;
// auth.FileStore and auth.RedisStore are ones.
type Aliases interface {
	Alias(ctx context.Context, user, domain string) (string, error)
}

// WithAliases names the aliases: a user registering one of its own
// aliases is told to register its AOR (403 either way).
func WithAliases(a Aliases) Option { return func(r *Registrar) { r.aliases = a } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(r *Registrar) { r.now = now } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(r *Registrar) { r.log = l } }

// WithRetryAfter sets the Retry-After seconds sent with 503 when the
// location store is unavailable. Default 5.
func WithRetryAfter(s int) Option { return func(r *Registrar) { r.retryAfter = s } }

// New returns a registrar for domains that keeps bindings in store and
// authenticates with auth.
func New(domains []string, store location.Store, auth Authenticator, opts ...Option) *Registrar {
	r := &Registrar{
		domains:        make(map[string]bool, len(domains)),
		store:          store,
		auth:           auth,
		minExpires:     60,
		maxExpires:     3600,
		defaultExpires: 3600,
		maxContacts:    10,
		retryAfter:     5,
		now:            time.Now,
		log:            slog.New(slog.DiscardHandler),
	}
	for _, d := range domains {
		r.domains[strings.ToLower(d)] = true
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// ServeSIP answers one REGISTER on its server transaction; it implements
// sipcore.Handler.
func (r *Registrar) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error {
	res, err := r.Register(ctx, req)
	if err != nil {
		return err
	}
	if err := tx.Respond(res); err != nil {
		r.log.Debug("register: respond", "call_id", sipcore.CallID(req), "error", err)
	}
	return nil
}

var _ sipcore.Handler = (*Registrar)(nil)

// Register processes req (RFC 3261 §10.3) and returns the 200 response, or
// an error carrying the SIP status to answer with.
func (r *Registrar) Register(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if err := sipcore.CheckRequest(req); err != nil {
		return nil, err
	}
	// Step 1: we are the registrar for the Request-URI's domain, or we say
	// so; we do not relay REGISTER.
	domain := strings.ToLower(req.Recipient.Host)
	if !r.domains[domain] {
		return nil, sipcore.Errorf(404, "Domain %s not served here", domain)
	}
	// Step 2: extensions in Require we do not support → 420.
	if unsup := sipcore.Unsupported(req, "Require", "path"); len(unsup) > 0 {
		return nil, sipcore.Errorf(420, "Bad Extension").With(sip.NewHeader("Unsupported", strings.Join(unsup, ", ")))
	}
	// Step 3: authenticate, in the realm of the domain.
	user, err := r.auth.Authenticate(ctx, req, domain, false)
	if err != nil {
		return nil, err
	}
	// Steps 4-5: the To is an AOR of the Request-URI's domain, and the
	// authenticated user may only register its own AOR.
	to := req.To().Address
	if !strings.EqualFold(to.Host, domain) {
		return nil, sipcore.Errorf(404, "To is not an address of %s", domain)
	}
	aor := sipcore.AOR(to)
	if !sipcore.SameUser(user, to.User, domain) {
		if r.aliases != nil {
			if target, err := r.aliases.Alias(ctx, to.User, domain); err == nil && sipcore.SameUser(user, target, domain) {
				// Its own alias: calls to it reach the AOR's devices
				// already; a binding of its own would split them.
				return nil, sipcore.Errorf(403, "%s is an alias of %s@%s: register that", aor, target, domain)
			}
		}
		return nil, sipcore.Errorf(403, "Not allowed to register %s", aor)
	}
	// Step 6: the Contacts and their intervals.
	contacts, wildcard, err := r.parseContacts(req)
	if err != nil {
		return nil, err
	}

	now := r.now()
	u := location.Update{
		CallID:      req.CallID().Value(),
		CSeq:        req.CSeq().SeqNo,
		Now:         now,
		RemoveAll:   wildcard,
		MaxContacts: r.maxContacts,
	}
	if len(contacts) > 0 {
		path := headerValues(req, "Path")
		transport := strings.ToLower(req.Transport())
		ua := ""
		if h := req.GetHeader("User-Agent"); h != nil {
			ua = sipcore.Sanitize(h.Value())
		}
		var edge []string // this node's Path for a device on its flow
		if len(path) == 0 && r.edgePath != nil {
			if e := r.edgePath(transport, req.Source()); e != "" {
				edge = []string{e}
			}
		}
		for i := range contacts {
			c := &contacts[i]
			if c.expires == 0 {
				b := location.Binding{Contact: c.uri, InstanceID: c.instance, RegID: c.regID}
				u.Remove = append(u.Remove, b.Key())
				continue
			}
			u.Set = append(u.Set, location.Binding{
				AOR:        aor,
				Contact:    c.uri,
				InstanceID: c.instance,
				RegID:      c.regID,
				Q:          c.q,
				Expires:    now.Add(time.Duration(c.expires) * time.Second),
				CallID:     u.CallID,
				CSeq:       u.CSeq,
				Path:       path,
				Received:   req.Source(),
				Transport:  transport,
				NAT:        behindNAT(req, transport, c.host),
				NodeID:     r.nodeID,
				UserAgent:  ua,
			})
			if b := &u.Set[len(u.Set)-1]; b.NAT && edge != nil {
				b.Path = edge
			}
		}
	}
	var bindings []location.Binding
	if wildcard || len(u.Set) > 0 || len(u.Remove) > 0 {
		bindings, err = r.store.Update(ctx, aor, u)
	} else {
		// Step 8 without changes: a query for the current bindings.
		bindings, err = r.store.Lookup(ctx, aor)
	}
	switch {
	case errors.Is(err, location.ErrStaleCSeq):
		return nil, sipcore.Errorf(400, "CSeq not higher than the binding's for this Call-ID")
	case errors.Is(err, location.ErrTooManyContacts):
		return nil, sipcore.Errorf(403, "Too many contacts (at most %d)", r.maxContacts)
	case errors.Is(err, location.ErrUnavailable):
		se := sipcore.Errorf(503, "Location service unavailable").With(sip.NewHeader("Retry-After", strconv.Itoa(r.retryAfter)))
		se.Err = err
		return nil, se
	case err != nil:
		return nil, &sipcore.StatusError{Code: 500, Reason: "Server Internal Error", Err: err}
	}
	if r.onChange != nil && len(u.Set) > 0 {
		r.onChange(aor)
	}
	if r.keepFlow != nil && len(u.Set) > 0 {
		if t := strings.ToLower(req.Transport()); t != "udp" {
			var latest time.Time
			for i := range u.Set {
				if u.Set[i].Expires.After(latest) {
					latest = u.Set[i].Expires
				}
			}
			r.keepFlow(t, req.Source(), latest.Add(flowGrace))
		}
	}
	r.log.Debug("registered", "aor", aor, "call_id", u.CallID, "bindings", len(bindings))
	return r.ok(req, bindings, now), nil
}

// ok builds the 200 that lists every current binding with its remaining
// expires (§10.3 step 8), echoes Path (RFC 3327 §5.3) and says what we support.
func (r *Registrar) ok(req *sip.Request, bindings []location.Binding, now time.Time) *sip.Response {
	res := sipcore.NewResponse(req, 200, "OK")
	var b strings.Builder
	for i := range bindings {
		bd := &bindings[i]
		left := int(math.Ceil(bd.Expires.Sub(now).Seconds()))
		if left <= 0 {
			continue
		}
		b.Reset()
		b.WriteByte('<')
		b.WriteString(bd.Contact)
		b.WriteString(">;expires=")
		b.WriteString(strconv.Itoa(left))
		if bd.Q != 1000 {
			b.WriteString(";q=")
			b.WriteString(formatQ(bd.Q))
		}
		if bd.InstanceID != "" {
			b.WriteString(`;+sip.instance="<`)
			b.WriteString(bd.InstanceID)
			b.WriteString(`>"`)
			if bd.RegID != 0 {
				b.WriteString(";reg-id=")
				b.WriteString(strconv.Itoa(bd.RegID))
			}
		}
		res.AppendHeader(sip.NewHeader("Contact", b.String()))
	}
	if sipcore.Supports(req, "path") {
		for _, p := range headerValues(req, "Path") {
			res.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	res.AppendHeader(sip.NewHeader("Supported", "path"))
	res.AppendHeader(sip.NewHeader("Date", dateHeader(now)))
	return res
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

// lastDate is the Date header value of the second last formatted: every
// 200 within a second carries the same one, formatted once.
var lastDate atomic.Pointer[datedValue]

type datedValue struct {
	unix  int64
	value string
}

func dateHeader(now time.Time) string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.unix == sec {
		return d.value
	}
	d := &datedValue{sec, now.UTC().Format(http1123)}
	lastDate.Store(d)
	return d.value
}

type contact struct {
	uri      string
	host     string
	expires  int
	q        int
	instance string
	regID    int
}

// parseContacts reads the Contact headers with their expires (param, then
// Expires header, then default, §10.3 step 6), min-expires (423) and
// max-expires (clamp), and the wildcard rule.
func (r *Registrar) parseContacts(req *sip.Request) ([]contact, bool, error) {
	hdrExpires := -1 // none, or malformed: the default (RFC 3261 §20.10, §20.19)
	if h := req.GetHeader("Expires"); h != nil {
		hdrExpires = parseExpires(h.Value())
	}
	var out []contact
	wildcard := false
	hs := req.GetHeaders("Contact")
	for _, h := range hs {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, false, sipcore.Errorf(400, "Malformed Contact header")
		}
		if ch.Address.Wildcard {
			wildcard = true
			continue
		}
		c := contact{uri: ch.Address.String(), host: ch.Address.Host, expires: hdrExpires, q: 1000}
		switch strings.ToLower(ch.Address.Scheme) {
		case "sip", "sips":
		default:
			return nil, false, sipcore.Errorf(400, "Contact must be a sip: or sips: URI")
		}
		if ch.Address.Host == "" {
			return nil, false, sipcore.Errorf(400, "Contact URI has no host")
		}
		if v, ok := ch.Params.Get("expires"); ok {
			if n := parseExpires(v); n >= 0 {
				c.expires = n
			}
		}
		if c.expires < 0 {
			c.expires = r.defaultExpires
		}
		if v, ok := ch.Params.Get("q"); ok {
			q, err := parseQ(v)
			if err != nil {
				return nil, false, sipcore.Errorf(400, "Invalid q parameter")
			}
			c.q = q
		}
		if v, ok := ch.Params.Get("+sip.instance"); ok {
			v = strings.Trim(v, `"`)
			v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			c.instance = sipcore.Sanitize(v)
		}
		if v, ok := ch.Params.Get("reg-id"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, false, sipcore.Errorf(400, "Invalid reg-id parameter")
			}
			c.regID = n
		}
		if c.expires > 0 && c.expires < r.minExpires {
			return nil, false, sipcore.Errorf(423, "Interval Too Brief").With(sip.NewHeader("Min-Expires", strconv.Itoa(r.minExpires)))
		}
		if c.expires > r.maxExpires {
			c.expires = r.maxExpires
		}
		out = append(out, c)
	}
	// §10.3 step 6: "*" only alone and only with Expires: 0.
	if wildcard && (len(hs) != 1 || hdrExpires != 0) {
		return nil, false, sipcore.Errorf(400, "Contact: * needs Expires: 0 and no other Contact")
	}
	return out, wildcard, nil
}

// behindNAT reports whether the device must be reached over the flow its
// REGISTER came from rather than at its Contact: it registered over a
// connection (RFC 5626), its Via sent-by is not where the packet came from
// (RFC 3581), or its Contact is a private address other than the source.
func behindNAT(req *sip.Request, transport, contactHost string) bool {
	if transport != "udp" {
		return true
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return false
	}
	if v := req.Via(); v != nil {
		port := sipcore.PortOr(v.Port, v.Transport)
		ip, err := netip.ParseAddr(strings.Trim(v.Host, "[]"))
		if err != nil || ip.Unmap() != src.Addr().Unmap() || port != int(src.Port()) {
			return true
		}
	}
	ip, err := netip.ParseAddr(strings.Trim(contactHost, "[]"))
	if err != nil {
		return false
	}
	return privateAddr(ip) && ip.Unmap() != src.Addr().Unmap()
}

// privateAddr reports RFC 1918, RFC 6598 (CGNAT) and RFC 4193 addresses.
func privateAddr(ip netip.Addr) bool {
	return ip.IsPrivate() || cgnat.Contains(ip.Unmap())
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// parseExpires reads delta-seconds leniently, as RFC 3261 asks: a value
// beyond 2^32-1 (or any length of digits) is as large as allowed (and
// then clamped to the maximum), and a malformed one ("0.5", "soon") is
// -1, meaning the default (§20.10: "treated as equivalent to 3600").
func parseExpires(s string) int {
	s = strings.TrimSpace(s)
	if s == "" {
		return -1
	}
	n := 0
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' {
			return -1
		}
		if n < math.MaxInt32/10 {
			n = n*10 + int(d-'0')
		} else {
			n = math.MaxInt32
		}
	}
	return n
}

// parseQ parses a qvalue (RFC 3261 §25.1: 0 to 1 with at most three
// decimals) into thousandths.
func parseQ(s string) (int, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
		return 0, strconv.ErrSyntax
	}
	return int(math.Round(f * 1000)), nil
}

func formatQ(q int) string {
	return strconv.FormatFloat(float64(q)/1000, 'f', -1, 64)
}

func headerValues(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.GetHeaders(name) {
		for _, v := range splitComma(h.Value()) {
			out = append(out, sipcore.Sanitize(v))
		}
	}
	return out
}

// splitComma splits a header value on commas outside <> and quotes.
func splitComma(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			if v := strings.TrimSpace(s[start:i]); v != "" {
				out = append(out, v)
			}
			start = i + 1
		}
	}
	if v := strings.TrimSpace(s[start:]); v != "" {
		out = append(out, v)
	}
	return out
}
