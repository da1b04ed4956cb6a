package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/sipcore"
)

// The proxy signs what it puts in messages that come back to it, so that
// a request or response can only use them if the proxy made them: a
// forged "in-dialog" request with our Route cannot turn the proxy into an
// open relay, and a made-up response cannot be relayed to a victim named
// in its second Via.
//
//   - Record-Route carries sf=TOKEN, an HMAC over the Call-ID, the tag of
//     the dialog's creator (the From tag of the request that made it) and
//     the remote target the token lets requests go to. The copy in the
//     forwarded request (the callee's route set) names the caller's
//     Contact; the proxy rewrites it in the 1xx/2xx it relays back (the
//     caller's route set) to name the callee's Contact. An in-dialog
//     request is trusted as such only when a Route of ours carries the
//     token of its Call-ID, its From or To tag (requests flow both ways)
//     and its Request-URI: a token seen in one call cannot send requests
//     anywhere else. Like Kamailio's rr module with a secret; a target
//     refreshed by re-INVITE loses the shortcut and is treated as any
//     request (authenticated for our users, relaying refused for others).
//     A flow (fl=, the real address of a phone behind NAT, flow.go) is
//     signed with it.
//   - Our Via branch is "z9hG4bK-sf" + loop hash + "." + random + "." +
//     an HMAC over those and the previous hop's Via (branch and where
//     responses go), so a response that matches no transaction of ours (a
//     2xx retransmission after ours ended) is relayed only to the hop
//     that really sent us the request.
//
// Every node of a domain must share the secret (the server uses the
// digest nonce secret, kept in Redis for that).
type signer struct {
	pool sync.Pool // hash.Hash (HMAC-SHA256 with the secret)
}

func newSigner(secret []byte) *signer {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	key := append([]byte("sipfed-proxy\x00"), secret...)
	return &signer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// sum writes the HMAC of parts (each followed by a NUL) into out.
func (s *signer) sum(out []byte, parts ...string) []byte {
	m := s.pool.Get().(hash.Hash)
	m.Reset()
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	out = m.Sum(out)
	s.pool.Put(m)
	return out
}

// dialogToken is the sf= value of our Record-Route for a dialog whose
// requests may go to target (targetKey of a Contact) and, when flow is
// not "", to that flow (the fl= beside it, see flow.go) instead.
func (s *signer) dialogToken(callID, creatorTag, target, flow string) string {
	var buf [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(s.sum(buf[:0], "rr", callID, creatorTag, target, flow)[:12])
}

// dialogOK reports whether token was made for req's dialog and
// Request-URI, and for flow.
func (s *signer) dialogOK(req *sip.Request, token, flow string) bool {
	if token == "" {
		return false
	}
	cid := req.CallID()
	if cid == nil {
		return false
	}
	target := targetKey(req.Recipient)
	for _, tag := range []string{fromTag(req), toTag(req)} {
		if tag != "" && hmac.Equal([]byte(s.dialogToken(cid.Value(), tag, target, flow)), []byte(token)) {
			return true
		}
	}
	return false
}

// targetKey is what a token binds of a remote target: user, host and
// port (URI parameters may be copied loosely between Contact and
// Request-URI).
func targetKey(u sip.Uri) string {
	return u.User + "@" + strings.ToLower(u.Host) + ":" + strconv.Itoa(sipcore.PortOr(u.Port, u.Scheme))
}

// contactKey is targetKey of a message's first Contact, or "".
func contactKey(m interface{ Contact() *sip.ContactHeader }) string {
	if c := m.Contact(); c != nil {
		return targetKey(c.Address)
	}
	return ""
}

func fromTag(req *sip.Request) string {
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

func toTag(m interface{ To() *sip.ToHeader }) string {
	if to := m.To(); to != nil {
		t, _ := to.Params.Get("tag")
		return t
	}
	return ""
}

// branch makes our Via branch for a request whose previous hop is up.
func (s *signer) branch(loop string, up *sip.ViaHeader) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	r := hex.EncodeToString(rnd[:])
	return loopPrefix + loop + "." + r + "." + s.branchMAC(loop, r, up)
}

func (s *signer) branchMAC(loop, rnd string, up *sip.ViaHeader) string {
	upBranch, dest := "", ""
	if up != nil {
		upBranch, _ = up.Params.Get("branch")
		dest = viaDest(up)
	}
	var buf [sha256.Size]byte
	return hex.EncodeToString(s.sum(buf[:0], "via", loop, rnd, upBranch, dest)[:8])
}

// branchOK reports whether our Via ours (the top one of a response) was
// made by branch for the previous hop up (the next Via).
func (s *signer) branchOK(ours, up *sip.ViaHeader) bool {
	br, _ := ours.Params.Get("branch")
	rest, ok := strings.CutPrefix(br, loopPrefix)
	if !ok {
		return false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return false
	}
	return hmac.Equal([]byte(s.branchMAC(parts[0], parts[1], up)), []byte(parts[2]))
}
