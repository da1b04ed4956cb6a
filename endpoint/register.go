package endpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/resolver"
)

// registration is the state of our binding at the registrar.
type registration struct {
	callID  string
	cseq    uint32
	expires time.Time // zero: not registered
}

// StatusError is a final response that ended a request: the SIP status
// and reason, for messages and exit codes.
type StatusError struct {
	Method string
	Code   int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Method, e.Code, e.Reason)
}

// Register sends one REGISTER (answering a digest challenge) and returns
// how long the registrar granted.
func (p *Phone) Register(ctx context.Context) (time.Duration, error) {
	return p.register(ctx, p.cfg.Expires)
}

func (p *Phone) register(ctx context.Context, expires time.Duration) (time.Duration, error) {
	proxy, n := p.proxyTargets()
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if attempt < n {
			actx, cancel = context.WithTimeout(ctx, attemptTimeout)
		}
		granted, res, err := p.registerVia(actx, proxy, expires)
		cancel()
		// A proxy that failed us (no answer, no connection, 503) is
		// passed over for the next target (RFC 3263 §4.3), each target
		// once per REGISTER.
		failed := res == nil && err != nil || res != nil && res.StatusCode == 503
		if !failed || attempt >= n || ctx.Err() != nil {
			return granted, err
		}
		p.log.Debug("REGISTER failed at a proxy", "proxy", proxy.String(), "error", err)
		proxy = p.failover(ctx, proxy)
	}
}

// registerVia sends one REGISTER through proxy (answering a digest
// challenge). A final response other than 200 is returned with a
// *StatusError.
func (p *Phone) registerVia(ctx context.Context, proxy resolver.Target, expires time.Duration) (time.Duration, *sip.Response, error) {
	p.mu.Lock()
	if p.reg.callID == "" {
		p.reg.callID = sip.GenerateTagN(16) + "@" + p.local.Addr().String()
	}
	p.reg.cseq++
	callID, cseq := p.reg.callID, p.reg.cseq
	p.mu.Unlock()

	aor := sip.Uri{Scheme: "sip", User: p.user, Host: p.domain}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.domain})
	req.AppendHeader(&sip.FromHeader{Address: aor, Params: tagParams()})
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
	contact := p.contact.Clone()
	contact.Params = sip.NewParams()
	contact.Params.Add("+sip.instance", `"<`+p.instance+`>"`)
	contact.Params.Add("reg-id", "1")
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	req.AppendHeader(sip.NewHeader("Supported", "outbound, path"))
	p.outboundTo(req, proxy)

	res, err := p.client.Do(ctx, req)
	if err != nil {
		return 0, nil, fmt.Errorf("endpoint: REGISTER via %s: %w", proxy.AddrPort(), err)
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: p.cfg.Password})
		if err != nil {
			return 0, nil, fmt.Errorf("endpoint: REGISTER via %s: %w", proxy.AddrPort(), err)
		}
		p.mu.Lock()
		p.reg.cseq = req.CSeq().SeqNo
		p.mu.Unlock()
	}
	if res.StatusCode != 200 {
		return 0, res, &StatusError{Method: "REGISTER", Code: res.StatusCode, Reason: res.Reason}
	}
	granted := grantedExpiry(res, p.contact.Address, expires)
	p.mu.Lock()
	if granted > 0 {
		p.reg.expires = time.Now().Add(granted)
	} else {
		p.reg.expires = time.Time{}
	}
	p.mu.Unlock()
	return granted, res, nil
}

// grantedExpiry reads our binding's expires from the 200 (§10.2.4), or
// the Expires header, or what we asked.
func grantedExpiry(res *sip.Response, contact sip.Uri, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || c.Address.User != contact.User || c.Address.Host != contact.Host || c.Address.Port != contact.Port {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

func (p *Phone) registered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.reg.expires.IsZero()
}

// unregister removes our binding (Expires: 0).
func (p *Phone) unregister(ctx context.Context) error {
	_, err := p.register(ctx, 0)
	return err
}

// KeepRegistered registers and refreshes the binding before it expires
// (at half the interval, at most a minute before), retrying with
// back-off (1 s doubling to 60 s; a Retry-After is honoured) after a
// failure, until ctx ends or the phone closes. The first outcome is
// returned through first: nil once registered, or the first error.
func (p *Phone) KeepRegistered(ctx context.Context, first chan<- error) {
	backoff := time.Second
	reported := false
	for {
		granted, err := p.Register(ctx)
		wait := granted / 2
		if err == nil {
			p.emit(Event{Event: "registered", AOR: p.AOR(), Expires: int(granted / time.Second), Proxy: p.Proxy().AddrPort().String()})
			backoff = time.Second
			if granted > 2*time.Minute {
				wait = granted - time.Minute
			}
		} else {
			if ctx.Err() != nil || p.isClosed() {
				return
			}
			p.emit(Event{Event: "error", AOR: p.AOR(), Error: err.Error()})
			wait = backoff
			backoff = min(2*backoff, 60*time.Second)
			var se *StatusError
			if errors.As(err, &se) && (se.Code == 403 || se.Code == 404) {
				wait = max(wait, 30*time.Second) // a refusal will not change soon
			}
		}
		if !reported && first != nil {
			first <- err
			reported = true
		}
		if !p.sleep(ctx, wait) {
			return
		}
	}
}

// sleep waits d, or less when the registration needs renewing now (its
// TCP flow closed, or a request found the proxy gone); false: ctx ended
// or the phone closed.
func (p *Phone) sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-p.done:
			return false
		case <-timer.C:
			return true
		case <-p.kick:
			return true
		case <-tick.C:
			if p.flowLost() {
				p.log.Info("the connection to the proxy closed: registering again", "proxy", p.Proxy().String())
				return true
			}
		}
	}
}

// tagParams is a From parameter list with a new tag.
func tagParams() sip.HeaderParams {
	params := sip.NewParams()
	params.Add("tag", sip.GenerateTagN(10))
	return params
}
