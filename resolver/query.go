package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// answer is the cached outcome of one question: the records of the type
// asked for (after any CNAME chain), or a negative answer.
type answer struct {
	rrs     []dns.RR // records of the type asked for
	cnames  []dns.RR // the CNAME chain that led to them, in order
	neg     error    // *LookupError wrapping ErrNXDomain or ErrNoRecords
	expires time.Time
}

type rrKey struct {
	name  string
	qtype uint16
}

// call is one query in flight; later askers of the same question wait for it.
type call struct {
	done chan struct{}
	ans  *answer
	err  error
}

// lookup answers one question from the cache, or asks the upstream
// servers, collapsing concurrent questions for the same name and type into
// one query. A negative answer is an answer (ans.neg); err is a failure to
// get any answer (timeout, SERVFAIL, ...).
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, error) {
	k := rrKey{name, qtype}
	r.mu.Lock()
	if a, ok := r.rrs[k]; ok {
		if r.now().Before(a.expires) {
			r.mu.Unlock()
			return a, nil
		}
		delete(r.rrs, k)
	}
	c, ok := r.calls[k]
	if !ok {
		c = &call{done: make(chan struct{})}
		r.calls[k] = c
		go r.run(ctx, k, c)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.ans, c.err
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return nil, &LookupError{Name: name, Type: dns.TypeToString[qtype], Err: err}
	}
}

// run performs the query of c, detached from the cancellation of the first
// asker (others may still wait for it) but bounded by the per-server timeout.
func (r *Resolver) run(ctx context.Context, k rrKey, c *call) {
	ans, err := r.query(context.WithoutCancel(ctx), k.name, k.qtype)
	r.mu.Lock()
	delete(r.calls, k)
	if err == nil && ans.expires.After(r.now()) {
		r.store(k, ans)
	}
	r.mu.Unlock()
	c.ans, c.err = ans, err
	close(c.done)
}

// store adds an entry, making room when the cache is full: expired entries
// go first, then arbitrary ones. r.mu is held.
func (r *Resolver) store(k rrKey, a *answer) {
	makeRoom(r.rrs, r.maxEntries, r.now(), func(a *answer) time.Time { return a.expires })
	r.rrs[k] = a
}

// makeRoom brings a full cache m below max entries: expired entries go
// first, then arbitrary ones.
func makeRoom[K comparable, V any](m map[K]V, max int, now time.Time, expires func(V) time.Time) {
	if len(m) < max {
		return
	}
	for key, e := range m {
		if !now.Before(expires(e)) {
			delete(m, key)
		}
	}
	for key := range m {
		if len(m) < max {
			break
		}
		delete(m, key)
	}
}

// query asks each upstream server in turn until one answers.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	var errs []error
	for _, server := range r.servers {
		resp, err := r.exchange(ctx, m, server)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return r.parse(name, qtype, resp), nil
		case dns.RcodeServerFailure:
			errs = append(errs, fmt.Errorf("%w from %s", ErrServFail, server))
		case dns.RcodeRefused:
			errs = append(errs, fmt.Errorf("%w by %s", ErrRefused, server))
		default:
			errs = append(errs, fmt.Errorf("%w: rcode %s from %s", ErrServFail, dns.RcodeToString[resp.Rcode], server))
		}
	}
	return nil, &LookupError{Name: name, Type: dns.TypeToString[qtype], Err: joinErrs(errs)}
}

func joinErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// exchange asks one server over UDP, and again over TCP when the answer
// was truncated.
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	resp, err := r.exchangeNet(ctx, m, server, "udp")
	if err == nil && resp.Truncated {
		resp, err = r.exchangeNet(ctx, m, server, "tcp")
	}
	return resp, err
}

func (r *Resolver) exchangeNet(ctx context.Context, m *dns.Msg, server, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := dns.Client{Net: network, Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil {
		return resp, nil
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return nil, fmt.Errorf("%w after %v asking %s over %s", ErrTimeout, r.timeout, server, network)
	}
	return nil, fmt.Errorf("%w: %s over %s: %v", ErrUnreachable, server, network, err)
}

// parse turns a response into an answer: it follows the CNAME chain from
// name, and takes the negative-caching TTL from the SOA in the authority
// section (RFC 2308 §5: the smaller of its TTL and its MINIMUM field).
func (r *Resolver) parse(name string, qtype uint16, resp *dns.Msg) *answer {
	now := r.now()
	a := &answer{}
	ttl := ^uint32(0)
	owner := name
	for range 16 {
		var next string
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, owner) {
				continue
			}
			if h.Rrtype == qtype {
				a.rrs = append(a.rrs, rr)
				ttl = min(ttl, h.Ttl)
			} else if cn, ok := rr.(*dns.CNAME); ok && next == "" && qtype != dns.TypeCNAME {
				a.cnames = append(a.cnames, rr)
				ttl = min(ttl, h.Ttl)
				next = cn.Target
			}
		}
		if len(a.rrs) > 0 || next == "" {
			break
		}
		owner = next
	}
	if len(a.rrs) > 0 {
		a.expires = now.Add(time.Duration(ttl) * time.Second)
		return a
	}
	why := ErrNoRecords
	if resp.Rcode == dns.RcodeNameError {
		why = ErrNXDomain
	}
	a.neg = &LookupError{Name: name, Type: dns.TypeToString[qtype], Err: why}
	a.expires = now // not cached without an SOA (RFC 2308 §5)
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			a.expires = now.Add(time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second)
			break
		}
	}
	return a
}

// flush empties the caches.
func (r *Resolver) flush() {
	r.mu.Lock()
	clear(r.rrs)
	r.mu.Unlock()
	r.pmu.Lock()
	clear(r.plans)
	r.pmu.Unlock()
	r.smu.Lock()
	clear(r.substs)
	r.smu.Unlock()
}
