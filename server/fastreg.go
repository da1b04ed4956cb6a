package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"

	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/sipcore"
)

// REGISTER over UDP is answered without a sipgo server transaction.
//
// A registrar needs none of what a transaction gives: it answers at once
// with one final response, there is no CANCEL or ACK to match, and a
// retransmission only needs the same answer again. sipgo's transaction
// costs a goroutine, timers and about 4.5 kB kept for 32 s (Timer J) per
// request: at 10,000 REGISTER/s that is 3 GB of heap and most of the CPU
// of a registration. Here a REGISTER is parsed in the UDP read loop (as
// sipgo would), handled on a worker (sipcore.Go) by the same pipeline,
// and its final response kept for 5 s by branch and source
// (sipcore.ResponseCache), which is how RFC 3261 §17.2.3 matches a
// retransmission: a copy that arrives meanwhile is answered from the
// cache, one that arrives while the first is being handled is dropped
// (its sender retransmits). Anything this path does not take (another
// method, an RFC 2543 branch, a full cache, a message that does not
// parse) goes to sipgo as before.

// responseTTL is how long a stateless final response is kept for
// retransmissions: Kamailio keeps a finished transaction as long.
const responseTTL = 5 * time.Second

// maxCachedResponses bounds the cache: about 700 bytes each, so 140 MB;
// beyond it REGISTERs take sipgo's transactions again. Only final
// answers other than challenges are kept 5 s: 50,000 at 10,000
// registrations a second.
const maxCachedResponses = 200_000

type statelessRegister struct {
	parser *sip.Parser
	cache  *sipcore.ResponseCache
	handle atomic.Pointer[func(*sip.Request, sip.ServerTransaction)] // the REGISTER pipeline, set once the server is wired
	invite atomic.Pointer[statelessInvite]                           // the proxy's, for challenges
}

// An INVITE from a user of ours without credentials is answered 407 over
// UDP without a server transaction either, the way Kamailio's sl module
// challenges: the proxy would only answer it itself (a final response,
// nothing forwarded, nothing looked up), and a sipgo server transaction
// for it costs a goroutine, a context timer, Timers G, H and I, and a
// goroutine holding the ACK for 5 s. Its To tag (statelessTag) is made
// from the request's branch and Call-ID, so the ACK of the 407, which
// carries that tag and the INVITE's branch (RFC 3261 §17.1.1.3), is
// recognised without any state and absorbed; a retransmitted INVITE is
// simply challenged again. An INVITE that mentions Proxy-Authorization
// anywhere goes to sipgo unparsed.
type statelessInvite struct {
	handle  func(*sip.Request, sip.ServerTransaction) // the proxy's pipeline
	alone   func(*sip.Request) bool                   // proxy.AnswersAlone
	domains map[string]bool                           // ours, lower-case
	secret  []byte                                    // the domain's (shared by its nodes, kept across restarts): the To tags
}

// statelessTagPrefix starts the To tag of every stateless answer to an
// INVITE.
const statelessTagPrefix = "sfs"

func newStatelessRegister() *statelessRegister {
	return &statelessRegister{parser: sipcore.NewParser(), cache: sipcore.NewResponseCache(responseTTL, maxCachedResponses)}
}

// setInvite sets the proxy's pipeline and its AnswersAlone; a nil handle
// sends every INVITE to sipgo's transactions.
func (r *statelessRegister) setInvite(handle func(*sip.Request, sip.ServerTransaction), alone func(*sip.Request) bool, domains []string, secret []byte) {
	if handle == nil {
		r.invite.Store(nil)
		return
	}
	si := &statelessInvite{handle: handle, alone: alone, domains: map[string]bool{}, secret: secret}
	for _, d := range domains {
		si.domains[strings.ToLower(d)] = true
	}
	r.invite.Store(si)
}

// statelessTag is the To tag of a stateless answer to req, and of the ACK
// that answer gets: the prefix and an HMAC, with the domain's secret, of
// the top Via's branch and the Call-ID. The secret is the one the
// domain's nodes share (and keep across restarts), so the ACK is
// recognised by whichever node it reaches.
func (si *statelessInvite) statelessTag(req *sip.Request) string {
	v, cid := req.Via(), req.CallID()
	if v == nil || cid == nil {
		return ""
	}
	br, _ := v.Params.Get("branch")
	m := hmac.New(sha256.New, si.secret)
	m.Write([]byte(br))
	m.Write([]byte{0})
	m.Write([]byte(cid.Value()))
	return statelessTagPrefix + hex.EncodeToString(m.Sum(nil)[:10])
}

// setHandler sets the pipeline; nil sends every REGISTER to sipgo's
// transactions (as the benchmark compares).
func (r *statelessRegister) setHandler(h func(*sip.Request, sip.ServerTransaction)) {
	if h == nil {
		r.handle.Store(nil)
		return
	}
	r.handle.Store(&h)
}

// sweep drops expired cached answers every second until ctx ends, so an
// idle server keeps none.
func (r *statelessRegister) sweep(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.cache.Sweep(now)
		}
	}
}

// intercept returns the sipcore.PacketConn hook of the UDP listener conn.
func (r *statelessRegister) intercept(conn net.PacketConn) func([]byte, netip.AddrPort) bool {
	return func(b []byte, from netip.AddrPort) bool {
		switch {
		case len(b) > 7 && string(b[:7]) == "INVITE ":
			return r.challenge(conn, b, from)
		case len(b) > 4 && string(b[:4]) == "ACK ":
			return r.absorb(b)
		case len(b) < 9 || string(b[:9]) != "REGISTER ":
			return false
		}
		hp := r.handle.Load()
		if hp == nil {
			return false
		}
		handle := *hp
		msg, err := r.parser.ParseSIP(b)
		if err != nil {
			return false // sipgo logs and counts it
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.REGISTER {
			return false
		}
		v := req.Via()
		if v == nil {
			return false
		}
		branch, _ := v.Params.Get("branch")
		if !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) {
			return false
		}
		src := from.String()
		key := branch + " " + src
		now := time.Now()
		data, handling, fresh := r.cache.Begin(key, now)
		to := net.UDPAddrFromAddrPort(from)
		switch {
		case data != nil:
			conn.WriteTo(data, to) // a retransmission: the same answer
			return true
		case handling:
			return true // the first copy is being answered
		case !fresh:
			return false // cache full: a server transaction
		}
		req.SetTransport("UDP")
		req.SetSource(src)
		req.SetDestination(conn.LocalAddr().String())
		sipcore.Go(func() {
			tx := &udpTx{conn: conn, to: to, key: key, cache: r.cache}
			handle(req, tx)
			tx.finish()
		})
		return true
	}
}

// challenge answers an INVITE that the proxy answers alone (see
// statelessInvite) from the read loop's goroutine's child, and reports
// whether it took it.
func (r *statelessRegister) challenge(conn net.PacketConn, b []byte, from netip.AddrPort) bool {
	si := r.invite.Load()
	if si == nil || containsFold(b, "proxy-authorization") {
		return false
	}
	// Most INVITEs that are not ours to challenge come from other
	// domains: those are told apart without parsing, which sipgo would
	// do again. (A From this misreads costs a parse or a transaction,
	// never a wrong answer: AnswersAlone decides on the parsed request.)
	if h := fromHost(b); h != "" && !si.domains[h] {
		return false
	}
	msg, err := r.parser.ParseSIP(b)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || !req.IsInvite() || !si.alone(req) {
		return false
	}
	tag := si.statelessTag(req)
	if tag == "" {
		return false
	}
	src := from.String()
	req.SetTransport("UDP")
	req.SetSource(src)
	req.SetDestination(conn.LocalAddr().String())
	sipcore.Go(func() {
		tx := &udpTx{conn: conn, to: net.UDPAddrFromAddrPort(from), tag: tag}
		si.handle(req, tx)
	})
	return true
}

// absorb reports whether b is the ACK of a stateless answer of ours, which
// ends there.
func (r *statelessRegister) absorb(b []byte) bool {
	si := r.invite.Load()
	if si == nil || !bytes.Contains(b, []byte("tag="+statelessTagPrefix)) {
		return false
	}
	msg, err := r.parser.ParseSIP(b)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || !req.IsAck() {
		return false
	}
	to := req.To()
	if to == nil {
		return false
	}
	tag, _ := to.Params.Get("tag")
	return tag != "" && hmac.Equal([]byte(tag), []byte(si.statelessTag(req)))
}

// fromHost returns the lower-case host of the From URI in the raw
// message b, or "" when it does not find one.
func fromHost(b []byte) string {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return ""
		}
		line := b[i : i+j]
		i += j + 1
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return "" // the end of the headers
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if !bytes.EqualFold(name, []byte("from")) && !bytes.EqualFold(name, []byte("f")) {
			continue
		}
		k := bytes.IndexByte(value, ':') // after the scheme
		if k < 0 {
			return ""
		}
		rest := value[k+1:]
		if at := bytes.IndexByte(rest, '@'); at >= 0 && !bytes.ContainsAny(rest[:at], ">;?") {
			rest = rest[at+1:]
		}
		if len(rest) > 0 && rest[0] == '[' { // an IPv6 reference
			if end := bytes.IndexByte(rest, ']'); end >= 0 {
				return strings.ToLower(string(rest[:end+1]))
			}
			return ""
		}
		if end := bytes.IndexAny(rest, ":;>? \t"); end >= 0 {
			rest = rest[:end]
		}
		return strings.ToLower(string(rest))
	}
	return ""
}

// containsFold reports whether b contains the lower-case ASCII word w in
// any case.
func containsFold(b []byte, w string) bool {
	if len(w) == 0 {
		return true
	}
	for i := 0; i+len(w) <= len(b); i++ {
		j := 0
		for ; j < len(w); j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// udpTx is the sip.ServerTransaction of a stateless REGISTER: Respond
// writes to the request's source (RFC 3581, as sipgo answers over UDP) and
// caches the final response. A stateless INVITE's has no cache and a tag:
// its responses' To tag.
type udpTx struct {
	conn  net.PacketConn
	to    *net.UDPAddr
	key   string
	cache *sipcore.ResponseCache
	tag   string

	mu    sync.Mutex
	final bool
}

func (t *udpTx) Respond(res *sip.Response) error {
	if t.tag != "" && res.StatusCode > 100 {
		if to := res.To(); to != nil {
			to.Params.Add("tag", t.tag)
		}
	}
	buf := renderPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			renderPool.Put(buf)
		}
	}()
	buf.Reset()
	res.StringWrite(buf)
	data := buf.Bytes()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.final {
		return nil // one final response per request
	}
	if res.StatusCode >= 200 {
		t.final = true
		// The cache first, then the socket: a copy the client sends the
		// moment it has the answer must find the answer, not an entry
		// still being handled (which drops it).
		if t.cache != nil {
			if res.StatusCode == 401 || res.StatusCode == 407 {
				// A challenge is not kept: a retransmission answered
				// afresh gets another nonce, which is as good. Only an
				// answer that changed something (a 200 that updated
				// bindings) must come back the same. Half the cache, at
				// a registrar's mix.
				t.cache.Forget(t.key)
			} else {
				t.cache.Finish(t.key, bytes.Clone(data), time.Now())
			}
		}
	}
	_, err := t.conn.WriteTo(data, t.to)
	return err
}

// renderPool holds the buffers responses are rendered into.
var renderPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// finish forgets a request that got no final response, so that its
// retransmission is handled afresh.
func (t *udpTx) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.final && t.cache != nil {
		t.cache.Forget(t.key)
	}
}

func (t *udpTx) Acks() <-chan *sip.Request          { return nil }
func (t *udpTx) OnCancel(sip.FnTxCancel) bool       { return false }
func (t *udpTx) Terminate()                         {}
func (t *udpTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *udpTx) Done() <-chan struct{}              { return closedChan }
func (t *udpTx) Err() error                         { return nil }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
