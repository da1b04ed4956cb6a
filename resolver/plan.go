package resolver

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// plan is the cached resolution of a URI: groups of SRV records in the
// order to try them, each record with its addresses. The weighted order
// inside a group is drawn anew on every Resolve (RFC 2782).
type plan struct {
	groups  []group
	n       int       // number of targets
	expires time.Time // the earliest expiry of every answer used
}

// group is the records of one priority, from one NAPTR record or one SRV
// query; entries of weight 0 come first, as RFC 2782 orders them.
type group struct {
	entries []entry
}

type entry struct {
	weight  uint16
	targets []Target
}

// order returns the targets of p: groups in order, entries inside a group
// in RFC 2782 weighted random order, targets marked down last.
func (r *Resolver) order(p *plan) []Target {
	out := make([]Target, 0, p.n)
	for i := range p.groups {
		es := p.groups[i].entries
		if len(es) == 1 {
			out = append(out, es[0].targets...)
			continue
		}
		var buf [16]uint16
		left := buf[:0]
		if len(es) > len(buf) {
			left = make([]uint16, 0, len(es))
		}
		for j := range es {
			left = append(left, uint16(j))
		}
		for len(left) > 0 {
			k := r.pick(es, left)
			out = append(out, es[left[k]].targets...)
			left = append(left[:k], left[k+1:]...)
		}
	}
	r.demote(out)
	return out
}

// pick chooses the next entry among left (indexes into es) as RFC 2782
// says: a uniform random number between 0 and the sum of the weights,
// inclusive, selects the first entry whose running sum is at least as
// large. Entries of weight 0 come first, so they are chosen only when the
// number is 0 (or when nothing else is left).
func (r *Resolver) pick(es []entry, left []uint16) int {
	sum := 0
	for _, j := range left {
		sum += int(es[j].weight)
	}
	x := r.intN(sum + 1)
	run := 0
	for k, j := range left {
		run += int(es[j].weight)
		if run >= x {
			return k
		}
	}
	return len(left) - 1
}

func (r *Resolver) intN(n int) int {
	if r.rng == nil {
		return rand.IntN(n)
	}
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

// builder gathers the groups of a plan and the reasons paths gave nothing.
type builder struct {
	r       *Resolver
	k       planKey
	p       *plan
	fqdn    string
	reasons []error
}

// ask looks a question up and lowers the plan's expiry to the answer's.
func (b *builder) ask(ctx context.Context, name string, qtype uint16) (*answer, error) {
	a, err := b.r.lookup(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	if a.expires.Before(b.p.expires) {
		b.p.expires = a.expires
	}
	if a.neg != nil {
		b.reasons = append(b.reasons, a.neg)
	}
	return a, nil
}

func (b *builder) add(g group) {
	for _, e := range g.entries {
		b.p.n += len(e.targets)
	}
	b.p.groups = append(b.p.groups, g)
}

// plan resolves k (RFC 3263 §4.1 and §4.2).
func (r *Resolver) plan(ctx context.Context, k planKey) (*plan, error) {
	b := &builder{r: r, k: k, p: &plan{expires: r.now().Add(24 * time.Hour)}, fqdn: dns.Fqdn(k.host)}
	var err error
	switch {
	case k.port != 0:
		// An explicit port: A/AAAA only.
		err = b.addresses(ctx)
	case k.transport != "":
		// A transport parameter: SRV for that transport only.
		var found bool
		if found, err = b.srv(ctx, transports[k.transport].srv+b.fqdn, k.transport, nil); err == nil && !found {
			err = b.addresses(ctx)
		}
	default:
		err = b.naptr(ctx)
	}
	if err != nil {
		return nil, err
	}
	if b.p.n == 0 {
		return nil, &ResolveError{Host: k.host, Reasons: b.reasons}
	}
	return b.p, nil
}

// naptr follows the NAPTR records of the domain, or falls back to SRV for
// each transport we speak, then to A/AAAA (RFC 3263 §4.1).
func (b *builder) naptr(ctx context.Context) error {
	a, err := b.ask(ctx, b.fqdn, dns.TypeNAPTR)
	if err != nil {
		return err
	}
	var ns []*dns.NAPTR
	for _, rr := range a.rrs {
		n := rr.(*dns.NAPTR)
		if t, ok := b.usable(n); ok && b.r.speaks(t) && (!b.k.secure || transports[t].secure) {
			ns = append(ns, n)
		}
	}
	slices.SortStableFunc(ns, func(x, y *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(x.Order, y.Order), cmp.Compare(x.Preference, y.Preference))
	})
	for _, n := range ns {
		t, _ := b.usable(n)
		if _, err := b.srv(ctx, strings.ToLower(n.Replacement), t, []string{text(n)}); err != nil {
			// One NAPTR's SRV failing is one path failing: go on to the next.
			b.reasons = append(b.reasons, err)
		}
	}
	if len(ns) > 0 {
		return nil
	}
	if len(a.rrs) > 0 {
		b.reasons = append(b.reasons, &LookupError{Name: b.fqdn, Type: "NAPTR", Err: errNoUsableNAPTR})
	}
	found := false
	for _, t := range b.r.transports {
		if b.k.secure && !transports[t].secure {
			continue
		}
		ok, err := b.srv(ctx, transports[t].srv+b.fqdn, t, nil)
		if err != nil {
			return err
		}
		found = found || ok
	}
	if found {
		return nil
	}
	return b.addresses(ctx)
}

var errNoUsableNAPTR = errors.New(`no record for a transport we speak (flag "S", empty regexp): trying SRV`)

// usable returns the transport of a NAPTR record that RFC 3263 §4.1 lets
// us follow: flag "S", a SIP service, no regexp, a replacement.
func (b *builder) usable(n *dns.NAPTR) (string, bool) {
	if !strings.EqualFold(n.Flags, "s") || n.Regexp != "" || n.Replacement == "." || n.Replacement == "" {
		return "", false
	}
	for t, info := range transports {
		if strings.EqualFold(n.Service, info.naptr) {
			return t, true
		}
	}
	return "", false
}

// srv adds the groups of the SRV records of name, for transport t. found
// is false when there are none (NXDOMAIN or no records); a lone "." target
// is found, and recorded as ErrNoService.
func (b *builder) srv(ctx context.Context, name, t string, chain []string) (found bool, err error) {
	a, err := b.ask(ctx, name, dns.TypeSRV)
	if err != nil {
		return false, err
	}
	if len(a.rrs) == 0 {
		return false, nil
	}
	srvs := make([]*dns.SRV, 0, len(a.rrs))
	for _, rr := range a.rrs {
		s := rr.(*dns.SRV)
		if s.Target == "." {
			b.reasons = append(b.reasons, &LookupError{Name: name, Type: "SRV", Err: ErrNoService})
			continue
		}
		srvs = append(srvs, s)
	}
	// By priority; inside a priority, weight 0 first (RFC 2782).
	slices.SortStableFunc(srvs, func(x, y *dns.SRV) int {
		return cmp.Or(cmp.Compare(x.Priority, y.Priority), cmp.Compare(min(x.Weight, 1), min(y.Weight, 1)))
	})
	chain = append(chain, texts(a.cnames)...)
	var g group
	for i, s := range srvs {
		if i > 0 && s.Priority != srvs[i-1].Priority && len(g.entries) > 0 {
			b.add(g)
			g = group{}
		}
		ts := b.resolveHost(ctx, strings.ToLower(s.Target), t, s.Port, append(slices.Clip(chain), text(s)))
		if len(ts) > 0 {
			g.entries = append(g.entries, entry{weight: s.Weight, targets: ts})
		}
	}
	if len(g.entries) > 0 {
		b.add(g)
	}
	return true, nil
}

// addresses adds the A/AAAA targets of the URI's host, at its port or the
// default one, over the transport the URI asks for or the default one.
func (b *builder) addresses(ctx context.Context) error {
	t, port, err := b.r.defaultTransport(b.k)
	if err != nil {
		return err
	}
	if ts := b.resolveHost(ctx, b.fqdn, t, port, nil); len(ts) > 0 {
		b.add(group{entries: []entry{{targets: ts}}})
	}
	return nil
}

// resolveHost returns a target for each address of host, families in the
// order configured. Failures are recorded as reasons.
func (b *builder) resolveHost(ctx context.Context, host, t string, port uint16, chain []string) []Target {
	var qtypes []uint16
	switch b.r.family {
	case PreferIPv4:
		qtypes = []uint16{dns.TypeA, dns.TypeAAAA}
	case PreferIPv6:
		qtypes = []uint16{dns.TypeAAAA, dns.TypeA}
	case IPv4Only:
		qtypes = []uint16{dns.TypeA}
	case IPv6Only:
		qtypes = []uint16{dns.TypeAAAA}
	}
	var ts []Target
	for _, qt := range qtypes {
		a, err := b.ask(ctx, host, qt)
		if err != nil {
			b.reasons = append(b.reasons, err)
			continue
		}
		c := append(slices.Clip(chain), texts(a.cnames)...)
		for _, rr := range a.rrs {
			var ip netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				ip, _ = netip.AddrFromSlice(v.A.To4())
			case *dns.AAAA:
				ip, _ = netip.AddrFromSlice(v.AAAA.To16())
			}
			if !ip.IsValid() {
				continue
			}
			ts = append(ts, Target{
				Transport: t,
				Host:      strings.TrimSuffix(host, "."),
				IP:        ip,
				Port:      port,
				Records:   append(slices.Clip(c), text(rr)),
			})
		}
	}
	return ts
}

// text returns rr in presentation format, with spaces for tabs.
func text(rr dns.RR) string { return strings.ReplaceAll(rr.String(), "\t", " ") }

func texts(rrs []dns.RR) []string {
	var s []string
	for _, rr := range rrs {
		s = append(s, text(rr))
	}
	return s
}

// ResolveError is a URI that produced no target: every path tried, and
// why each gave nothing.
type ResolveError struct {
	Host    string
	Reasons []error
}

// Error returns e.g. "resolver: no targets for b.test: b.test NAPTR:
// NXDOMAIN; ...".
func (e *ResolveError) Error() string {
	var sb strings.Builder
	sb.WriteString("resolver: no targets for ")
	sb.WriteString(e.Host)
	for i, r := range e.Reasons {
		if i == 0 {
			sb.WriteString(": ")
		} else {
			sb.WriteString("; ")
		}
		sb.WriteString(strings.TrimPrefix(r.Error(), "resolver: "))
	}
	return sb.String()
}

// Unwrap returns ErrNoTargets and the reasons, for errors.Is.
func (e *ResolveError) Unwrap() []error { return append([]error{ErrNoTargets}, e.Reasons...) }
