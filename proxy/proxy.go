// Package proxy is a domain's stateful SIP proxy (RFC 3261 §16): it routes
// requests to the domain's own users through the location service, forking
// to their devices, and to other domains through DNS (RFC 3263), failing
// over between targets. It authenticates its own users (no open relay),
// adds Record-Route, bounds ringing with Timer C and never touches SDP.
//
// https://www.rfc-editor.org/rfc/rfc3261#section-16
// https://www.rfc-editor.org/rfc/rfc3263#section-4.3
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// Locator finds the bindings of an address-of-record; location.Store is one.
type Locator interface {
	Lookup(ctx context.Context, aor string) ([]location.Binding, error)
}

// Authenticator checks digest credentials; auth.Server is one.
type Authenticator interface {
	Authenticate(ctx context.Context, req *sip.Request, realm string, proxy bool) (string, error)
}

// Users tells whether a user exists; auth.CredentialStore is one.
type Users interface {
	Lookup(ctx context.Context, user, realm string) (auth.Credential, error)
}

// Resolver turns a SIP URI into the ordered targets to try (RFC 3263);
// resolver.Resolver is one.
type Resolver interface {
	Resolve(ctx context.Context, uri sip.Uri) ([]resolver.Target, error)
	MarkDown(t resolver.Target, d time.Duration)
}

// Listener is an address the proxy receives on and puts in Via and
// Record-Route: Transport "udp" or "tcp", Host an IP or name others reach.
type Listener struct {
	Transport string
	Host      string
	Port      int
	// Bind is the local socket address of a UDP listener ("0.0.0.0:5060"),
	// used to send from the listening socket; empty means Host:Port.
	Bind string
}

// Proxy routes every request that is not a REGISTER.
type Proxy struct {
	domains   map[string]bool
	loc       Locator
	auth      Authenticator
	users     Users
	res       Resolver
	client    *sipgo.Client
	listeners []Listener
	ours      []hostPort // our listeners' addresses (see isOurHostPort)

	timerC          time.Duration
	failoverTimeout time.Duration
	markDown        time.Duration
	maxUDP          int
	hideUsers       bool
	tlsExpect       func(netip.Addr, string)
	requireTLS      bool
	sign            *signer
	secret          []byte
	invites         *inviteBranches // INVITEs over TCP/TLS, for their hop-by-hop ACK
	accepted        *inviteBranches // INVITEs over UDP answered 2xx, whose transactions ended at once (collector.respondFrom)
	finals          *finalCache     // non-INVITEs over UDP: their relayed final responses, the transactions ended at once
	inviteTxs       sync.Map        // key (inviteKey) → *inviteTx: our INVITE client transactions
	late            lateForks       // INVITEs in progress to users of ours, for devices that register meanwhile
	anchor          MediaAnchor     // the media bridge for browsers; nil: none
	aliases         Aliases         // nil: no aliases
	enum            ENUMResolver    // looks numbers up (numbers.go)
	enumSuffixes    []string        // none: numbers are not looked up
	enumFallback    *sip.Uri        // where numbers without an ENUM record go; nil: 404
	mediaDialogs    sync.Map        // dialogKey → *bridgedDialog
	bridgedDialogs  atomic.Int64    // entries of mediaDialogs
	bridgedUsers    sync.Map        // a browser's AOR → *atomic.Int32: its bridges open now
	log             *slog.Logger
}

// Option configures a Proxy.
type Option func(*Proxy)

// WithTimerC sets Timer C, the bound on a ringing INVITE branch (RFC 3261
// §16.6 step 11, more than 3 minutes). Default 180 s.
func WithTimerC(d time.Duration) Option { return func(p *Proxy) { p.timerC = d } }

// WithFailoverTimeout sets how long to wait for any response from a target
// of another domain before trying the next one and marking it down.
// Default 5 s.
func WithFailoverTimeout(d time.Duration) Option { return func(p *Proxy) { p.failoverTimeout = d } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(p *Proxy) { p.log = l } }

// WithHideUsers makes a request from another domain for a user who does
// not exist get 480, as for a user who is offline, instead of 404, so
// that outsiders cannot enumerate the users (sipvicious svwar). Users of
// ours, authenticated, still get 404. Default off.
func WithHideUsers(hide bool) Option { return func(p *Proxy) { p.hideUsers = hide } }

// WithTLSExpect gives the function told, before a TLS connection to a
// target, which SIP domain the target is reached for: the domain its
// certificate must name (RFC 5922). A request to a domain by name then
// has that name as its destination (host:port), which the sipgo
// transport layer must resolve to ip: the server pins it (see
// server.pinnedNames).
func WithTLSExpect(f func(ip netip.Addr, domain string)) Option {
	return func(p *Proxy) { p.tlsExpect = f }
}

// WithRequireTLS sends requests to other domains (named, not IP
// addresses) only to their TLS targets (NAPTR SIPS+D2T, SRV _sips._tcp);
// a domain that offers none gets 503. Default off.
func WithRequireTLS(require bool) Option { return func(p *Proxy) { p.requireTLS = require } }

// WithSecret sets the secret that signs our Record-Route and Via (see
// signer); every node of a domain must share it. Default: random per
// Proxy, so dialogs do not survive a restart.
func WithSecret(secret []byte) Option { return func(p *Proxy) { p.secret = secret } }

// New returns a proxy for domains. client sends the forwarded requests
// through the same user agent as the server that receives them.
func New(domains []string, loc Locator, authn Authenticator, users Users, res Resolver, client *sipgo.Client, listeners []Listener, opts ...Option) *Proxy {
	p := &Proxy{
		domains:         make(map[string]bool),
		loc:             loc,
		auth:            authn,
		users:           users,
		res:             res,
		client:          client,
		listeners:       listeners,
		timerC:          180 * time.Second,
		failoverTimeout: 5 * time.Second,
		markDown:        30 * time.Second,
		maxUDP:          1300,
		invites:         newInviteBranches(),
		accepted:        newAcceptedBranches(),
		finals:          newFinalCache(finalCacheBytes),
		log:             slog.New(slog.DiscardHandler),
	}
	for _, d := range domains {
		p.domains[strings.ToLower(d)] = true
	}
	for _, l := range listeners {
		hp := hostPort{strings.Trim(l.Host, "[]"), l.Port}
		if !p.isOurHostPort(hp.host, hp.port) {
			p.ours = append(p.ours, hp)
		}
	}
	for _, o := range opts {
		o(p)
	}
	p.sign = newSigner(p.secret)
	sipcore.AllowLargeUDP()
	return p
}

// noBuild stops sipgo from rebuilding a request we prepared ourselves.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

var _ sipcore.Handler = (*Proxy)(nil)

// ServeSIP handles one request on its server transaction per RFC 3261
// §16.3-16.6 and returns when the transaction is over (sipgo terminates
// it afterwards); it implements sipcore.Handler. An error it returns has
// not been answered.
func (p *Proxy) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (err error) {
	if req.IsCancel() {
		// A CANCEL that matched a transaction was answered by sipgo and
		// reached that transaction's OnCancel; this one matched nothing.
		return sipcore.Errorf(481, "Call/Transaction Does Not Exist")
	}
	// §16.3 request validation.
	if err := sipcore.CheckRequest(req); err != nil {
		return err
	}
	if reliable(req.Transport()) {
		switch {
		case req.IsInvite() && p.accepted.ackOf(req):
			// A client that sends its INVITE again over a stream after
			// our 2xx (it must not; sipgo's Accepted state would have
			// absorbed it): absorbed all the same.
			return nil
		case req.IsInvite():
			p.invites.add(req)
		case req.IsAck() && p.invites.ackOf(req):
			return nil // the ACK of our non-2xx final response: absorbed
		}
	} else if req.IsInvite() && p.accepted.ackOf(req) {
		// A retransmission of an INVITE we relayed a 2xx for: what the
		// Accepted state would do (RFC 6026 §7.1), absorb it.
		return nil
	} else if !req.IsInvite() && !req.IsAck() {
		if data := p.finals.get(req); data != nil {
			// A retransmission of a request we relayed a final response
			// for: the same answer (what the Completed state would do).
			p.sendBytes(req, nil, data, txConn(tx))
			return nil
		}
	}
	mf := req.MaxForwards()
	if mf != nil && mf.Val() == 0 {
		if req.Method == sip.OPTIONS && p.isOurs(req.Recipient) {
			return p.options(req, tx)
		}
		return sipcore.Errorf(483, "Too Many Hops")
	}
	if p.isLoop(req) {
		return sipcore.Errorf(482, "Loop Detected")
	}
	if unsup := sipcore.Unsupported(req, "Proxy-Require"); len(unsup) > 0 {
		return sipcore.Errorf(420, "Bad Extension").With(sip.NewHeader("Unsupported", strings.Join(unsup, ", ")))
	}

	// §16.4 route information preprocessing: drop our own Route entries
	// (two of them when we record-routed a transport change).
	// A Route of ours that carries our dialog token proves the request
	// belongs to a dialog we record-routed; the look of the request does
	// not (see signer).
	fwd := req.Clone()
	ourDialog := false
	var flow *resolver.Target // where the phone behind NAT this goes to really is (flow.go)
	nodeFlow := false         // flow is a device's whose Path names this node (node.go)
	for {
		r := fwd.Route()
		if r == nil || !p.isOurs(r.Address) {
			break
		}
		if tok, ok := r.Address.UriParams.Get("sf"); ok && !ourDialog {
			fl, _ := r.Address.UriParams.Get("fl")
			ourDialog = p.sign.dialogOK(req, tok, fl)
			if t, ok := decodeFlow(fl); ok && ourDialog {
				flow = &t
			}
		}
		if nf, ok := r.Address.UriParams.Get(nodeFlowParam); ok && flow == nil {
			if t, ok := p.nodeFlow(nf); ok {
				flow, nodeFlow = &t, true
			}
		}
		fwd.RemoveHeader("Route")
	}
	if fwd.Route() != nil {
		flow, nodeFlow = nil, false // another hop first (a flow is for the phone we reach ourselves)
	}
	inDialog := hasToTag(req)
	// A node of the domain that routed this to a flow of ours applied the
	// policy already; its assertion goes no further.
	fromNode := nodeFlow && p.sign.nodeAsserted(req, time.Now())
	if fwd.GetHeader(nodeHeader) != nil {
		fwd.RemoveHeader(nodeHeader)
	}
	challenge := !(inDialog && ourDialog) && !fromNode

	// §16.2: 100 Trying at once, before anything that may wait (the
	// credential store, the location store, DNS), so that a UDP caller
	// does not retransmit meanwhile. Not when the answer is a 407 made
	// without looking anything up.
	if req.IsInvite() && !(challenge && p.challengeOnly(req)) {
		if err := tx.Respond(sipcore.NewResponse(req, 100, "Trying")); err != nil {
			p.log.Debug("100 Trying", "call_id", sipcore.CallID(req), "error", err)
		}
	}

	// Requests addressed to this proxy or to a domain of ours as such
	// (no user part): keepalives and monitoring.
	if fwd.Route() == nil && (p.isOurs(fwd.Recipient) || fwd.Recipient.User == "" && p.domains[strings.ToLower(fwd.Recipient.Host)]) {
		switch {
		case req.Method == sip.OPTIONS:
			return p.options(req, tx)
		case req.IsAck():
			return nil
		}
		return sipcore.Errorf(405, "Method Not Allowed").With(sip.NewHeader("Allow", allow))
	}

	// Policy: in-dialog requests that came through our Record-Route are
	// not challenged again; everything else from a user of ours is.
	if challenge {
		if err := p.policy(ctx, req, fwd.Route() != nil); err != nil {
			return err
		}
		// The credentials for our realm were consumed here; the next hops
		// do not get them (RFC 3261 §22.3). Others' stay.
		removeCredentials(fwd, strings.ToLower(req.From().Address.Host))
	}

	if req.IsAck() {
		return p.forwardACK(ctx, req, fwd, flow)
	}
	var call callRecord
	if req.IsInvite() {
		// Every INVITE past the policy is logged once at info, however
		// it ends: relayed, or refused here (404, 480, 503…).
		call.start = time.Now()
		defer func() { p.logCall(req, &call, err) }()
	}

	// Where to: a Route still there (in-dialog, or preloaded), our own
	// domain's users, or another domain.
	var plan [][]branchTarget
	late := "" // the AOR whose devices registering meanwhile join the call
	switch {
	case flow != nil:
		plan = [][]branchTarget{{{hop: *flow, flow: true, browser: nodeFlow && isWebSocket(flow.Transport)}}}
	case fwd.Route() != nil:
		plan, err = p.uriTargets(ctx, fwd.Route().Address)
	case !inDialog && p.domains[strings.ToLower(fwd.Recipient.Host)]:
		var aor string
		plan, aor, err = p.routeLocal(ctx, req, fwd, &numberRoute{ours: challenge && p.domains[strings.ToLower(req.From().Address.Host)]})
		if req.IsInvite() {
			late = aor
		}
	case !inDialog && strings.EqualFold(fwd.Recipient.Scheme, "tel"):
		var aor string
		plan, aor, err = p.routeTel(ctx, req, fwd, &numberRoute{ours: challenge && p.domains[strings.ToLower(req.From().Address.Host)]})
		if req.IsInvite() {
			late = aor
		}
	default:
		plan, err = p.uriTargets(ctx, fwd.Recipient)
	}
	if err != nil {
		return err
	}
	if inDialog && ourDialog {
		// A dialog of ours: its requests go where it was set up, the
		// gateway included.
		for _, g := range plan {
			for i := range g {
				g[i].gateway = true
			}
		}
	}
	var media MediaSession
	if inDialog && ourDialog {
		if media, err = p.anchorInDialog(ctx, req, fwd); err != nil {
			return err
		}
	}
	return p.relay(ctx, req, fwd, tx, plan, !inDialog && recordRoutes(req.Method), &call, media, late)
}

// callRecord is what the log line of an INVITE says: how many branches
// it had and the first final status sent upstream.
type callRecord struct {
	start    time.Time
	branches int
	status   int
}

func (p *Proxy) logCall(req *sip.Request, call *callRecord, err error) {
	status := call.status
	var se *sipcore.StatusError
	if status == 0 && errors.As(err, &se) {
		status = se.Code
	}
	p.log.Info("call", "call_id", sipcore.CallID(req), "from", sipcore.AOR(req.From().Address), "to", sipcore.Sanitize(req.Recipient.String()),
		"branches", call.branches, "status", status, "setup", time.Since(call.start).Round(time.Millisecond))
}

// policy authenticates requests from users of ours (407, and the From
// must be the authenticated user) and refuses to relay for anyone else
// (routed: a Route not ours remains, so the request would leave the domain):
// a request from another domain may only go to our domain (§26.3.2.3 of
// RFC 3261 on open relays; federation is accepting other domains' calls).
func (p *Proxy) policy(ctx context.Context, req *sip.Request, routed bool) error {
	from := req.From().Address
	fromDomain := strings.ToLower(from.Host)
	// A Route to elsewhere would take the request away from our domain
	// whatever its Request-URI says.
	toOurs := p.domains[strings.ToLower(req.Recipient.Host)] && !routed
	if p.domains[fromDomain] {
		if req.IsAck() || req.IsCancel() {
			// They cannot be challenged (RFC 3261 §22.1); outside a
			// dialog of ours they may only reach our own domain.
			if !toOurs {
				return sipcore.Errorf(403, "Relaying denied")
			}
			return nil
		}
		user, err := p.auth.Authenticate(ctx, req, fromDomain, true)
		if err != nil {
			return err
		}
		if !sipcore.SameUser(user, from.User, fromDomain) {
			return sipcore.Errorf(403, "From does not match the authenticated user")
		}
		return nil
	}
	if !toOurs {
		return sipcore.Errorf(403, "Relaying denied")
	}
	return nil
}

// removeCredentials removes from r the Proxy-Authorization headers for
// realm.
func removeCredentials(r *sip.Request, realm string) {
	hs := r.GetHeaders("Proxy-Authorization")
	if len(hs) == 0 {
		return
	}
	keep := make([]sip.Header, 0, len(hs))
	for _, h := range hs {
		if !strings.EqualFold(auth.Realm(h.Value()), realm) {
			keep = append(keep, h)
		}
	}
	if len(keep) == len(hs) {
		return
	}
	for r.RemoveHeader("Proxy-Authorization") { // one at a time
	}
	for _, h := range keep {
		r.AppendHeader(h)
	}
}

// AnswersAlone reports whether ServeSIP answers req itself with a final
// response, forwarding nothing and looking nothing up: a new INVITE (no
// To tag) from a user of ours without credentials gets a 407 (or a 4xx
// from the checks before the policy). Such a request needs no server
// transaction: the server answers it statelessly over UDP.
func (p *Proxy) AnswersAlone(req *sip.Request) bool {
	return req.IsInvite() && !hasToTag(req) && req.From() != nil && p.challengeOnly(req)
}

// challengeOnly reports whether policy will answer req with a 407 without
// any look-up: a request from a domain of ours that carries no credentials.
func (p *Proxy) challengeOnly(req *sip.Request) bool {
	return req.GetHeader("Proxy-Authorization") == nil && p.domains[strings.ToLower(req.From().Address.Host)]
}

func (p *Proxy) options(req *sip.Request, tx sip.ServerTransaction) error {
	res := sipcore.NewResponse(req, 200, "OK")
	res.AppendHeader(sip.NewHeader("Allow", allow))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "path"))
	return tx.Respond(res)
}

// allow lists the methods a domain of ours accepts.
const allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER, PUBLISH, REGISTER"

// branchTarget is where one branch goes: the Request-URI to put on it,
// the Route set to prepend (a binding's Path) and the next hop.
type branchTarget struct {
	ruri    *sip.Uri // nil: keep the request's
	route   []string // Route header values (from Path)
	hop     resolver.Target
	hops    []resolver.Target // alternatives for failover, in order (foreign domains)
	binary  bool              // a federation target: fail over on transport error, timeout, 503
	flow    bool              // the device's own flow (NAT, RFC 5626): keep its transport
	domain  string            // the SIP domain a federation target is reached for (TLS: RFC 5922)
	browser bool              // a browser of ours (registered over WebSocket): WebRTC media
	node    bool              // through another node of the domain, which holds the device's flow (node.go)
	key     string            // the binding's Key (late forking: the devices a call has tried)
	gateway bool              // may go to the ENUM fallback gateway (numbers.go: guardGateway)
}

func isWebSocket(transport string) bool { return transport == "ws" || transport == "wss" }

// lookup makes the fork plan for a user of ours (§16.5): one group per q
// value, highest first; parallel inside a group.
func (p *Proxy) lookup(ctx context.Context, req *sip.Request) ([][]branchTarget, error) {
	ruri := req.Recipient
	domain := strings.ToLower(ruri.Host)
	aor := ruri.User + "@" + domain
	if ruri.User == "" {
		return nil, sipcore.Errorf(404, "Not Found")
	}
	bindings, err := p.loc.Lookup(ctx, aor)
	if err != nil {
		if errors.Is(err, location.ErrUnavailable) {
			return nil, sipcore.Errorf(503, "Location service unavailable").With(sip.NewHeader("Retry-After", "5"))
		}
		return nil, &sipcore.StatusError{Code: 500, Reason: "Server Internal Error", Err: err}
	}
	if len(bindings) == 0 {
		if _, err := p.users.Lookup(ctx, ruri.User, domain); err != nil {
			if errors.Is(err, auth.ErrUnknownUser) {
				return nil, errUnknownUser // an alias? a number? (routeLocal)
			}
			if errors.Is(err, auth.ErrUnavailable) {
				return nil, sipcore.Errorf(503, "User directory unavailable").With(sip.NewHeader("Retry-After", "5"))
			}
			return nil, &sipcore.StatusError{Code: 500, Reason: "Server Internal Error", Err: err}
		}
		return nil, sipcore.Errorf(480, "Temporarily Unavailable")
	}
	var plan [][]branchTarget
	lastQ := -1
	for i := range bindings {
		b := &bindings[i]
		t, err := p.bindingTarget(ctx, b)
		if err != nil {
			p.log.Debug("binding unusable", "aor", aor, "contact", b.Contact, "error", err)
			continue
		}
		t.key = b.Key()
		if b.Q != lastQ {
			plan = append(plan, nil)
			lastQ = b.Q
		}
		plan[len(plan)-1] = append(plan[len(plan)-1], t)
	}
	if len(plan) == 0 {
		return nil, sipcore.Errorf(480, "Temporarily Unavailable")
	}
	return plan, nil
}

// bindingTarget computes the next hop to a registered device: through its
// Path (RFC 3327), or over the flow it registered from when it is behind
// NAT or connected (RFC 3581, RFC 5626), or to its Contact.
func (p *Proxy) bindingTarget(ctx context.Context, b *location.Binding) (branchTarget, error) {
	var contact sip.Uri
	if err := sip.ParseUri(b.Contact, &contact); err != nil {
		return branchTarget{}, fmt.Errorf("proxy: contact %q: %w", b.Contact, err)
	}
	t := branchTarget{ruri: &contact}
	if len(b.Path) > 0 {
		var first sip.Uri
		if err := parseNameAddr(b.Path[0], &first); err != nil {
			return branchTarget{}, fmt.Errorf("proxy: path %q: %w", b.Path[0], err)
		}
		if nf, ok := first.UriParams.Get(nodeFlowParam); ok {
			if p.isOurs(first) && len(b.Path) == 1 {
				// Our own Path: the flow is ours to use.
				hop, ok := p.nodeFlow(nf)
				if !ok {
					return branchTarget{}, fmt.Errorf("proxy: path %q: bad flow", b.Path[0])
				}
				t.hop, t.flow, t.browser = hop, true, isWebSocket(hop.Transport)
				return t, nil
			}
			t.node = true // another node of ours holds the flow
		}
		hops, err := p.res.Resolve(ctx, first)
		if err != nil {
			return branchTarget{}, fmt.Errorf("proxy: path %q: %w", b.Path[0], err)
		}
		if len(hops) == 0 {
			return branchTarget{}, fmt.Errorf("proxy: path %q: no target", b.Path[0])
		}
		t.route = b.Path
		t.hop = hops[0]
		return t, nil
	}
	if b.NAT && b.Received != "" {
		ap, err := netipAddrPort(b.Received)
		if err != nil {
			return branchTarget{}, err
		}
		t.hop = resolver.Target{Transport: strings.ToLower(b.Transport), IP: ap.Addr(), Port: ap.Port()}
		if t.hop.Transport == "" {
			t.hop.Transport = resolver.UDP
		}
		t.flow = true
		t.browser = isWebSocket(t.hop.Transport)
		return t, nil
	}
	hops, err := p.res.Resolve(ctx, contact)
	if err != nil {
		return branchTarget{}, fmt.Errorf("proxy: contact %q: %w", b.Contact, err)
	}
	if len(hops) == 0 {
		return branchTarget{}, fmt.Errorf("proxy: contact %q: no target", b.Contact)
	}
	t.hop = hops[0]
	return t, nil
}

// uriTargets resolves a URI (another domain, a Route, a remote target)
// into one branch that fails over along the RFC 3263 target list.
func (p *Proxy) uriTargets(ctx context.Context, uri sip.Uri) ([][]branchTarget, error) {
	hops, err := p.res.Resolve(ctx, uri)
	if err != nil {
		p.log.Info("resolve failed", "uri", sipcore.Sanitize(uri.String()), "error", err)
		var le *resolver.LookupError
		if errors.Is(err, resolver.ErrNXDomain) || errors.As(err, &le) && errors.Is(le, resolver.ErrNXDomain) {
			return nil, sipcore.Errorf(404, "Domain %s not found", uri.Host)
		}
		return nil, sipcore.Errorf(503, "Cannot resolve %s", uri.Host).With(sip.NewHeader("Retry-After", "30"))
	}
	if p.requireTLS && !p.domains[strings.ToLower(uri.Host)] {
		if _, err := netip.ParseAddr(strings.Trim(uri.Host, "[]")); err != nil {
			// Another domain, by name: TLS only.
			var tlsHops []resolver.Target
			for _, h := range hops {
				if strings.EqualFold(h.Transport, resolver.TLS) {
					tlsHops = append(tlsHops, h)
				}
			}
			hops = tlsHops
		}
	}
	if len(hops) == 0 {
		return nil, sipcore.Errorf(503, "No target for %s", uri.Host).With(sip.NewHeader("Retry-After", "30"))
	}
	return [][]branchTarget{{{hop: hops[0], hops: hops, binary: true, domain: strings.ToLower(uri.Host)}}}, nil
}

// relay runs the plan: groups in sequence, branches of a group in
// parallel, and answers upstream per §16.7.
//
// media is the bridge of the call an in-dialog request belongs to; an
// initial INVITE's branches get their own (anchorBranch), and those that
// do not win are closed here.
//
// late, when not "", is the AOR the INVITE goes to: its devices that
// register while it is in progress get a branch too (late.go).
func (p *Proxy) relay(ctx context.Context, req, fwd *sip.Request, tx sip.ServerTransaction, plan [][]branchTarget, recordRoute bool, call *callRecord, media MediaSession, late string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &collector{p: p, req: req, tx: tx, loop: loopHash(req), media: media}
	defer c.closeMedia()
	if req.IsInvite() {
		registered := tx.OnCancel(func(cancelReq *sip.Request) {
			c.cancelAll(cancelReq)
			cancel()
		})
		if !registered {
			// CANCELed (or over) before we forwarded anything.
			return nil
		}
	}
	var lf *lateFork
	if late != "" {
		lf = &lateFork{c: c, ctx: ctx, rr: recordRoute, known: make(map[string]bool)}
		for _, group := range plan {
			for _, t := range group {
				lf.known[t.key] = true
			}
		}
		p.late.add(late, lf)
		defer p.late.remove(late, lf)
	}
	defer func() {
		c.mu.Lock()
		call.branches, call.status = len(c.branches), c.status
		c.mu.Unlock()
	}()
	for _, group := range plan {
		if len(group) == 1 {
			// One device (the usual case): its branch runs here, on the
			// request's worker, rather than on a goroutine of its own
			// that would grow a fresh stack.
			// With one group of one, fwd is the branch's own: no copy.
			p.runBranch(ctx, c, c.newBranch(fwd, group[0], recordRoute, len(plan) == 1))
		} else {
			var wg sync.WaitGroup
			for i := range group {
				b := c.newBranch(fwd, group[i], recordRoute, false)
				wg.Add(1)
				sipcore.Go(func() {
					defer wg.Done()
					p.runBranch(ctx, c, b)
				})
			}
			wg.Wait()
		}
		if c.done() || ctx.Err() != nil {
			break
		}
	}
	if lf != nil {
		// Before the answer: no branch joins after it, and those that
		// joined have had theirs.
		lf.close()
	}
	return c.finish()
}

// isOurs reports whether u names one of our listeners.
// An IPv6 host is bracketed in a URI ("[::1]") and not in a Via.
func (p *Proxy) isOurs(u sip.Uri) bool {
	return p.isOurHostPort(u.Host, sipcore.PortOr(u.Port, u.Scheme))
}

// hostPort is a listener's address, an IPv6 host without brackets.
type hostPort struct {
	host string
	port int
}

// isOurHostPort reports whether host (in any case, an IPv6 address with
// or without brackets) and port are one of our listeners'. A proxy has a
// handful of listeners, and this runs for every Via and Route of every
// message: a scan that allocates nothing beats building a map key.
func (p *Proxy) isOurHostPort(host string, port int) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	for _, o := range p.ours {
		if o.port == port && strings.EqualFold(o.host, host) {
			return true
		}
	}
	return false
}

// reliable reports whether transport is connection-oriented.
func reliable(transport string) bool {
	// EqualFold, not ToLower: this runs for every request, and sipgo's
	// transport names are upper case (ToLower would allocate).
	for _, t := range [...]string{"tcp", "tls", "ws", "wss"} {
		if strings.EqualFold(transport, t) {
			return true
		}
	}
	return false
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// recordRoutes reports whether method creates a dialog we record-route.
func recordRoutes(m sip.RequestMethod) bool {
	switch m {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		return true
	}
	return false
}

// parseNameAddr parses "<sip:…;lr>" or a bare URI.
func parseNameAddr(v string, u *sip.Uri) error {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return errors.New("missing >")
		}
		v = v[i+1 : i+j]
	}
	return sip.ParseUri(v, u)
}
