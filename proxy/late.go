package proxy

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/sipcore"
)

// Late forking: a device that registers while a call to its AOR is still
// ringing gets a branch of that call too, as Kamailio's tsilo and
// Flexisip do (a phone woken by a push notification registers only
// then). The proxy keeps the INVITEs to users of ours that are in
// progress by AOR; Changed, told of each change to an AOR's bindings (by
// this node's registrar, and through the store's change notifications by
// every other node's), looks the AOR up again and starts a branch to each
// device the call has not tried yet.

// lateForks holds the INVITEs in progress to users of ours, by AOR.
type lateForks struct {
	mu      sync.Mutex
	calls   map[string][]*lateFork
	looking map[string]bool // AORs whose look-up runs: a change meanwhile sets again
	again   map[string]bool
}

// begin reports whether a look-up for aor should start now: none runs
// for it. Otherwise the running one is told to look once more when it is
// done, so a flood of REGISTERs for an AOR with a call in progress costs
// at most one look-up at a time, not a goroutine and a store read each.
func (l *lateForks) begin(aor string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.looking[aor] {
		l.again[aor] = true
		return false
	}
	if l.looking == nil {
		l.looking, l.again = make(map[string]bool), make(map[string]bool)
	}
	l.looking[aor] = true
	return true
}

// end reports whether the look-up for aor must run again (a change came
// in while it ran); otherwise aor is free for the next begin.
func (l *lateForks) end(aor string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.again[aor] {
		delete(l.again, aor)
		return true
	}
	delete(l.looking, aor)
	return false
}

// lateFork is one INVITE in progress that more branches may join.
type lateFork struct {
	c   *collector
	ctx context.Context // the relay's: cancelled with the call
	rr  bool

	mu     sync.Mutex
	known  map[string]bool // binding keys the call has a branch for
	closed bool            // the relay is answering: no more branches
	wg     sync.WaitGroup  // the late branches, waited for before the answer
}

func (l *lateForks) add(aor string, f *lateFork) {
	l.mu.Lock()
	if l.calls == nil {
		l.calls = make(map[string][]*lateFork)
	}
	l.calls[aor] = append(l.calls[aor], f)
	l.mu.Unlock()
}

func (l *lateForks) remove(aor string, f *lateFork) {
	l.mu.Lock()
	fs := l.calls[aor]
	for i, g := range fs {
		if g == f {
			fs = append(fs[:i], fs[i+1:]...)
			break
		}
	}
	if len(fs) == 0 {
		delete(l.calls, aor)
	} else {
		l.calls[aor] = fs
	}
	l.mu.Unlock()
}

func (l *lateForks) get(aor string) []*lateFork {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*lateFork(nil), l.calls[aor]...)
}

// close stops f taking branches and waits for those it took.
func (f *lateFork) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}

// lateLookupTimeout bounds the store look-up a change triggers.
const lateLookupTimeout = 5 * time.Second

// Changed tells the proxy that aor's bindings changed. Calls to aor that
// are still in progress get a branch to each device they have not tried.
// It returns at once; the look-up runs on a goroutine of its own, only
// when such a call exists, and one at a time per AOR (begin).
func (p *Proxy) Changed(aor string) {
	aor = strings.ToLower(aor) // the host is; the store's AORs are too
	if len(p.late.get(aor)) == 0 || !p.late.begin(aor) {
		return
	}
	go func() {
		for {
			p.lateLookup(aor)
			if !p.late.end(aor) {
				return
			}
		}
	}()
}

// lateLookup looks aor up and gives its calls in progress a branch to
// each device they have not tried.
func (p *Proxy) lateLookup(aor string) {
	forks := p.late.get(aor)
	if len(forks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lateLookupTimeout)
	defer cancel()
	bindings, err := p.loc.Lookup(ctx, aor)
	if err != nil {
		p.log.Debug("late fork: look-up failed", "aor", aor, "error", err)
		return
	}
	// The targets first, outside the calls' locks (a Contact may
	// need DNS).
	var targets []branchTarget
	for i := range bindings {
		t, err := p.bindingTarget(ctx, &bindings[i])
		if err != nil {
			continue
		}
		t.key = bindings[i].Key()
		targets = append(targets, t)
	}
	for _, f := range forks {
		for _, t := range targets {
			f.mu.Lock()
			if f.closed || f.known[t.key] || f.c.done() || f.ctx.Err() != nil {
				f.mu.Unlock()
				continue
			}
			f.known[t.key] = true
			br := f.c.newBranch(p.lateRequest(f.c.req), t, f.rr, true)
			f.wg.Add(1)
			f.mu.Unlock()
			p.log.Info("late fork", "call_id", sipcore.CallID(f.c.req), "aor", aor, "target", t.hop.String())
			go func() {
				defer f.wg.Done()
				p.runBranch(f.ctx, f.c, br)
			}()
		}
	}
}

// lateRequest is what an initial INVITE to a user of ours is forwarded as
// (ServeSIP's preprocessing for such a request: no Route of ours, no
// credentials for our realm, no node assertion), made again from the
// request as received for a branch added later.
func (p *Proxy) lateRequest(req *sip.Request) *sip.Request {
	fwd := req.Clone()
	for r := fwd.Route(); r != nil && p.isOurs(r.Address); r = fwd.Route() {
		fwd.RemoveHeader("Route")
	}
	if fwd.GetHeader(nodeHeader) != nil {
		fwd.RemoveHeader(nodeHeader)
	}
	removeCredentials(fwd, strings.ToLower(req.From().Address.Host))
	return fwd
}
