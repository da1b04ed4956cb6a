package proxy

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// Aliases finds the user an alias of the domain stands for ("alice" for
// 1001@a.test); auth.FileStore and auth.RedisStore are ones. It returns
// auth.ErrUnknownUser for a name that is no alias.
type Aliases interface {
	Alias(ctx context.Context, user, domain string) (string, error)
}

// ENUMResolver finds the SIP URI behind an E.164 number (RFC 6116);
// resolver.Resolver is one.
type ENUMResolver interface {
	ENUM(ctx context.Context, number string, suffixes []string) (resolver.ENUMResult, error)
}

// WithAliases makes a request for an alias of one of our users reach
// that user's devices (the Request-URI is retargeted to the user; the To
// header keeps what the caller dialled).
func WithAliases(a Aliases) Option { return func(p *Proxy) { p.aliases = a } }

// WithENUM makes a request from an authenticated user of ours for an
// E.164 number (tel:+81312345678, or sip:+81312345678@our.domain that
// is no user or alias of ours) look the number up in ENUM under suffixes,
// in turn, and go where the record says. fallback, when not nil, takes
// the numbers ENUM has no record for (a gateway): the request goes to
// it with the number as the user part. No suffixes: numbers are not
// looked up (404).
func WithENUM(e ENUMResolver, suffixes []string, fallback *sip.Uri) Option {
	return func(p *Proxy) {
		p.enum, p.enumSuffixes, p.enumFallback = e, suffixes, fallback
	}
}

// maxNumberHops bounds how many times a request is retargeted by ENUM to
// a number of our own domain that ENUM maps again (number portability
// chains); a number seen twice is a loop.
const maxNumberHops = 4

// errUnknownUser is lookup's answer for a user part that is no user of
// the domain: the caller decides between an alias, ENUM, 404 and 480.
var errUnknownUser = errors.New("proxy: no such user")

// numberRoute is the state of one request's trip through aliases and
// ENUM.
type numberRoute struct {
	ours     bool            // the caller is an authenticated user of ours: ENUM is open to them
	seen     map[string]bool // numbers looked up so far
	deadline time.Time       // for all of the request's ENUM look-ups (enumBudget)
}

// enumBudget bounds the time one request's ENUM look-ups take together,
// however many names and numbers they visit (slow DNS servers answering
// just within the resolver's timeout): then 504.
const enumBudget = 4 * time.Second

// routeLocal makes the plan for a request whose Request-URI is in one of
// our domains: a user's devices, an alias's user's, or, for an E.164
// number that is neither, ENUM. It returns the AOR whose late-registering
// devices join the call ("" for none). fwd's Request-URI is retargeted
// to the user or to what ENUM found.
func (p *Proxy) routeLocal(ctx context.Context, req, fwd *sip.Request, nr *numberRoute) ([][]branchTarget, string, error) {
	ruri := &fwd.Recipient
	domain := strings.ToLower(ruri.Host)
	if ruri.UriParams != nil {
		if v, ok := ruri.UriParams.Get("user"); ok && strings.EqualFold(v, "phone") {
			// A telephone number (RFC 3261 §19.1.6): its visual
			// separators and tel parameters are not part of the name.
			ruri.User = phoneDigits(ruri.User)
		}
	}
	plan, err := p.lookup(ctx, fwd)
	if !errors.Is(err, errUnknownUser) {
		return plan, ruri.User + "@" + domain, err
	}
	if p.aliases != nil {
		target, aerr := p.aliases.Alias(ctx, ruri.User, domain)
		switch {
		case aerr == nil:
			dialled := ruri.User
			ruri.User = target
			plan, err = p.lookup(ctx, fwd)
			if !errors.Is(err, errUnknownUser) {
				return plan, target + "@" + domain, err
			}
			ruri.User = dialled // an alias of a user gone: as for nobody
		case errors.Is(aerr, auth.ErrUnavailable):
			return nil, "", sipcore.Errorf(503, "User directory unavailable").With(sip.NewHeader("Retry-After", "5"))
		case !errors.Is(aerr, auth.ErrUnknownUser):
			return nil, "", &sipcore.StatusError{Code: 500, Reason: "Server Internal Error", Err: aerr}
		}
	}
	if number, ok := resolver.NormalizeE164(ruri.User); ok && nr.ours && len(p.enumSuffixes) > 0 {
		return p.routeNumber(ctx, req, fwd, number, nr)
	}
	if p.hideUsers && !p.domains[strings.ToLower(req.From().Address.Host)] {
		// Outsiders cannot tell who exists (enumeration).
		return nil, "", sipcore.Errorf(480, "Temporarily Unavailable")
	}
	return nil, "", sipcore.Errorf(404, "Not Found")
}

// routeTel makes the plan for a tel: Request-URI (RFC 3966): a global
// number through ENUM, a local one whose phone-context is a domain of
// ours as that domain's user. Only users of ours may send one (the
// policy refused everyone else: a tel: URI is in no domain of ours).
func (p *Proxy) routeTel(ctx context.Context, req, fwd *sip.Request, nr *numberRoute) ([][]branchTarget, string, error) {
	if !nr.ours {
		// The policy refused it already (a tel: URI is in no domain of
		// ours); never a number look-up for anyone else.
		return nil, "", sipcore.Errorf(403, "Forbidden")
	}
	s := strings.TrimPrefix(fwd.Recipient.String(), fwd.Recipient.Scheme+":")
	number, params, _ := strings.Cut(s, ";")
	if n, ok := resolver.NormalizeE164(number); ok {
		if len(p.enumSuffixes) == 0 {
			return nil, "", sipcore.Errorf(404, "Not Found (no ENUM here)")
		}
		return p.routeNumber(ctx, req, fwd, n, nr)
	}
	for _, kv := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, "phone-context") && p.domains[strings.ToLower(v)] {
			fwd.Recipient = sip.Uri{Scheme: "sip", User: phoneDigits(number), Host: strings.ToLower(v)}
			return p.routeLocal(ctx, req, fwd, nr)
		}
	}
	return nil, "", sipcore.Errorf(404, "Not Found (not a global number, nor one of ours)")
}

// routeNumber looks number up in ENUM and retargets fwd to the URI found:
// another domain's (RFC 3263 then), or ours (routeLocal again, for a
// user, an alias or one more number). No record: the fallback, or 404.
func (p *Proxy) routeNumber(ctx context.Context, req, fwd *sip.Request, number string, nr *numberRoute) ([][]branchTarget, string, error) {
	if nr.seen[number] || len(nr.seen) >= maxNumberHops {
		return nil, "", sipcore.Errorf(482, "Loop Detected (ENUM: %s again)", number)
	}
	if nr.seen == nil {
		nr.seen = map[string]bool{}
	}
	nr.seen[number] = true
	if nr.deadline.IsZero() {
		nr.deadline = time.Now().Add(enumBudget)
	}
	ectx, cancel := context.WithDeadline(ctx, nr.deadline)
	res, err := p.enum.ENUM(ectx, number, p.enumSuffixes)
	cancel()
	switch {
	case errors.Is(err, resolver.ErrENUMNoRecord):
		if p.enumFallback == nil {
			p.log.Info("ENUM: no record", "number", number, "error", err)
			return nil, "", sipcore.Errorf(404, "Not Found (no ENUM record for %s)", number)
		}
		u := p.enumFallback.Clone()
		if u.User == "" {
			u.User = number
			if u.UriParams == nil {
				u.UriParams = sip.NewParams()
			}
			u.UriParams.Add("user", "phone")
		}
		fwd.Recipient = *u
		plan, err := p.uriTargets(ctx, *u)
		for _, g := range plan {
			for i := range g {
				g[i].gateway = true // the one way there
			}
		}
		return plan, "", err
	case errors.Is(err, resolver.ErrENUMBadRecord):
		p.log.Info("ENUM: bad record", "number", number, "error", err)
		return nil, "", sipcore.Errorf(502, "Bad Gateway (unusable ENUM record for %s)", number)
	case errors.Is(err, resolver.ErrENUMLoop):
		p.log.Info("ENUM: loop", "number", number, "error", err)
		return nil, "", sipcore.Errorf(482, "Loop Detected (ENUM records for %s)", number)
	case err != nil:
		p.log.Info("ENUM: look-up failed", "number", number, "error", err)
		return nil, "", sipcore.Errorf(504, "Server Time-out (ENUM look-up for %s)", number)
	}
	var u sip.Uri
	if strings.IndexFunc(res.URI, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		// A record of someone else's zone must not write our headers.
		p.log.Info("ENUM: control character in the URI", "number", number)
		return nil, "", sipcore.Errorf(502, "Bad Gateway (unusable ENUM record for %s)", number)
	}
	if err := sip.ParseUri(res.URI, &u); err != nil || u.Host == "" {
		return nil, "", sipcore.Errorf(502, "Bad Gateway (unusable ENUM record for %s)", number)
	}
	// A Request-URI carries no headers and no method (RFC 3261 §19.1.1):
	// a record cannot add a Route or turn the INVITE into something else.
	u.Headers = nil
	if u.UriParams != nil {
		u.UriParams.Remove("method")
	}
	p.log.Debug("ENUM", "number", number, "uri", sipcore.Sanitize(res.URI))
	fwd.Recipient = u
	if p.domains[strings.ToLower(u.Host)] {
		return p.routeLocal(ctx, req, fwd, nr)
	}
	plan, err := p.uriTargets(ctx, u)
	return plan, "", err
}

// phoneDigits is the user part of a telephone-number URI without its
// parameters (RFC 3966 ";phone-context=…") and visual separators, when
// what is left is a number ("+", digits, "*", "#"); a name (john.doe,
// whatever ;user=phone says) stays as it is.
func phoneDigits(user string) string {
	number, _, _ := strings.Cut(user, ";")
	var b strings.Builder
	for i, c := range number {
		switch {
		case c == '-' || c == '.' || c == '(' || c == ')':
		case c >= '0' && c <= '9' || c == '*' || c == '#' || c == '+' && i == 0:
			b.WriteRune(c)
		default:
			return user
		}
	}
	if b.Len() == 0 {
		return user
	}
	return b.String()
}

// isGateway reports whether hop is an address of the ENUM fallback
// gateway. The gateway takes numbers to the telephone network, at a
// cost: the fallback of routeNumber, for an authenticated user of ours,
// is the only way there. A Contact registered at the gateway (call
// forwarding to a premium number), an ENUM record or a Request-URI
// naming it, a preloaded Route: none reaches it (403), except in a
// dialog the fallback set up.
func (p *Proxy) isGateway(ctx context.Context, hop resolver.Target) bool {
	if p.enumFallback == nil {
		return false
	}
	gws, err := p.res.Resolve(ctx, *p.enumFallback)
	if err != nil {
		return false
	}
	for _, g := range gws {
		if g.IP == hop.IP && g.Port == hop.Port {
			return true
		}
	}
	return false
}
